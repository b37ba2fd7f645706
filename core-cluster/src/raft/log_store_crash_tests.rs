//! Power cuts under the log store: the store runs on a `SimFs`, and a crash
//! drops the store (the process dies) and keeps only what was fsynced, file
//! bytes and directory entries alike (or, torn, that plus a random part of
//! the rest). The properties:
//!
//! * every entry whose append callback fired (openraft's "flushed") survives,
//!   identical; so do the records before a truncation that returned;
//! * a saved vote and a purge point survive once their call returned;
//! * a truncation that returned is not undone: removed entries never return;
//! * nothing else comes back: every entry read was appended with exactly that
//!   content, and the committed id is one that was saved, or none;
//! * a snapshot survives once built or installed.
//!
//! A model check runs random operations with crashes at any step, and a few
//! fixed scenarios name each acknowledgement on its own.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use bytes::Bytes;
use openraft::storage::{RaftLogStorage, RaftLogStorageExt, RaftStateMachine};
use openraft::{RaftLogReader, RaftSnapshotBuilder};
use proptest::prelude::*;
use serde::{Deserialize, Serialize};
use strata_segment_log::sim::SimFs;

use super::*;
use crate::raft::command::{AppendCmd, ShardCommand, ShardResponse};
use crate::raft::sm::{GroupSm, GroupState};
use crate::raft::types::ShardTypes;

// These tests run the log of a shard group.
type LogStore = super::LogStore<ShardTypes>;
type Entry = crate::raft::types::Entry<ShardTypes>;

/// Nested, so that creating the store's directories must be durable too.
const DIR: &str = "/data/groups/s-0";

fn opts() -> SegmentLogOptions {
    // Small segments: appends, purges and truncations cross segment files.
    SegmentLogOptions {
        segment_bytes_max: 300,
        ..SegmentLogOptions::default()
    }
}

