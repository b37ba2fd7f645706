//! Model check of producer dedup in [`ShardState::apply`].
//!
//! Producers send pieces of their buffer (positions strictly increasing,
//! with gaps where records went to other shards) under the contract the
//! shard relies on: a piece may start at or below what the shard already
//! has from that producer (a retry, a re-cut retry, an overlap, a resend
//! after a restart), never above it. Sends may be lost before the shard
//! sees them, replies may be lost after it applied them, a producer may
//! restart from a durable position at or below what the shard has (with
//! new positions continuing after it), and the shard may be sealed.
//!
//! The model is a list of (producer, position) in offset order. After
//! every command the reply must match the model's; at the end the shard's
//! content (rebuilt from its index and the log) must equal the model: every
//! delivered (producer, position) once, in order per producer, at dense
//! offsets. A second replica that starts from a serde snapshot taken half
//! way must reach the same state (apply is deterministic).

use super::*;
use bytes::Bytes;
use openraft::{CommittedLeaderId, LogId as RaftLogId};
use proptest::prelude::*;

/// Producer ids: arbitrary u64s, including the extremes.
const PRODUCER_IDS: [u64; 3] = [0, 7, u64::MAX];

#[derive(Debug, Clone)]
enum Op {
    /// `producer` sends a piece of `gaps.len()` records starting at its
    /// cursor (where it believes the shard is), or `behind` positions below
    /// what the shard has (a retry or a re-cut overlapping retry). New
    /// positions are drawn with `gaps[i]` skipped positions before each.
    Send {
        producer: usize,
        behind: Option<usize>,
        gaps: Vec<u8>,
        /// The shard sees the piece (false: lost on the way).
        delivered: bool,
        /// The producer sees the reply (false: lost on the way back).
        acked: bool,
        /// Group commit: the piece travels as two runs of one `Appends`
        /// entry, cut before this record (if inside the piece).
        cut: Option<usize>,
    },
    /// The producer restarts: it resumes `back` positions below what the
    /// shard has (its durable acknowledged position) and its new positions
    /// continue `jump` after its last durable one.
    Restart {
        producer: usize,
        back: usize,
        jump: u8,
    },
    /// The shard is closed by a reshard.
    Seal,
}

fn op() -> impl Strategy<Value = Op> {
    let send = (
        0..PRODUCER_IDS.len(),
        prop::option::weighted(0.3, 0usize..12),
        prop::collection::vec(0u8..3, 1..8),
        prop::bool::weighted(0.9),
        prop::bool::weighted(0.8),
        prop::option::weighted(0.4, 1usize..8),
    )
        .prop_map(|(producer, behind, gaps, delivered, acked, cut)| Op::Send {
            producer,
            behind,
            gaps,
            delivered,
            acked,
            cut,
        });
    let restart =
        (0..PRODUCER_IDS.len(), 0usize..12, 0u8..20).prop_map(|(producer, back, jump)| {
            Op::Restart {
                producer,
                back,
                jump,
            }
        });
    prop_oneof![20 => send, 3 => restart, 1 => Just(Op::Seal)]
}

/// One producer as the model sees it.
#[derive(Debug, Clone, Default)]
struct Producer {
    /// Positions the producer has assigned so far, increasing.
    positions: Vec<u64>,
    /// How many of `positions` the shard holds (a prefix, by the contract).
    applied: usize,
    /// Where its next piece starts (index into `positions`), <= `applied`.
    cursor: usize,
    /// The lowest position it may assign next.
    floor: u64,
}

impl Producer {
    /// Positions `[start, start + gaps.len())`, assigning new ones as needed.
    fn piece(&mut self, start: usize, gaps: &[u8]) -> Vec<u64> {
        for &gap in gaps {
            if self.positions.len() >= start + gaps.len() {
                break;
            }
            let next = self.positions.last().map_or(0, |&p| p + 1);
            self.positions.push(next.max(self.floor) + u64::from(gap));
        }
        self.positions[start..start + gaps.len()].to_vec()
    }
}

