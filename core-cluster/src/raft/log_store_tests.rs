//! Tests of the log store: openraft's storage conformance suite, and
//! durability across reopen.

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;
use openraft::storage::{RaftLogStorage, RaftLogStorageExt};
use openraft::testing::{StoreBuilder, Suite};
use openraft::{BasicNode, Membership, RaftLogReader};
use serde::{Deserialize, Serialize};

use super::*;
use crate::raft::command::{AppendCmd, ShardCommand, ShardResponse};
use crate::raft::sm::{GroupSm, GroupState};
use crate::raft::types::ShardTypes;

// These tests run the log of a shard group.
type LogStore = super::LogStore<ShardTypes>;
type Entry = crate::raft::types::Entry<ShardTypes>;

/// A trivial application state, so the suite exercises the real state
/// machine wrapper with nothing else attached.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
struct Counter(u64);

impl GroupState for Counter {
    type Config = ShardTypes;

    fn apply(&mut self, _log_id: &LogId, _cmd: &ShardCommand, _now_ms: i64) -> ShardResponse {
        self.0 += 1;
        ShardResponse::Refused(String::new())
    }
}

struct Builder;

impl StoreBuilder<ShardTypes, LogStore, GroupSm<Counter>, tempfile::TempDir> for Builder {
    async fn build(&self) -> Result<(tempfile::TempDir, LogStore, GroupSm<Counter>), StorageError> {
        let dir = tempfile::tempdir().expect("temp dir");
        // Small segments, so purges and truncations cross segment files.
        let opts = SegmentLogOptions {
            segment_bytes_max: 256,
            ..SegmentLogOptions::default()
        };
        let store = LogStore::open(dir.path(), opts).map_err(|e| write_store_err(&e))?;
        Ok((dir, store, GroupSm::default()))
    }
}

type S = Suite<ShardTypes, LogStore, GroupSm<Counter>, Builder, tempfile::TempDir>;

/// Runs one suite test on a fresh store, in a fresh runtime (as the suite does).
fn run<F, Fut>(name: &str, test: F)
where
    F: FnOnce(LogStore, GroupSm<Counter>) -> Fut,
    Fut: std::future::Future<Output = Result<(), StorageError>>,
{
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let (_dir, store, sm) = Builder.build().await.expect("build store");
        test(store, sm).await
    })
    .unwrap_or_else(|e| panic!("suite test {name}: {e}"));
}

/// openraft's storage conformance suite (`Suite::test_store`), test by test.
/// Left out: `get_initial_state_membership_from_log_and_sm`, which appends
/// index 3 right after index 1. A Raft log never has a hole, and the segment
/// log rejects one ([`LogError::NotNext`]) rather than store it.
#[test]
fn openraft_storage_suite() {
    macro_rules! suite {
        ($($name:ident),* $(,)?) => {
            $(run(stringify!($name), S::$name);)*
        };
    }
    suite!(
        last_membership_in_log_initial,
        last_membership_in_log,
        last_membership_in_log_multi_step,
        get_membership_initial,
        get_membership_from_log_and_empty_sm,
        get_membership_from_empty_log_and_sm,
        get_membership_from_log_le_sm_last_applied,
        get_membership_from_log_gt_sm_last_applied_1,
        get_membership_from_log_gt_sm_last_applied_2,
        get_initial_state_without_init,
        get_initial_state_with_state,
        get_initial_state_last_log_gt_sm,
        get_initial_state_last_log_lt_sm,
        get_initial_state_log_ids,
        get_initial_state_re_apply_committed,
        save_vote,
        get_log_entries,
        limited_get_log_entries,
        try_get_log_entry,
        initial_logs,
        get_log_state,
        get_log_id,
        last_id_in_log,
        last_applied_state,
        purge_logs_upto_0,
        purge_logs_upto_5,
        purge_logs_upto_20,
        delete_logs_since_11,
        delete_logs_since_0,
        append_to_log,
        snapshot_meta,
        apply_single,
        apply_multiple,
    );
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(S::transfer_snapshot(&Builder))
        .expect("suite test transfer_snapshot");
}

