//! One simulated run, all of it drawn from one seed: the network's loss,
//! the fault schedule, the producers' batches and pacing, the reads. The
//! run has two phases, as TigerBeetle's VOPR does: chaos (faults as
//! planned, producers and a reader at work), then healing (every node up,
//! the network calm) in which every producer must get its batches
//! acknowledged and every replica must catch up, within a deadline of
//! virtual time. Then the oracle checks the result.

use super::cluster::{read, Cluster, CrashStats, Rec, NODES};
use super::model::{plan, Fault, NetModel, NetParams, CLIENT_BASE};
use super::net::{NetStats, SimNet};
use super::oracle::{check_log, check_reads, same_on_every_replica};
use super::producer::{reader, Producer, SharedLedger};
use super::rng::Rng;
use std::time::Duration;
use tokio::time::{sleep, sleep_until, Instant};

/// Producers per run.
const PRODUCERS: u64 = 3;
/// Time the healed cluster has to acknowledge everything and converge.
const LIVENESS: Duration = Duration::from_secs(30);

/// What one run did and what it ended with.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunStats {
    pub net: NetStats,
    pub crashes: CrashStats,
    pub chaos_ms: u64,
    /// Virtual time from start to the end of the checks.
    pub virtual_ms: u64,
    pub attempts: u64,
    pub failed_attempts: u64,
    pub failed_rounds: u64,
    pub edge_restarts: u64,
    pub acked: u64,
    pub reads: u64,
    /// At the end: records in the shard, Raft log entries and bytes, and
    /// producers in the dedup table.
    pub records: u64,
    pub log_entries: u64,
    pub log_bytes: u64,
    pub dedup_producers: u64,
    pub term: u64,
}

/// Runs `seed` on a runtime of its own with virtual time.
pub fn run_seed(seed: u64) -> Result<RunStats, String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .map_err(|e| format!("runtime: {e}"))?;
    // No I/O thread's timing may decide the order of events.
    crate::raft::log_store::INLINE_BLOCKING.with(|c| c.set(true));
    let res = rt.block_on(run(seed));
    drop(rt);
    crate::raft::log_store::INLINE_BLOCKING.with(|c| c.set(false));
    res
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

async fn run(seed: u64) -> Result<RunStats, String> {
    let mut rng = Rng::new(seed);
    let params = NetParams::draw(&mut rng);
    let drawn_ms = rng.range(2_000, 5_000);
    // A long run (state stays flat?) sets its own chaos phase.
    let chaos_ms = super::env_u64("STRATA_SIM_CHAOS_MS").unwrap_or(drawn_ms);
    let steps = plan(&mut rng.fork(), &NODES, chaos_ms);
    let net = SimNet::new(NetModel::new(params), rng.fork());
    let cluster = Cluster::new(net.clone(), rng.fork());
    for n in NODES {
        cluster.start(n).await?;
    }
    let start = Instant::now();
    let chaos_end = start + ms(chaos_ms);
    let deadline = chaos_end + LIVENESS;
    let ledger = SharedLedger::default();
    let producers: Vec<_> = (0..PRODUCERS)
        .map(|i| {
            let p = Producer {
                producer_id: i + 1,
                endpoint: CLIENT_BASE + i,
                rng: rng.fork(),
            };
            tokio::spawn(p.run(cluster.clone(), ledger.clone(), chaos_end, deadline))
        })
        .collect();
    let reads = tokio::spawn(reader(
        cluster.clone(),
        ledger.clone(),
        rng.fork(),
        chaos_end,
    ));
    for step in steps {
        sleep_until(start + ms(step.at_ms)).await;
        match step.fault {
            Fault::Cut { id, cut } => net.cut(id, cut),
            Fault::Heal { id } => net.heal(id),
            Fault::Crash { node, torn } => cluster.crash(node, torn).await,
            Fault::Restart { node } => cluster.start(node).await?,
        }
    }
    sleep_until(chaos_end).await;
    net.heal_all();
    for n in NODES {
        if !cluster.is_up(n) {
            cluster.start(n).await?;
        }
    }
    for p in producers {
        p.await.map_err(|e| format!("producer task: {e}"))??;
    }
    reads.await.map_err(|e| format!("reader task: {e}"))??;
    let term = converge(&cluster, deadline).await?;
    let mut stats = check(&cluster, &ledger)?;
    stats.net = net.stats();
    stats.crashes = cluster.crash_stats();
    stats.chaos_ms = chaos_ms;
    stats.virtual_ms = (Instant::now() - start).as_millis() as u64;
    stats.term = term;
    cluster.shutdown().await;
    Ok(stats)
}

/// Waits until one leader is known to all and every replica applied its
/// whole log, the same length everywhere; returns the term.
async fn converge(cluster: &Cluster, deadline: Instant) -> Result<u64, String> {
    loop {
        let mut views = Vec::new();
        for n in NODES {
            let g = cluster.group(n).ok_or(format!("node {n} is down"))?;
            let m = g.raft.metrics().borrow().clone();
            views.push((
                m.current_leader,
                m.current_term,
                m.last_log_index,
                m.last_applied.map(|l| l.index),
            ));
        }
        let (leader, term, last, _) = views[0];
        let settled = leader.is_some()
            && views
                .iter()
                .all(|v| v.0 == leader && v.1 == term && v.2 == last && v.3 == last);
        if settled {
            return Ok(term);
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "replicas did not converge after healing (leader, term, last log index, applied index per node): {views:?}"
            ));
        }
        sleep(ms(20)).await;
    }
}

/// The oracle's checks of the healed cluster, and its final figures.
fn check(cluster: &Cluster, ledger: &SharedLedger) -> Result<RunStats, String> {
    let mut replicas: Vec<(u64, Vec<Rec>)> = Vec::new();
    let mut log_ids = Vec::new();
    let mut stats = RunStats::default();
    for n in NODES {
        let g = cluster.group(n).ok_or(format!("node {n} is down"))?;
        replicas.push((n, read(&g).map_err(|e| format!("node {n}: {e}"))?));
        let last = g.log.last_index().unwrap_or(0);
        let entries = g
            .log
            .read_entries(0, last + 1, usize::MAX)
            .map_err(|e| format!("node {n}: reading its log: {e}"))?;
        log_ids.push((n, entries.iter().map(|e| e.log_id).collect::<Vec<_>>()));
        stats.log_entries = entries.len() as u64;
        stats.log_bytes = g.log.bytes();
        stats.dedup_producers = g.sm.read(|s| s.producers.len() as u64);
    }
    for (n, ids) in &log_ids[1..] {
        if *ids != log_ids[0].1 {
            return Err(format!(
                "the Raft logs of node {} and node {n} differ after converging",
                log_ids[0].0
            ));
        }
    }
    let log = same_on_every_replica(&replicas)?;
    let l = ledger.lock().expect("ledger lock");
    check_log(&log, &l.sent, &l.acked)?;
    check_reads(&log, &l.reads)?;
    stats.records = log.len() as u64;
    stats.acked = l.acked.values().map(|s| s.len() as u64).sum();
    stats.reads = l.reads.len() as u64;
    stats.attempts = l.attempts;
    stats.failed_attempts = l.failed_attempts;
    stats.failed_rounds = l.failed_rounds;
    stats.edge_restarts = l.edge_restarts;
    Ok(stats)
}
