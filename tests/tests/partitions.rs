//! Real partitions between zones: three core nodes, each in its own network
//! namespace (zones az-a, az-b, az-c, linked through a hub namespace:
//! `strata_tests::netns`), the edge agent and the producers in the test's
//! namespace. Cuts are made in the kernel (policy-routing blackhole rules in
//! the hub), not by the UDP relay of tests/cluster.rs, which stays for
//! machines without namespaces. Where namespaces cannot be made (not root,
//! no `ip`) each test prints `skipped: ...` and passes.
//!
//! Each test writes through the edge while the fault lasts, heals, then
//! checks that every acknowledged record is in the core exactly once, in
//! per-key order, and that every replica holds the same records.

use anyhow::{bail, Context, Result};
use std::time::{Duration, Instant};
use strata_client::api::{self, Start};
use strata_tests::cluster::TestCluster;
use strata_tests::netns::ZoneNet;
use strata_tests::{bounded, wait_for, workload};

/// Upper bound of a wait for progress (elections, catching up).
const WAIT: Duration = Duration::from_secs(30);
/// An upper bound never reached: producers run until the test stops them.
const RECORDS: u64 = 100_000_000;
const KEYS: u64 = 30;
const LANES: u64 = 3;
/// Small batches: fewer records to check at the end.
const BATCH: usize = 20;
/// The Raft group under test: one shard, a replica in each zone.
const STREAM: &str = "zoned";

/// The cluster's zone network (the cluster was started in zones).
fn net(c: &mut TestCluster) -> &mut ZoneNet {
    c.net.as_mut().expect("started with start_in_zones")
}

/// Node `id`'s zone (node k + 1 runs in zone k).
fn zone(id: u64) -> usize {
    id as usize - 1
}

/// The next offset of `STREAM`/0 that node `id` has applied (read from
/// that node alone).
async fn end_on(c: &TestCluster, id: u64) -> Result<u64> {
    let cl = c.client(c.addr_of(id)?);
    let end = tokio::time::timeout(
        Duration::from_secs(2),
        api::seek(&cl, STREAM, 0, Start::Latest),
    )
    .await;
    cl.close().await;
    match end {
        Ok(r) => Ok(r.with_context(|| format!("node {id}: seek {STREAM}/0"))?),
        Err(_) => bail!("node {id} did not answer a seek within 2 s"),
    }
}

/// [`end_on`], retried until node `id` answers (a node may lead a shard
/// a moment before its API knows the stream).
async fn end_of(c: &TestCluster, id: u64) -> Result<u64> {
    let what = format!("node {id} to answer a seek");
    wait_for(
        &what,
        WAIT,
        || async move { Ok(Some(end_on(c, id).await?)) },
    )
    .await
}

/// Waits until node `id` has applied past `offset`; returns when.
async fn commits_past(c: &TestCluster, id: u64, offset: u64) -> Result<Instant> {
    wait_for(
        &format!("node {id} to commit past offset {offset}"),
        WAIT,
        || async move { Ok((end_on(c, id).await? > offset).then(Instant::now)) },
    )
    .await
}

/// A stream with one shard replicated in every zone, producers writing
/// through the edge, and its leader once it has committed records.
async fn writing(c: &TestCluster) -> Result<(workload::Producers, u64, u64)> {
    c.create_stream(STREAM, 1, 3).await?;
    let p = workload::start(c.edge_addr, &c.pki.ca, STREAM, RECORDS, KEYS, LANES, BATCH);
    p.wait_acked(2_000, WAIT).await?;
    let (leader, term) = c.leadership(STREAM, 0, &[]).await?;
    // Writes are going on through that leader (it may have just taken
    // the shard over: wait until it has committed more).
    let end = end_of(c, leader).await?;
    commits_past(c, leader, end).await?;
    Ok((p, leader, term))
}

/// Heals, lets the producers write a little more, stops them and checks
/// the core against what was acknowledged.
async fn heal_and_check(c: &mut TestCluster, p: workload::Producers) -> Result<()> {
    net(c).heal()?;
    let healed = Instant::now();
    let before = p.acked_count();
    p.wait_acked(before + 1_000, WAIT).await?;
    let acked = p.stop().await?;
    let report = workload::verify(&c.cluster(), STREAM, &acked, KEYS, WAIT).await?;
    c.wait_caught_up(STREAM, 1).await?;
    let n = c.assert_replicas_identical(STREAM).await?;
    eprintln!(
        "{report:?}; every acknowledged record once, keys in order; replicas identical ({n} records each) {:?} after healing",
        healed.elapsed()
    );
    Ok(())
}