/// The model shard: its content in offset order.
#[derive(Debug, Default)]
struct Model {
    producers: Vec<Producer>,
    content: Vec<(u64, u64)>,
    sealed: bool,
}

fn lid(index: u64) -> RaftLogId<u64> {
    RaftLogId::new(CommittedLeaderId::new(1, 1), index)
}

/// The piece `seqs` as one entry: one run, or two (cut before `cut`).
fn entry(producer_id: u64, seqs: &[u64], cut: Option<usize>) -> ShardCommand {
    match cut.filter(|&c| c < seqs.len()) {
        Some(c) => ShardCommand::appending(
            [&seqs[..c], &seqs[c..]]
                .into_iter()
                .flat_map(|part| append(producer_id, part).into_runs())
                .collect(),
        ),
        None => append(producer_id, seqs),
    }
}

fn append(producer_id: u64, seqs: &[u64]) -> ShardCommand {
    let first = seqs[0];
    let deltas: Vec<u32> = seqs
        .iter()
        .map(|s| u32::try_from(s - first).unwrap())
        .collect();
    let dense = deltas.iter().enumerate().all(|(i, &d)| d as usize == i);
    ShardCommand::Append(AppendCmd {
        producer_id,
        first_seq: first,
        seq_deltas: (!dense).then_some(deltas),
        max_timestamp_ms: 10,
        records: seqs.len() as u32,
        batch: Bytes::from_static(b"x"),
    })
}

/// What the shard must answer to `cmd` (a piece of `p`) and the model after it.
fn expect(m: &mut Model, p: usize, seqs: &[u64]) -> ShardResponse {
    let producer_id = PRODUCER_IDS[p];
    let pr = &mut m.producers[p];
    let last = pr.applied.checked_sub(1).map(|i| pr.positions[i]);
    let new: Vec<u64> = seqs
        .iter()
        .copied()
        .filter(|&s| last.is_none_or(|l| s > l))
        .collect();
    if m.sealed && !new.is_empty() {
        return ShardResponse::Closed {
            producer_next_seq: last.map_or(0, |l| l + 1),
        };
    }
    let base_offset = m.content.len() as u64;
    pr.applied += new.len();
    m.content.extend(new.iter().map(|&s| (producer_id, s)));
    ShardResponse::Appended {
        base_offset,
        appended: new.len() as u64,
        duplicates: (seqs.len() - new.len()) as u64,
        next_offset: m.content.len() as u64,
    }
}

/// The shard's content, rebuilt from its index and the applied log.
fn content(s: &ShardState, log: &[(u64, ShardCommand)]) -> Vec<(u64, u64)> {
    let mut out = Vec::new();
    for (i, e) in s.index.iter().enumerate() {
        // Log index i is at log[i - 1].
        let Some(a) = log
            .get(e.log_index as usize - 1)
            .and_then(|(_, c)| c.runs().get(e.part as usize))
        else {
            panic!(
                "index entry {i} points at log index {} part {} with no run",
                e.log_index, e.part
            );
        };
        assert_eq!(e.base_offset, out.len() as u64, "offsets are dense");
        let first = e.skip as usize;
        for r in first..first + e.count as usize {
            out.push((a.producer_id, a.seq(r)));
        }
    }
    out
}

/// Everything replicas must agree on (`appended_ms` is each replica's clock).
fn replicated(s: &ShardState) -> String {
    let mut s = s.clone();
    for e in &mut s.index {
        e.appended_ms = 0;
    }
    let producers: std::collections::BTreeMap<_, _> = s.producers.iter().collect();
    format!(
        "{} {} {} {producers:?} {:?}",
        s.first_offset, s.next_offset, s.sealed, s.index
    )
}

