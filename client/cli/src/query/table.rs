//! A stream as a DataFusion table: its tiered Parquet objects (listed by the
//! shard manifests, pruned by the manifests' offset and timestamp ranges
//! before any object is opened) and, with `--include-hot`, the not yet
//! tiered tail read from the core.

use datafusion::arrow::array::{ArrayRef, Int64Array, StringArray, TimestampMillisecondArray};
use datafusion::arrow::datatypes::{DataType, Field, FieldRef, Schema, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::catalog::Session;
use datafusion::common::pruning::PruningStatistics;
use datafusion::common::{Column, DFSchema, ScalarValue};
use datafusion::datasource::listing::PartitionedFile;
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::datasource::physical_plan::{FileGroup, FileScanConfigBuilder, ParquetSource};
use datafusion::datasource::source::DataSourceExec;
use datafusion::datasource::table_schema::TableSchema;
use datafusion::datasource::{TableProvider, TableType};
use datafusion::error::Result;
use datafusion::execution::object_store::ObjectStoreUrl;
use datafusion::logical_expr::utils::conjunction;
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown};
use datafusion::physical_optimizer::pruning::PruningPredicateBuilder;
use datafusion::physical_plan::empty::EmptyExec;
use datafusion::physical_plan::union::UnionExec;
use datafusion::physical_plan::ExecutionPlan;
use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use strata_archive::TieredObject;

/// Hive partition columns, from the object key (`date=YYYY-MM-DD/hour=HH`).
pub const COL_DATE: &str = "date";
pub const COL_HOUR: &str = "hour";

/// One archived object of one shard.
#[derive(Debug, Clone)]
pub struct ArchivedObject {
    pub shard: u32,
    pub object: TieredObject,
    pub date: String,
    pub hour: String,
}

impl ArchivedObject {
    /// `date` and `hour` come from the key, as every Hive-aware engine reads them.
    pub fn new(shard: u32, object: TieredObject) -> Self {
        let part = |name: &str| {
            object
                .key
                .split('/')
                .find_map(|seg| seg.strip_prefix(name)?.strip_prefix('='))
                .unwrap_or_default()
                .to_string()
        };
        let (date, hour) = (part(COL_DATE), part(COL_HOUR));
        Self {
            shard,
            object,
            date,
            hour,
        }
    }
}

/// What the scans of a query touched, for `--explain`.
#[derive(Debug, Default, Clone)]
pub struct ScanCounts {
    /// Archived objects of the streams scanned.
    pub objects: u64,
    /// Of those, objects opened (the rest were pruned by the manifests).
    pub objects_scanned: u64,
    /// Encoded bytes of the objects opened.
    pub object_bytes_scanned: u64,
    /// Hot-tail records read from the core and unioned.
    pub hot_records: u64,
}

/// A stream's archive and hot tail.
#[derive(Debug)]
pub struct StreamTable {
    store: ObjectStoreUrl,
    objects: Vec<ArchivedObject>,
    hot: Vec<RecordBatch>,
    counts: Arc<Mutex<ScanCounts>>,
}

/// The table schema: the archive's columns and the two Hive partitions.
pub fn table_schema() -> SchemaRef {
    let mut fields: Vec<FieldRef> = strata_archive::format::schema()
        .fields()
        .iter()
        .cloned()
        .collect();
    fields.extend(partition_fields());
    Arc::new(Schema::new(fields))
}

fn partition_fields() -> Vec<FieldRef> {
    vec![
        Arc::new(Field::new(COL_DATE, DataType::Utf8, false)),
        Arc::new(Field::new(COL_HOUR, DataType::Utf8, false)),
    ]
}

impl StreamTable {
    /// `hot` batches are in the archive schema (without partitions); each
    /// row gets the date and hour of its own timestamp.
    pub fn new(
        store: ObjectStoreUrl,
        objects: Vec<ArchivedObject>,
        hot: Vec<RecordBatch>,
        counts: Arc<Mutex<ScanCounts>>,
    ) -> Result<Self> {
        let hot = hot
            .into_iter()
            .map(with_partitions)
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            store,
            objects,
            hot,
            counts,
        })
    }

    /// Objects whose manifest ranges may hold rows matching `filters`.
    fn prune(&self, state: &dyn Session, filters: &[Expr]) -> Result<Vec<&ArchivedObject>> {
        let Some(filter) = conjunction(filters.iter().cloned()) else {
            return Ok(self.objects.iter().collect());
        };
        let schema = table_schema();
        let df_schema = DFSchema::try_from(schema.as_ref().clone())?;
        let expr = state.create_physical_expr(filter, &df_schema)?;
        let predicate = PruningPredicateBuilder::new()
            .with_file_schema(schema)
            .try_build(expr)?;
        let keep = predicate.prune(&ManifestStatistics(&self.objects))?;
        Ok(self
            .objects
            .iter()
            .zip(keep)
            .filter_map(|(o, k)| k.then_some(o))
            .collect())
    }
}

