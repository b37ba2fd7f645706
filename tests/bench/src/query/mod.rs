//! `strata-bench query`: SQL over the Parquet archive with `strata query`
//! (DataFusion), and the same queries on the same files with DuckDB as the
//! peer, in the same run.
//!
//! 1. **Archive.** One day of synthetic sensor readings ([`archive`]),
//!    written directly with the core's encoder: at least `--archive-mb` MB
//!    (10^6 bytes) of Parquet objects, 24 hours × 4 shards × 6 objects.
//!    Kept under `target/bench-query/` and reused by later runs of the same
//!    spec.
//! 2. **Queries** ([`Kind`]): a raw full scan (`count(*)`,
//!    `sum(length(data))`), a full JSON aggregate (average temperature per
//!    partition key), the same average over one hour by a `timestamp` range,
//!    and by the `date`/`hour` partition columns.
//! 3. **Runs.** `--warmup` unmeasured rounds, then `--runs` measured
//!    rounds; a round runs every query in both engines, one after the other,
//!    the engine going first alternating between rounds. Each run is a fresh
//!    process ([`engines`]): its wall time, CPU time and peak RSS come from
//!    the kernel; the query's own time from the engine. Ratios are
//!    Strata ÷ DuckDB within a round (the two ran seconds apart), so the
//!    machine's drift cancels out more than across rounds.
//! 4. **Checks.** Every answer is checked against what was generated
//!    (counts, bytes) and the two engines' averages against each other; a
//!    wrong answer stops the benchmark rather than be timed.
//!
//! The archive stays in the page cache between runs (it is much smaller
//! than memory), so this measures decoding and computing, not the disk.
//! Nothing here asserts on speed.

pub mod archive;
pub mod engines;
mod render;

use crate::procfs;
use anyhow::{ensure, Context, Result};
use archive::{Archive, Spec, DATE, STREAM};
use clap::Args;
use engines::{num, Duckdb, Outcome};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// The hour the pruned queries select.
pub const HOUR: u32 = 10;

#[derive(Args, Debug)]
pub struct QueryOpts {
    /// Results directory [default: target/bench/<UTC timestamp>].
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Parquet to generate and query, MB (10^6 bytes) of objects at least
    /// [default: 1000; with --smoke: 50].
    #[arg(long)]
    pub archive_mb: Option<u64>,
    /// A small archive (50 MB) and one measured run: checks that the mode
    /// works (figures mean little).
    #[arg(long)]
    pub smoke: bool,
    /// Where archives are generated and kept for reuse [default:
    /// target/bench-query].
    #[arg(long)]
    pub archive_root: Option<PathBuf>,
    /// Shards of the stream.
    #[arg(long, default_value_t = 4)]
    pub shards: u32,
    /// Objects per shard and hour (the core's default 10-minute
    /// segment_age_max_ms seals 6 an hour).
    #[arg(long, default_value_t = 6)]
    pub objects_per_hour: u32,
    /// Devices (distinct partition keys).
    #[arg(long, default_value_t = 1000)]
    pub devices: u32,
    /// Seed of the readings.
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
    /// Measured runs of every query in every engine [default: 3; with
    /// --smoke: 1].
    #[arg(long)]
    pub runs: Option<u32>,
    /// Unmeasured rounds first (the page cache, the binaries).
    #[arg(long, default_value_t = 1)]
    pub warmup: u32,
    /// Run Strata only (no DuckDB peer).
    #[arg(long)]
    pub no_duckdb: bool,
    /// Longest one query may run, seconds.
    #[arg(long, default_value_t = 900)]
    pub query_timeout_secs: u64,
    /// Do not run `cargo build --release -p strata-cli` first.
    #[arg(long)]
    pub no_build: bool,
}

/// What one `query` measurement does.
#[derive(Debug, Clone)]
pub struct QueryPlan {
    pub spec: Spec,
    pub archive_root: PathBuf,
    pub runs: u32,
    pub warmup: u32,
    pub duckdb: bool,
    pub limit: Duration,
}

