use super::*;
use crate::raft::shard::IndexEntry;

const NOW: i64 = 1_000_000;

fn entry(base: u64, log_index: u64, bytes: u32, appended_ms: i64) -> IndexEntry {
    IndexEntry {
        base_offset: base,
        log_index,
        part: 0,
        skip: 0,
        count: 10,
        max_timestamp_ms: appended_ms,
        bytes,
        appended_ms,
    }
}

/// An object whose newest record was appended at `appended_ms`, with
/// producer timestamps equal to it (see [`stamped`] to tell them apart).
fn object(first: u64, next: u64, bytes: u64, appended_ms: i64) -> TieredObject {
    stamped(
        object_before_append_times(first, next, bytes, appended_ms),
        appended_ms,
    )
}

/// An object as tiered before the core recorded append times: only the
/// producers' timestamps (all `max_timestamp_ms`).
fn object_before_append_times(
    first: u64,
    next: u64,
    bytes: u64,
    max_timestamp_ms: i64,
) -> TieredObject {
    TieredObject {
        key: format!("s/0/{first}"),
        first_offset: first,
        next_offset: next,
        records: next - first,
        min_timestamp_ms: max_timestamp_ms,
        max_timestamp_ms,
        bytes,
        payload_bytes: bytes,
        checksums: None,
        max_appended_ms: None,
    }
}

fn stamped(o: TieredObject, appended_ms: i64) -> TieredObject {
    TieredObject {
        max_appended_ms: Some(appended_ms),
        ..o
    }
}

/// `o` with its producer timestamps moved to `[min, max]`.
fn timestamps(o: TieredObject, min: i64, max: i64) -> TieredObject {
    TieredObject {
        min_timestamp_ms: min,
        max_timestamp_ms: max,
        ..o
    }
}

/// A shard of 10-record entries `(bytes, age_ms)` (entry `i` holds offsets
/// from `10 * i`, at log index `i + 1`, applied `age_ms` before `NOW`),
/// tiered up to `tiered_to`.
fn shard(entries: &[(u32, i64)], tiered_to: u64) -> ShardState {
    let index: Vec<_> = entries
        .iter()
        .enumerate()
        .map(|(i, &(bytes, age))| entry(i as u64 * 10, i as u64 + 1, bytes, NOW - age))
        .collect();
    let tiered = (tiered_to > 0)
        .then(|| object(0, tiered_to, 1, 0))
        .into_iter()
        .collect();
    ShardState {
        next_offset: index.len() as u64 * 10,
        index,
        tiered,
        ..ShardState::default()
    }
}

const LIMITS: UploadLimits = UploadLimits {
    segment_bytes_max: 100,
    segment_age_max_ms: 1_000,
};

#[test]
fn upload_empty_index_is_none() {
    assert_eq!(next_upload(&ShardState::default(), NOW, LIMITS), None);
}

#[test]
fn upload_waits_below_the_byte_cap_while_young() {
    let s = shard(&[(40, 10), (59, 5)], 0);
    assert_eq!(next_upload(&s, NOW, LIMITS), None);
}

#[test]
fn upload_seals_exactly_at_the_byte_cap() {
    let s = shard(&[(40, 10), (60, 5), (30, 1)], 0);
    assert_eq!(next_upload(&s, NOW, LIMITS), Some(0..2));
}

#[test]
fn upload_includes_the_entry_crossing_the_cap() {
    let s = shard(&[(40, 10), (90, 5), (30, 1)], 0);
    assert_eq!(next_upload(&s, NOW, LIMITS), Some(0..2));
    // One entry larger than the cap is an object of its own.
    let s = shard(&[(500, 10), (30, 1)], 0);
    assert_eq!(next_upload(&s, NOW, LIMITS), Some(0..1));
}

#[test]
fn upload_seals_exactly_at_the_age() {
    let s = shard(&[(10, 1_000), (10, 3)], 0);
    assert_eq!(next_upload(&s, NOW, LIMITS), Some(0..2));
    let s = shard(&[(10, 999), (10, 3)], 0);
    assert_eq!(next_upload(&s, NOW, LIMITS), None);
}

#[test]
fn upload_starts_after_what_is_tiered() {
    let s = shard(&[(100, 5_000), (100, 5_000), (40, 10)], 10);
    assert_eq!(next_upload(&s, NOW, LIMITS), Some(1..2));
    let s = shard(&[(100, 5_000), (100, 5_000), (40, 10)], 20);
    assert_eq!(next_upload(&s, NOW, LIMITS), None);
    let s = shard(&[(100, 5_000), (100, 5_000)], 20);
    assert_eq!(next_upload(&s, NOW, LIMITS), None);
}

fn retention(local_ms: Option<u64>, local_bytes: Option<u64>) -> Retention {
    Retention {
        local_ms,
        local_bytes,
        ..Retention::default()
    }
}

