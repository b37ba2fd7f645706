//! `strata-bench tier`: tiering to object storage on one core node with the
//! local filesystem store (the default `file://<data_dir>/archive`), measured
//! on synthetic sensor readings (JSON of about 120 B, one partition key per
//! device). Each of `--runs` runs starts a fresh core and edge and measures
//! three things on one dataset:
//!
//! 1. **Tiering throughput.** `records` readings are produced through the
//!    edge and committed while no segment can seal: `segment_age_max_ms` is
//!    `--seal-after-secs` (counted from when the core applied a range's first
//!    entry, i.e. from about when the first record was produced) and
//!    `segment_bytes_max` stays at its 128 MiB default, above what a shard
//!    receives. When the first records reach that age every shard's range
//!    seals at once and the core's tiering task converts it to Parquet and
//!    writes it to the store, with no ingestion or reads running. Time: from
//!    the first object's start to the last object's end, from the core's
//!    `tiered a segment … ms=…` log lines, checked against polling `describe`
//!    until the backlog is 0. CPU: the core's utime+stime from `/proc` over
//!    that polling window (from just before the seal time). The `describe`
//!    polls are timed, while tiering and before it, to show stalls.
//! 2. **Compression.** Payload bytes (keys + values, as the core counts them)
//!    and raw JSON bytes ÷ the Parquet bytes `describe` reports.
//! 3. **Replay.** A consumer reads every shard from offset 0 with
//!    `api::fetch` (all shards in parallel over one connection), first while
//!    the tiered entries are still in the core's local log, then, after the
//!    core is restarted with `local_retention_ms = 1` and has purged them
//!    (`purged.json` in every shard directory), from the Parquet objects. Both
//!    replays check every offset and a checksum of every value against what
//!    was produced; the second checks the core's
//!    `strata_core_records_out_tier_total` counter to prove the records came
//!    from the store. The shard logs' size before and after the purge shows
//!    whether it freed disk.
//!
//! Nothing here asserts on speed. Waits poll a condition with a deadline;
//! until the configured seal time `describe` is polled too, as a latency
//! baseline for the same polling while the core tiers.
//!
//! Layout: [`options`] (flags and plan), [`sensors`] (the readings and their
//! checksum), [`workload`] (producing and replaying), [`core_view`] (the
//! core's log lines, metrics and files), [`driver`] (the runs and their
//! phases), [`results`] (the collected figures) and [`render`] (Markdown and
//! CSV).

mod core_view;
mod driver;
mod options;
mod render;
mod results;
mod sensors;
#[cfg(test)]
mod tests;
mod workload;

pub use driver::measure;
pub use options::{TierOpts, TierPlan};
pub use render::{render, write_csv};
pub use results::TierReport;
pub use sensors::Device;

use crate::procfs;
use anyhow::Result;
use std::fmt::Write as _;
use std::time::{Duration, Instant};

/// The stream every run creates and reads back.
const STREAM: &str = "sensors";

/// `strata-bench tier`: the measurement with its own results directory.
pub async fn command(o: TierOpts) -> Result<()> {
    let started = Instant::now();
    let started_utc = chrono::Utc::now();
    for b in ["strata-core", "strata-edge"] {
        strata_tests::bin(b)?;
    }
    let dir = crate::results_dir(o.out.clone())?;
    let plan = TierPlan::from_opts(&o);
    let m = procfs::machine();
    let tmp = std::env::temp_dir();
    let fsync = procfs::fsync_probe(&tmp, Duration::from_secs(1))?;
    let mut facts = crate::report::machine_facts(started_utc, "tier".into(), &m, 1.0, &tmp, &fsync);
    facts.push(("settings".into(), plan.describe()));
    eprintln!("results: {}", dir.display());
    let mut rep = TierReport::default();
    let outcome = measure(&plan, &dir, &mut rep).await;
    crate::report::closing_facts(&mut facts, started, &outcome);
    let mut table = String::from("### Machine and settings\n\n");
    for (k, v) in &facts {
        let _ = writeln!(table, "- {k}: {v}");
    }
    table.push_str(&render(&rep, &plan));
    println!("{table}");
    std::fs::write(dir.join("table.md"), &table)?;
    write_csv(&dir, &rep)?;
    crate::report::write_facts(&dir, &facts)?;
    eprintln!(
        "wrote {}/{{table.md,tier.csv,tier-summary.csv,tier-objects.csv,tier-core-*.log,machine.csv}}",
        dir.display()
    );
    outcome
}