impl QueryPlan {
    pub fn from_opts(o: &QueryOpts) -> Self {
        let mb = o.archive_mb.unwrap_or(if o.smoke { 50 } else { 1000 });
        Self {
            spec: Spec::new(
                mb.max(1) * 1_000_000,
                o.shards,
                24,
                o.objects_per_hour,
                o.devices,
                o.seed,
            ),
            archive_root: o
                .archive_root
                .clone()
                .unwrap_or_else(|| crate::target_dir().join("bench-query")),
            runs: o.runs.unwrap_or(if o.smoke { 1 } else { 3 }).max(1),
            warmup: o.warmup,
            duckdb: !o.no_duckdb,
            limit: Duration::from_secs(o.query_timeout_secs.max(1)),
        }
    }

    pub fn describe(&self) -> String {
        let s = &self.spec;
        format!(
            "archive of at least {} MB of Parquet: stream {STREAM}, {DATE}, {} hours × {} shards × \
             {} objects, {} devices, seed {}; {} unmeasured round(s), then {} measured; \
             one fresh process per query and engine; engine order alternates between rounds",
            s.target_bytes / 1_000_000,
            s.hours,
            s.shards,
            s.objects_per_hour,
            s.devices,
            s.seed,
            self.warmup,
            self.runs
        )
    }
}

/// The queries, in table order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    /// Full scan of the raw values.
    Scan,
    /// Full scan parsing every value as JSON, grouped by key.
    JsonAgg,
    /// One hour by a `timestamp` range.
    HourByTimestamp,
    /// One hour by the `date`/`hour` partition columns.
    HourByPartition,
}

impl Kind {
    pub const ALL: [Kind; 4] = [
        Kind::Scan,
        Kind::JsonAgg,
        Kind::HourByTimestamp,
        Kind::HourByPartition,
    ];

    pub fn key(self) -> &'static str {
        match self {
            Kind::Scan => "scan",
            Kind::JsonAgg => "json_agg",
            Kind::HourByTimestamp => "hour_timestamp",
            Kind::HourByPartition => "hour_partition",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Kind::Scan => "raw scan, whole archive",
            Kind::JsonAgg => "JSON aggregate per key, whole archive",
            Kind::HourByTimestamp => "one hour, `timestamp` range",
            Kind::HourByPartition => "one hour, `date` and `hour` columns",
        }
    }

    /// Whether the query reads the whole archive.
    pub fn full(self) -> bool {
        matches!(self, Kind::Scan | Kind::JsonAgg)
    }

    fn window() -> (String, String) {
        (
            format!("{DATE} {HOUR:02}:00:00"),
            format!("{DATE} {:02}:00:00", HOUR + 1),
        )
    }

    pub fn strata_sql(self) -> String {
        let (lo, hi) = Self::window();
        let temp = "avg(json_get_float(value, 'temperature')) AS avg_temp";
        match self {
            Kind::Scan => format!("SELECT count(*) AS n, sum(length(data)) AS bytes FROM {STREAM}"),
            Kind::JsonAgg => {
                format!("SELECT partition_key, count(*) AS n, {temp} FROM {STREAM} GROUP BY 1")
            }
            Kind::HourByTimestamp => format!(
                "SELECT count(*) AS n, {temp} FROM {STREAM} \
                 WHERE \"timestamp\" >= TIMESTAMP '{lo}' AND \"timestamp\" < TIMESTAMP '{hi}'"
            ),
            Kind::HourByPartition => format!(
                "SELECT count(*) AS n, {temp} FROM {STREAM} \
                 WHERE date = '{DATE}' AND hour = '{HOUR:02}'"
            ),
        }
    }

    /// The same query for DuckDB over `table` (a `read_parquet(…)`).
    pub fn duckdb_sql(self, table: &str) -> String {
        let (lo, hi) = Self::window();
        // decode(): BLOB to VARCHAR as UTF-8. CAST(data AS VARCHAR) would
        // escape every `"` as `\x22`, which is no longer JSON.
        let temp = "avg(CAST(json_extract(decode(data), '$.temperature') AS DOUBLE)) AS avg_temp";
        match self {
            Kind::Scan => format!("SELECT count(*) AS n, sum(octet_length(data)) AS bytes FROM {table}"),
            Kind::JsonAgg => format!(
                "SELECT partition_key, count(*) AS n, {temp} FROM {table} GROUP BY 1"
            ),
            Kind::HourByTimestamp => format!(
                "SELECT count(*) AS n, {temp} FROM {table} \
                 WHERE \"timestamp\" >= TIMESTAMPTZ '{lo}+00' AND \"timestamp\" < TIMESTAMPTZ '{hi}+00'"
            ),
            Kind::HourByPartition => format!(
                "SELECT count(*) AS n, {temp} FROM {table} \
                 WHERE \"date\" = '{DATE}' AND \"hour\" = '{HOUR:02}'"
            ),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    Strata,
    Duckdb,
}

impl Engine {
    pub fn key(self) -> &'static str {
        match self {
            Engine::Strata => "strata",
            Engine::Duckdb => "duckdb",
        }
    }
}

