use super::*;
use crate::raft::shard::IndexEntry;

const WAIT_MAX: Duration = Duration::from_millis(500);

fn range(first: u64, next: u64, sealed: bool) -> ShardRange {
    ShardRange {
        first,
        next,
        sealed,
    }
}

/// Nothing tiered; the offset is in the log at index 7, nothing purged.
const IN_LOG: Residence = Residence {
    tiered_to: 0,
    log_index: Some(7),
    purged_index: None,
};

fn req(offset: u64, wait_ms: u64) -> FetchRequest {
    FetchRequest {
        offset,
        max_records: 100,
        max_bytes: 1_000,
        wait: Duration::from_millis(wait_ms),
    }
}

const LIMITS: FetchLimits = FetchLimits {
    max_records: 100,
    max_bytes: 1_000,
};

#[test]
fn out_of_range_below_first_and_above_next() {
    let r = range(10, 20, false);
    let out = |offset| FetchPlan::OutOfRange {
        offset,
        first: 10,
        next: 20,
    };
    assert_eq!(plan_fetch(r, IN_LOG, &req(9, 0), WAIT_MAX), out(9));
    assert_eq!(plan_fetch(r, IN_LOG, &req(21, 0), WAIT_MAX), out(21));
    assert_eq!(
        plan_fetch(r, IN_LOG, &req(10, 0), WAIT_MAX),
        FetchPlan::ReadLog(LIMITS)
    );
    assert_eq!(
        plan_fetch(r, IN_LOG, &req(20, 0), WAIT_MAX),
        FetchPlan::ReadLog(LIMITS)
    );
}

#[test]
fn waits_only_at_the_end_of_an_open_shard_when_asked() {
    let open = range(0, 20, false);
    let wait = FetchPlan::Wait(Duration::from_millis(200));
    assert_eq!(plan_fetch(open, IN_LOG, &req(20, 200), WAIT_MAX), wait);
    assert_eq!(
        plan_fetch(open, IN_LOG, &req(20, 0), WAIT_MAX),
        FetchPlan::ReadLog(LIMITS)
    );
    assert_eq!(
        plan_fetch(open, IN_LOG, &req(19, 200), WAIT_MAX),
        FetchPlan::ReadLog(LIMITS)
    );
    let sealed = range(0, 20, true);
    assert_eq!(
        plan_fetch(sealed, IN_LOG, &req(20, 200), WAIT_MAX),
        FetchPlan::ReadLog(LIMITS)
    );
}

#[test]
fn wait_is_capped() {
    let open = range(0, 20, false);
    let plan = plan_fetch(open, IN_LOG, &req(20, 60_000), WAIT_MAX);
    assert_eq!(plan, FetchPlan::Wait(WAIT_MAX));
}

#[test]
fn limits_default_and_cap() {
    let limits = |max_records, max_bytes| {
        FetchLimits::of(&FetchRequest {
            offset: 0,
            max_records,
            max_bytes,
            wait: Duration::ZERO,
        })
    };
    let l = limits(0, 0);
    assert_eq!((l.max_records, l.max_bytes), (10_000, 8 << 20));
    let l = limits(1, 1);
    assert_eq!((l.max_records, l.max_bytes), (1, 1));
    let l = limits(u32::MAX, 32 << 20);
    assert_eq!(
        (l.max_records, l.max_bytes),
        (u64::from(u32::MAX), 32 << 20)
    );
    let l = limits(5, (32 << 20) + 1);
    assert_eq!(l.max_bytes, 32 << 20);
    // The plan carries the effective limits.
    let r = FetchRequest {
        max_records: 0,
        max_bytes: u32::MAX,
        ..req(0, 0)
    };
    let plan = plan_fetch(range(0, 5, false), IN_LOG, &r, WAIT_MAX);
    assert_eq!(
        plan,
        FetchPlan::ReadLog(FetchLimits {
            max_records: 10_000,
            max_bytes: 32 << 20
        })
    );
}

#[test]
fn tier_or_log() {
    let r = range(0, 100, false);
    let plan = |tiered_to, log_index, purged_index| {
        let res = Residence {
            tiered_to,
            log_index,
            purged_index,
        };
        plan_fetch(r, res, &req(10, 0), WAIT_MAX)
    };
    let tier = FetchPlan::ReadTier(LIMITS);
    let log = FetchPlan::ReadLog(LIMITS);
    // Tiered and its entry purged here: the tier.
    assert_eq!(plan(50, Some(5), Some(5)), tier);
    assert_eq!(plan(50, Some(5), Some(9)), tier);
    // Tiered but still in the log: the log.
    assert_eq!(plan(50, Some(5), Some(4)), log);
    assert_eq!(plan(50, Some(5), None), log);
    // Tiered and not in the index (restored from the archive): the tier.
    assert_eq!(plan(50, None, None), tier);
    // Not tiered: the log, whatever was purged.
    assert_eq!(plan(10, Some(5), Some(9)), log);
    assert_eq!(plan(0, None, None), log);
}

#[test]
fn views_of_a_shard_state() {
    let e = |base, log_index| IndexEntry {
        base_offset: base,
        log_index,
        part: 0,
        skip: 0,
        count: 10,
        max_timestamp_ms: 0,
        bytes: 1,
        appended_ms: 0,
    };
    let s = ShardState {
        first_offset: 0,
        next_offset: 20,
        index: vec![e(0, 3), e(10, 8)],
        sealed: true,
        ..ShardState::default()
    };
    assert_eq!(ShardRange::of(&s), range(0, 20, true));
    let res = Residence::of(&s, 15, Some(3));
    assert_eq!(
        res,
        Residence {
            tiered_to: 0,
            log_index: Some(8),
            purged_index: Some(3)
        }
    );
    assert_eq!(Residence::of(&s, 20, None).log_index, None);
}
