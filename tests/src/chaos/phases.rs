//! The campaign's phases once the cluster runs: warm-up (traffic flowing),
//! chaos ([`crate::run`]), heal and drain (producers stop, the core gets
//! everything acknowledged, consumers read everything), then the oracle
//! and the replica comparison, and the summary.

use crate::faults::Targets;
use crate::load::{self, Gaps, ProduceCfg};
use crate::reader::{self, Unreadable};
use crate::run::{self, ChaosCfg};
use crate::summary::Summary;
use crate::{oracle, since, Args, GROUP, SHARDS, STREAM};
use anyhow::{Context, Result};
use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Keys the producers spread records over.
const KEYS: u64 = 64;

/// Runs every phase; Ok(passed).
pub async fn drive(args: &Args, t: &mut Targets) -> Result<bool> {
    let t0 = Instant::now();
    let produce = ProduceCfg {
        stream: STREAM.into(),
        lanes: args.lanes,
        keys: KEYS,
        batch: 10,
        pace: Duration::from_millis(40),
    };
    let producers = load::start_producers(t.cluster.edge_addr, &t.cluster.pki.ca, &produce)?;
    let consumers = load::start_consumers(t.cluster.seeds(), &t.cluster.pki.ca, STREAM, GROUP, 2)?;
    let state = producers.state.clone();
    crate::settle(
        "the first 1,000 acknowledged records",
        Duration::from_secs(120),
        || {
            let n = state.acked_count.load(Ordering::SeqCst);
            async move { Ok((n >= 1_000).then_some(())) }
        },
    )
    .await?;
    let core_gaps = Arc::new(Mutex::new(Gaps::default()));
    let watcher = tokio::spawn(watch_core(t.cluster.cluster(), core_gaps.clone()));
    let cfg = ChaosCfg {
        duration: Duration::from_secs(args.duration_secs),
        fault_every_ms: args.fault_every_ms,
        max_active: args.max_active,
        clock_jumps: t.clock_files.is_some(),
        kinds: args.kinds.clone(),
    };
    let mut fault_log = std::fs::File::create(args.out.join("faults.jsonl"))?;
    let chaos_start = Instant::now();
    let progress = |log: &run::ChaosLog| {
        println!(
            "[{:>5} s] faults {} (skipped {}), acknowledged {}, consumed positions {}",
            since(t0),
            log.injected().count(),
            log.skipped,
            producers.acked_count(),
            consumers.positions()
        );
    };
    let log = run::chaos(t, &cfg, args.seed, t0, &mut fault_log, progress).await?;
    let chaos_secs = chaos_start.elapsed().as_secs_f64();
    println!(
        "[{:>5} s] chaos over: every fault healed; draining",
        since(t0)
    );
    // Production stops; the longest stretch without an acknowledgement
    // is measured over the chaos phase.
    producers.state.gaps.lock().unwrap().close(Instant::now());
    let produced = producers.stop().await;
    watcher.abort();
    let acked: HashSet<(u64, u32)> = produced.acked.lock().unwrap().clone();
    let read = wait_core_holds(t, &acked).await?;
    let (core, unreadable): (Vec<oracle::Held>, Vec<Unreadable>) = (read.records, read.unreadable);
    let want = core.len();
    println!(
        "[{:>5} s] the core holds {want} records; waiting for the consumers",
        since(t0)
    );
    wait_consumed(&consumers, want).await;
    let consumed = consumers.stop().await;
    let replicas = match t.cluster.wait_caught_up(STREAM, SHARDS).await {
        Ok(()) => t
            .cluster
            .assert_replicas_identical(STREAM)
            .await
            .map(|n| format!("identical ({n} records compared per replica)")),
        Err(e) => Err(e),
    };
    let replicas_ok = replicas.is_ok();
    let replicas = replicas.unwrap_or_else(|e| format!("not shown identical: {e:#}"));
    let deliveries = consumed.deliveries.lock().unwrap().clone();
    let verdict = oracle::check(&core, &acked, KEYS, &deliveries);
    let passed = verdict.passed() && replicas_ok && unreadable.is_empty();
    let core_gap = core_gaps.lock().unwrap().longest;
    let summary = Summary {
        args: args.clone(),
        commit: git_commit(),
        chaos_secs,
        by_kind: log.by_kind(),
        faults: log.injected().count() as u64,
        fault_errors: log.faults.iter().filter(|f| f.error.is_some()).count() as u64,
        skipped: log.skipped,
        heal_retries: log.heal_retries,
        producer_retries: produced.retries.load(Ordering::SeqCst),
        longest_no_ack: produced.gaps.lock().unwrap().longest,
        longest_core_stall: core_gap,
        consumer_rejoins: consumed.rejoins.load(Ordering::SeqCst),
        clock_jumps: t.clock_files.is_some(),
        meta_restarts: t.meta_restarts,
        unreadable: reader::describe(&unreadable),
        unreadable_records: unreadable.iter().map(|u| u.to - u.from).sum(),
        verdict,
        replicas,
        passed,
    };
    summary.write(&args.out)?;
    println!("{}", summary.markdown());
    Ok(passed)
}