/// One measured value. `engine` is `strata`, `duckdb` or `ratio`
/// (Strata ÷ DuckDB in the same round).
#[derive(Debug, Clone)]
pub struct Row {
    pub run: u32,
    pub engine: &'static str,
    pub query: Kind,
    pub metric: &'static str,
    pub value: f64,
    pub unit: &'static str,
}

#[derive(Debug, Default)]
pub struct QueryReport {
    pub rows: Vec<Row>,
    pub notes: Vec<String>,
    /// Strata's `--explain` output of the last measured run of each query.
    pub explains: Vec<(Kind, String)>,
    pub archive: Option<(Archive, bool, PathBuf)>,
    pub duckdb: Option<String>,
}

impl QueryReport {
    fn put(
        &mut self,
        run: u32,
        engine: &'static str,
        query: Kind,
        metric: &'static str,
        value: f64,
        unit: &'static str,
    ) {
        self.rows.push(Row {
            run,
            engine,
            query,
            metric,
            value,
            unit,
        });
    }

    fn value(&self, run: u32, engine: &str, query: Kind, metric: &str) -> Option<f64> {
        self.rows
            .iter()
            .find(|r| r.run == run && r.engine == engine && r.query == query && r.metric == metric)
            .map(|r| r.value)
    }

    /// Median, min and max over the runs.
    pub fn spread(&self, engine: &str, query: Kind, metric: &str) -> Option<crate::stats::Spread> {
        let v: Vec<f64> = self
            .rows
            .iter()
            .filter(|r| r.engine == engine && r.query == query && r.metric == metric)
            .map(|r| r.value)
            .collect();
        crate::stats::spread(&v)
    }
}

/// Records the rows input to `kind` and the Parquet bytes it covers.
fn scope(kind: Kind, a: &Archive) -> (u64, u64) {
    if kind.full() {
        (a.records, a.parquet_bytes)
    } else {
        let per_object = a.parquet_bytes / a.objects.max(1);
        (
            a.records_per_hour(),
            per_object * u64::from(a.spec.shards * a.spec.objects_per_hour),
        )
    }
}

/// Checks one engine's answer against what was generated.
fn check(kind: Kind, engine: Engine, o: &Outcome, a: &Archive) -> Result<()> {
    let who = format!("{} {}", engine.key(), kind.key());
    let first = o.rows.first().with_context(|| format!("{who}: no rows"))?;
    match kind {
        Kind::Scan => {
            ensure!(o.rows.len() == 1, "{who}: {} rows", o.rows.len());
            let (n, bytes) = (num(first, "n"), num(first, "bytes"));
            ensure!(
                n == Some(a.records as f64) && bytes == Some(a.json_bytes as f64),
                "{who}: n = {n:?}, bytes = {bytes:?}; the archive has {} records of {} bytes",
                a.records,
                a.json_bytes
            );
        }
        Kind::JsonAgg => {
            let total: f64 = o.rows.iter().filter_map(|r| num(r, "n")).sum();
            ensure!(
                total == a.records as f64 && o.rows.len() <= a.spec.devices as usize,
                "{who}: {} groups of {total} records; the archive has {} records of at most {} devices",
                o.rows.len(),
                a.records,
                a.spec.devices
            );
            ensure!(
                o.rows.iter().all(|r| num(r, "avg_temp").is_some()),
                "{who}: a group has no average temperature"
            );
        }
        Kind::HourByTimestamp | Kind::HourByPartition => {
            ensure!(o.rows.len() == 1, "{who}: {} rows", o.rows.len());
            let n = num(first, "n");
            ensure!(
                n == Some(a.records_per_hour() as f64),
                "{who}: n = {n:?}; hour {HOUR} has {} records",
                a.records_per_hour()
            );
        }
    }
    Ok(())
}