fn run(ops: &[Op]) -> Result<(), TestCaseError> {
    let mut shard = ShardState::default();
    let mut m = Model {
        producers: vec![Producer::default(); PRODUCER_IDS.len()],
        ..Model::default()
    };
    let mut log: Vec<(u64, ShardCommand)> = Vec::new();
    let mut snapshot = None;
    for (step, op) in ops.iter().enumerate() {
        if step == ops.len() / 2 {
            snapshot = Some((serde_json::to_string(&shard).unwrap(), log.len()));
        }
        match op {
            Op::Send {
                producer,
                behind,
                gaps,
                delivered,
                acked,
                cut,
            } => {
                let pr = &mut m.producers[*producer];
                let start = behind.map_or(pr.cursor, |b| pr.applied.saturating_sub(b));
                let seqs = pr.piece(start, gaps);
                if !delivered {
                    continue;
                }
                let cmd = entry(PRODUCER_IDS[*producer], &seqs, *cut);
                let index = log.len() as u64 + 1;
                let got = shard.apply(&lid(index), &cmd, 0);
                log.push((index, cmd));
                let want = expect(&mut m, *producer, &seqs);
                prop_assert_eq!(&got, &want, "step {}: {:?}", step, op);
                let pr = &mut m.producers[*producer];
                if *acked && matches!(got, ShardResponse::Appended { .. }) {
                    pr.cursor = pr.cursor.max(start + seqs.len());
                }
                prop_assert!(pr.cursor <= pr.applied);
            }
            Op::Restart {
                producer,
                back,
                jump,
            } => {
                let pr = &mut m.producers[*producer];
                pr.cursor = pr.applied.saturating_sub(*back);
                // Positions the shard never got were not durable: the buffer
                // reuses the space after its last durable one.
                pr.positions.truncate(pr.applied);
                pr.floor = pr.positions.last().map_or(0, |&l| l + 1) + u64::from(*jump);
            }
            Op::Seal => {
                let index = log.len() as u64 + 1;
                let got = shard.apply(&lid(index), &ShardCommand::Seal, 0);
                log.push((index, ShardCommand::Seal));
                m.sealed = true;
                prop_assert_eq!(
                    got,
                    ShardResponse::Sealed {
                        end_offset: m.content.len() as u64
                    }
                );
            }
        }
        shard.check_invariants();
    }
    // The shard holds exactly the model's records, offsets dense from 0.
    prop_assert_eq!(shard.first_offset, 0);
    prop_assert_eq!(shard.next_offset, m.content.len() as u64);
    let got = content(&shard, &log);
    prop_assert_eq!(&got, &m.content);
    // Spelled out: each (producer, position) once, increasing per producer,
    // and every position the model counts as applied is there.
    for (p, &id) in PRODUCER_IDS.iter().enumerate() {
        let mine: Vec<u64> = got.iter().filter(|r| r.0 == id).map(|r| r.1).collect();
        prop_assert!(mine.windows(2).all(|w| w[0] < w[1]), "producer {}", id);
        let pr = &m.producers[p];
        prop_assert_eq!(&mine[..], &pr.positions[..pr.applied]);
        let next = shard.producer_next_seq(id);
        prop_assert_eq!(next, mine.last().map_or(0, |l| l + 1));
    }
    // A replica that installed the half-way snapshot and applied the rest
    // of the log decides the same.
    let (json, from) =
        snapshot.unwrap_or_else(|| (serde_json::to_string(&ShardState::default()).unwrap(), 0));
    let mut replica: ShardState = serde_json::from_str(&json).unwrap();
    for (index, cmd) in &log[from..] {
        replica.apply(&lid(*index), cmd, 0);
    }
    prop_assert_eq!(replicated(&replica), replicated(&shard));
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn dedup_matches_the_model(ops in prop::collection::vec(op(), 1..80)) {
        run(&ops)?;
    }
}

