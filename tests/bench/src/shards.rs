//! `strata-bench shards`: what idle shards cost. A three-node, three-zone
//! core cluster (release binaries, loopback) gets streams of RF=3 shards
//! until it holds each count asked for; then, with no traffic at all, the
//! CPU time of the three `strata-core` processes over a window and their
//! resident memory are read from `/proc`. Creation time (until every shard
//! has a leader) is reported too.
//!
//! With `--busy-shards N`, a stream of N shards then carries traffic
//! through the edge: an unpaced 100 B throughput run and a delivery-latency
//! run at `--busy-rate` (the `strata-bench all` runs), so `--counts 0,1000`
//! compares the busy shards alone with the same shards among 1,000 idle
//! ones.

use crate::load::Load;
use crate::plan::Plan;
use crate::procfs::read_proc;
use crate::run::{latency_run, throughput_run};
use crate::strata::{pid_of, StrataTarget};
use anyhow::{Context, Result};
use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::{Duration, Instant};
use strata_client::{api, Client, ClientError};
use strata_tests::cluster::TestCluster;

#[derive(clap::Args, Debug)]
pub struct ShardsOpts {
    /// Shard counts to measure (RF=3 shards, summed over streams), each on
    /// a fresh cluster.
    #[arg(long, value_delimiter = ',', default_values_t = vec![300u32, 1000])]
    counts: Vec<u32>,
    /// Shards per stream.
    #[arg(long, default_value_t = 100)]
    per_stream: u32,
    /// Quiet time after the last stream is created, before measuring, seconds.
    #[arg(long, default_value_t = 5)]
    settle_secs: u64,
    /// The measuring window, seconds.
    #[arg(long, default_value_t = 10)]
    idle_secs: u64,
    /// The cores' `quiesce_after_ms` (0: idle groups stay awake, as before
    /// quiescence existed).
    #[arg(long, default_value_t = 2000)]
    quiesce_after_ms: u64,
    /// The cores' `peer_coalesce_window_ms` (0: every peer RPC on its own).
    #[arg(long, default_value_t = 5)]
    coalesce_window_ms: u64,
    /// Shards of a stream that carries traffic after the idle window (0:
    /// none).
    #[arg(long, default_value_t = 0)]
    busy_shards: u32,
    /// The busy stream's delivery-latency run, records/s.
    #[arg(long, default_value_t = 10_000)]
    busy_rate: u64,
    /// Each busy run's measuring window, seconds.
    #[arg(long, default_value_t = 10.0)]
    busy_secs: f64,
    /// Results directory [default: target/bench/shards-<UTC timestamp>].
    #[arg(long)]
    out: Option<PathBuf>,
    /// Do not build the release binaries first.
    #[arg(long)]
    pub no_build: bool,
}

/// One count's figures.
#[derive(Debug, serde::Serialize)]
struct Row {
    shards: u32,
    streams: u32,
    create_s: f64,
    /// CPU of the three nodes together over the window, in cores.
    idle_cores: f64,
    /// The largest node's RSS at the end of the window, MiB.
    max_rss_mib: f64,
    /// Shards node 1 led when it was killed (SIGKILL) after the window.
    killed_led: usize,
    /// Seconds from the kill until the other nodes led every shard.
    failover_all_s: f64,
    /// The busy stream's figures (`--busy-shards`): unpaced acked and
    /// committed records/s, delivery latency p50/p99 at `--busy-rate`.
    busy: Option<Busy>,
}

#[derive(Debug, serde::Serialize)]
struct Busy {
    shards: u32,
    ack_rps: f64,
    e2e_rps: f64,
    rate: u64,
    p50_ms: f64,
    p99_ms: f64,
    note: Option<String>,
}

