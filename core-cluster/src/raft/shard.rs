//! A shard's deterministic state: offsets, the producer dedup table, and the
//! index from offsets to Raft log entries (the log is the data).
//!
//! Exactly-once: every forwarded record carries its agent's producer id and
//! its buffer position (`seq`). Positions of one producer reach a shard in
//! increasing order, so when an entry overlaps what the shard already has, the
//! duplicates are a *prefix* of the entry. Applying records that prefix as
//! `skip` in the index; readers skip it. No bytes are rewritten, and every
//! replica decides the same, because the decision is made at apply time.
//!
//! A producer's entry lives until the leader finds it idle for
//! `producer_idle_expiry_ms` and commits [`ShardCommand::ForgetProducers`];
//! after that the shard treats the id as new (docs/operations.md,
//! "Producer id expiry").

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
    /// Which run of the entry (an `Appends` entry carries several; 0 for
    /// an `Append`). Entries are ordered by `(log_index, part)`.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub part: u32,
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
    /// The only field replicas may disagree on; no apply decision depends on
    /// it (the uploading leader copies its own into the `Tier` command as the
    /// object's `max_appended_ms`, for total retention).
    #[serde(default)]
    pub appended_ms: i64,
}

fn is_zero(x: &u32) -> bool {
    *x == 0
}

impl IndexEntry {
    /// The entry's place in the Raft log: index entries are strictly
    /// increasing in it.
    pub fn place(&self) -> (u64, u32) {
        (self.log_index, self.part)
    }
}

/// Read back (a snapshot file, an InstallSnapshot from a peer), a state is
/// checked first ([`StateInvariant`]): the lookups below do offset
/// arithmetic that only holds for a state that `apply` could have built.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(try_from = "UncheckedShardState")]
pub struct ShardState {
    pub first_offset: u64,
    pub next_offset: u64,
    /// Last applied position per producer id.
    pub producers: HashMap<u64, u64>,
    /// When this replica last applied an append of each producer id in
    /// `producers` (its wall clock, ms). Like `IndexEntry::appended_ms`,
    /// replicas may disagree on it and no apply decision depends on it: the
    /// leader reads its own to decide which idle producers to forget
    /// ([`Self::idle_producers`]) and commits the decision as
    /// [`ShardCommand::ForgetProducers`]. Missing for producers applied
    /// before this field existed.
    #[serde(default, skip_serializing_if = "HashMap::is_empty")]
    pub producer_seen_ms: HashMap<u64, i64>,
    pub index: Vec<IndexEntry>,
    /// The manifest: objects in the object store holding `[0, tiered_to)`
    /// (or from the first retained object), in offset order.
    #[serde(default)]
    pub tiered: Vec<TieredObject>,
    /// Closed by a split or merge ([`ShardCommand::Seal`]): `next_offset` is final.
    #[serde(default)]
    pub sealed: bool,
}

/// [`ShardState`] as it is stored, before [`ShardState::check_stored`].
#[derive(Deserialize)]
struct UncheckedShardState {
    first_offset: u64,
    next_offset: u64,
    producers: HashMap<u64, u64>,
    #[serde(default)]
    producer_seen_ms: HashMap<u64, i64>,
    index: Vec<IndexEntry>,
    #[serde(default)]
    tiered: Vec<TieredObject>,
    #[serde(default)]
    sealed: bool,
}

/// Why a stored shard state cannot be one `apply` built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StateInvariant {
    #[error("shard state: first_offset {first} is above next_offset {next}")]
    Offsets { first: u64, next: u64 },
    #[error("shard state: index entry {i} (offsets {base} + {count}) overflows u64")]
    EntryOverflow { i: usize, base: u64, count: u32 },
    #[error("shard state: index entry {i} starts at offset {base}, expected {expected}")]
    EntryGap { i: usize, base: u64, expected: u64 },
    #[error(
        "shard state: index entry {i} is at log index {log_index} part {part}, not after the previous one"
    )]
    EntryOrder { i: usize, log_index: u64, part: u32 },
    #[error("shard state: the index ends at offset {end} but next_offset is {next}")]
    IndexEnd { end: u64, next: u64 },
    #[error("shard state: producer {producer}'s last seq is {seq}: no seq can follow it")]
    ProducerSeq { producer: u64, seq: u64 },
    #[error("shard state: tiered object {i} ({first}..{next}) is empty or does not continue the previous one")]
    Tiered { i: usize, first: u64, next: u64 },
    #[error("shard state: offsets are tiered to {tiered_to}, beyond next_offset {next}")]
    TieredEnd { tiered_to: u64, next: u64 },
}