/// Producer-id expiry: the leader's decision ([`ShardState::idle_producers`])
/// and the committed `ForgetProducers`.
mod expiry {
    use super::*;
    use crate::raft::shard::tests::appended;

    const MIN: i64 = 60 * 1000;
    const DAY: i64 = 24 * 60 * MIN;
    const IDLE: u64 = 7 * DAY as u64;

    fn lid(i: u64) -> RaftLogId<u64> {
        RaftLogId::new(CommittedLeaderId::new(1, 1), i)
    }

    fn send(producer: u64, first_seq: u64, records: u32) -> ShardCommand {
        ShardCommand::Append(AppendCmd {
            producer_id: producer,
            first_seq,
            seq_deltas: None,
            max_timestamp_ms: 0,
            records,
            batch: Bytes::from_static(b"x"),
        })
    }

    #[test]
    fn the_leader_picks_producers_idle_longer_than_the_idle_time() {
        let mut s = ShardState::default();
        s.apply(&lid(1), &send(3, 0, 5), 0);
        s.apply(&lid(2), &send(1, 0, 2), DAY);
        s.apply(&lid(3), &send(2, 10, 1), 2 * DAY);
        // A pure retry is a sign of life too.
        assert_eq!(appended(s.apply(&lid(4), &send(3, 0, 5), DAY)), (0, 5));
        assert!(
            s.idle_producers(8 * DAY, IDLE, 0, 100).is_empty(),
            "exactly idle"
        );
        assert_eq!(
            s.idle_producers(8 * DAY + 1, IDLE, 0, 100),
            [(1, 1), (3, 4)]
        );
        assert_eq!(s.idle_producers(9 * DAY + 1, IDLE, 0, 1), [(1, 1)], "max");
        assert!(
            s.idle_producers(100 * DAY, 0, 0, 100).is_empty(),
            "0: never"
        );
        // An entry without a time (applied before times were kept) counts
        // from the caller's start.
        s.producer_seen_ms.remove(&2);
        assert_eq!(
            s.idle_producers(9 * DAY, IDLE, 5 * DAY, 100),
            [(1, 1), (3, 4)]
        );
        assert_eq!(s.idle_producers(12 * DAY + 1, IDLE, 5 * DAY, 100).len(), 3);
    }

    #[test]
    fn a_forget_shrinks_the_table_and_spares_a_producer_that_appended_since() {
        let mut s = ShardState::default();
        for p in 1..=4 {
            s.apply(&lid(p), &send(p, 0, 3), 0);
        }
        let idle = s.idle_producers(8 * DAY, IDLE, 0, 100);
        assert_eq!(idle.len(), 4);
        // Producer 2 appends between the decision and its commit.
        s.apply(&lid(5), &send(2, 3, 1), 8 * DAY);
        let forget = ShardCommand::ForgetProducers(idle);
        let mut replica = s.clone();
        assert_eq!(
            s.apply(&lid(6), &forget, 8 * DAY),
            ShardResponse::Forgot { producers: 3 }
        );
        // Another replica (another clock) decides the same.
        replica.apply(&lid(6), &forget, 123);
        assert_eq!(replica.producers, s.producers);
        assert_eq!(s.producers.keys().copied().collect::<Vec<_>>(), [2]);
        assert_eq!(s.producer_seen_ms.keys().copied().collect::<Vec<_>>(), [2]);
        // Applying it again changes nothing.
        assert_eq!(
            s.apply(&lid(7), &forget, 0),
            ShardResponse::Forgot { producers: 0 }
        );
        assert_eq!(s.next_offset, 13, "records stay");
        // A forgotten producer's next append starts a new entry; a retry of
        // what it sent before expiry is appended again (the documented
        // window: docs/operations.md, "Producer id expiry").
        assert_eq!(s.producer_next_seq(1), 0);
        assert_eq!(appended(s.apply(&lid(8), &send(1, 2, 2), 9 * DAY)), (2, 0));
        assert_eq!(s.producer_next_seq(1), 4);
        assert_eq!(s.producer_seen_ms[&1], 9 * DAY);
        assert_eq!(appended(s.apply(&lid(9), &send(1, 3, 1), 9 * DAY)), (0, 1));
        // The times read back; a state stored before them still reads.
        let json = serde_json::to_string(&s).unwrap();
        let back: ShardState = serde_json::from_str(&json).unwrap();
        assert_eq!(back.producer_seen_ms, s.producer_seen_ms);
        let old = r#"{"first_offset":0,"next_offset":0,"producers":{"5":9},"index":[]}"#;
        let old: ShardState = serde_json::from_str(old).unwrap();
        assert!(old.producer_seen_ms.is_empty());
        assert_eq!(old.idle_producers(8 * DAY, IDLE, 0, 10), [(5, 9)]);
    }

