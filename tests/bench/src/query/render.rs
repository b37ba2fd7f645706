//! The Markdown table and the files `strata-bench query` writes: every
//! figure is `median [min–max]` over the measured runs.

use super::{Kind, QueryPlan, QueryReport, HOUR};
use crate::report::{si, sig3, Facts};
use anyhow::Result;
use std::fmt::Write as _;
use std::path::Path;

fn gb(b: f64) -> String {
    if b >= 1e9 {
        format!("{} GB", sig3(b / 1e9))
    } else {
        format!("{} MB", sig3(b / 1e6))
    }
}

/// What the archive is, for machine.csv and the settings list.
pub fn archive_facts(rep: &QueryReport) -> Facts {
    let Some((a, reused, dir)) = &rep.archive else {
        return Vec::new();
    };
    let mut f = vec![
        ("archive".into(), dir.display().to_string()),
        (
            "archive contents".into(),
            format!(
                "{} records ({} per shard-hour), {} objects, {} Parquet bytes, {} payload bytes \
                 (keys + values), {} JSON bytes",
                a.records,
                a.records_per_shard_hour,
                a.objects,
                a.parquet_bytes,
                a.payload_bytes,
                a.json_bytes
            ),
        ),
        (
            "archive generated".into(),
            format!(
                "{}{} UTC in {:.1} s ({:.1} s CPU, {} worker threads)",
                if *reused {
                    "reused: made at "
                } else {
                    "by this run at "
                },
                a.generated_utc,
                a.generate_secs,
                a.generate_cpu_secs,
                a.workers
            ),
        ),
    ];
    let other: Vec<f64> = rep
        .rows
        .iter()
        .filter(|r| r.metric == "other_cores")
        .map(|r| r.value)
        .collect();
    if let Some(o) = crate::stats::spread(&other) {
        f.push((
            "other processes while the queries ran (machine busy CPU − the engine's)".into(),
            format!(
                "{} cores median, {} max over {} measured query runs",
                sig3(o.median),
                sig3(o.max),
                o.n
            ),
        ));
    }
    if let Some(v) = &rep.duckdb {
        f.push((
            "DuckDB".into(),
            format!("{v} (Python wheel, default settings)"),
        ));
    }
    f
}

fn cell(
    rep: &QueryReport,
    engine: &str,
    kind: Kind,
    metric: &str,
    fmt: fn(f64) -> String,
) -> String {
    match rep.spread(engine, kind, metric) {
        // A figure that did not vary (object counts) is shown once.
        Some(s) if s.n > 1 && fmt(s.min) != fmt(s.max) => {
            format!("{} [{}–{}]", fmt(s.median), fmt(s.min), fmt(s.max))
        }
        Some(s) => fmt(s.median),
        None => "—".into(),
    }
}

fn times(x: f64) -> String {
    format!("{x:.2}×")
}

fn secs(x: f64) -> String {
    sig3(x)
}

