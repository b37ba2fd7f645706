//! Tiering against a store that fails on purpose
//! (`strata_archive::faulty::FaultyStore`): errors, partial uploads, by
//! seed. A single-node shard group takes appends while upload passes,
//! local purges and (in one test) expiry passes run against the faulty
//! store, as `control::tiering` drives them, and after each pass the
//! invariants are checked on the store behind the faults:
//!
//! - every object the manifest (the shard state) names is in the store,
//!   whole: its size and block checksums are the manifest's;
//! - the local log still holds every record not yet tiered (a failed
//!   upload never lets a purge through);
//! - in the end everything is tiered, every record reads back from the
//!   tier (through the faulty store) identical to what was appended, the
//!   data objects in the store are exactly those the manifest names
//!   (a partial object a failed upload left is overwritten by the retry:
//!   keys are deterministic), and the manifest copy in the store is the
//!   shard's manifest.

use super::*;
use crate::log::segment::SegmentLogOptions;
use crate::raft::command::AppendCmd;
use crate::raft::net::NetworkFactory;
use crate::tier::faulty::{FaultPlan, FaultyStore, Op};
use crate::tier::manifest::BlockChecksums;
use futures::StreamExt;
use object_store::memory::InMemory;
use openraft::BasicNode;
use std::collections::BTreeSet;
use strata_schema::batch::{Builder, NewRecord};

const STREAM: &str = "faults";
const SHARD: u32 = 0;
/// Base of the records' timestamps (2026-01-01).
const TS0: i64 = 1_767_225_600_000;

/// The record at `offset`, as appended: some keyed, some with headers,
/// values of varied length.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Rec {
    key: Option<String>,
    value: Vec<u8>,
    timestamp_ms: i64,
    headers: Vec<(String, Vec<u8>)>,
}

fn record(offset: u64) -> Rec {
    let len = 20 + (offset * 37 % 200) as usize;
    Rec {
        key: (!offset.is_multiple_of(7)).then(|| format!("k{}", offset % 5)),
        value: (0..len).map(|i| (offset as usize * 31 + i) as u8).collect(),
        timestamp_ms: TS0 + offset as i64 * 10,
        headers: if offset.is_multiple_of(3) {
            vec![("h".into(), offset.to_be_bytes().to_vec())]
        } else {
            Vec::new()
        },
    }
}

fn decode(batch: &[u8]) -> Vec<Rec> {
    let b = batch::open(batch).expect("a valid batch");
    b.records()
        .iter()
        .map(|r| Rec {
            key: r.key().map(str::to_string),
            value: r.value().map(|v| v.bytes().to_vec()).unwrap_or_default(),
            timestamp_ms: r.timestamp_ms(),
            headers: r
                .headers()
                .map(|hs| {
                    hs.iter()
                        .map(|h| {
                            let v = h.value().map(|v| v.bytes().to_vec()).unwrap_or_default();
                            (h.key().to_string(), v)
                        })
                        .collect()
                })
                .unwrap_or_default(),
        })
        .collect()
}

/// A single-node shard group in a temporary directory (tmpfs if any).
struct Shard {
    g: ShardGroup,
    _dir: tempfile::TempDir,
}

async fn open_shard() -> Shard {
    let shm = std::path::Path::new("/dev/shm");
    let dir = if shm.is_dir() {
        tempfile::tempdir_in(shm).unwrap()
    } else {
        tempfile::tempdir().unwrap()
    };
    let name = format!("{STREAM}/{SHARD}");
    let g = ShardGroup::open(
        &name,
        dir.path(),
        1,
        SegmentLogOptions::default(),
        NetworkFactory::SingleNode.network(&name),
    )
    .await
    .unwrap();
    g.initialize(&name, [(1, BasicNode::new("127.0.0.1:1"))].into())
        .await
        .unwrap();
    g.wait_leader(&name, Duration::from_secs(10)).await.unwrap();
    Shard { g, _dir: dir }
}

/// Appends `batches` batches of `per_batch` records as producer 1.
async fn append(g: &ShardGroup, batches: u64, per_batch: u64) {
    for _ in 0..batches {
        let first = g.sm.read(|s| s.next_offset);
        let mut b = Builder::default();
        let recs: Vec<Rec> = (first..first + per_batch).map(record).collect();
        for r in &recs {
            let headers: Vec<(&str, &[u8])> = r
                .headers
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_slice()))
                .collect();
            b.push(&NewRecord {
                key: r.key.as_deref(),
                value: &r.value,
                timestamp_ms: r.timestamp_ms,
                headers: &headers,
            });
        }
        let cmd = AppendCmd {
            producer_id: 1,
            first_seq: first,
            seq_deltas: None,
            max_timestamp_ms: recs.last().unwrap().timestamp_ms,
            records: per_batch as u32,
            batch: b.finish(),
        };
        let resp = g
            .raft
            .client_write(ShardCommand::Append(cmd))
            .await
            .unwrap();
        assert!(
            matches!(resp.data, ShardResponse::Appended { appended, .. } if appended == per_batch),
            "{:?}",
            resp.data
        );
    }
}