    /// A fleet that comes and goes over 60 simulated days: every hour 30
    /// new devices appear, each appends once an hour for a day, then goes
    /// quiet for good; 10 devices append every hour throughout; the leader
    /// runs the expiry every hour. The dedup table stays bounded by the
    /// devices active in the last idle time (plus one round), and the
    /// long-lived ones are never forgotten. Without expiry it would hold
    /// every device ever seen (43,200).
    #[test]
    fn the_dedup_table_stays_bounded_as_a_fleet_comes_and_goes() {
        let round = 60 * MIN;
        let (per_round, lifetime, resident) = (30u64, DAY, 10u64);
        let rounds = 60 * DAY / round;
        let mut s = ShardState::default();
        let mut index = 0;
        let mut next = |s: &mut ShardState, cmd: &ShardCommand, now: i64| {
            index += 1;
            s.apply(&lid(index), cmd, now);
            // (Records leave by retention; only the table matters here,
            // and a short index keeps the debug invariant checks cheap.)
            s.index.clear();
            s.first_offset = s.next_offset;
        };
        let mut max_len = 0;
        for r in 0..rounds {
            let now = r * round;
            // Devices born in rounds (r - lifetime/round, r] append.
            let born_from = (r - lifetime / round + 1).max(0);
            for born in born_from..=r {
                for k in 0..per_round {
                    let id = 1_000 + born as u64 * per_round + k;
                    next(&mut s, &send(id, (r - born) as u64, 1), now);
                }
            }
            for id in 0..resident {
                next(&mut s, &send(id, r as u64, 1), now);
            }
            let idle = s.idle_producers(now, IDLE, 0, 10_000);
            if !idle.is_empty() {
                next(&mut s, &ShardCommand::ForgetProducers(idle), now);
            }
            max_len = max_len.max(s.producers.len());
            assert_eq!(s.producer_seen_ms.len(), s.producers.len());
        }
        // Seen within the idle time: devices born in the last 8 days (1 day
        // of appends + 7 idle) plus the residents.
        let per_day = (DAY / round) as usize * per_round as usize;
        let bound = 8 * per_day + resident as usize;
        assert!(max_len <= bound + per_round as usize, "{max_len} > {bound}");
        assert!(max_len + per_round as usize >= bound, "{max_len} < {bound}");
        eprintln!("dedup table: at most {max_len} producers over 60 days (bound {bound})");
        assert!((0..resident).all(|id| s.producers.contains_key(&id)));
        assert_eq!(rounds as usize * per_round as usize, 43_200);
        assert!(s.producers.len() <= bound + per_round as usize);
    }
}

/// The index of a stream that keeps growing stays as long as the local log
/// (issue: "the shard index compacted for tiered ranges"), reads of the
/// dropped offsets go to the tier, and time seeks still land.
mod index_compaction {
    use super::*;
    use crate::shard::read_plan::Residence;
    use crate::tier::manifest::TieredObject;