#[test]
fn suite_test_with_a_log_hole_is_rejected() {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let res = rt.block_on(async {
        let (_dir, store, sm) = Builder.build().await.expect("build store");
        S::get_initial_state_membership_from_log_and_sm(store, sm).await
    });
    let err = res.expect_err("a hole in the log must be rejected");
    assert!(err.to_string().contains("cannot append index 3"), "{err}");
}

fn small() -> SegmentLogOptions {
    SegmentLogOptions {
        segment_bytes_max: 300,
        // Some tests damage records at exact file offsets.
        prefill: strata_segment_log::prefill::Prefill::OFF,
        ..SegmentLogOptions::default()
    }
}

fn id(term: u64, node_id: u64, index: u64) -> LogId {
    LogId::new(CommittedLeaderId::new(term, node_id), index)
}

fn append_cmd(index: u64) -> ShardCommand {
    ShardCommand::Append(AppendCmd {
        producer_id: 9,
        first_seq: index * 10,
        seq_deltas: None,
        max_timestamp_ms: 1_700_000_000_000,
        records: 2,
        batch: Bytes::from(vec![index as u8; 64]),
    })
}

/// index 1: membership, 2: blank, 3..=n: append commands.
fn entries(n: u64) -> Vec<Entry> {
    (1..=n)
        .map(|i| {
            let log_id = id(1 + i / 4, i % 3, i);
            match i {
                1 => {
                    let mut nodes = BTreeMap::new();
                    nodes.insert(1, BasicNode::new("127.0.0.1:1"));
                    nodes.insert(2, BasicNode::new("127.0.0.1:2"));
                    let m = Membership::new(vec![BTreeSet::from([1, 2])], nodes);
                    Entry {
                        log_id,
                        payload: EntryPayload::Membership(m),
                    }
                }
                2 => Entry {
                    log_id,
                    payload: EntryPayload::Blank,
                },
                _ => Entry {
                    log_id,
                    payload: EntryPayload::Normal(append_cmd(i)),
                },
            }
        })
        .collect()
}

async fn all_entries(store: &mut LogStore) -> Vec<Entry> {
    store.try_get_log_entries(..).await.unwrap()
}

#[tokio::test]
async fn entries_survive_reopen_byte_identical() {
    let dir = tempfile::tempdir().unwrap();
    let want = entries(12);
    {
        let mut store = LogStore::open(dir.path(), small()).unwrap();
        store.blocking_append(want.clone()).await.unwrap();
        assert_eq!(all_entries(&mut store).await, want);
        // Nothing else is synced: the callback came after the fsync.
    }
    let mut store = LogStore::open(dir.path(), small()).unwrap();
    assert!(store.recovery().segments > 1);
    assert_eq!(all_entries(&mut store).await, want);
    assert_eq!(store.try_get_log_entries(5..8).await.unwrap(), want[4..7]);
    assert_eq!(store.try_get_log_entries(5..=5).await.unwrap(), want[4..5]);
    assert!(store.try_get_log_entries(13..).await.unwrap().is_empty());
    let state = store.get_log_state().await.unwrap();
    assert_eq!(state.last_log_id, Some(want[11].log_id));
    assert_eq!(state.last_purged_log_id, None);

    assert_eq!(store.read_command(7).unwrap(), Some(append_cmd(7)));
    assert_eq!(store.read_command(13).unwrap(), None);
    assert!(matches!(
        store.read_command(2),
        Err(StoreError::NotACommand {
            index: 2,
            what: "blank"
        })
    ));
    assert!(matches!(
        store.read_command(1),
        Err(StoreError::NotACommand { index: 1, .. })
    ));
    assert_eq!(store.read_entry(1).unwrap().as_ref(), Some(&want[0]));
}

