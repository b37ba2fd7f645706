//! A shard's deterministic state: offsets, the producer dedup table, and the
//! index from offsets to Raft log entries (the log is the data).
//!
//! Exactly-once: every forwarded record carries its agent's producer id and
//! its buffer position (`seq`). Positions of one producer reach a shard in
//! increasing order, so when an entry overlaps what the shard already has, the
//! duplicates are a *prefix* of the entry. Applying records that prefix as
//! `skip` in the index; readers skip it. No bytes are rewritten, and every
//! replica decides the same, because the decision is made at apply time.

use super::command::{AppendCmd, ShardCommand, ShardResponse};
use super::sm::GroupState;
use super::types::{LogId, ShardTypes};
use crate::tier::manifest::TieredObject;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// Where a run of offsets lives in the Raft log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexEntry {
    pub base_offset: u64,
    pub log_index: u64,
    /// Records at the front of the entry's batch that are not in the shard.
    pub skip: u32,
    /// Records of the entry that are in the shard.
    pub count: u32,
    /// Running maximum of record timestamps up to and including this entry.
    pub max_timestamp_ms: i64,
    /// Size of the entry's batch (sizes tiering segments without reading).
    #[serde(default)]
    pub bytes: u32,
    /// When this replica applied the entry (its wall clock, ms): segment age
    /// and local retention count from arrival, not from producer clocks.
    /// The only field replicas may disagree on; nothing replicated depends
    /// on it.
    #[serde(default)]
    pub appended_ms: i64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ShardState {
    pub first_offset: u64,
    pub next_offset: u64,
    /// Last applied position per producer id.
    pub producers: HashMap<u64, u64>,
    pub index: Vec<IndexEntry>,
    /// The manifest: objects in the object store holding `[0, tiered_to)`
    /// (or from the first retained object), in offset order.
    #[serde(default)]
    pub tiered: Vec<TieredObject>,
    /// Closed by a split or merge ([`ShardCommand::Seal`]): `next_offset` is final.
    #[serde(default)]
    pub sealed: bool,
}

impl ShardState {
    /// Timestamp of the newest record (0 when the shard is empty).
    pub fn newest_timestamp_ms(&self) -> i64 {
        self.index.last().map_or(0, |e| e.max_timestamp_ms)
    }