    fn object(first: u64, next: u64, max_ts: i64) -> TieredObject {
        TieredObject {
            key: format!("s/0/{first}"),
            first_offset: first,
            next_offset: next,
            records: next - first,
            min_timestamp_ms: max_ts,
            max_timestamp_ms: max_ts,
            bytes: 1,
            payload_bytes: 1,
            checksums: None,
            max_appended_ms: Some(max_ts),
        }
    }

    fn stamped(seq: u64, ts: i64) -> ShardCommand {
        match append(1, &[seq]) {
            ShardCommand::Append(a) => ShardCommand::Append(AppendCmd {
                max_timestamp_ms: ts,
                ..a
            }),
            _ => unreachable!(),
        }
    }

    #[test]
    fn the_index_stays_as_long_as_the_local_log_as_a_stream_grows() {
        let mut s = ShardState::default();
        let mut index = 0u64;
        let mut longest = 0;
        // 200 rounds of 50 one-record entries; each round tiers what the
        // round before wrote and purges (compacts) up to it.
        for round in 0..200u64 {
            for k in 0..50 {
                index += 1;
                let seq = round * 50 + k;
                s.apply(&lid(index), &stamped(seq, seq as i64), 0);
            }
            if round > 0 {
                let (first, next) = (s.tiered_to(), (round - 1) * 50 + 50);
                let r = s.apply(
                    &lid(index + 1),
                    &ShardCommand::Tier(object(first, next, next as i64 - 1)),
                    0,
                );
                assert!(matches!(r, ShardResponse::Tiered { .. }), "{r:?}");
                index += 1;
                // The log index of the last tiered entry is the purge point.
                let purged = s
                    .index
                    .iter()
                    .filter(|e| e.base_offset + u64::from(e.count) <= next)
                    .map(|e| e.log_index)
                    .max()
                    .unwrap();
                s.compact_index(purged);
                s.check_invariants();
                let back: ShardState =
                    serde_json::from_str(&serde_json::to_string(&s).unwrap()).unwrap();
                assert_eq!(
                    back.index, s.index,
                    "a compacted state is stored and read back"
                );
            }
            longest = longest.max(s.index.len());
        }
        assert_eq!(s.next_offset, 10_000);
        assert!(longest <= 100, "the index held {longest} entries");
        // A dropped offset is read from the tier; a kept one from the log.
        let purged = Some(s.index[0].log_index - 1);
        let r = Residence::of(&s, 10, purged);
        assert_eq!((r.log_index, r.tiered_to), (None, 9_950));
        assert!(Residence::of(&s, 9_999, purged).log_index.is_some());
        // Time seeks: into a tiered object below the index, into the index.
        assert_eq!(s.locate_time_tiered(120), Some(100));
        assert_eq!(s.locate_time_tiered(9_990), None);
        let i = s.locate_time(9_990).unwrap();
        assert_eq!(s.index[i].base_offset, 9_990);
    }

    #[test]
    fn compaction_keeps_untiered_entries_and_the_last_one() {
        let mut s = ShardState::default();
        for i in 1..=10 {
            s.apply(&lid(i), &stamped(i, i as i64), 0);
        }
        // Nothing tiered: nothing goes, whatever the purge point says.
        assert_eq!(s.compact_index(10), 0);
        s.apply(&lid(11), &ShardCommand::Tier(object(0, 10, 10)), 0);
        // Purged only to log index 4: entries 1..=4 go.
        assert_eq!(s.compact_index(4), 4);
        assert_eq!(s.index[0].log_index, 5);
        // Everything tiered and purged: the last entry stays.
        assert_eq!(s.compact_index(10), 5);
        assert_eq!(s.index.len(), 1);
        assert_eq!(s.newest_timestamp_ms(), 10);
        assert!(s.check_stored().is_ok());
        // Appends continue after it.
        s.apply(&lid(12), &stamped(11, 11), 0);
        assert_eq!(s.next_offset, 11);
        s.check_invariants();
    }
}
