//! SQL over a stream's Parquet archive (and, on request, its hot tail) with
//! DataFusion.
//!
//! Every stream named in a query becomes a table: the archive columns
//! (`offset`, `timestamp`, `partition_key`, `data`, `headers`, `shard`,
//! `stream`), the Hive partitions `date` and `hour`, and `value`: `data` as
//! UTF-8 text (null where it is not), for the JSON functions
//! (`json_get_float(value, 'temperature')`, `value->>'device'`, ...).
//!
//! Objects are found through the shard manifests, never by listing data
//! prefixes, and pruned by the manifests' offset and timestamp ranges (and
//! the partitions) before any is opened; inside an object, Parquet
//! statistics and the page index prune row groups and pages.

pub mod hot;
pub mod output;
pub mod table;

use anyhow::{bail, Context, Result};
use datafusion::arrow::datatypes::DataType;
use datafusion::common::TableReference;
use datafusion::execution::context::SQLOptions;
use datafusion::execution::object_store::ObjectStoreUrl;
use datafusion::logical_expr::{col, try_cast};
use datafusion::physical_plan::metrics::MetricValue;
use datafusion::physical_plan::{ExecutionPlan, SendableRecordBatchStream};
use datafusion::prelude::{SessionConfig, SessionContext};
use futures::StreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use strata_archive::{keys, Manifest};
use strata_client::cluster::Cluster;
use table::{ArchivedObject, ScanCounts, StreamTable};

/// The column holding `data` as text.
pub const COL_VALUE: &str = "value";

/// Where tables come from.
pub struct Sources {
    /// The core: where each stream's archive lives, and its hot tail.
    pub cluster: Option<Arc<Cluster>>,
    /// Read archives from this store instead of asking the core.
    pub object_store: Option<String>,
    /// Union the not yet tiered records, read from the core.
    pub include_hot: bool,
}

/// A query engine over Strata streams.
pub struct Engine {
    ctx: SessionContext,
    sources: Sources,
    counts: Arc<Mutex<ScanCounts>>,
    /// Archive root URL → the name DataFusion knows its store by, the
    /// store, and the key prefix in it.
    stores: BTreeMap<String, (ObjectStoreUrl, Arc<dyn ObjectStore>, Path)>,
}

/// Archive statistics of a finished query, for `--explain`.
#[derive(Debug, Default, Clone)]
pub struct ScanReport {
    pub counts: ScanCounts,
    /// Row groups read and skipped by Parquet statistics, in the objects opened.
    pub row_groups_matched: usize,
    pub row_groups_pruned: usize,
    /// Bytes read from the objects (footers, pages).
    pub bytes_scanned: usize,
    /// Rows out of the archive and hot-tail scans.
    pub rows_scanned: usize,
}

impl Engine {
    pub fn new(sources: Sources) -> Result<Self> {
        if sources.cluster.is_none() && (sources.object_store.is_none() || sources.include_hot) {
            bail!("querying needs a core to ask (or --object-store without --include-hot)");
        }
        let config = SessionConfig::new().with_information_schema(true);
        let mut ctx = SessionContext::new_with_config(config);
        datafusion_functions_json::register_all(&mut ctx)
            .context("registering the JSON functions")?;
        Ok(Self {
            ctx,
            sources,
            counts: Arc::default(),
            stores: BTreeMap::new(),
        })
    }

    /// Plans `sql`, registering each stream it names. Errors are
    /// DataFusion's (syntax, unknown column, ...) or name the stream that
    /// could not be opened.
    pub async fn plan(&mut self, sql: &str) -> Result<Arc<dyn ExecutionPlan>> {
        let state = self.ctx.state();
        let dialect = state.config().options().sql_parser.dialect;
        let statement = state.sql_to_statement(sql, &dialect)?;
        for table in state.resolve_table_references(&statement)? {
            if table.schema().is_some_and(|s| s == "information_schema") {
                continue;
            }
            let name = table.table().to_string();
            if self.ctx.table_exist(TableReference::bare(name.as_str()))? {
                continue;
            }
            self.register_stream(&name)
                .await
                .with_context(|| format!("opening stream {name:?}"))?;
        }
        // Queries only: no tables created, no files written (COPY, INSERT).
        let read_only = SQLOptions::new()
            .with_allow_ddl(false)
            .with_allow_dml(false);
        let df = self.ctx.sql_with_options(sql, read_only).await?;
        Ok(df.create_physical_plan().await?)
    }

    /// Runs a planned query.
    pub fn execute(&self, plan: Arc<dyn ExecutionPlan>) -> Result<SendableRecordBatchStream> {
        Ok(datafusion::physical_plan::execute_stream(
            plan,
            self.ctx.task_ctx(),
        )?)
    }

