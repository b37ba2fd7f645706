//! Unit tests of the round planner: they assert on the plans, outcomes and
//! pacing steps, with no core, no buffer and no clock.

use super::*;
use crate::buffer::BufferError;
use bytes::Bytes;
use std::collections::HashMap;
use strata_protocol::{ShardInfo, StreamInfo};
use strata_schema::batch::{self, Builder, NewRecord};
use strata_schema::hashkey::{self, HashRange};
use strata_schema::wire::RemoteError;

fn piece(first_seq: u64, bytes: usize) -> Piece {
    Piece {
        first_seq,
        seq_deltas: None,
        max_timestamp_ms: 0,
        batch: Bytes::from(vec![0u8; bytes]),
    }
}

fn firsts(requests: &[Vec<Piece>]) -> Vec<Vec<u64>> {
    requests
        .iter()
        .map(|r| r.iter().map(|p| p.first_seq).collect())
        .collect()
}

#[test]
fn chunks_fill_requests_up_to_the_limit_in_order() {
    let pieces = vec![
        piece(0, 400),
        piece(1, 400),
        piece(2, 200),
        piece(3, 1),
        piece(4, 300),
    ];
    // 400 + 400 + 200 = 1000 fits exactly; the next piece starts a request.
    assert_eq!(
        firsts(&chunk(pieces, 1000)),
        vec![vec![0, 1, 2], vec![3, 4]]
    );
}

#[test]
fn a_piece_larger_than_the_limit_goes_alone() {
    let pieces = vec![piece(0, 10), piece(1, 5000), piece(2, 10)];
    assert_eq!(
        firsts(&chunk(pieces, 1000)),
        vec![vec![0], vec![1], vec![2]]
    );
    assert!(chunk(Vec::new(), 1000).is_empty());
}

fn make(first_seq: u64, keys: &[String]) -> BufferedBatch {
    let mut b = Builder::default();
    for (i, k) in keys.iter().enumerate() {
        b.push(&NewRecord {
            key: Some(k),
            value: format!("v{i}").as_bytes(),
            timestamp_ms: i as i64,
            headers: &[],
        });
    }
    BufferedBatch {
        first_seq,
        records: keys.len() as u32,
        max_timestamp_ms: keys.len() as i64 - 1,
        batch: b.finish(),
    }
}