#[test]
fn purge_nothing_tiered_is_none() {
    let s = shard(&[(10, 9_000), (10, 9_000)], 0);
    assert_eq!(
        purge_point(&s, &retention(None, Some(0)), 100, None, NOW),
        None
    );
}

#[test]
fn purge_stops_at_tiered_to() {
    let s = shard(&[(10, 9_000), (10, 9_000), (10, 9_000)], 20);
    assert_eq!(
        purge_point(&s, &Retention::default(), 100, None, NOW),
        Some(2)
    );
}

/// An `Appends` entry holds several runs: the log entry is deleted only
/// once every run in it is tiered.
#[test]
fn purge_keeps_an_entry_while_any_of_its_runs_is_not_tiered() {
    let mut s = shard(&[(10, 9_000); 4], 30);
    // Runs 1..=3 share log entry 2.
    for (i, e) in s.index.iter_mut().enumerate().skip(1) {
        e.log_index = 2;
        e.part = i as u32 - 1;
    }
    let r = Retention::default();
    assert_eq!(purge_point(&s, &r, 100, None, NOW), Some(1));
    let all = shard(&[(10, 9_000); 4], 40);
    let mut all = all;
    for (i, e) in all.index.iter_mut().enumerate().skip(1) {
        e.log_index = 2;
        e.part = i as u32 - 1;
    }
    assert_eq!(purge_point(&all, &r, 100, None, NOW), Some(2));
}

#[test]
fn purge_by_time_exactly_at_the_cutoff() {
    let s = shard(&[(10, 500), (10, 499), (10, 9_000)], 30);
    // The run stops at the first young entry, even before an older one.
    assert_eq!(
        purge_point(&s, &Retention::default(), 500, None, NOW),
        Some(1)
    );
    // The stream's local_ms overrides the node default.
    let r = retention(Some(499), None);
    assert_eq!(purge_point(&s, &r, 500, None, NOW), Some(3));
    let r = retention(Some(501), None);
    assert_eq!(purge_point(&s, &r, 0, None, NOW), None);
}

#[test]
fn purge_by_byte_budget_counted_from_the_newest() {
    // Young entries; a budget of 25 bytes keeps the newest two (10 + 10).
    let s = shard(&[(10, 1), (10, 1), (10, 1), (10, 1)], 40);
    let r = retention(None, Some(25));
    assert_eq!(purge_point(&s, &r, 60_000, None, NOW), Some(2));
    // Exactly at the budget the entry is kept.
    let r = retention(None, Some(20));
    assert_eq!(purge_point(&s, &r, 60_000, None, NOW), Some(2));
    let r = retention(None, Some(40));
    assert_eq!(purge_point(&s, &r, 60_000, None, NOW), None);
    // Beyond the budget but not tiered: kept.
    let s = shard(&[(10, 1), (10, 1), (10, 1), (10, 1)], 10);
    let r = retention(None, Some(0));
    assert_eq!(purge_point(&s, &r, 60_000, None, NOW), Some(1));
}

#[test]
fn purge_already_done_is_none() {
    let s = shard(&[(10, 9_000), (10, 9_000)], 20);
    let r = Retention::default();
    assert_eq!(purge_point(&s, &r, 100, Some(2), NOW), None);
    assert_eq!(purge_point(&s, &r, 100, Some(5), NOW), None);
    assert_eq!(purge_point(&s, &r, 100, Some(1), NOW), Some(2));
}

fn tiered(objects: Vec<TieredObject>) -> ShardState {
    ShardState {
        next_offset: objects.last().map_or(0, |o| o.next_offset),
        tiered: objects,
        ..ShardState::default()
    }
}

fn total(total_ms: Option<u64>, total_bytes: Option<u64>) -> Retention {
    Retention {
        total_ms,
        total_bytes,
        ..Retention::default()
    }
}

#[test]
fn expiry_without_total_retention_is_none() {
    let s = tiered(vec![object(0, 10, 100, 0)]);
    assert_eq!(expiry(&s, &retention(Some(1), Some(1)), NOW), None);
}

#[test]
fn expiry_nothing_tiered_is_none() {
    let s = ShardState::default();
    assert_eq!(expiry(&s, &total(Some(1), Some(0)), NOW), None);
}

#[test]
fn expiry_by_time_only_objects_wholly_older() {
    let objects = vec![
        object(0, 10, 100, NOW - 1_001),
        object(10, 20, 100, NOW - 1_000),
        object(20, 30, 100, NOW - 5_000),
    ];
    let s = tiered(objects.clone());
    let e = expiry(&s, &total(Some(1_000), None), NOW).unwrap();
    assert_eq!(e.first_offset, 10);
    assert_eq!(e.objects, objects[..1]);
}