    /// What the scans of an executed plan read.
    pub fn report(&self, plan: &Arc<dyn ExecutionPlan>) -> ScanReport {
        let mut r = ScanReport {
            counts: self.counts.lock().expect("scan counts lock").clone(),
            ..Default::default()
        };
        fn walk(p: &Arc<dyn ExecutionPlan>, r: &mut ScanReport) {
            if p.name() == "DataSourceExec" {
                for m in p
                    .metrics()
                    .iter()
                    .flat_map(|m| m.iter().cloned().collect::<Vec<_>>())
                {
                    match m.value() {
                        MetricValue::PruningMetrics {
                            name,
                            pruning_metrics,
                        } if name == "row_groups_pruned_statistics" => {
                            r.row_groups_matched += pruning_metrics.matched();
                            r.row_groups_pruned += pruning_metrics.pruned();
                        }
                        MetricValue::Count { name, count } if name == "bytes_scanned" => {
                            r.bytes_scanned += count.value();
                        }
                        MetricValue::OutputRows(n) => r.rows_scanned += n.value(),
                        _ => {}
                    }
                }
            }
            for c in p.children() {
                walk(c, r);
            }
        }
        walk(plan, &mut r);
        r
    }

    async fn register_stream(&mut self, name: &str) -> Result<()> {
        let info = match &self.sources.cluster {
            Some(c) if self.sources.object_store.is_none() || self.sources.include_hot => {
                Some(c.describe(name).await?)
            }
            _ => None,
        };
        let root = match (&self.sources.object_store, &info) {
            (Some(url), _) => Some(url.clone()),
            (None, Some(info)) if !info.archive_url.is_empty() => Some(
                info.archive_url
                    .strip_suffix(&format!("/stream={name}"))
                    .with_context(|| {
                        format!(
                            "the core reported archive {:?}, not under stream={name}",
                            info.archive_url
                        )
                    })?
                    .to_string(),
            ),
            _ => None,
        };
        let (store_url, manifests) = match root {
            Some(root) => {
                let (url, store, prefix) = self.store(&root)?;
                let manifests = read_manifests(store.as_ref(), &prefix, name)
                    .await
                    .with_context(|| format!("reading the manifests of {name} under {root}"))?;
                if manifests.is_empty() && info.is_none() {
                    bail!("no archive of stream {name:?} under {root} (no manifests)");
                }
                (url, manifests)
            }
            None => (ObjectStoreUrl::parse("strata://none")?, Vec::new()),
        };
        let mut objects = Vec::new();
        let mut tiered_to = BTreeMap::new();
        for m in &manifests {
            tiered_to.insert(m.shard, m.tiered_to());
            objects.extend(
                m.objects
                    .iter()
                    .map(|o| ArchivedObject::new(m.shard, o.clone())),
            );
        }
        let mut hot = Vec::new();
        if let (true, Some(info), Some(cluster)) =
            (self.sources.include_hot, &info, &self.sources.cluster)
        {
            for sh in &info.shards {
                let from = tiered_to
                    .get(&sh.id)
                    .copied()
                    .unwrap_or(0)
                    .max(sh.first_offset);
                hot.extend(hot::read_shard(cluster, name, sh.id, from, sh.next_offset).await?);
            }
        }
        let raw = StreamTable::new(store_url, objects, hot, self.counts.clone())?;
        let view = self
            .ctx
            .read_table(Arc::new(raw))?
            .with_column(COL_VALUE, try_cast(col("data"), DataType::Utf8))?
            .into_view();
        self.ctx.register_table(TableReference::bare(name), view)?;
        Ok(())
    }
}

impl Engine {
    /// The store at archive root `root`, opened and registered with
    /// DataFusion on first use.
    fn store(&mut self, root: &str) -> Result<(ObjectStoreUrl, Arc<dyn ObjectStore>, Path)> {
        if let Some(s) = self.stores.get(root) {
            return Ok(s.clone());
        }
        let (store, prefix) = open_store(root)?;
        let url = ObjectStoreUrl::parse(format!("strata://archive-{}", self.stores.len()))?;
        self.ctx.register_object_store(url.as_ref(), store.clone());
        let entry = (url, store, prefix);
        self.stores.insert(root.to_string(), entry.clone());
        Ok(entry)
    }
}

/// Opens an archive root for reading: unlike the core, never creates a
/// local directory.
fn open_store(root: &str) -> Result<(Arc<dyn ObjectStore>, Path)> {
    let local = root
        .strip_prefix("file://")
        .or(root.starts_with('/').then_some(root));
    if let Some(dir) = local {
        if !std::path::Path::new(dir).is_dir() {
            bail!("no archive at {root}: {dir} is not a directory");
        }
    }
    Ok(strata_archive::store::open(root)?)
}

/// Every shard manifest of `stream` under `prefix`, by shard.
async fn read_manifests(
    store: &dyn ObjectStore,
    prefix: &Path,
    stream: &str,
) -> Result<Vec<Manifest>> {
    let dir = keys::manifest_dir(prefix, stream);
    let mut listing = store.list(Some(&dir));
    let mut out = Vec::new();
    while let Some(meta) = listing.next().await {
        let meta = meta?;
        if meta.location.extension() != Some("json") {
            continue;
        }
        let bytes = store.get(&meta.location).await?.bytes().await?;
        let m =
            Manifest::from_json(&bytes).with_context(|| format!("manifest {}", meta.location))?;
        if m.stream != stream {
            bail!(
                "manifest {} is for stream {:?}, not {stream:?}",
                meta.location,
                m.stream
            );
        }
        out.push(m);
    }
    out.sort_by_key(|m| m.shard);
    Ok(out)
}