#[tokio::test]
async fn limited_reads_are_bounded_but_never_empty() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = LogStore::open(dir.path(), small()).unwrap();
    store.blocking_append(entries(12)).await.unwrap();
    let some = store.read_entries(3, 13, 100).unwrap();
    // Each append command is about 100 bytes: the second one crosses 100.
    assert_eq!(some.len(), 2);
    assert_eq!(store.read_entries(3, 13, 0).unwrap().len(), 1);
    assert_eq!(
        store.limited_get_log_entries(3, 13).await.unwrap().len(),
        10
    );
}

#[tokio::test]
async fn vote_committed_and_purge_point_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let vote = Vote::new(7, 2);
    {
        let mut store = LogStore::open(dir.path(), small()).unwrap();
        assert_eq!(store.read_vote().await.unwrap(), None);
        assert_eq!(store.read_committed().await.unwrap(), None);
        store.blocking_append(entries(12)).await.unwrap();
        store.save_vote(&vote).await.unwrap();
        store.save_committed(Some(id(3, 0, 9))).await.unwrap();
        store.purge(id(2, 2, 5)).await.unwrap();
        let state = store.get_log_state().await.unwrap();
        assert_eq!(state.last_purged_log_id, Some(id(2, 2, 5)));
        assert_eq!(store.first_index(), Some(6));
    }
    let mut store = LogStore::open(dir.path(), small()).unwrap();
    assert_eq!(store.read_vote().await.unwrap(), Some(vote));
    assert_eq!(store.read_committed().await.unwrap(), Some(id(3, 0, 9)));
    // Index 5 shares a segment with 6: it is on disk but stays purged.
    assert_eq!(store.first_index(), Some(6));
    assert_eq!(store.read_entry(5).unwrap(), None);
    let got = all_entries(&mut store).await;
    assert_eq!(got.first().map(|e| e.log_id.index), Some(6));
    let state = store.get_log_state().await.unwrap();
    assert_eq!(state.last_purged_log_id, Some(id(2, 2, 5)));
    assert_eq!(state.last_log_id, Some(entries(12)[11].log_id));
}

#[tokio::test]
async fn purge_past_the_end_then_append_continues_after_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut store = LogStore::open(dir.path(), small()).unwrap();
        store.blocking_append(entries(4)).await.unwrap();
        store.purge(id(5, 1, 20)).await.unwrap();
        let state = store.get_log_state().await.unwrap();
        assert_eq!(state.last_log_id, Some(id(5, 1, 20)));
        let next = Entry {
            log_id: id(5, 1, 21),
            payload: EntryPayload::Blank,
        };
        store.blocking_append([next]).await.unwrap();
    }
    let mut store = LogStore::open(dir.path(), small()).unwrap();
    let state = store.get_log_state().await.unwrap();
    assert_eq!(state.last_purged_log_id, Some(id(5, 1, 20)));
    assert_eq!(state.last_log_id, Some(id(5, 1, 21)));
    assert_eq!(all_entries(&mut store).await.len(), 1);
}

#[tokio::test]
async fn truncate_is_durable() {
    let dir = tempfile::tempdir().unwrap();
    let want = entries(12);
    {
        let mut store = LogStore::open(dir.path(), small()).unwrap();
        store.blocking_append(want.clone()).await.unwrap();
        store.truncate(want[6].log_id).await.unwrap();
        assert_eq!(all_entries(&mut store).await, want[..6]);
    }
    let mut store = LogStore::open(dir.path(), small()).unwrap();
    assert_eq!(all_entries(&mut store).await, want[..6]);
    let state = store.get_log_state().await.unwrap();
    assert_eq!(state.last_log_id, Some(want[5].log_id));
}