/// A tier over `faulty`: every range sealed at once (age 0), objects of
/// about `segment_bytes_max` bytes of batches, local retention 0.
fn tier(faulty: Arc<FaultyStore>, segment_bytes_max: u64) -> Tier {
    Tier {
        enabled: true,
        url: "memory:///faulty".into(),
        store: faulty,
        prefix: Path::from("archive"),
        segment_bytes_max,
        segment_age_max_ms: 0,
        local_retention_ms: 0,
        writer: WriterOptions::default(),
        manifests_written: Default::default(),
    }
}

/// The invariants that hold after every pass, checked on the store behind
/// the faults.
async fn check_invariants(inner: &Arc<dyn ObjectStore>, g: &ShardGroup) {
    check_invariants_expiring(inner, g, &Retention::default()).await
}

/// [`check_invariants`]; objects due to expire under `retention` may be
/// gone already: expiry deletes them before it commits.
async fn check_invariants_expiring(
    inner: &Arc<dyn ObjectStore>,
    g: &ShardGroup,
    retention: &Retention,
) {
    let (tiered, tiered_to, index, expiring) = g.sm.read(|s| {
        let expiring = tier_plan::expiry(s, retention, now_ms()).map_or(0, |e| e.objects.len());
        (s.tiered.clone(), s.tiered_to(), s.index.clone(), expiring)
    });
    for o in &tiered[expiring..] {
        let bytes = inner
            .get(&o.path().unwrap())
            .await
            .unwrap_or_else(|e| panic!("the manifest names {} but it is missing: {e}", o.key))
            .bytes()
            .await
            .unwrap();
        assert_eq!(bytes.len() as u64, o.bytes, "{} is not whole", o.key);
        let sums = o.checksums.as_ref().expect("checksums");
        assert_eq!(
            &BlockChecksums::of(&bytes, sums.block_bytes),
            sums,
            "{} differs from what was encoded",
            o.key
        );
    }
    // The log still holds every entry with records not yet tiered.
    let purged = g.log.purged_index();
    let mut runs = RunReader::new(&g.log);
    for e in index
        .iter()
        .filter(|e| e.base_offset + u64::from(e.count) > tiered_to)
    {
        assert!(
            purged.is_none_or(|p| p < e.log_index),
            "log purged to {purged:?}, but entry {} holds offsets {}.. not tiered (tiered to {tiered_to})",
            e.log_index,
            e.base_offset
        );
        let run = runs.run(e).expect("an untiered entry is in the local log");
        let got = decode(&run.batch);
        let want: Vec<Rec> = (e.base_offset..e.base_offset + u64::from(e.count))
            .map(record)
            .collect();
        assert_eq!(got[e.skip as usize..], want[..]);
    }
}

/// One pass as `control::tiering` runs it: upload, expire if the upload
/// went through, purge. Returns whether the upload and expiry succeeded;
/// an error must be a retryable store failure.
async fn pass(t: &Tier, g: &ShardGroup, retention: &Retention) -> bool {
    let up = match upload_sealed(t, STREAM, SHARD, g).await {
        Ok(_) => expire(t, STREAM, SHARD, g, retention).await,
        Err(e) => Err(e),
    };
    if let Err(e) = &up {
        assert_injected(e);
    }
    if let Err(e) = purge_local(t, g, retention).await {
        panic!("purging does not touch the store, yet: {e}");
    }
    up.is_ok()
}

fn assert_injected(e: &TieringError) {
    let retryable = match e {
        TieringError::Tier(t) => t.is_retryable(),
        TieringError::Store { source, .. } => {
            !matches!(**source, object_store::Error::NotFound { .. })
        }
        _ => false,
    };
    assert!(retryable && e.to_string().contains("injected fault"), "{e}");
}

/// Passes until a successful one leaves nothing to tier, at most `max`.
async fn drain(
    t: &Tier,
    g: &ShardGroup,
    inner: &Arc<dyn ObjectStore>,
    retention: &Retention,
    max: usize,
) -> usize {
    for n in 1..=max {
        let ok = pass(t, g, retention).await;
        check_invariants_expiring(inner, g, retention).await;
        if ok && g.sm.read(|s| s.tiered_to() == s.next_offset) {
            return n;
        }
    }
    panic!("not everything tiered after {max} passes");
}

