//! Output of a tiering measurement: the Markdown section and the CSV files.

use super::options::TierPlan;
use super::results::{mb, TierReport};
use crate::report::{si, sig3};
use anyhow::Result;
use std::fmt::Write as _;
use std::path::Path;

/// The Markdown section for the table.
pub fn render(rep: &TierReport, plan: &TierPlan) -> String {
    let f = |p: &str, m: &str, fmt: fn(f64) -> String| match rep.spread(p, m) {
        Some(s) if s.n > 1 => format!("{} [{}–{}]", fmt(s.median), fmt(s.min), fmt(s.max)),
        Some(s) => fmt(s.median),
        None => "—".into(),
    };
    let mut out = String::new();
    let _ = writeln!(
        out,
        "\n### Tiering to object storage (`strata-bench tier`)\n\n\
         {}. MB = 10^6 bytes. Payload = partition keys + values, as the core counts it. \
         Figures: median [min–max] over the runs.\n",
        plan.describe()
    );
    let _ = writeln!(out, "| figure | value |\n| --- | --- |");
    let mut row = |k: &str, v: String| {
        let _ = writeln!(out, "| {k} | {v} |");
    };
    row(
        "produced and committed",
        format!(
            "{} readings, {} MB of JSON ({} B each); committed in {} s ({}/s)",
            f("ingest", "records", si),
            f("ingest", "json_bytes", |b| sig3(mb(b))),
            f("ingest", "json_bytes_per_record", sig3),
            f("ingest", "committed_secs", sig3),
            f("ingest", "committed_records_per_s", si)
        ),
    );
    row(
        "tiering time (core log: first object's start to last object's end)",
        format!(
            "{} s for {} objects, {} MB payload (backlog 0 seen {} s after the seal time)",
            f("tiering", "secs", sig3),
            f("tiering", "objects", |x| format!("{x:.0}")),
            f("tiering", "payload_bytes", |b| sig3(mb(b))),
            f("tiering", "secs_polled_from_seal_time", sig3)
        ),
    );
    row(
        "**tiering throughput**",
        format!(
            "**{} MB/s** payload, **{} records/s** (median object {} MB/s)",
            f("tiering", "payload_mb_per_s", sig3),
            f("tiering", "records_per_s", si),
            f("tiering", "object_payload_mb_per_s_median", sig3)
        ),
    );
    row(
        "core CPU while tiering (utime+stime)",
        format!(
            "{} s over {} s = {} cores (other processes: {} cores)",
            f("tiering", "core_cpu_secs", sig3),
            f("tiering", "cpu_window_secs", sig3),
            f("tiering", "core_cores", sig3),
            f("tiering", "other_cores", sig3)
        ),
    );
    row(
        "`describe` latency, polled every 20 ms",
        format!(
            "while tiering: p50 {} ms, max {} ms; idle before: p50 {} ms, max {} ms",
            f("tiering", "describe_p50_ms", sig3),
            f("tiering", "describe_max_ms", sig3),
            f("tiering", "describe_idle_p50_ms", sig3),
            f("tiering", "describe_idle_max_ms", sig3)
        ),
    );
    row(
        "**per core-second**",
        format!(
            "**{} MB** payload, **{} records**",
            f("tiering", "payload_mb_per_core_s", sig3),
            f("tiering", "records_per_core_s", si)
        ),
    );
    row(
        "Parquet (zstd 3)",
        format!(
            "{} MB, {} B per record",
            f("compression", "parquet_bytes", |b| sig3(mb(b))),
            f("compression", "parquet_bytes_per_record", sig3)
        ),
    );
    row(
        "**compression**",
        format!(
            "payload ÷ Parquet **{}×**, JSON ÷ Parquet **{}×**",
            f("compression", "payload_over_parquet", sig3),
            f("compression", "json_over_parquet", sig3)
        ),
    );
    row(
        "local purge",
        format!(
            "core restarted with local_retention_ms = 1 in {} s; every shard purged {} s later; \
             shard log files {} MB before, {} MB after (up to 5 s later)",
            f("purge", "restart_secs", sig3),
            f("purge", "purged_secs_after_restart", sig3),
            f("purge", "local_log_bytes_before", |b| sig3(mb(b))),
            f("purge", "local_log_bytes_after", |b| sig3(mb(b)))
        ),
    );
    let _ = writeln!(
        out,
        "\nReplay: one consumer reads all {} shards from offset 0 in parallel (`api::fetch`, \
         at most {} records per fetch), checking every offset and value.\n",
        plan.shards, plan.fetch_records
    );
    let _ = writeln!(
        out,
        "| read from | records/s | MB/s (values) | time s | fetches | fetch p50 ms | fetch p99 ms | core cores | consumer cores |\n\
         | --- | --- | --- | --- | --- | --- | --- | --- | --- |"
    );
    for (label, p) in [
        ("local disk (Raft log)", "replay_local"),
        ("object store (Parquet; local log purged)", "replay_tier"),
    ] {
        let _ = writeln!(
            out,
            "| {label} | {} | {} | {} | {} | {} | {} | {} | {} |",
            f(p, "records_per_s", si),
            f(p, "value_mb_per_s", sig3),
            f(p, "secs", sig3),
            f(p, "fetches", |x| format!("{x:.0}")),
            f(p, "fetch_p50_ms", sig3),
            f(p, "fetch_p99_ms", sig3),
            f(p, "core_cores", sig3),
            f(p, "bench_cores", sig3)
        );
    }
    let _ = writeln!(
        out,
        "| **tier ÷ local** | **{}** | | | | | | | |",
        f("replay_tier", "over_local", |x| format!("{x:.2}×"))
    );
    if !rep.notes.is_empty() {
        let _ = writeln!(out, "\nTiering notes:\n");
        for n in &rep.notes {
            let _ = writeln!(out, "- {n}");
        }
    }
    out
}

/// tier.csv (`run,phase,metric,value,unit`), tier-summary.csv (median,
/// min and max over the runs) and tier-objects.csv (one row per object the
/// core logged).
pub fn write_csv(dir: &Path, rep: &TierReport) -> Result<()> {
    let mut s = String::from("run,phase,metric,value,unit\n");
    for r in &rep.rows {
        let _ = writeln!(
            s,
            "{},{},{},{},{}",
            r.run, r.phase, r.metric, r.value, r.unit
        );
    }
    std::fs::write(dir.join("tier.csv"), s)?;
    let mut s = String::from("phase,metric,median,min,max,runs,unit\n");
    let mut seen: Vec<(&str, &str)> = Vec::new();
    for r in &rep.rows {
        if seen.contains(&(r.phase, r.metric)) {
            continue;
        }
        seen.push((r.phase, r.metric));
        if let Some(sp) = rep.spread(r.phase, r.metric) {
            let _ = writeln!(
                s,
                "{},{},{},{},{},{},{}",
                r.phase, r.metric, sp.median, sp.min, sp.max, sp.n, r.unit
            );
        }
    }
    std::fs::write(dir.join("tier-summary.csv"), s)?;
    let mut s = String::from("run,key,records,payload_bytes,object_bytes,ms,payload_mb_per_s\n");
    for (run, o) in &rep.objects {
        let _ = writeln!(
            s,
            "{run},{},{},{},{},{},{}",
            o.key,
            o.records,
            o.payload_bytes,
            o.object_bytes,
            o.ms,
            mb(o.payload_bytes as f64) / (o.ms.max(1) as f64 / 1000.0)
        );
    }
    std::fs::write(dir.join("tier-objects.csv"), s)?;
    Ok(())
}
