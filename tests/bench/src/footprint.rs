//! `strata-bench footprint`: what the edge agent costs a small device, on
//! one core and one edge (release binaries, one shard).
//!
//! 1. **Idle**: the edge's RSS after `idle_secs` with no traffic.
//! 2. **Ingest**: a producer at `rate` records/s for `secs`; the edge's peak
//!    RSS (`VmHWM`, reset at the start) and CPU.
//! 3. **Backlog**: the core stopped, `backlog_mib` MiB of records produced
//!    into the edge's buffer (as fast as it takes them); then the core
//!    restarts and the edge drains the backlog: its peak RSS while draining,
//!    and the drain time.
//!
//! The edge measured is the one beside this binary, or `STRATA_TEST_EDGE_BIN`
//! (e.g. `target/edge/strata-edge` from `cargo build --profile edge -p
//! strata-edge`, the build for small devices).

use crate::load::{template, Ticker};
use crate::procfs::{find_pid, read_proc, reset_peak};
use anyhow::{Context, Result};
use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::{Duration, Instant};
use strata_client::{api, Client};
use strata_schema::batch::{Builder, NewRecord};
use strata_tests::{wait_for, Pipeline};

#[derive(clap::Args, Debug)]
pub struct FootprintOpts {
    /// Quiet time before the idle reading, seconds.
    #[arg(long, default_value_t = 5)]
    idle_secs: u64,
    /// Producer rate of the ingest phase, records/s.
    #[arg(long, default_value_t = 100_000)]
    rate: u64,
    /// Length of the ingest phase, seconds.
    #[arg(long, default_value_t = 10)]
    secs: u64,
    /// Backlog written while the core is down, MiB of record values.
    #[arg(long, default_value_t = 1024)]
    backlog_mib: u64,
    /// Record value size, bytes.
    #[arg(long, default_value_t = 100)]
    size: usize,
    /// Results directory [default: target/bench/footprint-<UTC timestamp>].
    #[arg(long)]
    out: Option<PathBuf>,
    /// Do not build the release binaries first.
    #[arg(long)]
    pub no_build: bool,
}

const MIB: f64 = 1024.0 * 1024.0;