#[test]
fn expiry_by_bytes_oldest_first() {
    let objects = vec![
        object(0, 10, 100, NOW),
        object(10, 20, 100, NOW),
        object(20, 30, 100, NOW),
    ];
    let s = tiered(objects.clone());
    // 300 bytes, budget 150: the oldest two go (the second ends the excess).
    let e = expiry(&s, &total(None, Some(150)), NOW).unwrap();
    assert_eq!((e.first_offset, e.objects.len()), (20, 2));
    // Exactly at the budget nothing goes.
    assert_eq!(expiry(&s, &total(None, Some(300)), NOW), None);
    let e = expiry(&s, &total(None, Some(0)), NOW).unwrap();
    assert_eq!(e.objects, objects);
    assert_eq!(e.first_offset, 30);
}

#[test]
fn expiry_by_both_kinds() {
    let objects = vec![
        object(0, 10, 100, NOW - 9_000),
        object(10, 20, 100, NOW - 9_000),
        object(20, 30, 100, NOW),
        object(30, 40, 100, NOW),
    ];
    let s = tiered(objects);
    // Time expires the first two; bytes (excess 100) alone would take one.
    let e = expiry(&s, &total(Some(1_000), Some(300)), NOW).unwrap();
    assert_eq!(e.first_offset, 20);
    // Bytes (excess 300) reach past what time expires.
    let e = expiry(&s, &total(Some(1_000), Some(100)), NOW).unwrap();
    assert_eq!(e.first_offset, 30);
}

const DAY_MS: i64 = 86_400_000;
/// 2026-12-05, a clock that is not near the epoch.
const TODAY: i64 = 1_796_428_800_000;

/// A device whose clock reset to 1970: its records, appended now, stay
/// for the whole retention (they used to go as soon as they were tiered).
#[test]
fn expiry_ignores_producer_timestamps_in_1970() {
    let epoch = timestamps(object(0, 10, 100, TODAY - 1_000), 0, 5_000);
    let s = tiered(vec![epoch]);
    assert_eq!(expiry(&s, &total(Some(DAY_MS as u64), None), TODAY), None);
    // A day after it was appended it goes like any other.
    let e = expiry(&s, &total(Some(DAY_MS as u64), None), TODAY + DAY_MS).unwrap();
    assert_eq!(e.first_offset, 10);
}

/// A device whose clock is years ahead: its records go once they were
/// appended longer than the retention ago (they used to stay forever).
#[test]
fn expiry_ignores_producer_timestamps_in_the_future() {
    let year = 365 * DAY_MS;
    let future = timestamps(
        object(0, 10, 100, TODAY - 2 * DAY_MS),
        TODAY + 10 * year,
        TODAY + 10 * year + 1,
    );
    let young = timestamps(object(10, 20, 100, TODAY), 0, TODAY + 20 * year);
    let s = tiered(vec![future.clone(), young]);
    let e = expiry(&s, &total(Some(DAY_MS as u64), None), TODAY).unwrap();
    assert_eq!(e.first_offset, 10);
    assert_eq!(e.objects, vec![future]);
}

/// Objects tiered before append times were recorded (no `max_appended_ms`,
/// in the state or a restored manifest) expire by their newest producer
/// timestamp, as before; alongside recorded ones, each counts by its own.
#[test]
fn expiry_of_objects_without_append_time_counts_from_timestamps() {
    let objects = vec![
        object_before_append_times(0, 10, 100, NOW - 1_001),
        object_before_append_times(10, 20, 100, NOW - 1_000),
    ];
    let s = tiered(objects.clone());
    let e = expiry(&s, &total(Some(1_000), None), NOW).unwrap();
    assert_eq!((e.first_offset, e.objects), (10, objects[..1].to_vec()));
    // An old object with a 1970 timestamp still goes at once (unknown
    // append time); a recorded one after it counts by its append time.
    let old = object_before_append_times(0, 10, 100, 0);
    let recorded = timestamps(object(10, 20, 100, NOW), 0, 0);
    let s = tiered(vec![old.clone(), recorded]);
    let e = expiry(&s, &total(Some(1_000), None), NOW).unwrap();
    assert_eq!((e.first_offset, e.objects), (10, vec![old]));
}

#[test]
fn max_appended_ms_is_the_newest_known_append() {
    let at = |ms| entry(0, 1, 10, ms);
    assert_eq!(max_appended_ms(&[]), None);
    // A replica's clock may step back: the newest, not the last.
    assert_eq!(max_appended_ms(&[at(5), at(9), at(7)]), Some(9));
    // Entries from before `appended_ms` existed read 0: unknown, not 1970.
    assert_eq!(max_appended_ms(&[at(0), at(4), at(0)]), Some(4));
    assert_eq!(max_appended_ms(&[at(0), at(0)]), None);
    let o = object_before_append_times(0, 10, 1, 42);
    assert_eq!(retained_from_ms(&o), 42);
    assert_eq!(retained_from_ms(&stamped(o, 7)), 7);
}