impl TryFrom<UncheckedShardState> for ShardState {
    type Error = StateInvariant;

    fn try_from(u: UncheckedShardState) -> Result<Self, StateInvariant> {
        let s = ShardState {
            first_offset: u.first_offset,
            next_offset: u.next_offset,
            producers: u.producers,
            producer_seen_ms: u.producer_seen_ms,
            index: u.index,
            tiered: u.tiered,
            sealed: u.sealed,
        };
        s.check_stored()?;
        Ok(s)
    }
}

impl ShardState {
    /// The invariants `apply` keeps (those of [`Self::check_invariants`],
    /// and that no offset or position arithmetic overflows), for a state
    /// read back from bytes.
    pub fn check_stored(&self) -> Result<(), StateInvariant> {
        use StateInvariant as E;
        let (first, next) = (self.first_offset, self.next_offset);
        if first > next {
            return Err(E::Offsets { first, next });
        }
        let mut expected: Option<u64> = None;
        let mut prev_place: Option<(u64, u32)> = None;
        for (i, e) in self.index.iter().enumerate() {
            let (base, count) = (e.base_offset, e.count);
            let end =
                base.checked_add(u64::from(count))
                    .ok_or(E::EntryOverflow { i, base, count })?;
            if let Some(expected) = expected.filter(|&x| x != base) {
                return Err(E::EntryGap { i, base, expected });
            }
            if prev_place.is_some_and(|p| p >= e.place()) {
                let (log_index, part) = e.place();
                return Err(E::EntryOrder { i, log_index, part });
            }
            expected = Some(end);
            prev_place = Some(e.place());
        }
        if let Some(end) = expected.filter(|&end| end != next) {
            return Err(E::IndexEnd { end, next });
        }
        if let Some((&producer, &seq)) = self.producers.iter().find(|(_, &seq)| seq == u64::MAX) {
            return Err(E::ProducerSeq { producer, seq });
        }
        let mut tiered_to: Option<u64> = None;
        for (i, o) in self.tiered.iter().enumerate() {
            let (first, next) = (o.first_offset, o.next_offset);
            if first >= next || tiered_to.is_some_and(|t| t != first) {
                return Err(E::Tiered { i, first, next });
            }
            tiered_to = Some(next);
        }
        if let Some(tiered_to) = tiered_to.filter(|&t| t > next) {
            return Err(E::TieredEnd { tiered_to, next });
        }
        Ok(())
    }

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

    /// Applies the runs of one entry in order. The shard is sealed or not
    /// for the whole entry, so either every run with new records is
    /// appended or the entry is refused as `Closed` (runs that are pure
    /// duplicates never refuse).
    fn append_runs(&mut self, log_id: &LogId, runs: &[AppendCmd], now_ms: i64) -> ShardResponse {
        let (mut base, mut appended, mut duplicates) = (None, 0, 0);
        for (part, run) in runs.iter().enumerate() {
            match self.append(log_id, part as u32, run, now_ms) {
                ShardResponse::Appended {
                    base_offset,
                    appended: a,
                    duplicates: d,
                    ..
                } => {
                    if a > 0 {
                        base.get_or_insert(base_offset);
                    }
                    appended += a;
                    duplicates += d;
                }
                closed => return closed,
            }
        }
        ShardResponse::Appended {
            base_offset: base.unwrap_or(self.next_offset),
            appended,
            duplicates,
            next_offset: self.next_offset,
        }
    }