pub fn table(rep: &QueryReport, plan: &QueryPlan, facts: &Facts) -> String {
    let mut out = String::from("### Machine and settings\n\n");
    for (k, v) in facts {
        let _ = writeln!(out, "- {k}: {v}");
    }
    let _ = writeln!(
        out,
        "\n### SQL over the archive (`strata-bench query`)\n\n\
         {}. Figures: median [min–max] over the measured runs; MB = 10^6 bytes. \
         *Query time*: as each engine times the query (Strata: planning, which reads the \
         manifests, and execution, from the `--explain` summary; DuckDB: from `connect()` to \
         the last row). *Process*: the whole process, as the kernel reports it (start, query, \
         exit; CPU = user + system of every thread). Rates are over the query time. \
         Ratios are Strata ÷ DuckDB within each round (below 1: Strata faster or smaller).\n",
        plan.describe()
    );
    if let Some((a, _, _)) = &rep.archive {
        let per = |b: u64| b as f64 / a.records.max(1) as f64;
        let _ = writeln!(out, "| archive | |\n| --- | --- |");
        let _ = writeln!(
            out,
            "| readings | {} over {} hours × {} shards ({} per hour), {} devices |",
            si(a.records as f64),
            a.spec.hours,
            a.spec.shards,
            si(a.records_per_hour() as f64),
            a.spec.devices
        );
        let _ = writeln!(
            out,
            "| Parquet (zstd 3, the core's encoder) | {} in {} objects ({} per shard-hour, {} each), {} B per reading |",
            gb(a.parquet_bytes as f64),
            a.objects,
            a.spec.objects_per_hour,
            gb(a.parquet_bytes as f64 / a.objects.max(1) as f64),
            sig3(per(a.parquet_bytes))
        );
        let _ = writeln!(
            out,
            "| JSON values | {} ({} B per reading); payload (keys + values) {} |",
            gb(a.json_bytes as f64),
            sig3(per(a.json_bytes)),
            gb(a.payload_bytes as f64)
        );
        let _ = writeln!(
            out,
            "| **compression** | payload ÷ Parquet **{}×**, JSON ÷ Parquet **{}×** |",
            sig3(a.payload_bytes as f64 / a.parquet_bytes as f64),
            sig3(a.json_bytes as f64 / a.parquet_bytes as f64)
        );
        let _ = writeln!(
            out,
            "| generation | {} s, {} CPU s ({} MB of Parquet per CPU s) |\n",
            sig3(a.generate_secs),
            sig3(a.generate_cpu_secs),
            sig3(a.parquet_bytes as f64 / 1e6 / a.generate_cpu_secs.max(1e-9))
        );
    }
    let duck = rep
        .duckdb
        .as_deref()
        .map_or_else(|| "DuckDB".to_string(), |v| format!("DuckDB {v}"));
    let _ = writeln!(
        out,
        "| query | engine | query time s | rows/s | archive MB/s | process wall s | process CPU s | peak RSS MB |\n\
         | --- | --- | --- | --- | --- | --- | --- | --- |"
    );
    for kind in Kind::ALL {
        for (engine, label) in [("strata", "Strata"), ("duckdb", duck.as_str())] {
            if rep.spread(engine, kind, "query_s").is_none() {
                continue;
            }
            let _ = writeln!(
                out,
                "| {} | {label} | {} | {} | {} | {} | {} | {} |",
                if engine == "strata" { kind.label() } else { "" },
                cell(rep, engine, kind, "query_s", secs),
                cell(rep, engine, kind, "rows_per_s", si),
                cell(rep, engine, kind, "archive_mb_per_s", sig3),
                cell(rep, engine, kind, "process_wall_s", secs),
                cell(rep, engine, kind, "process_cpu_s", secs),
                cell(rep, engine, kind, "peak_rss_mb", sig3)
            );
        }
        if rep.spread("ratio", kind, "query_s").is_some() {
            let _ = writeln!(
                out,
                "| | **Strata ÷ DuckDB** | **{}** | | | {} | {} | {} |",
                cell(rep, "ratio", kind, "query_s", times),
                cell(rep, "ratio", kind, "process_wall_s", times),
                cell(rep, "ratio", kind, "process_cpu_s", times),
                cell(rep, "ratio", kind, "peak_rss_mb", times)
            );
        }
    }
    let _ = writeln!(
        out,
        "\nStrata `--explain`: objects left after pruning by the manifests, row groups \
         left after pruning by statistics inside them, bytes read from the store (the \
         one-hour queries select hour {HOUR:02} of 24):\n"
    );
    let _ = writeln!(
        out,
        "| query | objects scanned | row groups scanned | bytes read | read MB/s |\n| --- | --- | --- | --- | --- |"
    );
    for kind in Kind::ALL {
        if rep.spread("strata", kind, "objects").is_none() {
            continue;
        }
        let n = |m: &str| cell(rep, "strata", kind, m, |x| format!("{x:.0}"));
        let _ = writeln!(
            out,
            "| {} | {} of {} | {} of {} | {} | {} |",
            kind.label(),
            n("objects_scanned"),
            n("objects"),
            n("row_groups_scanned"),
            n("row_groups"),
            cell(rep, "strata", kind, "bytes_read", gb),
            cell(rep, "strata", kind, "read_mb_per_s", sig3)
        );
    }
    let _ = writeln!(out, "\nThe queries (`sensors` in Strata; `t` = `read_parquet('<archive>/stream=sensors/**/*.parquet', hive_partitioning = true)` in DuckDB):\n");
    for kind in Kind::ALL {
        let _ = writeln!(
            out,
            "- {}:\n  - Strata: `{}`\n  - DuckDB: `{}`",
            kind.label(),
            kind.strata_sql(),
            kind.duckdb_sql("t")
        );
    }
    if !rep.notes.is_empty() {
        let _ = writeln!(out, "\nNotes:\n");
        for n in &rep.notes {
            let _ = writeln!(out, "- {n}");
        }
    }
    out
}

/// query.csv (`run,engine,query,metric,value,unit`), query-summary.csv
/// (median, min, max over the runs) and Strata's `--explain` output of
/// each query's last run.
pub fn write_files(dir: &Path, rep: &QueryReport) -> Result<()> {
    let mut s = String::from("run,engine,query,metric,value,unit\n");
    for r in &rep.rows {
        let _ = writeln!(
            s,
            "{},{},{},{},{},{}",
            r.run,
            r.engine,
            r.query.key(),
            r.metric,
            r.value,
            r.unit
        );
    }
    std::fs::write(dir.join("query.csv"), s)?;
    let mut s = String::from("engine,query,metric,median,min,max,runs,unit\n");
    let mut seen: Vec<(&str, Kind, &str)> = Vec::new();
    for r in &rep.rows {
        if seen.contains(&(r.engine, r.query, r.metric)) {
            continue;
        }
        seen.push((r.engine, r.query, r.metric));
        if let Some(sp) = rep.spread(r.engine, r.query, r.metric) {
            let _ = writeln!(
                s,
                "{},{},{},{},{},{},{},{}",
                r.engine,
                r.query.key(),
                r.metric,
                sp.median,
                sp.min,
                sp.max,
                sp.n,
                r.unit
            );
        }
    }
    std::fs::write(dir.join("query-summary.csv"), s)?;
    for (kind, text) in &rep.explains {
        std::fs::write(
            dir.join(format!("strata-explain-{}.txt", kind.key())),
            format!("-- {}\n{text}", kind.strata_sql()),
        )?;
    }
    Ok(())
}