pub async fn command(o: ShardsOpts) -> Result<()> {
    let out = o.out.clone().unwrap_or_else(|| {
        PathBuf::from(format!(
            "target/bench/shards-{}",
            chrono::Utc::now().format("%Y%m%dT%H%M%SZ")
        ))
    });
    std::fs::create_dir_all(&out)?;
    let mut md = format!(
        "# Idle shards\n\nThree strata-core nodes in three zones (release, loopback) on this machine ({} cores); RF=3 streams of {} shards; no traffic; `quiesce_after_ms = {}`, `peer_coalesce_window_ms = {}`. CPU of the three nodes together over {} s, {} s after the last stream was created; RSS of the largest node.\n\n| RF=3 shards | streams | creation (until every shard has a leader) | idle CPU, 3 nodes | largest node RSS | node 1 SIGKILLed: shards it led, time until all have new leaders |\n| ---: | ---: | ---: | ---: | ---: | ---: |\n",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        o.per_stream,
        o.quiesce_after_ms,
        o.coalesce_window_ms,
        o.idle_secs,
        o.settle_secs,
    );
    let mut rows = Vec::new();
    for &count in &o.counts {
        let row = measure(&o, count).await?;
        eprintln!("{row:?}");
        writeln!(
            md,
            "| {} | {} | {:.1} s | {:.2} cores | {:.0} MiB | {}, {:.2} s |",
            row.shards,
            row.streams,
            row.create_s,
            row.idle_cores,
            row.max_rss_mib,
            row.killed_led,
            row.failover_all_s
        )?;
        rows.push(row);
    }
    if o.busy_shards > 0 {
        writeln!(
            md,
            "\n## A busy stream among the idle shards\n\nAfter the idle window: a stream of {} RF=3 shards through the edge, 100 B records; unpaced for {} s (acked, and committed by the core), then {} rec/s with a consumer (delivery latency, produce to consume).\n\n| idle RF=3 shards | acked rec/s | committed rec/s | p50 | p99 | note |\n| ---: | ---: | ---: | ---: | ---: | --- |",
            o.busy_shards, o.busy_secs, o.busy_rate
        )?;
        for r in &rows {
            if let Some(b) = &r.busy {
                writeln!(
                    md,
                    "| {} | {:.0} | {:.0} | {:.2} ms | {:.2} ms | {} |",
                    r.shards,
                    b.ack_rps,
                    b.e2e_rps,
                    b.p50_ms,
                    b.p99_ms,
                    b.note.as_deref().unwrap_or("")
                )?;
            }
        }
    }
    std::fs::write(out.join("shards.md"), &md)?;
    std::fs::write(
        out.join("shards.json"),
        serde_json::to_string_pretty(&rows)?,
    )?;
    println!("{md}\nresults in {}", out.display());
    Ok(())
}

async fn measure(o: &ShardsOpts, count: u32) -> Result<Row> {
    let cap = count.max(o.per_stream) + 16;
    let c = TestCluster::start_with(
        3,
        false,
        &format!(
            "shards_max = {cap}\nquiesce_after_ms = {}\npeer_coalesce_window_ms = {}",
            o.quiesce_after_ms, o.coalesce_window_ms
        ),
    )
    .await?;
    let pids = (1..=3)
        .map(|id| pid_of(c.dir.path(), &format!("core-{id}.toml")))
        .collect::<Result<Vec<u32>>>()?;
    let started = Instant::now();
    let mut streams = 0;
    let mut left = count;
    while left > 0 {
        let n = left.min(o.per_stream);
        create_retrying(&c, &format!("idle-{streams}"), n)
            .await
            .with_context(|| format!("creating stream idle-{streams} ({n} shards)"))?;
        streams += 1;
        left -= n;
        eprintln!(
            "{} of {count} shards in {:.1} s",
            count - left,
            started.elapsed().as_secs_f64()
        );
    }
    let create_s = started.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_secs(o.settle_secs)).await;
    let before: Vec<f64> = pids
        .iter()
        .map(|&p| read_proc(p).map(|r| r.cpu_s))
        .collect::<Result<_>>()?;
    let t0 = Instant::now();
    tokio::time::sleep(Duration::from_secs(o.idle_secs)).await;
    let window = t0.elapsed().as_secs_f64();
    let after = pids
        .iter()
        .map(|&p| read_proc(p))
        .collect::<Result<Vec<_>>>()?;
    let cpu: f64 = after.iter().zip(&before).map(|(a, b)| a.cpu_s - b).sum();
    let max_rss = after.iter().map(|r| r.rss_kib).max().unwrap_or(0);
    eprintln!(
        "{count} shards idle: {:.3} cores, largest RSS {:.0} MiB",
        cpu / window,
        max_rss as f64 / 1024.0
    );
    let mut t = StrataTarget::on_cluster(c, o.busy_shards.max(1))?;
    let busy = match o.busy_shards {
        0 => None,
        n => Some(busy(&mut t, o, n).await?),
    };
    let c = t.cluster().context("the target runs a cluster")?;
    let (killed_led, failover_all_s) = match fail_over(c).await {
        Ok(r) => r,
        Err(e) => {
            eprintln!("failover: {e:#}");
            (0, f64::NAN)
        }
    };
    Ok(Row {
        shards: count,
        streams,
        create_s,
        idle_cores: cpu / window,
        max_rss_mib: max_rss as f64 / 1024.0,
        killed_led,
        failover_all_s,
        busy,
    })
}