/// Checks that both engines agree: same groups, counts and averages.
fn agree(kind: Kind, s: &Outcome, d: &Outcome) -> Result<()> {
    let key = |r: &engines::Row| {
        r.get("partition_key")
            .and_then(|v| v.as_str())
            .unwrap_or_default()
            .to_string()
    };
    let mut a: Vec<_> = s.rows.iter().map(|r| (key(r), r)).collect();
    let mut b: Vec<_> = d.rows.iter().map(|r| (key(r), r)).collect();
    a.sort_by(|x, y| x.0.cmp(&y.0));
    b.sort_by(|x, y| x.0.cmp(&y.0));
    ensure!(
        a.len() == b.len(),
        "{}: strata has {} rows, duckdb {}",
        kind.key(),
        a.len(),
        b.len()
    );
    for ((ka, ra), (kb, rb)) in a.iter().zip(&b) {
        ensure!(ka == kb, "{}: group {ka:?} against {kb:?}", kind.key());
        for col in ["n", "bytes", "avg_temp"] {
            let (x, y) = (num(ra, col), num(rb, col));
            let close = match (x, y) {
                (Some(x), Some(y)) => (x - y).abs() <= 1e-6 * x.abs().max(1.0),
                (None, None) => true,
                _ => false,
            };
            ensure!(
                close,
                "{} group {ka:?}: {col} is {x:?} in strata, {y:?} in duckdb",
                kind.key()
            );
        }
    }
    Ok(())
}

fn record(rep: &mut QueryReport, run: u32, engine: Engine, kind: Kind, o: &Outcome, a: &Archive) {
    let e = engine.key();
    let (rows, bytes) = scope(kind, a);
    let secs = o.engine_s.max(1e-6);
    rep.put(run, e, kind, "query_s", o.engine_s, "s");
    rep.put(run, e, kind, "process_wall_s", o.exec.wall_s, "s");
    rep.put(run, e, kind, "process_cpu_s", o.exec.cpu_s, "s");
    rep.put(
        run,
        e,
        kind,
        "process_cores",
        o.exec.cpu_s / o.exec.wall_s.max(1e-6),
        "cores",
    );
    rep.put(run, e, kind, "peak_rss_mb", o.exec.maxrss_mb, "MB");
    if let Some(c) = o.engine_cpu_s {
        rep.put(run, e, kind, "query_cpu_s", c, "s");
    }
    rep.put(run, e, kind, "rows_per_s", rows as f64 / secs, "rows/s");
    if kind.full() {
        rep.put(
            run,
            e,
            kind,
            "archive_mb_per_s",
            bytes as f64 / 1e6 / secs,
            "MB/s",
        );
        rep.put(
            run,
            e,
            kind,
            "json_mb_per_s",
            a.json_bytes as f64 / 1e6 / secs,
            "MB/s",
        );
    }
    if let Some(s) = o.scanned {
        rep.put(
            run,
            e,
            kind,
            "objects_scanned",
            s.objects_scanned as f64,
            "objects",
        );
        rep.put(run, e, kind, "objects", s.objects as f64, "objects");
        rep.put(
            run,
            e,
            kind,
            "object_bytes_scanned",
            s.object_bytes_scanned as f64,
            "bytes",
        );
        rep.put(
            run,
            e,
            kind,
            "row_groups_scanned",
            s.row_groups_matched as f64,
            "row groups",
        );
        rep.put(
            run,
            e,
            kind,
            "row_groups",
            s.row_groups as f64,
            "row groups",
        );
        rep.put(run, e, kind, "bytes_read", s.bytes_read as f64, "bytes");
        if kind.full() {
            rep.put(
                run,
                e,
                kind,
                "read_mb_per_s",
                s.bytes_read as f64 / 1e6 / secs,
                "MB/s",
            );
        }
    }
}