    /// `now_ms` (the replica's clock) stamps the entry for local retention.
    fn append(&mut self, log_id: &LogId, part: u32, cmd: &AppendCmd, now_ms: i64) -> ShardResponse {
        let skip = self.duplicate_prefix(cmd);
        let records = cmd.records as usize;
        if self.sealed && skip < records {
            return ShardResponse::Closed {
                producer_next_seq: self.producer_next_seq(cmd.producer_id),
            };
        }
        let appended = records - skip;
        let base_offset = self.next_offset;
        if self.producers.contains_key(&cmd.producer_id) || appended > 0 {
            // A retry of what the shard holds is a sign of life too.
            self.producer_seen_ms.insert(cmd.producer_id, now_ms);
        }
        if appended > 0 {
            let prev_ts = self.index.last().map_or(i64::MIN, |e| e.max_timestamp_ms);
            self.index.push(IndexEntry {
                base_offset,
                log_index: log_id.index,
                part,
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

    /// Producer-id expiry (leader only; pure): the producers of the dedup
    /// table last seen (by this replica) before `now_ms - idle_ms`,
    /// each with its last position, sorted by id, at most `max`. A producer
    /// with no recorded time (applied before times were kept) counts as seen
    /// at `unknown_since_ms` (the caller's start). `idle_ms` 0: never.
    pub fn idle_producers(
        &self,
        now_ms: i64,
        idle_ms: u64,
        unknown_since_ms: i64,
        max: usize,
    ) -> Vec<(u64, u64)> {
        if idle_ms == 0 {
            return Vec::new();
        }
        let cutoff = now_ms.saturating_sub(i64::try_from(idle_ms).unwrap_or(i64::MAX));
        let mut idle: Vec<(u64, u64)> = self
            .producers
            .iter()
            .filter(|(id, _)| {
                let seen = self.producer_seen_ms.get(id).copied();
                seen.unwrap_or(unknown_since_ms) < cutoff
            })
            .map(|(&id, &last)| (id, last))
            .collect();
        idle.sort_unstable();
        idle.truncate(max);
        idle
    }

    /// Forgets each named producer whose last position is still the one
    /// named: a producer that appended after the leader decided keeps its
    /// entry. Every replica decides alike (positions are replicated state).
    fn forget_producers(&mut self, producers: &[(u64, u64)]) -> ShardResponse {
        let mut forgotten = 0;
        for (id, last) in producers {
            if self.producers.get(id) == Some(last) {
                self.producers.remove(id);
                self.producer_seen_ms.remove(id);
                forgotten += 1;
            }
        }
        ShardResponse::Forgot {
            producers: forgotten,
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

    /// Drops the index entries of offsets this replica purged from its log
    /// (log index at most `purged_log_index`) once they are tiered: reads of
    /// them go to the object store ([`crate::shard::read_plan`]) and time
    /// seeks to the tiered objects ([`Self::locate_time_tiered`]), so the
    /// index grows with the local log, not with the stream's history. The
    /// last entry stays (the running max timestamp continues from it).
    /// Returns how many entries were dropped.
    pub fn compact_index(&mut self, purged_log_index: u64) -> usize {
        let to = self.tiered_to();
        let n = self
            .index
            .iter()
            .take(self.index.len().saturating_sub(1))
            .take_while(|e| {
                e.log_index <= purged_log_index && e.base_offset + u64::from(e.count) <= to
            })
            .count();
        self.index.drain(..n);
        n
    }

    /// A time seek below the index (offsets it no longer holds, all
    /// tiered): the first offset of the first tiered object whose running
    /// max timestamp reaches `ts`, if one does.
    pub fn locate_time_tiered(&self, ts: i64) -> Option<u64> {
        let indexed_from = self
            .index
            .first()
            .map_or(self.next_offset, |e| e.base_offset);
        let mut running = i64::MIN;
        self.tiered
            .iter()
            .take_while(|o| o.first_offset < indexed_from)
            .find(|o| {
                running = running.max(o.max_timestamp_ms);
                running >= ts
            })
            .map(|o| o.first_offset.max(self.first_offset))
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
                assert!(w[0].place() < w[1].place());
            }
        }
    }
}

impl GroupState for ShardState {
    type Config = ShardTypes;

    fn apply(&mut self, log_id: &LogId, cmd: &ShardCommand, now_ms: i64) -> ShardResponse {
        match cmd {
            ShardCommand::Append(a) => self.append(log_id, 0, a, now_ms),
            ShardCommand::Appends(runs) => self.append_runs(log_id, runs, now_ms),
            ShardCommand::Tier(t) => self.tier(t),
            ShardCommand::Expire { first_offset } => self.expire(*first_offset),
            ShardCommand::Restore(objects) => self.restore(objects),
            ShardCommand::ForgetProducers(producers) => self.forget_producers(producers),
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

    /// (appended, duplicates) of an `Appended` reply.
    pub(super) fn appended(r: ShardResponse) -> (u64, u64) {
        match r {
            ShardResponse::Appended {
                appended,
                duplicates,
                ..
            } => (appended, duplicates),
            other => panic!("unexpected {other:?}"),
        }
    }

    /// Found with the snapshot fuzz target (issue 13; the first two inputs
    /// crashed it): a snapshot document apply could not have written
    /// loaded, and `producer_next_seq` / `locate` then overflowed. Such a
    /// state is now refused when it is read, naming what is wrong; a state
    /// `apply` built reads back unchanged.
    #[test]
    fn a_stored_state_apply_could_not_build_is_refused() {
        let entry = |base: u64, log_index: u64, count: u32| {
            format!(
                r#"{{"base_offset":{base},"log_index":{log_index},"skip":0,"count":{count},"max_timestamp_ms":0}}"#
            )
        };
        let state = |first: u64, next: u64, producers: &str, index: &[String]| {
            format!(
                r#"{{"first_offset":{first},"next_offset":{next},"producers":{{{producers}}},"index":[{}]}}"#,
                index.join(",")
            )
        };
        let max = u64::MAX;
        let bad = [
            (
                state(0, 5, r#""1":18446744073709551615"#, &[]),
                "no seq can follow",
            ),
            (state(0, max, "", &[entry(max, 2, 6)]), "overflows u64"),
            (state(6, 5, "", &[]), "is above next_offset"),
            (
                state(0, 9, "", &[entry(0, 2, 3), entry(4, 3, 5)]),
                "expected 3",
            ),
            (
                state(0, 8, "", &[entry(0, 2, 3), entry(3, 2, 5)]),
                "not after",
            ),
            (state(0, 9, "", &[entry(0, 2, 3)]), "next_offset is 9"),
        ];
        for (json, why) in bad {
            let err = serde_json::from_str::<ShardState>(&json).unwrap_err();
            assert!(err.to_string().contains(why), "{json}: {err}");
        }
        let mut s = ShardState::default();
        s.apply(&lid(1), &cmd(7, 0, None, 10), 0);
        s.apply(&lid(2), &cmd(8, u64::MAX - 3, None, 3), 0);
        let json = serde_json::to_string(&s).unwrap();
        let back: ShardState = serde_json::from_str(&json).unwrap();
        assert_eq!(serde_json::to_string(&back).unwrap().len(), json.len());
        assert_eq!(back.producer_next_seq(8), u64::MAX);
        assert_eq!(back.locate(9), Some(0));
    }

    fn runs(cmds: Vec<ShardCommand>) -> ShardCommand {
        ShardCommand::Appends(cmds.into_iter().flat_map(ShardCommand::into_runs).collect())
    }

    /// Group commit: the runs of one `Appends` entry apply in order, each
    /// with its own dedup, and the index names each by `(log_index, part)`.
    #[test]
    fn the_runs_of_one_entry_apply_in_order_and_are_indexed_by_part() {
        let mut s = ShardState::default();
        assert_eq!(appended(s.apply(&lid(1), &cmd(7, 0, None, 5), 0)), (5, 0));
        let entry = runs(vec![
            cmd(7, 3, None, 4), // 3..4 duplicates, 5..6 new
            cmd(7, 7, Some(vec![0, 2]), 2),
            cmd(8, 0, None, 3),
        ]);
        let mut enc = Vec::new();
        entry.encode(&mut enc);
        let entry = ShardCommand::decode(enc.into()).unwrap();
        assert_eq!(
            s.apply(&lid(2), &entry, 0),
            ShardResponse::Appended {
                base_offset: 5,
                appended: 7,
                duplicates: 2,
                next_offset: 12
            }
        );
        let places: Vec<_> = s.index.iter().map(|e| e.place()).collect();
        assert_eq!(places, [(1, 0), (2, 0), (2, 1), (2, 2)]);
        assert_eq!((s.index[1].skip, s.index[1].count), (2, 2));
        assert_eq!(s.locate(8), Some(2));
        assert_eq!(s.producer_next_seq(7), 10);
        s.check_invariants();
        // The state reads back (parts kept), and an old-style state without
        // parts still does.
        let json = serde_json::to_string(&s).unwrap();
        assert!(json.contains("\"part\":1"));
        let back: ShardState = serde_json::from_str(&json).unwrap();
        assert_eq!(back.index, s.index);
        // A retry of the whole entry is all duplicates.
        assert_eq!(appended(s.apply(&lid(3), &entry, 0)), (0, 9));
        // Sealed: the runs with new records refuse the entry whole.
        s.apply(&lid(4), &ShardCommand::Seal, 0);
        let late = runs(vec![cmd(7, 0, None, 2), cmd(7, 20, None, 1)]);
        assert_eq!(
            s.apply(&lid(5), &late, 0),
            ShardResponse::Closed {
                producer_next_seq: 10
            }
        );
        assert_eq!(s.next_offset, 12);
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