/// Reads `[from, to)` from the tier through the faulty store, retrying
/// injected failures: every read that succeeds is exact.
async fn read_back(t: &Tier, g: &ShardGroup, from: u64, to: u64) -> u64 {
    let (mut offset, mut failures) = (from, 0);
    while offset < to {
        match read_tiered(t, g, offset, 13, 1 << 20).await {
            Ok(r) => {
                assert_eq!(r.first_offset, offset);
                let want: Vec<Rec> = (offset..r.next_offset).map(record).collect();
                assert_eq!(decode(&r.batch), want, "records at {offset}");
                offset = r.next_offset;
            }
            Err(e) => {
                assert!(
                    e.is_retryable() && e.to_string().contains("injected fault"),
                    "{e}"
                );
                failures += 1;
                assert!(failures < 1_000, "reads keep failing");
            }
        }
    }
    failures
}

async fn data_keys(inner: &Arc<dyn ObjectStore>) -> BTreeSet<String> {
    let prefix = keys::stream_prefix(&Path::from("archive"), STREAM);
    inner
        .list(Some(&prefix))
        .map(|m| m.unwrap().location.to_string())
        .collect()
        .await
}

async fn manifest_copy(inner: &Arc<dyn ObjectStore>) -> Option<Manifest> {
    let key = keys::manifest_key(&Path::from("archive"), STREAM, SHARD);
    let bytes = inner.get(&key).await.ok()?.bytes().await.unwrap();
    Manifest::from_json(&bytes).ok()
}