fn open(disk: &SimFs) -> LogStore {
    LogStore::open_in(disk.shared(), Path::new(DIR), opts()).expect("the store opens after a crash")
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

fn log_id(term: u64, index: u64) -> LogId {
    LogId::new(CommittedLeaderId::new(term, term % 3), index)
}

/// Entry `index` of `term`; `seq` makes its content unique.
fn entry(term: u64, index: u64, seq: u64, len: usize) -> Entry {
    let payload = if seq.is_multiple_of(7) {
        EntryPayload::Blank
    } else {
        EntryPayload::Normal(ShardCommand::Append(AppendCmd {
            producer_id: seq,
            first_seq: index,
            seq_deltas: None,
            max_timestamp_ms: seq as i64,
            records: 1,
            batch: Bytes::from((0..len).map(|k| (seq + k as u64) as u8).collect::<Vec<_>>()),
        }))
    };
    Entry {
        log_id: log_id(term, index),
        payload,
    }
}

async fn all_entries(store: &mut LogStore) -> Vec<Entry> {
    store
        .try_get_log_entries(..)
        .await
        .expect("entries read back")
}

#[derive(Debug, Clone)]
enum Op {
    /// Entries appended through openraft's API: durable once the callback
    /// fires (`blocking_append` waits for it).
    Append {
        n: u8,
        len: u8,
        new_term: bool,
    },
    /// Entries written to the log whose fsync had not run yet.
    Unflushed {
        n: u8,
        len: u8,
    },
    Vote {
        committed: bool,
    },
    Committed(u16),
    Truncate(u16),
    Purge(u16),
    Roll,
    /// Drop the store, cut the power, reopen; `torn` seeds `crash_torn`.
    Crash {
        torn: Option<u64>,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => (1u8..4, 0u8..120, prop::bool::weighted(0.2))
            .prop_map(|(n, len, new_term)| Op::Append { n, len, new_term }),
        2 => (1u8..4, 0u8..120).prop_map(|(n, len)| Op::Unflushed { n, len }),
        2 => any::<bool>().prop_map(|committed| Op::Vote { committed }),
        2 => any::<u16>().prop_map(Op::Committed),
        1 => any::<u16>().prop_map(Op::Truncate),
        1 => any::<u16>().prop_map(Op::Purge),
        1 => Just(Op::Roll),
        3 => prop::option::of(any::<u64>()).prop_map(|torn| Op::Crash { torn }),
    ]
}

struct Model {
    rt: tokio::runtime::Runtime,
    disk: SimFs,
    store: Option<LogStore>,
    /// The log: every entry appended and neither truncated nor purged.
    entries: BTreeMap<u64, Entry>,
    /// Entries up to here are durable: an append's callback fired, or a
    /// truncation returned.
    durable_last: Option<u64>,
    purged: Option<LogId>,
    vote: Option<Vote>,
    /// Every committed id ever saved: none is durable on its own, and a
    /// torn power cut may bring back the file of an earlier one (its
    /// unsynced replacement reverted under a rename that reached the disk).
    committed_saved: BTreeSet<Option<LogId>>,
    /// Index of the last committed id saved.
    committed: Option<u64>,
    term: u64,
    seq: u64,
}

impl Model {
    fn new() -> Self {
        let disk = SimFs::new();
        let store = open(&disk);
        Model {
            rt: runtime(),
            disk,
            store: Some(store),
            entries: BTreeMap::new(),
            durable_last: None,
            purged: None,
            vote: None,
            committed_saved: BTreeSet::from([None]),
            committed: None,
            term: 1,
            seq: 0,
        }
    }

    fn store(&self) -> LogStore {
        self.store.clone().expect("open store")
    }

    fn first(&self) -> Option<u64> {
        self.entries.keys().next().copied()
    }

    fn last(&self) -> Option<u64> {
        self.entries.keys().next_back().copied()
    }

    fn next_index(&self) -> u64 {
        self.last()
            .max(self.purged.map(|p| p.index))
            .map_or(1, |i| i + 1)
    }

    /// An index of the log at least `from` and at most `upto` (or the
    /// last) chosen by `sel`, if it holds any.
    fn pick_in(&self, sel: u16, from: u64, upto: Option<u64>) -> Option<u64> {
        let first = self.first()?.max(from);
        let last = self.last()?.min(upto.unwrap_or(u64::MAX));
        (first <= last).then(|| first + u64::from(sel) % (last - first + 1))
    }

    fn new_entries(&mut self, n: u8, len: u8) -> Vec<Entry> {
        let first = self.next_index();
        let mut out = Vec::new();
        for index in first..first + u64::from(n) {
            self.seq += 1;
            let e = entry(self.term, index, self.seq, len.into());
            self.entries.insert(index, e.clone());
            out.push(e);
        }
        out
    }

    fn apply(&mut self, op: &Op) {
        let mut store = self.store();
        match op {
            Op::Append { n, len, new_term } => {
                self.term += u64::from(*new_term);
                let batch = self.new_entries(*n, *len);
                self.rt.block_on(store.blocking_append(batch)).unwrap();
                self.durable_last = self.last();
            }
            Op::Unflushed { n, len } => {
                let batch = self.new_entries(*n, *len);
                let mut log = store.inner.write_log();
                let mut buf = Vec::new();
                for e in &batch {
                    buf.clear();
                    let kind = encode_entry(e, &mut buf).unwrap();
                    let id = e.log_id;
                    log.append(
                        id.leader_id.term,
                        id.leader_id.node_id,
                        id.index,
                        kind,
                        &buf,
                    )
                    .unwrap();
                }
            }
            Op::Vote { committed } => {
                self.term += 1;
                let mut vote = Vote::new(self.term, self.term % 3);
                if *committed {
                    vote.commit();
                }
                self.rt.block_on(store.save_vote(&vote)).unwrap();
                self.vote = Some(vote);
            }
            Op::Committed(sel) => {
                // openraft's order: a committed index only ever grows, and
                // names an entry whose append returned (the store's durable
                // bound relies on it; module documentation).
                let from = self.committed.map_or(0, |c| c + 1);
                // Nothing durable yet: nothing can be committed.
                let Some(durable) = self.durable_last else {
                    return;
                };
                let Some(at) = self.pick_in(*sel, from, Some(durable)) else {
                    return;
                };
                let id = Some(self.entries[&at].log_id);
                self.rt.block_on(store.save_committed(id)).unwrap();
                self.committed_saved.insert(id);
                self.committed = Some(at);
            }
            Op::Truncate(sel) => {
                // Committed entries are never truncated.
                let from = self.committed.map_or(0, |c| c + 1);
                let Some(at) = self.pick_in(*sel, from, None) else {
                    return;
                };
                let id = self.entries[&at].log_id;
                self.rt.block_on(store.truncate(id)).unwrap();
                self.entries.split_off(&at);
                // Durable on return, the entries before the cut included.
                self.durable_last = self.last();
            }
            Op::Purge(sel) => {
                // Only what was applied, hence durable, is purged (with
                // nothing durable yet, nothing: `pick_in` reads no bound as
                // any entry).
                let Some(durable) = self.durable_last else {
                    return;
                };
                let Some(at) = self.pick_in(*sel, 0, Some(durable)) else {
                    return;
                };
                let id = self.entries[&at].log_id;
                self.rt.block_on(store.purge(id)).unwrap();
                self.purged = Some(id);
                self.entries = self.entries.split_off(&(at + 1));
            }
            Op::Roll => store.roll_next(),
            Op::Crash { torn } => self.crash(*torn),
        }
        self.check();
    }

    fn crash(&mut self, torn: Option<u64>) {
        // The process dies in an append's fsync: the OS has the unflushed
        // entries, the disk may not. A torn crash keeps a part of them.
        let store = self.store.take().expect("open store");
        drop(store.inner.write_log().begin_sync().unwrap());
        drop(store);
        match torn {
            Some(seed) => self.disk.crash_torn(seed),
            None => self.disk.crash(),
        }
        let mut store = open(&self.disk);
        let (vote, committed, state, got) = self.rt.block_on(async {
            (
                store.read_vote().await.unwrap(),
                store.read_committed().await.unwrap(),
                store.get_log_state().await.unwrap(),
                all_entries(&mut store).await,
            )
        });
        assert_eq!(vote, self.vote, "the saved vote after a power cut");
        assert_eq!(
            state.last_purged_log_id, self.purged,
            "the purge point after a power cut"
        );
        assert!(
            self.committed_saved.contains(&committed),
            "committed id {committed:?} after a power cut was never saved"
        );
        let first = self.first();
        if let Some(e) = got.first() {
            assert_eq!(Some(e.log_id.index), first, "first entry after a power cut");
        }
        for (k, e) in got.iter().enumerate() {
            let index = first.unwrap() + k as u64;
            assert_eq!(e.log_id.index, index, "entries are contiguous");
            assert_eq!(
                Some(e),
                self.entries.get(&index),
                "entry {index} after a power cut is not the one appended"
            );
        }
        let last = got.last().map(|e| e.log_id.index);
        if let (Some(first), Some(durable)) = (first, self.durable_last) {
            if first <= durable {
                assert!(
                    last >= Some(durable),
                    "entries {first}..={durable} were acknowledged as durable, the log ends at {last:?}"
                );
            }
        }
        assert_eq!(
            state.last_log_id,
            last.map(|i| self.entries[&i].log_id).or(self.purged),
            "last log id after a power cut"
        );
        // Unflushed entries that did not survive may be appended again.
        match last {
            Some(last) => drop(self.entries.split_off(&(last + 1))),
            None => self.entries.clear(),
        }
        self.durable_last = last;
        self.store = Some(store);
    }

    /// Between crashes the store shows exactly the model.
    fn check(&self) {
        let mut store = self.store();
        let (state, got) = self.rt.block_on(async {
            (
                store.get_log_state().await.unwrap(),
                all_entries(&mut store).await,
            )
        });
        assert_eq!(state.last_purged_log_id, self.purged);
        let want: Vec<Entry> = self.entries.values().cloned().collect();
        assert_eq!(got, want);
        assert_eq!(
            state.last_log_id,
            self.last().map(|i| self.entries[&i].log_id).or(self.purged)
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn model_check_with_power_cuts(ops in prop::collection::vec(op(), 1..60)) {
        let mut model = Model::new();
        for op in &ops {
            model.apply(op);
        }
        // Finally a durable append and a strict power cut: all of it survives.
        model.apply(&Op::Append { n: 1, len: 10, new_term: false });
        let last = model.last();
        model.apply(&Op::Crash { torn: None });
        prop_assert_eq!(model.last(), last);
    }
}

/// Appends that crossed several new segment files, in a new directory tree,
/// survive once the callback fired; nothing written after them does.
#[test]
fn acknowledged_entries_survive_a_power_cut() {
    let rt = runtime();
    let disk = SimFs::new();
    let mut store = open(&disk);
    let want: Vec<Entry> = (1..=12).map(|i| entry(1 + i / 5, i, i, 60)).collect();
    rt.block_on(store.blocking_append(want[..5].to_vec()))
        .unwrap();
    rt.block_on(store.blocking_append(want[5..].to_vec()))
        .unwrap();
    assert!(store.inner.read_log().segment_count() > 2);
    drop(store);
    disk.crash();
    let mut store = open(&disk);
    assert_eq!(rt.block_on(all_entries(&mut store)), want);
}

/// A vote is durable when `save_vote` returns; a later one replaces it.
#[test]
fn saved_vote_survives_a_power_cut() {
    let rt = runtime();
    let disk = SimFs::new();
    for (term, node) in [(1, 1), (2, 3), (5, 2)] {
        let mut store = open(&disk);
        rt.block_on(store.save_vote(&Vote::new(term, node)))
            .unwrap();
        drop(store);
        disk.crash();
        let mut store = open(&disk);
        assert_eq!(
            rt.block_on(store.read_vote()).unwrap(),
            Some(Vote::new(term, node)),
            "vote after a power cut"
        );
    }
}

/// A purge and a truncation are durable when they return: purged entries stay
/// hidden, truncated ones never come back, the rest survives.
#[test]
fn purge_and_truncation_survive_a_power_cut() {
    let rt = runtime();
    let disk = SimFs::new();
    let mut store = open(&disk);
    let old: Vec<Entry> = (1..=12).map(|i| entry(1, i, i, 60)).collect();
    rt.block_on(store.blocking_append(old.clone())).unwrap();
    rt.block_on(store.purge(old[3].log_id)).unwrap();
    rt.block_on(store.truncate(old[8].log_id)).unwrap();
    drop(store);
    disk.crash();
    let mut store = open(&disk);
    let state = rt.block_on(store.get_log_state()).unwrap();
    assert_eq!(state.last_purged_log_id, Some(old[3].log_id), "purge point");
    assert_eq!(
        rt.block_on(all_entries(&mut store)),
        old[4..8],
        "entries 5..=8"
    );
    // A truncation inside the active segment, then a new leader's entries.
    let new: Vec<Entry> = (8..=9).map(|i| entry(2, i, 100 + i, 60)).collect();
    rt.block_on(store.truncate(old[6].log_id)).unwrap();
    drop(store);
    disk.crash();
    let mut store = open(&disk);
    assert_eq!(
        rt.block_on(all_entries(&mut store)),
        old[4..6],
        "entries 5..=6"
    );
    rt.block_on(store.blocking_append([old[6].clone()]))
        .unwrap();
    rt.block_on(store.blocking_append(new.clone())).unwrap();
    drop(store);
    disk.crash();
    let mut store = open(&disk);
    let want: Vec<Entry> = old[4..7].iter().chain(&new).cloned().collect();
    assert_eq!(rt.block_on(all_entries(&mut store)), want);
}

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
struct Sum(u64);

impl GroupState for Sum {
    type Config = ShardTypes;

    fn apply(&mut self, log_id: &LogId, _cmd: &ShardCommand, _now_ms: i64) -> ShardResponse {
        self.0 += log_id.index;
        ShardResponse::Refused(String::new())
    }
}

/// A built snapshot is durable: openraft may purge the log behind it.
#[test]
fn built_snapshot_survives_a_power_cut() {
    let rt = runtime();
    let disk = SimFs::new();
    // The store creates the group directory the snapshot lives in.
    drop(open(&disk));
    let mut sm = GroupSm::<Sum>::open_in(disk.shared(), Path::new(DIR)).unwrap();
    let entries: Vec<Entry> = (1..=4).map(|i| entry(1, i, 1, 8)).collect();
    rt.block_on(sm.apply(entries)).unwrap();
    let snap = rt
        .block_on(async { sm.get_snapshot_builder().await.build_snapshot().await })
        .unwrap();
    drop(sm);
    disk.crash();
    let mut sm = GroupSm::<Sum>::open_in(disk.shared(), Path::new(DIR)).unwrap();
    assert_eq!(sm.read(|s| s.0), 1 + 2 + 3 + 4, "state after a power cut");
    let got = rt.block_on(sm.get_current_snapshot()).unwrap();
    assert_eq!(
        got.map(|s| s.meta),
        Some(snap.meta),
        "snapshot after a power cut"
    );
}