/// Runs `test` on a three-zone cluster with `latency_ms` between zones,
/// within `secs`; prints the daemons' logs if it fails.
macro_rules! zoned {
    ($latency_ms:expr, $secs:expr, $test:ident) => {{
        let Some(mut c) = TestCluster::start_in_zones(3, "", $latency_ms).await? else {
            return Ok(());
        };
        let r = bounded($secs, $test(&mut c)).await;
        if r.is_err() {
            eprintln!("{}", c.logs());
        }
        r
    }};
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn leader_zone_cut_off_writes_go_on_and_nothing_is_lost() -> Result<()> {
    zoned!(0, 90, zone_cut)
}

async fn zone_cut(c: &mut TestCluster) -> Result<()> {
    let (p, old, term) = writing(c).await?;
    let others: Vec<u64> = (1..=3).filter(|&n| n != old).collect();
    let cut = Instant::now();
    net(c).isolate(zone(old))?;
    // What the other two zones hold when the cut starts: anything past it
    // was committed by a leader among them.
    let mut base = 0;
    for &n in &others {
        base = base.max(end_of(c, n).await?);
    }
    let (new, new_term) = c.leadership(STREAM, 0, &[old]).await?;
    let elected = cut.elapsed();
    // The cut is real: the test's namespace no longer reaches that zone.
    if let Ok(end) = end_on(c, old).await {
        bail!("node {old} answered (next offset {end}) with its zone cut off");
    }
    assert!(
        new != old && new_term > term,
        "after cutting off zone {} (node {old}, term {term}), node {new} leads in term {new_term}",
        zone(old)
    );
    let first = commits_past(c, new, base).await?;
    let before = p.acked_count();
    p.wait_acked(before + 2_000, WAIT).await?;
    let end = end_of(c, new).await?;
    commits_past(c, new, end + 1_000).await?;
    eprintln!(
        "zone of node {old} cut off: node {new} leads (term {new_term}) after {elected:?}, first commit without the cut zone after {:?}; {} records acknowledged during the cut",
        first - cut,
        p.acked_count() - before
    );
    heal_and_check(c, p).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn leader_that_cannot_send_is_replaced_and_nothing_is_lost() -> Result<()> {
    zoned!(0, 60, mute_leader)
}

/// The leader hears its followers but cannot reach them: they stop
/// hearing from it, elect one of themselves, and the new leader's messages
/// (which do reach the old one) make it step down.
async fn mute_leader(c: &mut TestCluster) -> Result<()> {
    let (p, old, term) = writing(c).await?;
    let cut = Instant::now();
    for n in (1..=3).filter(|&n| n != old) {
        net(c).cut_one_way(zone(old), zone(n))?;
    }
    let (new, new_term) = c.leadership(STREAM, 0, &[old]).await?;
    assert!(
        new != old && new_term > term,
        "after cutting node {old}'s packets to its followers (term {term}), node {new} leads in term {new_term}"
    );
    let end = end_of(c, new).await?;
    let first = commits_past(c, new, end).await?;
    eprintln!(
        "node {old} cannot send to its followers: node {new} leads (term {new_term}) after {:?}, commits after {:?}",
        cut.elapsed(),
        first - cut
    );
    heal_and_check(c, p).await
}

/// How long the followers of a leader that cannot hear them are given to
/// elect another and commit (here 1.3 to 3.2 s).
const DEAF_WINDOW: Duration = Duration::from_secs(20);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn leader_that_cannot_hear_its_followers_is_replaced_and_nothing_is_lost() -> Result<()> {
    zoned!(0, 90, deaf_leader)
}

/// The followers cannot reach the leader, which still reaches them: it
/// can commit nothing (no acknowledgement arrives) while what it sends
/// tells the followers it is alive: the harder one-way cut for Raft.
/// Another leader must commit within [`DEAF_WINDOW`] (the old one still
/// claims to lead: it is not asked), and the old one commits nothing.
async fn deaf_leader(c: &mut TestCluster) -> Result<()> {
    let (p, leader, term) = writing(c).await?;
    let cut = Instant::now();
    for n in (1..=3).filter(|&n| n != leader) {
        net(c).cut_one_way(zone(n), zone(leader))?;
    }
    let mut base = 0;
    for id in 1..=3 {
        base = base.max(end_of(c, id).await?);
    }
    let shared: &TestCluster = c;
    let (now, t) = wait_for(
        "another leader that commits while the followers cannot reach the old one",
        DEAF_WINDOW,
        || async move {
            let c = shared;
            let Ok((now, t)) = c.leadership(STREAM, 0, &[leader]).await else {
                return Ok(None);
            };
            Ok((end_on(c, now).await? > base).then_some((now, t)))
        },
    )
    .await?;
    let replaced = cut.elapsed();
    // Whatever happened meanwhile, the leader that hears no one commits
    // nothing: what it applied stays put while the producers write on
    // (read once what it committed before the cut was surely applied).
    let settled = end_of(c, leader).await?;
    let before = p.acked_count();
    p.wait_acked(before + 1_000, WAIT).await?;
    let later = end_of(c, leader).await?;
    assert_eq!(
        later, settled,
        "node {leader}, unable to hear its followers, applied records"
    );
    eprintln!(
        "followers cannot reach node {leader} (term {term}): node {now} commits in term {t} after {replaced:?}; node {leader} committed nothing"
    );
    heal_and_check(c, p).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn steady_writes_across_zones_with_latency() -> Result<()> {
    zoned!(1, 90, steady)
}

async fn steady(c: &mut TestCluster) -> Result<()> {
    let latency = net(c).latency_ms;
    let (p, leader, _) = writing(c).await?;
    let start = Instant::now();
    let before = p.acked_count();
    let end = end_of(c, leader).await?;
    p.wait_acked(before + 20_000, Duration::from_secs(60))
        .await?;
    commits_past(c, leader, end + 20_000).await?;
    let secs = start.elapsed().as_secs_f64();
    let committed = end_of(c, leader).await? - end;
    eprintln!(
        "latency between zones: {latency:?} ms; {} records acknowledged and {committed} committed in {secs:.1} s ({:.0} records/s committed)",
        p.acked_count() - before,
        committed as f64 / secs
    );
    heal_and_check(c, p).await
}