/// Strata ÷ DuckDB of this round.
fn ratios(rep: &mut QueryReport, run: u32, kind: Kind) {
    for (metric, name) in [
        ("query_s", "query_s"),
        ("process_wall_s", "process_wall_s"),
        ("process_cpu_s", "process_cpu_s"),
        ("peak_rss_mb", "peak_rss_mb"),
    ] {
        if let (Some(s), Some(d)) = (
            rep.value(run, "strata", kind, metric),
            rep.value(run, "duckdb", kind, metric),
        ) {
            rep.put(run, "ratio", kind, name, s / d.max(1e-9), "x");
        }
    }
}

/// Generates (or reuses) the archive, then runs every round.
pub fn measure(plan: &QueryPlan, rep: &mut QueryReport) -> Result<()> {
    let strata_bin = strata_tests::bin("strata")?;
    let duckdb = if plan.duckdb {
        match Duckdb::find().map_err(anyhow::Error::msg).and_then(|d| {
            let v = d.version()?;
            Ok((d, v))
        }) {
            Ok((d, v)) => {
                rep.duckdb = Some(v);
                Some(d)
            }
            Err(e) => {
                rep.notes.push(format!("DuckDB peer skipped: {e:#}"));
                None
            }
        }
    } else {
        rep.notes.push("DuckDB peer skipped (--no-duckdb)".into());
        None
    };
    eprintln!("== archive");
    std::fs::create_dir_all(&plan.archive_root)?;
    let ready = archive::ensure(&plan.archive_root, &plan.spec)?;
    let a = ready.archive.clone();
    eprintln!(
        "   {} {}: {} records, {} objects, {:.1} MB of Parquet (payload ÷ Parquet {:.2}×)",
        if ready.reused { "reusing" } else { "generated" },
        ready.dir.display(),
        a.records,
        a.objects,
        a.parquet_bytes as f64 / 1e6,
        a.payload_bytes as f64 / a.parquet_bytes as f64
    );
    if a.parquet_bytes < plan.spec.target_bytes {
        rep.notes.push(format!(
            "the archive has {} bytes of Parquet, short of the {} asked for: the sample \
             object compressed worse than the archive",
            a.parquet_bytes, plan.spec.target_bytes
        ));
    }
    rep.archive = Some((a.clone(), ready.reused, ready.dir.clone()));
    let table = Duckdb::table(&ready.dir, STREAM);
    for round in 0..plan.warmup + plan.runs {
        let measured = round >= plan.warmup;
        let run = round.saturating_sub(plan.warmup) + 1;
        if measured {
            eprintln!("== run {run} of {}", plan.runs);
        } else {
            eprintln!("== warm-up {}", round + 1);
        }
        for kind in Kind::ALL {
            let mut order = vec![Engine::Strata];
            if duckdb.is_some() {
                order.push(Engine::Duckdb);
            }
            if round % 2 == 1 {
                order.reverse();
            }
            let mut outcomes: Vec<(Engine, Outcome)> = Vec::new();
            for engine in order {
                let busy0 = procfs::machine_busy_s().ok();
                let o = match (engine, &duckdb) {
                    (Engine::Strata, _) => {
                        engines::strata(&strata_bin, &ready.dir, &kind.strata_sql(), plan.limit)?
                    }
                    (Engine::Duckdb, Some(d)) => d.run(&kind.duckdb_sql(&table), plan.limit)?,
                    (Engine::Duckdb, None) => continue,
                };
                check(kind, engine, &o, &a)?;
                // Busy CPU of the machine beyond the engine's own: other
                // people's work on this shared machine while it ran.
                let other_cores = busy0
                    .zip(procfs::machine_busy_s().ok())
                    .map(|(b0, b1)| ((b1 - b0 - o.exec.cpu_s) / o.exec.wall_s.max(1e-6)).max(0.0));
                eprintln!(
                    "   {:<14} {:<6} query {:>7.3} s, process {:>7.3} s wall, {:>7.3} s CPU, {:>5.0} MB peak{}",
                    kind.key(),
                    engine.key(),
                    o.engine_s,
                    o.exec.wall_s,
                    o.exec.cpu_s,
                    o.exec.maxrss_mb,
                    o.scanned.map_or_else(String::new, |s| format!(
                        "; {} of {} objects",
                        s.objects_scanned, s.objects
                    ))
                );
                if measured {
                    record(rep, run, engine, kind, &o, &a);
                    if let Some(c) = other_cores {
                        rep.put(run, engine.key(), kind, "other_cores", c, "cores");
                    }
                }
                outcomes.push((engine, o));
            }
            let get = |e| outcomes.iter().find(|(x, _)| *x == e).map(|(_, o)| o);
            if let (Some(s), Some(d)) = (get(Engine::Strata), get(Engine::Duckdb)) {
                agree(kind, s, d)?;
            }
            if measured {
                ratios(rep, run, kind);
                if let Some(s) = get(Engine::Strata) {
                    rep.explains.retain(|(k, _)| *k != kind);
                    rep.explains.push((kind, s.exec.stderr.clone()));
                }
            }
        }
    }
    Ok(())
}