#[tokio::test]
async fn undecodable_entries_are_errors_not_panics() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (mut log, _) = SegmentLog::open(&dir.path().join(LOG_DIR), small()).unwrap();
        log.append(1, 1, 1, KIND_NORMAL, &[1, 2, 3]).unwrap(); // truncated command
        log.append(1, 1, 2, KIND_MEMBERSHIP, b"{not json").unwrap();
        log.append(1, 1, 3, 9, b"").unwrap(); // unknown kind
        log.sync().unwrap();
    }
    let mut store = LogStore::open(dir.path(), small()).unwrap();
    assert!(matches!(
        store.read_entry(1),
        Err(StoreError::Codec { index: 1, .. })
    ));
    assert!(matches!(
        store.read_entry(2),
        Err(StoreError::Membership { index: 2, .. })
    ));
    assert!(matches!(
        store.read_entry(3),
        Err(StoreError::UnknownKind { index: 3, kind: 9 })
    ));
    assert!(store.try_get_log_entries(1..4).await.is_err());
    // The log state does not need to decode anything.
    let state = store.get_log_state().await.unwrap();
    assert_eq!(state.last_log_id, Some(id(1, 1, 3)));
}

#[tokio::test]
async fn hole_after_purge_point_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut store = LogStore::open(dir.path(), small()).unwrap();
        store.purge(id(1, 1, 3)).await.unwrap();
    }
    {
        let (mut log, _) = SegmentLog::open(&dir.path().join(LOG_DIR), small()).unwrap();
        log.append(1, 1, 10, KIND_BLANK, b"").unwrap();
        log.sync().unwrap();
    }
    let err = LogStore::open(dir.path(), small()).unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::Hole {
                first: 10,
                purged: 3
            }
        ),
        "{err}"
    );
}

#[tokio::test]
async fn unreadable_committed_file_is_ignored_but_vote_is_not() {
    let dir = tempfile::tempdir().unwrap();
    drop(LogStore::open(dir.path(), small()).unwrap());
    std::fs::write(dir.path().join(COMMITTED_FILE), b"").unwrap();
    let mut store = LogStore::open(dir.path(), small()).unwrap();
    assert_eq!(store.read_committed().await.unwrap(), None);
    drop(store);
    std::fs::write(dir.path().join(VOTE_FILE), b"{").unwrap();
    let err = LogStore::open(dir.path(), small()).unwrap_err();
    assert!(matches!(err, StoreError::MetaFile { .. }), "{err}");
}

#[test]
fn committed_json_is_written_at_the_first_commit_then_at_most_every_interval() {
    let t0 = Instant::now();
    assert!(committed_save_due(None, t0), "the first commit writes it");
    assert!(!committed_save_due(Some(t0), t0));
    assert!(!committed_save_due(
        Some(t0),
        t0 + COMMITTED_SAVE_EVERY - Duration::from_millis(1)
    ));
    assert!(committed_save_due(Some(t0), t0 + COMMITTED_SAVE_EVERY));
    // A clock that went back is not "due" early, and never panics.
    assert!(!committed_save_due(Some(t0 + COMMITTED_SAVE_EVERY), t0));
}

#[tokio::test]
async fn a_commit_between_writes_of_committed_json_is_remembered_not_written() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut store = LogStore::open(dir.path(), small()).unwrap();
        store.blocking_append(entries(12)).await.unwrap();
        let t0 = Instant::now();
        store
            .save_committed_at(Some(id(1, 0, 4)), t0)
            .await
            .unwrap();
        // Within COMMITTED_SAVE_EVERY of the first: memory has it, the file
        // keeps the first.
        let t1 = t0 + Duration::from_millis(1);
        store
            .save_committed_at(Some(id(1, 0, 9)), t1)
            .await
            .unwrap();
        assert_eq!(store.read_committed().await.unwrap(), Some(id(1, 0, 9)));
    }
    let mut store = LogStore::open(dir.path(), small()).unwrap();
    assert_eq!(
        store.read_committed().await.unwrap(),
        Some(id(1, 0, 4)),
        "a lagging committed id: never ahead of what was committed"
    );
    // The next commit an interval later is written.
    let t2 = Instant::now() + COMMITTED_SAVE_EVERY;
    store
        .save_committed_at(Some(id(1, 0, 11)), t2)
        .await
        .unwrap();
    store
        .save_committed_at(Some(id(1, 0, 12)), t2)
        .await
        .unwrap();
    drop(store);
    let mut store = LogStore::open(dir.path(), small()).unwrap();
    assert_eq!(store.read_committed().await.unwrap(), Some(id(1, 0, 11)));
}