    /// Number of leading records of `cmd` the shard already has.
    pub fn duplicate_prefix(&self, cmd: &AppendCmd) -> usize {
        let Some(&last) = self.producers.get(&cmd.producer_id) else {
            return 0;
        };
        let n = cmd.records as usize;
        // seq is strictly increasing in i: binary search the boundary.
        let (mut lo, mut hi) = (0usize, n);
        while lo < hi {
            let mid = (lo + hi) / 2;
            if cmd.seq(mid) <= last {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        lo
    }

    /// Where the producer's records in this shard end: the position after
    /// its last one (0 if it has none).
    pub fn producer_next_seq(&self, producer_id: u64) -> u64 {
        self.producers.get(&producer_id).map_or(0, |&last| last + 1)
    }

    /// `now_ms` (the replica's clock) stamps the entry for local retention.
    fn append(&mut self, log_id: &LogId, cmd: &AppendCmd, now_ms: i64) -> ShardResponse {
        let skip = self.duplicate_prefix(cmd);
        let records = cmd.records as usize;
        if self.sealed && skip < records {
            return ShardResponse::Closed {
                producer_next_seq: self.producer_next_seq(cmd.producer_id),
            };
        }
        let appended = records - skip;
        let base_offset = self.next_offset;
        if appended > 0 {
            let prev_ts = self.index.last().map_or(i64::MIN, |e| e.max_timestamp_ms);
            self.index.push(IndexEntry {
                base_offset,
                log_index: log_id.index,
                skip: skip as u32,
                count: appended as u32,
                max_timestamp_ms: prev_ts.max(cmd.max_timestamp_ms),
                bytes: cmd.batch.len() as u32,
                appended_ms: now_ms,
            });
            self.next_offset += appended as u64;
            self.producers.insert(cmd.producer_id, cmd.last_seq());
        }
        self.check_invariants();
        ShardResponse::Appended {
            base_offset,
            appended: appended as u64,
            duplicates: skip as u64,
            next_offset: self.next_offset,
        }
    }

    /// Offsets below this are in the object store.
    pub fn tiered_to(&self) -> u64 {
        self.tiered
            .last()
            .map_or(self.first_offset, |o| o.next_offset)
    }

    /// The tiered object holding `offset`.
    pub fn tiered_object(&self, offset: u64) -> Option<&TieredObject> {
        let i = self.tiered.partition_point(|o| o.next_offset <= offset);
        self.tiered.get(i).filter(|o| o.first_offset <= offset)
    }

    /// A tiered object must continue the manifest exactly and end on an
    /// entry boundary at or below `next_offset`; a retried upload of the same
    /// range is reported, not applied twice.
    fn tier(&mut self, o: &TieredObject) -> ShardResponse {
        let to = self.tiered_to();
        if o.next_offset <= to {
            return ShardResponse::Refused(format!("offsets below {to} are already tiered"));
        }
        let on_boundary = self
            .index
            .binary_search_by_key(&o.next_offset, |e| e.base_offset + u64::from(e.count))
            .is_ok();
        if o.first_offset != to || o.next_offset > self.next_offset || !on_boundary {
            return ShardResponse::Refused(format!(
                "object [{}, {}) does not continue the manifest at {to} on an entry boundary",
                o.first_offset, o.next_offset
            ));
        }
        self.tiered.push(o.clone());
        ShardResponse::Tiered {
            tiered_to: o.next_offset,
        }
    }

    /// `stream restore`: an empty shard adopts archived objects (contiguous,
    /// as the manifest checks) as its history; appends continue after them.
    fn restore(&mut self, objects: &[TieredObject]) -> ShardResponse {
        if self.next_offset != 0 || !self.tiered.is_empty() {
            return ShardResponse::Refused("the shard is not empty".into());
        }
        let contiguous = objects
            .windows(2)
            .all(|w| w[0].next_offset == w[1].first_offset);
        let (Some(first), Some(last)) = (objects.first(), objects.last()) else {
            return ShardResponse::Refused("no objects to restore".into());
        };
        if !contiguous {
            return ShardResponse::Refused("the objects are not contiguous".into());
        }
        self.first_offset = first.first_offset;
        self.next_offset = last.next_offset;
        self.tiered = objects.to_vec();
        ShardResponse::Tiered {
            tiered_to: last.next_offset,
        }
    }

    /// Total retention: drops the tiered objects (and index entries) below
    /// `first`, which must be an object boundary. Idempotent.
    fn expire(&mut self, first: u64) -> ShardResponse {
        if first <= self.first_offset {
            return ShardResponse::Expired {
                first_offset: self.first_offset,
            };
        }
        if !self.tiered.iter().any(|o| o.next_offset == first) {
            return ShardResponse::Refused(format!(
                "offset {first} is not the end of a tiered object"
            ));
        }
        self.tiered.retain(|o| o.next_offset > first);
        let keep = self
            .index
            .partition_point(|e| e.base_offset + u64::from(e.count) <= first);
        self.index.drain(..keep);
        self.first_offset = first;
        self.check_invariants();
        ShardResponse::Expired {
            first_offset: first,
        }
    }

    /// Index of the entry holding `offset`, if it is in the shard.
    pub fn locate(&self, offset: u64) -> Option<usize> {
        if offset < self.first_offset || offset >= self.next_offset {
            return None;
        }
        let i = self
            .index
            .partition_point(|e| e.base_offset + u64::from(e.count) <= offset);
        // After a restore the index starts where the archive ends.
        self.index
            .get(i)
            .filter(|e| e.base_offset <= offset)
            .map(|_| i)
    }

    /// First entry whose running max timestamp reaches `ts`.
    pub fn locate_time(&self, ts: i64) -> Option<usize> {
        let i = self.index.partition_point(|e| e.max_timestamp_ms < ts);
        (i < self.index.len()).then_some(i)
    }

    pub fn check_invariants(&self) {
        if cfg!(debug_assertions) {
            if let Some(last) = self.index.last() {
                assert_eq!(last.base_offset + u64::from(last.count), self.next_offset);
            }
            for w in self.index.windows(2) {
                assert_eq!(w[0].base_offset + u64::from(w[0].count), w[1].base_offset);
                assert!(w[0].log_index < w[1].log_index);
            }
        }
    }
}

impl GroupState for ShardState {
    type Config = ShardTypes;

    fn apply(&mut self, log_id: &LogId, cmd: &ShardCommand, now_ms: i64) -> ShardResponse {
        match cmd {
            ShardCommand::Append(a) => self.append(log_id, a, now_ms),
            ShardCommand::Tier(t) => self.tier(t),
            ShardCommand::Expire { first_offset } => self.expire(*first_offset),
            ShardCommand::Restore(objects) => self.restore(objects),
            ShardCommand::Seal => {
                self.sealed = true;
                ShardResponse::Sealed {
                    end_offset: self.next_offset,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::raft::command::GroupCommand;
    use bytes::Bytes;
    use openraft::{CommittedLeaderId, LogId};

    fn lid(i: u64) -> LogId<u64> {
        LogId::new(CommittedLeaderId::new(1, 1), i)
    }

    fn cmd(producer: u64, first: u64, deltas: Option<Vec<u32>>, n: u32) -> ShardCommand {
        ShardCommand::Append(AppendCmd {
            producer_id: producer,
            first_seq: first,
            seq_deltas: deltas,
            max_timestamp_ms: 10,
            records: n,
            batch: Bytes::from_static(b"x"),
        })
    }

    fn appended(r: ShardResponse) -> (u64, u64) {
        match r {
            ShardResponse::Appended {
                appended,
                duplicates,
                ..
            } => (appended, duplicates),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn retries_are_dropped_and_overlaps_skip_a_prefix() {
        let mut s = ShardState::default();
        assert_eq!(appended(s.apply(&lid(1), &cmd(7, 0, None, 10), 0)), (10, 0));
        // Exact retry.
        assert_eq!(appended(s.apply(&lid(2), &cmd(7, 0, None, 10), 0)), (0, 10));
        // Overlap: seqs 5..15, 5..9 are duplicates.
        assert_eq!(appended(s.apply(&lid(3), &cmd(7, 5, None, 10), 0)), (5, 5));
        assert_eq!(s.next_offset, 15);
        assert_eq!(s.index[1].skip, 5);
        // Sparse seqs (records of other shards interleaved).
        assert_eq!(
            appended(s.apply(&lid(4), &cmd(7, 12, Some(vec![0, 3, 8]), 3), 0)),
            (2, 1)
        );
        // Another producer is independent.
        assert_eq!(appended(s.apply(&lid(5), &cmd(8, 0, None, 4), 0)), (4, 0));
        assert_eq!(s.next_offset, 21);
        assert_eq!(s.locate(14), Some(1));
        assert_eq!(s.locate(15), Some(2));
        assert_eq!(s.locate(21), None);
        s.check_invariants();
    }

    #[test]
    fn a_sealed_shard_takes_only_duplicates_and_names_the_producers_end() {
        let mut s = ShardState::default();
        assert_eq!(appended(s.apply(&lid(1), &cmd(7, 0, None, 10), 0)), (10, 0));
        assert_eq!(
            s.apply(&lid(2), &ShardCommand::Seal, 0),
            ShardResponse::Sealed { end_offset: 10 }
        );
        // A retry of what the shard has is still acknowledged.
        assert_eq!(appended(s.apply(&lid(3), &cmd(7, 4, None, 6), 0)), (0, 6));
        // Anything new is refused whole, with where the producer's records end.
        for c in [cmd(7, 5, None, 10), cmd(7, 10, None, 1), cmd(9, 0, None, 1)] {
            let want = if matches!(&c, ShardCommand::Append(a) if a.producer_id == 9) {
                0
            } else {
                10
            };
            assert_eq!(
                s.apply(&lid(4), &c, 0),
                ShardResponse::Closed {
                    producer_next_seq: want
                }
            );
        }
        assert_eq!(s.next_offset, 10);
        // Sealing again is harmless and reports the same end.
        assert_eq!(
            s.apply(&lid(5), &ShardCommand::Seal, 0),
            ShardResponse::Sealed { end_offset: 10 }
        );
        let mut enc = Vec::new();
        ShardCommand::Seal.encode(&mut enc);
        assert_eq!(
            ShardCommand::decode(enc.into()).unwrap(),
            ShardCommand::Seal
        );
    }
}

#[cfg(test)]
#[path = "shard_tests.rs"]
mod model_tests;
