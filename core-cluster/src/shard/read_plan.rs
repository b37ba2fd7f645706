//! Fetch planning: whether a fetch at an offset is out of range, waits for
//! records, or reads, and from where, as a pure function of what the
//! replica holds and the request.
//!
//! A fetch is planned in two steps by the driver (`api::server`): the range
//! `[first, next]` is read once, before any wait, and is the range the
//! reply reports; where the offset lives ([`Residence`]) is read right
//! before reading, so after a wait it is read again.

use crate::raft::shard::ShardState;
use std::time::Duration;

/// Records per fetch when the request asks for 0.
pub const MAX_RECORDS_DEFAULT: u32 = 10_000;
/// Bytes per fetch when the request asks for 0.
pub const MAX_BYTES_DEFAULT: usize = 8 << 20;
/// Bytes per fetch at most, whatever the request asks.
pub const MAX_BYTES_CAP: usize = 32 << 20;

/// The shard's offsets as the fetch first saw them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShardRange {
    /// The first offset still held (tier or log).
    pub first: u64,
    /// One past the last committed offset.
    pub next: u64,
    /// Closed by a split or merge: `next` is final.
    pub sealed: bool,
}

impl ShardRange {
    pub fn of(s: &ShardState) -> Self {
        Self {
            first: s.first_offset,
            next: s.next_offset,
            sealed: s.sealed,
        }
    }
}

/// Where the requested offset lives on this replica.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Residence {
    /// Offsets below this are in the object store.
    pub tiered_to: u64,
    /// Log index of the entry holding the offset, if the index has it.
    pub log_index: Option<u64>,
    /// The last log index this replica deleted, if any.
    pub purged_index: Option<u64>,
}

impl Residence {
    /// `purged_index` comes from the log store, the rest from the state.
    pub fn of(s: &ShardState, offset: u64, purged_index: Option<u64>) -> Self {
        Self {
            tiered_to: s.tiered_to(),
            log_index: s.locate(offset).map(|i| s.index[i].log_index),
            purged_index,
        }
    }
}

/// What a fetch asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FetchRequest {
    pub offset: u64,
    /// 0: [`MAX_RECORDS_DEFAULT`].
    pub max_records: u32,
    /// 0: [`MAX_BYTES_DEFAULT`]; capped at [`MAX_BYTES_CAP`].
    pub max_bytes: u32,
    /// How long to wait for records when the offset is the end (0: do not).
    pub wait: Duration,
}

/// The effective limits of one read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FetchLimits {
    pub max_records: u64,
    pub max_bytes: usize,
}

impl FetchLimits {
    /// The request's limits with 0 defaulted and bytes capped.
    pub fn of(req: &FetchRequest) -> Self {
        let max_records = if req.max_records == 0 {
            MAX_RECORDS_DEFAULT
        } else {
            req.max_records
        };
        let max_bytes = if req.max_bytes == 0 {
            MAX_BYTES_DEFAULT
        } else {
            req.max_bytes as usize
        };
        Self {
            max_records: u64::from(max_records),
            max_bytes: max_bytes.min(MAX_BYTES_CAP),
        }
    }
}

/// The decision for one fetch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FetchPlan {
    /// The offset is outside `[first, next]`.
    OutOfRange { offset: u64, first: u64, next: u64 },
    /// The offset is the end of an open shard: wait up to this long for
    /// records, then plan again with no wait.
    Wait(Duration),
    /// Read from the tiered object holding the offset: it is tiered and its
    /// log entry is deleted here (or the index no longer has it).
    ReadTier(FetchLimits),
    /// Read from the local log.
    ReadLog(FetchLimits),
}

/// Plans a fetch of `req` against `range` (read before any wait) and
/// `residence` (read just now); a wait is capped at `wait_max`.
pub fn plan_fetch(
    range: ShardRange,
    residence: Residence,
    req: &FetchRequest,
    wait_max: Duration,
) -> FetchPlan {
    let ShardRange {
        first,
        next,
        sealed,
    } = range;
    let offset = req.offset;
    if offset < first || offset > next {
        return FetchPlan::OutOfRange {
            offset,
            first,
            next,
        };
    }
    if offset == next && !req.wait.is_zero() && !sealed {
        return FetchPlan::Wait(req.wait.min(wait_max));
    }
    let limits = FetchLimits::of(req);
    // Before any purge, no append counts as deleted (log index 0 is
    // openraft's initial membership entry, never an append).
    let purged = residence.purged_index.unwrap_or(0);
    let in_tier = offset < residence.tiered_to && residence.log_index.is_none_or(|i| i <= purged);
    if in_tier {
        FetchPlan::ReadTier(limits)
    } else {
        FetchPlan::ReadLog(limits)
    }
}

#[cfg(test)]
#[path = "read_plan_tests.rs"]
mod tests;