/// The busy stream's runs (`--busy-shards`), as `strata-bench all` runs
/// them.
async fn busy(t: &mut StrataTarget, o: &ShardsOpts, shards: u32) -> Result<Busy> {
    let plan = Plan {
        systems: Vec::new(),
        sizes: vec![100],
        runs: 1,
        warmup: Duration::from_secs(2),
        measure: Duration::from_secs_f64(o.busy_secs),
        rates: vec![o.busy_rate],
        window: 4096,
        lanes: 8,
        shards,
        seed: 7,
        drain_max: Duration::from_secs(60),
        consume_wait_max: Duration::from_secs(10),
        nats_bin: None,
        always_max_latency: false,
    };
    let get =
        |m: &[(String, f64)], k: &str| m.iter().find(|(n, _)| n == k).map_or(f64::NAN, |(_, v)| *v);
    eprintln!("busy stream: unpaced run");
    let tp = throughput_run(t, &plan, 100, "busy-max").await?;
    eprintln!("busy stream: {} rec/s run", o.busy_rate);
    let (lat, note) = latency_run(t, &plan, 100, Load::Rate(o.busy_rate), "busy-rate").await?;
    let b = Busy {
        shards,
        ack_rps: get(&tp, "ack_rps"),
        e2e_rps: get(&tp, "e2e_rps"),
        rate: o.busy_rate,
        p50_ms: get(&lat, "p50_ms"),
        p99_ms: get(&lat, "p99_ms"),
        note,
    };
    eprintln!("busy stream: {b:?}");
    Ok(b)
}

/// Creates a stream, retrying for up to a minute while the cluster answers
/// with a retryable error (e.g. UNAVAILABLE while the metadata group elects
/// a leader on an overloaded cluster), as a client should.
async fn create_retrying(c: &TestCluster, name: &str, shards: u32) -> Result<()> {
    let until = Instant::now() + Duration::from_secs(60);
    loop {
        match c.create_stream(name, shards, 3).await {
            Err(e)
                if Instant::now() < until
                    && e.downcast_ref::<ClientError>()
                        .is_some_and(ClientError::is_retryable) =>
            {
                eprintln!("creating {name}: {e:#}; retrying");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            other => return other,
        }
    }
}

/// Shards each node says it leads (node id, count), from `nodes`.
async fn led(c: &TestCluster, nodes: &[u64]) -> Vec<(u64, usize)> {
    let mut out = Vec::new();
    for n in c.nodes.iter().filter(|n| nodes.contains(&n.id)) {
        let Ok(client) = Client::new(n.addr, &c.pki.ca) else {
            continue;
        };
        // A node holding thousands of shards takes a while to list them.
        match tokio::time::timeout(Duration::from_secs(10), api::cluster_status(&client)).await {
            Ok(Ok(v)) => out.push((n.id, v.shards.len())),
            Ok(Err(e)) => eprintln!("status of node {}: {e}", n.id),
            Err(_) => eprintln!("status of node {}: no answer within 10 s", n.id),
        }
    }
    out
}

/// SIGKILLs node 1 and times until nodes 2 and 3 lead every shard.
async fn fail_over(c: &mut TestCluster) -> Result<(usize, f64)> {
    let before = led(c, &[1, 2, 3]).await;
    let total: usize = before.iter().map(|(_, n)| n).sum();
    let killed_led = before
        .iter()
        .find(|(id, _)| *id == 1)
        .map_or(0, |(_, n)| *n);
    let t0 = Instant::now();
    c.kill9(1);
    loop {
        let now: usize = led(c, &[2, 3]).await.iter().map(|(_, n)| n).sum();
        if now >= total {
            break;
        }
        if t0.elapsed() > Duration::from_secs(300) {
            anyhow::bail!("after 300 s nodes 2 and 3 lead {now} of {total} shards");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok((killed_led, t0.elapsed().as_secs_f64()))
}