/// Appends `date` and `hour` (from each row's timestamp) to a hot batch.
fn with_partitions(batch: RecordBatch) -> Result<RecordBatch> {
    let ts = batch
        .column_by_name(strata_archive::format::COL_TIMESTAMP)
        .and_then(|c| c.as_any().downcast_ref::<TimestampMillisecondArray>())
        .ok_or_else(|| {
            datafusion::error::DataFusionError::Internal("hot batch without timestamps".into())
        })?;
    let parts: Vec<(String, String)> = ts
        .values()
        .iter()
        .map(|&ms| {
            let t = chrono::DateTime::from_timestamp_millis(ms).unwrap_or_default();
            (t.format("%Y-%m-%d").to_string(), t.format("%H").to_string())
        })
        .collect();
    let date: ArrayRef = Arc::new(StringArray::from_iter_values(
        parts.iter().map(|p| p.0.as_str()),
    ));
    let hour: ArrayRef = Arc::new(StringArray::from_iter_values(
        parts.iter().map(|p| p.1.as_str()),
    ));
    let mut columns = batch.columns().to_vec();
    columns.extend([date, hour]);
    Ok(RecordBatch::try_new(table_schema(), columns)?)
}

#[async_trait::async_trait]
impl TableProvider for StreamTable {
    fn schema(&self) -> SchemaRef {
        table_schema()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    /// Filters prune objects and row groups; DataFusion still applies them
    /// to the rows.
    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> Result<Vec<TableProviderFilterPushDown>> {
        Ok(vec![TableProviderFilterPushDown::Inexact; filters.len()])
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let kept = self.prune(state, filters)?;
        {
            let mut c = self.counts.lock().expect("scan counts lock");
            c.objects += self.objects.len() as u64;
            c.objects_scanned += kept.len() as u64;
            c.object_bytes_scanned += kept.iter().map(|o| o.object.bytes).sum::<u64>();
            c.hot_records += self.hot.iter().map(|b| b.num_rows() as u64).sum::<u64>();
        }
        let mut inputs: Vec<Arc<dyn ExecutionPlan>> = Vec::new();
        if !kept.is_empty() {
            inputs.push(self.parquet_scan(state, &kept, projection, filters, limit)?);
        }
        if !self.hot.is_empty() {
            inputs.push(MemorySourceConfig::try_new_exec(
                std::slice::from_ref(&self.hot),
                table_schema(),
                projection.cloned(),
            )?);
        }
        if inputs.is_empty() {
            let schema = datafusion::physical_plan::project_schema(&table_schema(), projection)?;
            return Ok(Arc::new(EmptyExec::new(schema)));
        }
        UnionExec::try_new(inputs)
    }
}

impl StreamTable {
    fn parquet_scan(
        &self,
        state: &dyn Session,
        kept: &[&ArchivedObject],
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let file_schema = strata_archive::format::schema();
        let schema = TableSchema::builder(file_schema)
            .with_table_partition_cols(partition_fields())
            .build();
        let mut source = ParquetSource::new(schema)
            .with_table_parquet_options(state.table_options().parquet.clone());
        if let Some(filter) = conjunction(filters.iter().cloned()) {
            let df_schema = DFSchema::try_from(table_schema().as_ref().clone())?;
            source = source.with_predicate(state.create_physical_expr(filter, &df_schema)?);
        }
        // Objects spread over as many partitions as DataFusion runs.
        let n = state.config().target_partitions().max(1).min(kept.len());
        let mut groups: Vec<Vec<PartitionedFile>> = vec![Vec::new(); n];
        for (i, o) in kept.iter().enumerate() {
            let file = PartitionedFile::new(o.object.key.clone(), o.object.bytes)
                .with_partition_values(vec![
                    ScalarValue::Utf8(Some(o.date.clone())),
                    ScalarValue::Utf8(Some(o.hour.clone())),
                ]);
            groups[i % n].push(file);
        }
        let config = FileScanConfigBuilder::new(self.store.clone(), Arc::new(source))
            .with_file_groups(groups.into_iter().map(FileGroup::new).collect())
            .with_projection_indices(projection.cloned())?
            .with_limit(limit)
            .build();
        Ok(DataSourceExec::from_data_source(config))
    }
}

/// The manifests' per-object ranges as pruning statistics: DataFusion's
/// pruning predicate then decides which objects a filter can skip
/// without opening them.
struct ManifestStatistics<'a>(&'a [ArchivedObject]);