fn stream(shards: &[(u32, HashRange, &str)]) -> StreamInfo {
    StreamInfo {
        name: "s".into(),
        shards: shards
            .iter()
            .map(|(id, r, state)| ShardInfo {
                id: *id,
                start_hash_key: r.start.to_string(),
                end_hash_key: r.end.to_string(),
                state: state.to_string(),
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    }
}

fn halves() -> [HashRange; 2] {
    let r = hashkey::even_ranges(2);
    [r[0], r[1]]
}

/// `n` keys that all hash into `range`.
fn keys_in(range: HashRange, n: usize, tag: &str) -> Vec<String> {
    (0..)
        .map(|i| format!("{tag}-{i}"))
        .filter(|k| range.contains(hashkey::hash_key(k.as_bytes())))
        .take(n)
        .collect()
}

fn router(info: &StreamInfo, closed_at: &[(u32, u64)]) -> Router {
    let closed_at: HashMap<u32, u64> = closed_at.iter().copied().collect();
    Router::new(info, &closed_at).unwrap()
}

#[test]
fn nothing_buffered_plans_nothing() {
    let [lo, hi] = halves();
    let info = stream(&[(0, lo, "open"), (1, hi, "open")]);
    assert!(plan_round(Vec::new(), &router(&info, &[]), 1000)
        .unwrap()
        .is_none());
}

#[test]
fn a_round_sends_each_shard_its_records_in_requests_and_ends_after_the_last_batch() {
    let [lo, hi] = halves();
    let info = stream(&[(0, lo, "open"), (1, hi, "open")]);
    // Three single-shard batches for shard 0, one for shard 1.
    let batches = vec![
        make(10, &keys_in(lo, 3, "a")),
        make(13, &keys_in(hi, 2, "b")),
        make(15, &keys_in(lo, 3, "c")),
        make(18, &keys_in(lo, 4, "d")),
    ];
    let one = batches[0].batch.len();
    // Room for two of shard 0's batches per request.
    let limit = batches[2].batch.len() + one;
    let plan = plan_round(batches, &router(&info, &[]), limit)
        .unwrap()
        .unwrap();
    assert_eq!(plan.end_seq, 22);
    assert_eq!(plan.shards.len(), 2);
    let (s0, s1) = (&plan.shards[0], &plan.shards[1]);
    assert_eq!((s0.shard, s0.records), (0, 10));
    assert_eq!(firsts(&s0.requests), vec![vec![10, 15], vec![18]]);
    assert_eq!((s1.shard, s1.records), (1, 2));
    assert_eq!(firsts(&s1.requests), vec![vec![13]]);
}

#[test]
fn records_a_closed_shard_holds_are_not_planned_again() {
    let [lo, hi] = halves();
    let all = HashRange {
        start: 0,
        end: u128::MAX,
    };
    // Shard 0 was split into 1 and 2 and holds this agent's records below 12.
    let info = stream(&[(0, all, "closed"), (1, lo, "open"), (2, hi, "open")]);
    let mut keys = keys_in(lo, 2, "x");
    keys.extend(keys_in(hi, 2, "y"));
    let plan = plan_round(vec![make(10, &keys)], &router(&info, &[(0, 12)]), 1 << 20)
        .unwrap()
        .unwrap();
    // The buffer still advances past every record read.
    assert_eq!(plan.end_seq, 14);
    assert_eq!(plan.shards.len(), 1);
    assert_eq!((plan.shards[0].shard, plan.shards[0].records), (2, 2));
    let p = &plan.shards[0].requests[0][0];
    assert_eq!((p.first_seq, p.seq_deltas.clone()), (10, Some(vec![2, 3])));
    assert_eq!(batch::open(&p.batch).unwrap().records().len(), 2);
}

fn plan_of(shards: &[(u32, u64)]) -> RoundPlan {
    RoundPlan {
        end_seq: 500,
        shards: shards
            .iter()
            .map(|&(shard, records)| ShardSend {
                shard,
                records,
                requests: Vec::new(),
            })
            .collect(),
    }
}

#[test]
fn all_acknowledged_advances_the_buffer_past_the_round() {
    let plan = plan_of(&[(0, 7), (3, 5)]);
    let replies: Vec<ShardReply<&str>> = vec![ShardReply::Acked, ShardReply::Acked];
    assert_eq!(
        outcome(&plan, replies),
        RoundOutcome::Advance {
            ack_to: 500,
            records: 12
        }
    );
}

#[test]
fn a_closed_shard_reroutes_even_when_another_failed() {
    let plan = plan_of(&[(0, 7), (1, 5), (2, 1)]);
    let replies = vec![
        ShardReply::Failed("timeout"),
        ShardReply::Closed {
            producer_next_seq: 480,
        },
        ShardReply::Acked,
    ];
    assert_eq!(
        outcome(&plan, replies),
        RoundOutcome::Resharded {
            closed: vec![(1, 480)]
        }
    );
}

#[test]
fn any_other_failure_retries_the_round_with_the_first_error() {
    let plan = plan_of(&[(0, 7), (1, 5), (2, 1)]);
    let replies = vec![
        ShardReply::Acked,
        ShardReply::Failed("first"),
        ShardReply::Failed("second"),
    ];
    assert_eq!(outcome(&plan, replies), RoundOutcome::Retry("first"));
}

#[test]
fn shard_closed_replies_carry_the_agents_position() {
    let closed = ClientError::Remote(RemoteError::shard_closed("shard 4 is closed", 77));
    assert!(matches!(
        classify(closed),
        ShardReply::Closed {
            producer_next_seq: 77
        }
    ));
    let other = ClientError::Remote(RemoteError::new(ErrorCode::NotLeader, "not leader"));
    assert!(matches!(classify(other), ShardReply::Failed(_)));
}

fn timeout() -> RoundError {
    RoundError::Core(ClientError::Timeout {
        addr: "127.0.0.1:1".parse().unwrap(),
        ms: 1000,
    })
}

fn delay_of(next: &Next) -> Duration {
    match next {
        Next::Retry { delay, .. } => *delay,
        other => panic!("not a retry: {other:?}"),
    }
}

#[test]
fn failed_rounds_back_off_doubling_to_the_maximum_and_a_good_round_resets() {
    let now = Instant::now();
    let mut p = Pacing::new(Duration::from_millis(300));
    let e = timeout();
    let delays: Vec<u64> = (0..5)
        .map(|_| delay_of(&p.handle_round(now, Err(&e))).as_millis() as u64)
        .collect();
    assert_eq!(delays, vec![50, 100, 200, 300, 300]);
    assert_eq!(p.handle_round(now, Ok(())), Next::Round);
    let next = p.handle_round(now, Err(&e));
    assert_eq!(
        next,
        Next::Retry {
            at: now + BACKOFF_MIN,
            delay: BACKOFF_MIN,
            refresh_map: false,
            refused: false,
        }
    );
}

#[test]
fn after_a_failed_round_the_next_reads_one_batch_until_a_round_goes_through() {
    let now = Instant::now();
    let round_max = 8 << 20;
    let mut p = Pacing::new(Duration::from_secs(2));
    assert_eq!(p.read_bytes_max(round_max), round_max);
    p.handle_round(now, Err(&timeout()));
    assert_eq!(p.read_bytes_max(round_max), 1);
    p.handle_round(now, Err(&timeout()));
    assert_eq!(p.read_bytes_max(round_max), 1);
    // A reshard says nothing about whether the core is back.
    p.handle_round(now, Err(&RoundError::Resharded(vec![0])));
    assert_eq!(p.read_bytes_max(round_max), 1);
    p.handle_round(now, Ok(()));
    assert_eq!(p.read_bytes_max(round_max), round_max);
}

#[test]
fn a_reshard_goes_again_at_once_without_touching_the_backoff() {
    let now = Instant::now();
    let mut p = Pacing::new(Duration::from_secs(2));
    p.handle_round(now, Err(&timeout()));
    assert_eq!(
        p.handle_round(now, Err(&RoundError::Resharded(vec![0]))),
        Next::Reroute
    );
    // The reshard neither reset nor grew the pause.
    assert_eq!(
        delay_of(&p.handle_round(now, Err(&timeout()))).as_millis(),
        100
    );
}

#[test]
fn an_unknown_shard_or_stream_refreshes_the_map_before_the_retry() {
    let now = Instant::now();
    let mut p = Pacing::new(Duration::from_secs(2));
    for code in [ErrorCode::UnknownShard, ErrorCode::UnknownStream] {
        let e = RoundError::Core(ClientError::Remote(RemoteError::new(code, "gone")));
        match p.handle_round(now, Err(&e)) {
            Next::Retry { refresh_map, .. } => assert!(refresh_map, "{code:?}"),
            other => panic!("{other:?}"),
        }
    }
}

#[test]
fn local_failures_are_refused_but_still_retried() {
    let now = Instant::now();
    let mut p = Pacing::new(Duration::from_secs(2));
    let local = [
        RoundError::Read(BufferError::Closed),
        RoundError::Ack(BufferError::AckBeyondDurable {
            seq: 9,
            durable_seq: 3,
        }),
        RoundError::Core(ClientError::BadReply {
            addr: "127.0.0.1:1".parse().unwrap(),
            detail: "garbage".into(),
        }),
    ];
    for e in &local {
        match p.handle_round(now, Err(e)) {
            Next::Retry {
                refused,
                refresh_map,
                ..
            } => assert!(refused && !refresh_map, "{e}"),
            other => panic!("{other:?}"),
        }
    }
    match p.handle_round(now, Err(&timeout())) {
        Next::Retry { refused, .. } => assert!(!refused),
        other => panic!("{other:?}"),
    }
}
