//! `strata query`: SQL over a stream's Parquet archive and, with
//! `--include-hot`, its not yet tiered tail.

use super::TlsArgs;
use crate::query::output::{self, Format};
use crate::query::{Engine, ScanReport, Sources};
use anyhow::Result;
use clap::Args;
use futures::StreamExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

#[derive(Args, Debug)]
pub struct QueryArgs {
    /// The SQL statement. Each stream it names is a table (quote names with
    /// `-` or capitals: "my-stream"). See docs/query.md.
    pub sql: String,
    /// Core node addresses (QUIC), comma-separated: where each stream's
    /// archive lives, and its hot tail.
    #[arg(long, default_value = super::DEFAULT_CORE, value_parser = super::parse_seeds)]
    pub core: super::Seeds,
    /// Read archives from this object store (file:///dir or
    /// s3://bucket/prefix, as the core's `object_store`) instead of asking
    /// the core. S3 settings come from the AWS_* environment.
    #[arg(long)]
    pub object_store: Option<String>,
    /// Also read the records not yet tiered from the core, so the query
    /// covers everything committed when it started.
    #[arg(long)]
    pub include_hot: bool,
    /// After the results, print to stderr the plan with its metrics and how
    /// many objects and row groups were scanned.
    #[arg(long)]
    pub explain: bool,
    /// Output format.
    #[arg(long, value_enum, default_value = "table")]
    pub format: Format,
    /// Write the results to FILE instead of stdout.
    #[arg(long, short)]
    pub output: Option<PathBuf>,
    /// Read the hot tail from a replica in this availability zone when one exists.
    #[arg(long)]
    pub zone: Option<String>,
    #[command(flatten)]
    pub tls: TlsArgs,
}

pub async fn run(a: QueryArgs) -> Result<()> {
    let needs_core = a.object_store.is_none() || a.include_hot;
    let cluster = if needs_core {
        Some(Arc::new(a.tls.cluster(&a.core)?.with_zone(a.zone.clone())))
    } else {
        None
    };
    let mut engine = Engine::new(Sources {
        cluster,
        object_store: a.object_store.clone(),
        include_hot: a.include_hot,
    })?;
    let mut out = output::open(a.format, a.output.as_deref())?;
    let spinner = indicatif::ProgressBar::new_spinner();
    spinner.enable_steady_tick(std::time::Duration::from_millis(120));
    spinner.set_message("planning");
    let started = Instant::now();
    let plan = engine.plan(&a.sql).await;
    let plan = match plan {
        Ok(p) => p,
        Err(e) => {
            spinner.finish_and_clear();
            return Err(e);
        }
    };
    spinner.set_message("running");
    let schema = plan.schema();
    let mut stream = engine.execute(plan.clone())?;
    let mut batches = Vec::new();
    let mut rows = 0usize;
    while let Some(b) = stream.next().await {
        let b = match b {
            Ok(b) => b,
            Err(e) => {
                spinner.finish_and_clear();
                return Err(e.into());
            }
        };
        rows += b.num_rows();
        spinner.set_message(format!("running: {rows} rows"));
        batches.push(b);
    }
    spinner.finish_and_clear();
    let elapsed = started.elapsed();
    output::write(a.format, schema, &batches, &mut out)?;
    out.flush()?;
    if a.explain {
        let shown = datafusion::physical_plan::display::DisplayableExecutionPlan::with_metrics(
            plan.as_ref(),
        )
        .indent(true)
        .to_string();
        eprintln!("{shown}");
        eprintln!("{}", summary(&engine.report(&plan), rows, elapsed));
    }
    Ok(())
}

fn summary(r: &ScanReport, rows: usize, elapsed: std::time::Duration) -> String {
    let c = &r.counts;
    format!(
        "scanned {} of {} objects ({} pruned by the manifests, {} bytes), \
         {} of {} row groups ({} pruned by statistics), {} bytes read; \
         hot tail: {} records; {rows} result rows in {:.3} s",
        c.objects_scanned,
        c.objects,
        c.objects - c.objects_scanned,
        c.object_bytes_scanned,
        r.row_groups_matched,
        r.row_groups_matched + r.row_groups_pruned,
        r.row_groups_pruned,
        r.bytes_scanned,
        c.hot_records,
        elapsed.as_secs_f64()
    )
}