impl ManifestStatistics<'_> {
    fn column(&self, column: &Column, max: bool) -> Option<ArrayRef> {
        let o = self.0;
        use strata_archive::format::{COL_OFFSET, COL_SHARD, COL_TIMESTAMP};
        let array: ArrayRef = match column.name.as_str() {
            COL_OFFSET => Arc::new(Int64Array::from_iter_values(o.iter().map(|a| {
                let v = if max {
                    a.object.next_offset - 1
                } else {
                    a.object.first_offset
                };
                i64::try_from(v).unwrap_or(i64::MAX)
            }))),
            COL_TIMESTAMP => Arc::new(
                TimestampMillisecondArray::from_iter_values(o.iter().map(|a| {
                    if max {
                        a.object.max_timestamp_ms
                    } else {
                        a.object.min_timestamp_ms
                    }
                }))
                .with_timezone("UTC"),
            ),
            COL_SHARD => Arc::new(Int64Array::from_iter_values(
                o.iter().map(|a| i64::from(a.shard)),
            )),
            COL_DATE => Arc::new(StringArray::from_iter_values(
                o.iter().map(|a| a.date.as_str()),
            )),
            COL_HOUR => Arc::new(StringArray::from_iter_values(
                o.iter().map(|a| a.hour.as_str()),
            )),
            _ => return None,
        };
        Some(array)
    }
}

impl PruningStatistics for ManifestStatistics<'_> {
    fn min_values(&self, column: &Column) -> Option<ArrayRef> {
        self.column(column, false)
    }

    fn max_values(&self, column: &Column) -> Option<ArrayRef> {
        self.column(column, true)
    }

    fn num_containers(&self) -> usize {
        self.0.len()
    }

    fn null_counts(&self, column: &Column) -> Option<ArrayRef> {
        // Every column the manifest describes is non-null.
        self.column(column, false).map(|_| {
            Arc::new(datafusion::arrow::array::UInt64Array::from(vec![
                0u64;
                self.0
                    .len()
            ])) as ArrayRef
        })
    }

    fn row_counts(&self) -> Option<ArrayRef> {
        Some(Arc::new(
            datafusion::arrow::array::UInt64Array::from_iter_values(
                self.0.iter().map(|a| a.object.records),
            ),
        ))
    }

    fn contained(
        &self,
        _column: &Column,
        _values: &HashSet<ScalarValue>,
    ) -> Option<datafusion::arrow::array::BooleanArray> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object(shard: u32, first: u64, next: u64, min_ts: i64, max_ts: i64) -> ArchivedObject {
        let t = chrono::DateTime::from_timestamp_millis(min_ts).unwrap();
        ArchivedObject::new(
            shard,
            TieredObject {
                key: format!(
                    "stream=s/date={}/hour={}/shard-{shard}-{first:020}.parquet",
                    t.format("%Y-%m-%d"),
                    t.format("%H")
                ),
                first_offset: first,
                next_offset: next,
                records: next - first,
                min_timestamp_ms: min_ts,
                max_timestamp_ms: max_ts,
                bytes: 100,
                payload_bytes: 1000,
                checksums: None,
                max_appended_ms: None,
            },
        )
    }

    #[test]
    fn partitions_come_from_the_key() {
        let o = object(0, 0, 10, 1_795_000_000_000, 1_795_000_001_000);
        assert_eq!(o.date, "2026-11-18");
        assert_eq!(o.hour, "11");
    }

    #[tokio::test]
    async fn manifest_ranges_prune_objects_before_they_are_opened() {
        let hour = 3_600_000;
        let t0 = 1_795_000_000_000 - 1_795_000_000_000 % hour;
        let objects = vec![
            object(0, 0, 100, t0, t0 + hour - 1),
            object(0, 100, 200, t0 + hour, t0 + 2 * hour - 1),
            object(1, 0, 50, t0 + hour + 10, t0 + 2 * hour - 10),
            object(1, 50, 90, t0 + 2 * hour, t0 + 3 * hour - 1),
        ];
        let table = StreamTable::new(
            ObjectStoreUrl::parse("strata://archive").unwrap(),
            objects,
            vec![],
            Arc::default(),
        )
        .unwrap();
        let ctx = datafusion::prelude::SessionContext::new();
        let state = ctx.state();
        let keys = |sql: &str| {
            let expr = state
                .create_logical_expr(
                    sql,
                    &DFSchema::try_from(table_schema().as_ref().clone()).unwrap(),
                )
                .unwrap();
            table
                .prune(&state, &[expr])
                .unwrap()
                .iter()
                .map(|o| (o.shard, o.object.first_offset))
                .collect::<Vec<_>>()
        };
        let second_hour = format!(
            "\"timestamp\" >= to_timestamp_millis({}) AND \"timestamp\" < to_timestamp_millis({})",
            t0 + hour,
            t0 + 2 * hour
        );
        assert_eq!(keys(&second_hour), vec![(0, 100), (1, 0)]);
        assert_eq!(keys("shard = 1 AND \"offset\" >= 60"), vec![(1, 50)]);
        let h = chrono::DateTime::from_timestamp_millis(t0 + 2 * hour).unwrap();
        assert_eq!(keys(&format!("hour = '{}'", h.format("%H"))), vec![(1, 50)]);
        assert_eq!(
            keys("partition_key = 'x'").len(),
            4,
            "no statistics: nothing pruned"
        );
    }
}
