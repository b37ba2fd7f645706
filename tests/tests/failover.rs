//! Failover of a shard's leader on a three-zone cluster (RF = 3) as real
//! processes: the time from a SIGKILL of the leader's node to the first
//! write acknowledged through the SDK's leader discovery, bounded in a
//! test and measured over many kills (`--ignored`); and idle (quiesced)
//! groups, which stop their Raft timers, wake on writes and fail over
//! through the node-level failure detector.

use anyhow::{bail, Result};
use std::time::Duration;
use strata_client::api::{self, Piece};
use strata_client::cluster::Cluster;
use strata_schema::batch::{Builder, NewRecord};
use strata_tests::cluster::TestCluster;
use strata_tests::wait_for;

const WAIT: Duration = Duration::from_secs(120);
/// Measurement, not a test (run with `--ignored`): time from SIGKILL of a
/// shard leader to the first acknowledged write on that shard through the
/// edge's forwarding call (hedged leader discovery), over `FAILOVER_KILLS`
/// kills (default 20) on a three-zone cluster. Prints p50, p99, max and a
/// histogram in 100 ms bins (docs/benchmarks.md, Failover).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "measurement; run explicitly"]
async fn measure_failover_time() -> Result<()> {
    let kills = std::env::var("FAILOVER_KILLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    // FAILOVER_QUIESCED=1: kill the leader of a quiesced (idle) group.
    let quiesced = std::env::var("FAILOVER_QUIESCED").is_ok_and(|v| v == "1");
    // FAILOVER_IDLE_SHARDS=N: N idle RF=3 shards besides the measured one,
    // so each killed node also led about a third of them (issue 17).
    let idle: u32 = std::env::var("FAILOVER_IDLE_SHARDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut c = TestCluster::start_with(3, false, &format!("shards_max = {}", idle + 116)).await?;
    let mut left = idle;
    while left > 0 {
        let n = left.min(100);
        c.create_stream(&format!("idle-{left}"), n, 3).await?;
        left -= n;
    }
    let times = failovers(&mut c, kills, quiesced, idle).await?;
    let pct = |p: usize| times[((times.len() * p).div_ceil(100)).clamp(1, times.len()) - 1];
    eprintln!(
        "failover over {} kills ({idle} idle shards): p50 {:?}, p99 {:?}, max {:?}, all {times:?}",
        times.len(),
        pct(50),
        pct(99),
        times[times.len() - 1],
    );
    let mut bins = std::collections::BTreeMap::new();
    for t in &times {
        *bins.entry(t.as_millis() / 100).or_insert(0) += 1;
    }
    for (bin, n) in bins {
        eprintln!(
            "{:>5}-{:<5} ms {}",
            bin * 100,
            bin * 100 + 99,
            "#".repeat(n)
        );
    }
    Ok(())
}

/// Longest failover [`failover_is_bounded`] accepts: with elections after
/// 200-400 ms of silence and forwards hedged to the other replicas after
/// 150 ms, a failover takes well under a second; three is a regression.
const FAILOVER_MAX: Duration = Duration::from_secs(3);

/// The failover time of [`measure_failover_time`], bounded, over three
/// kills. The slowest of the three must be within [`FAILOVER_MAX`]: the
/// bound is the worst case a user sees, and a median would hide a
/// regression that makes only some failovers slow (e.g. a dead leader still
/// being tried). Three kills keep the test under a minute.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn failover_is_bounded() -> Result<()> {
    let mut c = TestCluster::start(3, false).await?;
    let times = match tokio::time::timeout(Duration::from_secs(120), failovers(&mut c, 3, false, 0))
        .await
    {
        Ok(r) => r?,
        Err(_) => bail!("three failovers took over 120 s"),
    };
    eprintln!("failover times {times:?}");
    let max = times[times.len() - 1];
    if max > FAILOVER_MAX {
        bail!("a failover took {max:?} (over {FAILOVER_MAX:?}); all {times:?}");
    }
    Ok(())
}

/// An idle shard group stops its timers on every replica (the nodes'
/// `strata_core_quiesced_groups`), a write wakes it and commits, and when
/// the leader's node of a quiesced group is killed, the node-level failure
/// detector elects a new leader within [`FAILOVER_MAX`] (no group timer
/// runs to notice).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn idle_groups_quiesce_wake_on_writes_and_fail_over() -> Result<()> {
    let mut c = TestCluster::start(3, false).await?;
    let times =
        match tokio::time::timeout(Duration::from_secs(150), failovers(&mut c, 2, true, 0)).await {
            Ok(r) => r?,
            Err(_) => bail!("two failovers of quiesced groups took over 150 s"),
        };
    eprintln!("failover times of quiesced groups {times:?}");
    let max = times[times.len() - 1];
    if max > FAILOVER_MAX {
        bail!("a failover took {max:?} (over {FAILOVER_MAX:?}); all {times:?}");
    }
    Ok(())
}