/// `strata-bench query`: the measurement with its own results directory.
pub fn command(o: QueryOpts) -> Result<()> {
    let started = Instant::now();
    let started_utc = chrono::Utc::now();
    let dir = crate::results_dir(o.out.clone())?;
    let plan = QueryPlan::from_opts(&o);
    let m = procfs::machine();
    let tmp = std::env::temp_dir();
    let fsync = procfs::fsync_probe(&tmp, Duration::from_secs(1))?;
    let mode = if o.smoke {
        "query --smoke (small archive: figures mean little)"
    } else {
        "query"
    };
    let mut facts = crate::report::machine_facts(started_utc, mode.into(), &m, 1.0, &tmp, &fsync);
    facts.push(("settings".into(), plan.describe()));
    eprintln!("results: {}", dir.display());
    let mut rep = QueryReport::default();
    let outcome = measure(&plan, &mut rep);
    facts.extend(render::archive_facts(&rep));
    crate::report::closing_facts(&mut facts, started, &outcome);
    let table = render::table(&rep, &plan, &facts);
    println!("{table}");
    std::fs::write(dir.join("table.md"), &table)?;
    render::write_files(&dir, &rep)?;
    crate::report::write_facts(&dir, &facts)?;
    eprintln!(
        "wrote {}/{{table.md,query.csv,query-summary.csv,machine.csv,strata-explain-*.txt}}",
        dir.display()
    );
    outcome
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_engines_get_the_same_window() {
        let s = Kind::HourByTimestamp.strata_sql();
        assert!(
            s.contains("TIMESTAMP '2026-11-19 10:00:00'")
                && s.contains("TIMESTAMP '2026-11-19 11:00:00'"),
            "{s}"
        );
        let d = Kind::HourByTimestamp.duckdb_sql("t");
        assert!(
            d.contains("TIMESTAMPTZ '2026-11-19 10:00:00+00'") && d.contains("FROM t WHERE"),
            "{d}"
        );
        assert!(Kind::HourByPartition.strata_sql().contains("hour = '10'"));
    }

    #[test]
    fn the_pruned_scope_is_the_hours_objects() {
        let a = Archive {
            spec: Spec::new(1000, 4, 24, 6, 10, 1),
            records_per_shard_hour: 600,
            records: 600 * 96,
            objects: 576,
            parquet_bytes: 576 * 100,
            payload_bytes: 0,
            json_bytes: 0,
            sample_bytes_per_record: 1.0,
            generated_utc: String::new(),
            generate_secs: 0.0,
            generate_cpu_secs: 0.0,
            workers: 1,
        };
        assert_eq!(scope(Kind::Scan, &a), (57_600, 57_600));
        assert_eq!(scope(Kind::HourByTimestamp, &a), (2400, 2400));
    }
}
