//! Tier planning: the decisions of `tiering` as pure functions of the shard
//! state, the limits and `now_ms`.
//!
//! - [`next_upload`]: the next range of index entries to upload as one
//!   object, once it is sealed (reached `segment_bytes_max`, or its first
//!   entry is `segment_age_max_ms` old).
//! - [`purge_point`]: the last log entry this replica may delete (tiered and
//!   past local retention, by time or by bytes).
//! - [`expiry`]: the tiered objects past total retention and the shard's new
//!   first offset.
//!
//! `appended_ms` of an index entry is this replica's apply time, so ages
//! count from arrival on this replica, not from producer clocks. Total
//! retention likewise counts from when the core appended a record: the
//! uploading leader records its entries' newest `appended_ms` on the object
//! ([`max_appended_ms`]), and that travels in the replicated manifest, so
//! the expiry the leader plans (and commits as `ShardCommand::Expire`) does
//! not depend on a device's clock. Producer timestamps stay data only.

use crate::raft::shard::{IndexEntry, ShardState};
use crate::tier::manifest::TieredObject;
use std::ops::Range;
use strata_protocol::Retention;

/// When a range of entries is sealed and ready to upload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UploadLimits {
    /// A range is sealed once its batches add up to this many bytes.
    pub segment_bytes_max: u64,
    /// A range is sealed once its first entry is this old.
    pub segment_age_max_ms: u64,
}

/// The entries (a range of `state.index`) of the next object to upload:
/// those after `tiered_to`, up to and including the one that reaches
/// `segment_bytes_max`. `None` while that range is empty or not sealed.
pub fn next_upload(state: &ShardState, now_ms: i64, limits: UploadLimits) -> Option<Range<usize>> {
    let to = state.tiered_to();
    let start = state.index.partition_point(|e| e.base_offset < to);
    let mut bytes = 0u64;
    let mut end = start;
    for e in &state.index[start..] {
        bytes += u64::from(e.bytes);
        end += 1;
        if bytes >= limits.segment_bytes_max {
            break;
        }
    }
    let first_ms = state.index[start..end]
        .first()
        .map_or(i64::MAX, |e| e.appended_ms);
    let old = now_ms.saturating_sub(first_ms) >= limits.segment_age_max_ms as i64;
    let sealed = bytes >= limits.segment_bytes_max || old;
    (sealed && end > start).then_some(start..end)
}

/// The log index up to which (inclusive) this replica may delete its log:
/// the last entry of the leading run that is tiered and either older than
/// the local retention time (`retention.local_ms`, else `default_local_ms`)
/// or beyond the local byte budget counted from the newest entry. `None`
/// when there is nothing to delete, or `purged_index` already covers it.
pub fn purge_point(
    state: &ShardState,
    retention: &Retention,
    default_local_ms: u64,
    purged_index: Option<u64>,
    now_ms: i64,
) -> Option<u64> {
    let local_ms = retention.local_ms.unwrap_or(default_local_ms);
    let cutoff = now_ms.saturating_sub(local_ms as i64);
    let to = state.tiered_to();
    // Entries before `keep_from` lie beyond the local byte budget.
    let keep_from = retention.local_bytes.map(|max| {
        let mut bytes = 0u64;
        let mut i = state.index.len();
        while i > 0 && bytes + u64::from(state.index[i - 1].bytes) <= max {
            bytes += u64::from(state.index[i - 1].bytes);
            i -= 1;
        }
        i
    });
    let mut n = state
        .index
        .iter()
        .enumerate()
        .take_while(|(i, e)| {
            e.base_offset + u64::from(e.count) <= to
                && (e.appended_ms <= cutoff || keep_from.is_some_and(|k| *i < k))
        })
        .count();
    // A log entry goes only with all its runs: stop before an entry whose
    // later runs are still needed.
    while n > 0
        && state
            .index
            .get(n)
            .is_some_and(|e| e.log_index == state.index[n - 1].log_index)
    {
        n -= 1;
    }
    let upto = state.index[..n].last()?.log_index;
    purged_index.is_none_or(|p| p < upto).then_some(upto)
}

/// What total retention removes: the oldest tiered objects, deleted from the
/// store before the shard's first offset moves to `first_offset`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expiry {
    /// The shard's first offset once `objects` are gone (the end of the
    /// last of them).
    pub first_offset: u64,
    /// The leading tiered objects to delete, in offset order.
    pub objects: Vec<TieredObject>,
}

/// What the object for `entries` records as `max_appended_ms`: the newest
/// time this replica appended one of them. `None` when no entry carries one
/// (entries from before `appended_ms` existed read as 0).
pub fn max_appended_ms(entries: &[IndexEntry]) -> Option<i64> {
    entries
        .iter()
        .map(|e| e.appended_ms)
        .filter(|&ms| ms > 0)
        .max()
}

/// When total retention counts an object's age from: when the core
/// appended its newest record, or, for objects tiered before that was
/// recorded (or restored from such a manifest), its newest producer
/// timestamp.
pub fn retained_from_ms(o: &TieredObject) -> i64 {
    o.max_appended_ms.unwrap_or(o.max_timestamp_ms)
}

/// The leading tiered objects whose records were all appended longer than
/// `retention.total_ms` ago ([`retained_from_ms`]: the core's clock, not the
/// producers'), or that lie beyond `retention.total_bytes` (oldest first,
/// counted over the tiered objects). `None` when nothing expires or the
/// stream has no total retention.
pub fn expiry(state: &ShardState, retention: &Retention, now_ms: i64) -> Option<Expiry> {
    if retention.total_ms.is_none() && retention.total_bytes.is_none() {
        return None;
    }
    let cutoff = retention
        .total_ms
        .map(|ms| now_ms.saturating_sub(ms as i64));
    let total: u64 = state.tiered.iter().map(|o| o.bytes).sum();
    let mut excess = retention.total_bytes.map_or(0, |b| total.saturating_sub(b));
    let mut objects = Vec::new();
    for o in &state.tiered {
        let old = cutoff.is_some_and(|c| retained_from_ms(o) < c);
        if !old && excess == 0 {
            break;
        }
        excess = excess.saturating_sub(o.bytes);
        objects.push(o.clone());
    }
    let first_offset = objects.last()?.next_offset;
    Some(Expiry {
        first_offset,
        objects,
    })
}

#[cfg(test)]
#[path = "tier_plan_tests.rs"]
mod tests;