/// Waits until every node of `c` but `except` counts `n` quiesced shard groups.
async fn wait_quiesced(c: &TestCluster, n: f64, except: Option<u64>) -> Result<()> {
    wait_quiesced_until(c, except, WAIT, |q| q == n).await
}

/// Waits (up to 5 minutes) until every node of `c` counts at least `n`
/// quiesced shard groups.
async fn wait_quiesced_at_least(c: &TestCluster, n: f64) -> Result<()> {
    let t = std::time::Instant::now();
    wait_quiesced_until(c, None, Duration::from_secs(300), |q| q >= n).await?;
    eprintln!("idle groups quiesced again after {:?}", t.elapsed());
    Ok(())
}

/// Waits until the count of quiesced shard groups of every node of `c`
/// but `except` satisfies `done`.
async fn wait_quiesced_until(
    c: &TestCluster,
    except: Option<u64>,
    timeout: Duration,
    done: impl Fn(f64) -> bool,
) -> Result<()> {
    let done = &done;
    wait_for(
        "the shard groups to quiesce on every live node",
        timeout,
        || async move {
            for id in c
                .nodes
                .iter()
                .map(|n| n.id)
                .filter(|id| Some(*id) != except)
            {
                if !done(c.metric(id, "strata_core_quiesced_groups").await?) {
                    return Ok(None);
                }
            }
            Ok(Some(()))
        },
    )
    .await
}

/// Kills the leader of a one-shard stream `n` times (restarting it and
/// letting it catch up in between; with `quiesced`, once the group went
/// quiet on every node); returns, sorted, the times from each SIGKILL to
/// the first write acknowledged through the SDK's leader discovery.
///
/// With `idle` other shards on the cluster, each kill waits until every
/// node counts them quiesced again: the failover of a busy shard among
/// idle ones in steady state, not amid the elections that the previous
/// kill and restart set off in the idle groups.
async fn failovers(
    c: &mut TestCluster,
    n: usize,
    quiesced: bool,
    idle: u32,
) -> Result<Vec<Duration>> {
    c.create_stream("fo", 1, 3).await?;
    let cluster = c.cluster();
    // Forwards need a producer id registered to the caller (docs/security.md).
    cluster
        .any(|cl| async move { api::register_producer(&cl, 99, "failover-test").await })
        .await?;
    let mut seq = 1;
    write_one(&cluster, seq).await?;
    let mut times = Vec::new();
    for _ in 0..n {
        if quiesced {
            wait_quiesced(c, 1.0, None).await?;
            // A write wakes the group and commits; then it goes quiet again.
            seq += 1;
            write_one(&cluster, seq).await?;
            wait_quiesced(c, 1.0, None).await?;
        }
        if idle > 0 {
            wait_quiesced_at_least(c, f64::from(idle)).await?;
        }
        let leader = c.leader_of("fo", 0).await?;
        let t0 = std::time::Instant::now();
        c.kill9(leader);
        seq += 1;
        if let Err(e) = write_one(&cluster, seq).await {
            eprintln!("write failed after {:?}: {e}\n{}", t0.elapsed(), c.logs());
            return Err(e);
        }
        times.push(t0.elapsed());
        eprintln!("failover {}: {:?}", times.len(), t0.elapsed());
        if quiesced {
            // A node that is down does not keep the group awake.
            wait_quiesced(c, 1.0, Some(leader)).await?;
        }
        c.restart(leader)?;
        c.wait_caught_up("fo", 1).await?;
    }
    times.sort();
    Ok(times)
}

/// One record to fo/0 as producer 99 at position `seq`, through leader discovery.
async fn write_one(cluster: &Cluster, seq: u64) -> Result<()> {
    let mut b = Builder::default();
    b.push(&NewRecord {
        key: Some("k"),
        value: b"x",
        timestamp_ms: 0,
        headers: &[],
    });
    let piece = Piece {
        first_seq: seq,
        seq_deltas: None,
        max_timestamp_ms: 0,
        batch: b.finish(),
    };
    let piece = &piece;
    cluster
        .to_leader_hedged("fo", 0, |cl| async move {
            api::forward(&cl, "fo", 0, 99, std::slice::from_ref(piece)).await
        })
        .await?;
    Ok(())
}