/// Records when the core's committed count grows (polled every 500 ms
/// through any node), for the longest stretch without a commit.
async fn watch_core(c: strata_client::cluster::Cluster, gaps: Arc<Mutex<Gaps>>) {
    let mut last = 0u64;
    loop {
        let described = tokio::time::timeout(Duration::from_secs(2), c.describe(STREAM)).await;
        if let Ok(Ok(d)) = described {
            let n: u64 = d.shards.iter().map(|s| s.next_offset).sum();
            if n > last {
                last = n;
                gaps.lock().unwrap().handle_event(Instant::now());
            }
        }
        // A poll interval, not synchronisation.
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Reads the core until it holds every acknowledged record, or until two
/// minutes pass with no more of them arriving (then the oracle reports
/// what is lost); returns the last read.
async fn wait_core_holds(t: &Targets, acked: &HashSet<(u64, u32)>) -> Result<reader::Read> {
    let c = t.cluster.cluster();
    let mut best = 0usize;
    let mut progress_at = Instant::now();
    let mut last = None;
    let mut last_err = None;
    loop {
        match reader::read_or_explain(&c, STREAM, SHARDS).await {
            Ok(read) => {
                let have: HashSet<(u64, u32)> = read
                    .records
                    .iter()
                    .filter_map(|h| oracle::parse(&h.value))
                    .collect();
                let held = acked.iter().filter(|a| have.contains(a)).count();
                if held == acked.len() {
                    return Ok(read);
                }
                if held > best {
                    best = held;
                    progress_at = Instant::now();
                }
                println!(
                    "the core holds {held} of {} acknowledged records; unreadable: {:?}",
                    acked.len(),
                    reader::describe(&read.unreadable)
                );
                last = Some(read);
            }
            Err(e) => {
                println!("reading the core failed: {e:#}");
                last_err = Some(e);
            }
        }
        if progress_at.elapsed() > Duration::from_secs(120) {
            println!(
                "the core holds {best} of {} acknowledged records, none more for 120 s",
                acked.len()
            );
            return last
                .with_context(|| format!("the core could not be read at all: {last_err:?}"));
        }
        // Between full reads of the stream (not synchronisation).
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
}

/// Waits until the consumers were handed `want` positions, or until a
/// minute passes without one more.
async fn wait_consumed(consumers: &load::Consumers, want: usize) {
    let mut best = consumers.positions();
    let mut progress_at = Instant::now();
    while best < want && progress_at.elapsed() < Duration::from_secs(60) {
        // A poll interval, not synchronisation.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let n = consumers.positions();
        if n > best {
            best = n;
            progress_at = Instant::now();
        }
    }
    if best < want {
        println!("the consumers got {best} of {want} positions, none more for 60 s");
    }
}

/// The commit the binaries were built from: `STRATA_CHAOS_COMMIT` (set by
/// chaos.sh when it pins them: the checkout may move on during a run), or
/// else the checked-out commit (with `-dirty` if the tree has changes), if
/// git is there.
fn git_commit() -> String {
    if let Ok(c) = std::env::var("STRATA_CHAOS_COMMIT") {
        return c;
    }
    let run = |args: &[&str]| {
        std::process::Command::new("git")
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    let head = run(&["rev-parse", "--short=12", "HEAD"]).unwrap_or_else(|| "unknown".into());
    let dirty =
        run(&["status", "--porcelain", "--untracked-files=no"]).is_some_and(|s| !s.is_empty());
    if dirty {
        format!("{head}-dirty")
    } else {
        head
    }
}
