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