pub async fn command(o: FootprintOpts) -> Result<()> {
    let out = o.out.clone().unwrap_or_else(|| {
        PathBuf::from(format!(
            "target/bench/footprint-{}",
            chrono::Utc::now().format("%Y%m%dT%H%M%SZ")
        ))
    });
    std::fs::create_dir_all(&out)?;
    let edge_bin = strata_tests::bin("strata-edge")?;
    // Room for the backlog with its keys and framing.
    let buffer_max = (2 * o.backlog_mib + 64).max(1024) << 20;
    let mut p = Pipeline::start(&format!("buffer_bytes_max = {buffer_max}")).await?;
    let needle = p.dir.path().join("edge.toml").display().to_string();
    let edge_pid = find_pid(&needle).context("no strata-edge process")?;
    let core = p.client(p.core_addr);
    api::create_stream(&core, "footprint", 1, 1).await?;
    let edge = p.client(p.edge_addr);
    let mut md = String::new();
    writeln!(
        md,
        "# Edge footprint\n\n`{}` ({:.1} MB) and one strata-core (release), one shard, {} B records, on this machine ({} cores). RSS in MiB.\n\n| phase | records/s | edge CPU cores | edge peak RSS | edge RSS at end | notes |\n| --- | ---: | ---: | ---: | ---: | --- |",
        edge_bin.display(),
        std::fs::metadata(&edge_bin)?.len() as f64 / 1e6,
        o.size,
        std::thread::available_parallelism().map_or(0, |n| n.get())
    )?;

    // 1. Idle (the stream exists, nothing flows).
    tokio::time::sleep(Duration::from_secs(o.idle_secs)).await;
    let idle = read_proc(edge_pid)?;
    writeln!(
        md,
        "| idle ({} s after start) | 0 | — | {:.1} (since start) | {:.1} | |",
        o.idle_secs,
        idle.hwm_kib as f64 / 1024.0,
        idle.rss_kib as f64 / 1024.0
    )?;

    // 2. Ingest at a fixed rate: one batch per 1 ms tick.
    let tmpl = template(7, o.size);
    reset_peak(edge_pid)?;
    let before = read_proc(edge_pid)?;
    let started = Instant::now();
    let start_ns = crate::load::now_ns();
    let mut ticker = Ticker::new(o.rate, start_ns);
    let end_ns = start_ns + o.secs * 1_000_000_000;
    let mut sent = 0u64;
    let mut in_flight = tokio::task::JoinSet::new();
    let edge = std::sync::Arc::new(edge);
    loop {
        let (due, n) = ticker.next_tick();
        if due >= end_ns {
            break;
        }
        tokio::time::sleep(Duration::from_nanos(
            due.saturating_sub(crate::load::now_ns()),
        ))
        .await;
        if n == 0 {
            continue;
        }
        let batch = batch_of(&tmpl, n, sent);
        sent += n;
        let edge = edge.clone();
        in_flight.spawn(async move { api::produce(&edge, "footprint", &batch).await });
        while let Some(r) = in_flight.try_join_next() {
            r??;
        }
    }
    while let Some(r) = in_flight.join_next().await {
        r??;
    }
    let secs = started.elapsed().as_secs_f64();
    let after = read_proc(edge_pid)?;
    writeln!(
        md,
        "| ingest, paced, {} s | {:.0} | {:.3} | {:.1} | {:.1} | |",
        o.secs,
        sent as f64 / secs,
        (after.cpu_s - before.cpu_s) / secs,
        after.hwm_kib as f64 / 1024.0,
        after.rss_kib as f64 / 1024.0
    )?;
    wait_committed(&core, sent, Duration::from_secs(120)).await?;

    // 3. Backlog: the core away, the buffer fills; then it drains.
    p.core.kill9();
    let records = (o.backlog_mib as f64 * MIB / o.size as f64) as u64;
    let per_batch = 2_000u64;
    reset_peak(edge_pid)?;
    let before = read_proc(edge_pid)?;
    let started = Instant::now();
    let mut written = 0u64;
    let lanes = 8;
    let mut tasks = tokio::task::JoinSet::new();
    while written < records {
        let n = per_batch.min(records - written);
        let batch = batch_of(&tmpl, n, sent + written);
        written += n;
        let edge = edge.clone();
        tasks.spawn(async move { api::produce(&edge, "footprint", &batch).await });
        if tasks.len() >= lanes {
            if let Some(r) = tasks.join_next().await {
                r??;
            }
        }
    }
    while let Some(r) = tasks.join_next().await {
        r??;
    }
    let fill_secs = started.elapsed().as_secs_f64();
    let filled = read_proc(edge_pid)?;
    let buffered = strata_tests::dir_bytes(&p.dir.path().join("edge"))?;
    writeln!(
        md,
        "| backlog fill, core down | {:.0} | {:.3} | {:.1} | {:.1} | {} MiB of values, {:.0} MiB on the edge's disk |",
        written as f64 / fill_secs,
        (filled.cpu_s - before.cpu_s) / fill_secs,
        filled.hwm_kib as f64 / 1024.0,
        filled.rss_kib as f64 / 1024.0,
        o.backlog_mib,
        buffered as f64 / MIB
    )?;
    reset_peak(edge_pid)?;
    let before = read_proc(edge_pid)?;
    let started = Instant::now();
    p.restart_core().await?;
    let total = sent + written;
    wait_committed(&core, total, Duration::from_secs(1800)).await?;
    let drain_secs = started.elapsed().as_secs_f64();
    let drained = read_proc(edge_pid)?;
    writeln!(
        md,
        "| backlog drain to the core | {:.0} | {:.3} | {:.1} | {:.1} | {written} records drained in {drain_secs:.1} s (core restart included) |",
        written as f64 / drain_secs,
        (drained.cpu_s - before.cpu_s) / drain_secs,
        drained.hwm_kib as f64 / 1024.0,
        drained.rss_kib as f64 / 1024.0,
    )?;
    std::fs::write(out.join("results.md"), &md)?;
    println!("{md}");
    eprintln!("written to {}", out.join("results.md").display());
    Ok(())
}

/// `n` keyed records of `tmpl`, keys numbered from `first`.
fn batch_of(tmpl: &[u8], n: u64, first: u64) -> bytes::Bytes {
    let mut b = Builder::default();
    for i in 0..n {
        let key = format!("k{}", (first + i) % 64);
        b.push(&NewRecord {
            key: Some(&key),
            value: tmpl,
            timestamp_ms: 0,
            headers: &[],
        });
    }
    b.finish()
}

/// Waits until the core's shard holds `records` records.
async fn wait_committed(core: &Client, records: u64, within: Duration) -> Result<()> {
    wait_for("the core to commit every record", within, || async move {
        let info = api::describe_stream(core, "footprint").await;
        Ok(info
            .ok()
            .filter(|i| i.shards.iter().map(|s| s.next_offset).sum::<u64>() >= records)
            .map(|_| ()))
    })
    .await
}