/// ~30% of store calls fail, a further 15% of uploads are cut midway:
/// repeated passes tier everything, the invariants hold after each, and
/// everything reads back.
async fn tier_everything_through_faults(seed: u64) {
    let inner: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let faulty =
        Arc::new(FaultyStore::new(inner.clone(), seed, FaultPlan::uniform(0.3, 0.15)).unwrap());
    let t = tier(faulty.clone(), 4 << 10);
    let shard = open_shard().await;
    let g = &shard.g;
    let retention = Retention::default();
    let mut passes = 0;
    for _ in 0..4 {
        append(g, 12, 9).await;
        // A few passes between appends, not necessarily enough.
        for _ in 0..3 {
            pass(&t, g, &retention).await;
            check_invariants(&inner, g).await;
            passes += 1;
        }
    }
    passes += drain(&t, g, &inner, &retention, 500).await;
    let (next, tiered) = g.sm.read(|s| (s.next_offset, s.tiered.clone()));
    assert_eq!(next, 4 * 12 * 9);
    assert!(tiered.len() >= 8, "{} objects", tiered.len());
    // Purged locally: the reads below come from the tier.
    assert!(g.log.purged_index().is_some(), "the local log was purged");
    let read_failures = read_back(&t, g, 0, next).await;

    let named: BTreeSet<String> = tiered.iter().map(|o| o.key.clone()).collect();
    assert_eq!(data_keys(&inner).await, named, "data objects in the store");
    let copy = manifest_copy(&inner)
        .await
        .expect("a readable manifest copy");
    assert_eq!(copy.objects, tiered, "the manifest copy in the store");

    let c = faulty.counts();
    let cut_data: Vec<_> = faulty
        .faults()
        .into_iter()
        .filter(|f| f.op == Op::Put && f.cut.is_some() && named.contains(&f.path))
        .collect();
    eprintln!(
        "seed {seed}: {passes} passes, {} objects, {} faults injected ({} put errors, {} cut puts, {} on data objects later overwritten, {} get errors), {read_failures} failed reads retried",
        tiered.len(),
        c.injected(),
        c.of(Op::Put).errors,
        c.of(Op::Put).partials,
        cut_data.len(),
        c.of(Op::Get).errors,
    );
    // The seeds below do exercise the interesting cases.
    assert!(!cut_data.is_empty(), "a data object was cut and retried");
    assert!(c.of(Op::Put).errors > 0 && c.of(Op::Get).errors > 0);
    g.raft.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tiering_survives_errors_and_partial_uploads_seed_1() {
    tier_everything_through_faults(1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tiering_survives_errors_and_partial_uploads_seed_2() {
    tier_everything_through_faults(2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tiering_survives_errors_and_partial_uploads_seed_3() {
    tier_everything_through_faults(3).await;
}

/// Total retention through faults: deletions fail too (30%). Expiry
/// deletes the oldest objects beyond the byte budget, then moves the
/// shard's first offset; in the end exactly the retained objects are in
/// the store, whole, they read back, and offsets below the first are
/// refused, never read from a stale or partial object.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expiry_survives_failed_deletions() {
    let seed = 11;
    let inner: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let mut plan = FaultPlan::uniform(0.3, 0.15);
    // A little latency on uploads, to show it changes nothing.
    plan.put.latency_max = Duration::from_millis(1);
    let faulty = Arc::new(FaultyStore::new(inner.clone(), seed, plan).unwrap());
    let t = tier(faulty.clone(), 4 << 10);
    let shard = open_shard().await;
    let g = &shard.g;
    let retention = Retention {
        total_bytes: Some(5 * 3_000),
        ..Retention::default()
    };
    for _ in 0..4 {
        append(g, 12, 9).await;
        for _ in 0..3 {
            pass(&t, g, &retention).await;
            check_invariants_expiring(&inner, g, &retention).await;
        }
    }
    drain(&t, g, &inner, &retention, 500).await;
    let (first, next, tiered) =
        g.sm.read(|s| (s.first_offset, s.next_offset, s.tiered.clone()));
    assert!(
        first > 0 && tiered.len() <= 5,
        "first offset {first}, {} objects",
        tiered.len()
    );
    assert_eq!(tiered[0].first_offset, first);
    read_back(&t, g, first, next).await;
    let e = read_tiered(&t, g, first - 1, 10, 1 << 20)
        .await
        .unwrap_err();
    assert!(matches!(e, TierError::Manifest(_)), "{e}");
    let named: BTreeSet<String> = tiered.iter().map(|o| o.key.clone()).collect();
    assert_eq!(data_keys(&inner).await, named, "expired objects deleted");
    let copy = manifest_copy(&inner)
        .await
        .expect("a readable manifest copy");
    assert_eq!(copy.objects, tiered, "the manifest copy in the store");
    let c = faulty.counts();
    eprintln!(
        "expiry, seed {seed}: first offset {first}, {} objects kept, {} faults ({} delete errors)",
        tiered.len(),
        c.injected(),
        c.of(Op::Delete).errors
    );
    assert!(c.of(Op::Delete).errors > 0, "deletions failed too");
    g.raft.shutdown().await.unwrap();
}

/// The chaos campaign's seed 1 (docs/reliability.md): a leader deposed
/// between its upload and its commit uploaded a shorter range from the same
/// first offset after the new leader had committed its object there, and
/// with keys made of the first offset alone it replaced that object, whose
/// records were then unreadable. Keys now name the range and the writer's
/// term: a late upload lands beside the committed object, and uploads of
/// a start that a leader then commits are deleted by it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deposed_leaders_late_upload_never_replaces_a_committed_object() {
    let inner: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let faulty =
        Arc::new(FaultyStore::new(inner.clone(), 1, FaultPlan::uniform(0.0, 0.0)).unwrap());
    let t = tier(faulty, 4 << 10);
    let shard = open_shard().await;
    let g = &shard.g;
    let retention = Retention::default();
    append(g, 12, 9).await;
    drain(&t, g, &inner, &retention, 50).await;
    let first = g.sm.read(|s| s.tiered[0].clone());
    let committed = inner.get(&Path::from(first.key.as_str())).await.unwrap();
    let committed = committed.bytes().await.unwrap();
    // A deposed leader (an older term) uploads a shorter range from the
    // same offset, late.
    let late = keys::data_key(
        &t.prefix,
        STREAM,
        SHARD,
        first.first_offset..first.first_offset + 1,
        0,
        record(first.first_offset).timestamp_ms,
    );
    assert_ne!(late.as_ref(), first.key, "a key of its own");
    inner.put(&late, b"stale".to_vec().into()).await.unwrap();
    let now = inner.get(&Path::from(first.key.as_str())).await.unwrap();
    assert_eq!(now.bytes().await.unwrap(), committed);
    let next = g.sm.read(|s| s.next_offset);
    read_back(&t, g, 0, next).await;

    // An upload from the next start, whose commit failed, before this
    // leader tiers that start: deleted once the range is committed.
    let orphan = keys::data_key(
        &t.prefix,
        STREAM,
        SHARD,
        next..next + 1,
        0,
        record(next).timestamp_ms,
    );
    inner.put(&orphan, b"orphan".to_vec().into()).await.unwrap();
    append(g, 12, 9).await;
    drain(&t, g, &inner, &retention, 50).await;
    let keys = data_keys(&inner).await;
    assert!(
        !keys.contains(orphan.as_ref()),
        "the orphan of a committed start is deleted"
    );
    let named: BTreeSet<String> =
        g.sm.read(|s| s.tiered.iter().map(|o| o.key.clone()).collect());
    let extra: Vec<_> = keys.difference(&named).collect();
    assert_eq!(extra, vec![late.as_ref()], "only the late upload is left");
    let next = g.sm.read(|s| s.next_offset);
    read_back(&t, g, 0, next).await;
    g.raft.shutdown().await.unwrap();
}
