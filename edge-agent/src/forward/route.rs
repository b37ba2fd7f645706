//! Re-batching buffered batches by core shard (pure logic, no I/O).
//!
//! A record's shard is picked by the MD5 hash key of its partition key. A
//! record without a key gets a hash of its buffer position instead: keyless
//! records spread over shards, and a retry routes each record exactly as the
//! first attempt did, which exactly-once needs.
//!
//! A batch whose records all map to one shard is forwarded unchanged (the
//! common case when producers batch per key or a stream has one shard); only
//! a mixed batch is split and re-encoded.
//!
//! Resharding: the shards that hold a hash key over time form a chain (a
//! parent, then the child owning the key, ...), in increasing id order. A
//! closed shard's end for this agent's records (`closed_at`) is learned
//! before its children get any record: from a refusal (`SHARD_CLOSED`) of
//! records sent to it, or from a seal probe ([`unsettled`] names the shards
//! to probe). Then records below that position are already in it and are
//! dropped, and the rest go on down the chain. So a reshard neither loses
//! nor duplicates a record, and the parent holds every record of a key that
//! precedes the first one in the child.
//!
//! Why every parent must be settled first: a shard drops a producer's
//! record whose position is not above the last it applied from that
//! producer. A merge's two parents seal at different moments; had the child
//! taken one parent's later records while the other parent still took
//! earlier ones, the other parent's records re-routed after its seal would
//! arrive below the child's mark and vanish as duplicates.

use bytes::Bytes;
use std::collections::HashMap;
use strata_protocol::{Piece, StreamInfo};
use strata_schema::batch::{self, Builder};
use strata_schema::hashkey::{self, HashRange};

/// Why a shard map cannot route records.
#[derive(Debug, thiserror::Error)]
pub enum RouteError {
    /// A shard's hash range does not parse.
    #[error("stream {stream}: {reason}")]
    BadRange {
        stream: String,
        reason: strata_schema::hashkey::HashKeyError,
    },
    #[error("the open shards of {stream} do not cover the hash-key space")]
    Uncovered { stream: String },
}

/// A durable batch from the buffer.
#[derive(Debug, Clone)]
pub struct Buffered {
    pub first_seq: u64,
    pub max_timestamp_ms: i64,
    pub batch: Bytes,
}

/// Pieces for one shard, in buffer order.
#[derive(Debug, Default)]
pub struct ShardPieces {
    pub shard: u32,
    pub pieces: Vec<Piece>,
    pub records: u64,
}

/// Where each record of a stream goes.
#[derive(Debug, Clone)]
pub struct Router {
    /// Every shard id, in id order (parents before children).
    ids: Vec<u32>,
    /// Open shards: (range, index into `ids`), sorted by range.
    open: Vec<(HashRange, usize)>,
    /// Closed shards that may still take or hold this agent's records:
    /// (range, index, where the agent's records in it end, if known).
    closed: Vec<(HashRange, usize, Option<u64>)>,
}

impl Router {
    /// A router for `info`'s shards; `closed_at` holds what closed shards
    /// said when they refused this agent's records. Refused if the open
    /// shards do not cover the hash-key space exactly.
    pub fn new(info: &StreamInfo, closed_at: &HashMap<u32, u64>) -> Result<Self, RouteError> {
        let ranges = info.ranges().map_err(|reason| RouteError::BadRange {
            stream: info.name.clone(),
            reason,
        })?;
        let mut shards: Vec<_> = info.shards.iter().zip(ranges).collect();
        shards.sort_by_key(|(sh, _)| sh.id);
        let ids = shards.iter().map(|(sh, _)| sh.id).collect();
        let mut open = Vec::new();
        let mut closed = Vec::new();
        for (i, (sh, r)) in shards.iter().enumerate() {
            if sh.is_open() {
                open.push((*r, i));
            } else {
                let at = closed_at.get(&sh.id).copied();
                // Ends at 0: none of this agent's records are there.
                if at != Some(0) {
                    closed.push((*r, i, at));
                }
            }
        }
        open.sort_by_key(|(r, _)| r.start);
        let covers = open.first().is_some_and(|(r, _)| r.start == 0)
            && open.last().is_some_and(|(r, _)| r.end == u128::MAX)
            && open
                .windows(2)
                .all(|w| w[0].0.end.checked_add(1) == Some(w[1].0.start));
        if !covers {
            return Err(RouteError::Uncovered {
                stream: info.name.clone(),
            });
        }
        Ok(Self { ids, open, closed })
    }

    /// Shard ids, indexed as [`Router::target`] answers.
    pub fn ids(&self) -> &[u32] {
        &self.ids
    }

    /// Index of the shard for the record at `seq` with hash key `h`, or
    /// None when a closed shard already holds it.
    pub fn target(&self, h: u128, seq: u64) -> Option<usize> {
        for (r, i, at) in &self.closed {
            if !r.contains(h) {
                continue;
            }
            match at {
                None => return Some(*i),
                Some(end) if seq < *end => return None,
                Some(_) => {}
            }
        }
        let k = self.open.partition_point(|(r, _)| r.end < h);
        Some(self.open[k.min(self.open.len() - 1)].1)
    }
}

/// The closed shards of `info` whose end for this agent's records is not
/// known yet (absent from `closed_at`), in id order: the forwarder learns
/// each one's end (a seal probe) before it routes records by `info`.
pub fn unsettled(info: &StreamInfo, closed_at: &HashMap<u32, u64>) -> Vec<u32> {
    let mut ids: Vec<u32> = info
        .shards
        .iter()
        .filter(|s| !s.is_open() && !closed_at.contains_key(&s.id))
        .map(|s| s.id)
        .collect();
    ids.sort_unstable();
    ids
}

fn hash_of(key: Option<&str>, seq: u64) -> u128 {
    match key {
        Some(k) => hashkey::hash_key(k.as_bytes()),
        None => hashkey::hash_key(&seq.to_be_bytes()),
    }
}

/// Splits `batches` by shard (records a closed shard already holds are left out).
pub fn split(batches: &[Buffered], router: &Router) -> Result<Vec<ShardPieces>, batch::BatchError> {
    let mut out: Vec<ShardPieces> = router
        .ids()
        .iter()
        .map(|&shard| ShardPieces {
            shard,
            ..ShardPieces::default()
        })
        .collect();
    let mut builders: Vec<Option<(Builder, Vec<u32>, i64)>> =
        (0..out.len()).map(|_| None).collect();
    for b in batches {
        let fb = batch::open(&b.batch)?;
        let records = fb.records();
        let targets: Vec<Option<usize>> = records
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let seq = b.first_seq + i as u64;
                router.target(hash_of(r.key(), seq), seq)
            })
            .collect();
        let Some(&first) = targets.first() else {
            continue;
        };
        if targets.iter().all(|&t| t == first) {
            if let Some(first) = first {
                out[first].records += targets.len() as u64;
                out[first].pieces.push(Piece {
                    first_seq: b.first_seq,
                    seq_deltas: None,
                    max_timestamp_ms: b.max_timestamp_ms,
                    batch: b.batch.clone(),
                });
            }
            continue;
        }
        for (i, r) in records.iter().enumerate() {
            let Some(t) = targets[i] else {
                continue;
            };
            let (builder, deltas, max_ts) = builders[t].get_or_insert_with(|| {
                (
                    Builder::with_capacity(b.batch.len() / 2),
                    Vec::new(),
                    i64::MIN,
                )
            });
            builder.push_from(&r);
            deltas.push(i as u32);
            *max_ts = (*max_ts).max(r.timestamp_ms());
        }
        for (t, slot) in builders.iter_mut().enumerate() {
            if let Some((mut builder, deltas, max_ts)) = slot.take() {
                out[t].records += deltas.len() as u64;
                out[t].pieces.push(Piece {
                    first_seq: b.first_seq,
                    seq_deltas: Some(deltas),
                    max_timestamp_ms: max_ts,
                    batch: builder.finish(),
                });
            }
        }
    }
    out.retain(|s| !s.pieces.is_empty());
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use strata_protocol::ShardInfo;
    use strata_schema::batch::NewRecord;

    fn make(keys: &[&str]) -> Bytes {
        let mut b = Builder::default();
        for (i, k) in keys.iter().enumerate() {
            b.push(&NewRecord {
                key: Some(k),
                value: format!("v{i}").as_bytes(),
                timestamp_ms: i as i64,
                headers: &[],
            });
        }
        b.finish()
    }

    /// A stream of (id, range, state) shards.
    fn info(shards: &[(u32, HashRange, &str)]) -> StreamInfo {
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

    fn even(n: u32) -> StreamInfo {
        let shards: Vec<_> = hashkey::even_ranges(n)
            .into_iter()
            .enumerate()
            .map(|(i, r)| (i as u32, r, "open"))
            .collect();
        info(&shards)
    }

    fn router(i: &StreamInfo, closed_at: &[(u32, u64)]) -> Router {
        Router::new(i, &closed_at.iter().copied().collect()).unwrap()
    }

    #[test]
    fn single_shard_batches_pass_through_unchanged() {
        let bytes = make(&["a", "b", "c"]);
        let out = split(
            &[Buffered {
                first_seq: 10,
                max_timestamp_ms: 2,
                batch: bytes.clone(),
            }],
            &router(&even(1), &[]),
        )
        .unwrap();
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].pieces[0].batch, bytes);
        assert_eq!(out[0].pieces[0].seq_deltas, None);
    }

    /// (shard, seq, key) of every record in `out`.
    fn routed(out: &[ShardPieces], first: u64, keys: &[String]) -> Vec<(u32, u64, String)> {
        let mut seen = Vec::new();
        for s in out {
            for p in &s.pieces {
                let fb = batch::open(&p.batch).unwrap();
                for (i, r) in fb.records().iter().enumerate() {
                    let seq =
                        p.first_seq + p.seq_deltas.as_ref().map_or(i as u64, |d| u64::from(d[i]));
                    let key = r.key().unwrap().to_string();
                    assert_eq!(key, keys[(seq - first) as usize]);
                    seen.push((s.shard, seq, key));
                }
                if let Some(d) = &p.seq_deltas {
                    assert_eq!(d.len(), fb.records().len());
                    assert!(d.windows(2).all(|w| w[0] < w[1]));
                }
            }
        }
        seen.sort_by_key(|x| x.1);
        seen
    }

    #[test]
    fn mixed_batches_split_with_positions() {
        let keys: Vec<String> = (0..50).map(|i| format!("key-{i}")).collect();
        let refs: Vec<&str> = keys.iter().map(String::as_str).collect();
        let ranges = hashkey::even_ranges(4);
        let out = split(
            &[Buffered {
                first_seq: 100,
                max_timestamp_ms: 49,
                batch: make(&refs),
            }],
            &router(&even(4), &[]),
        )
        .unwrap();
        let seen = routed(&out, 100, &keys);
        assert_eq!(
            seen.iter().map(|x| x.1).collect::<Vec<_>>(),
            (100..150).collect::<Vec<_>>()
        );
        for (shard, _, key) in seen {
            assert!(ranges[shard as usize].contains(hashkey::hash_key(key.as_bytes())));
        }
    }

    /// Records reach the shard a stream description names for their hash
    /// key, with shard ids that are not positions (10..=13). Keyed records
    /// follow `strata_schema::hashkey` (whose tests pin `hash_key`, `route`
    /// and `even_ranges` to values computed with Python's hashlib, so they are
    /// not repeated here). Keyless records hash their buffer position as a
    /// big-endian u64, which is this module's own rule: those owners were
    /// computed outside the crate:
    ///
    /// ```text
    /// python3 -c 'import hashlib, struct; M=2**128-1; s=M//4
    /// own=lambda b: 10+min(int.from_bytes(hashlib.md5(b).digest(),"big")//s,3)
    /// print([own(struct.pack(">Q", q)) for q in [0, 1, 41, 2**32, 2**64-1]])'
    /// ```
    #[test]
    fn records_route_to_the_shards_of_their_hash_keys() {
        let ranges = hashkey::even_ranges(4);
        let shards: Vec<_> = ranges
            .iter()
            .zip(10..)
            .map(|(r, id)| (id, *r, "open"))
            .collect();
        let r = router(&info(&shards), &[]);
        // Keyed records, through `split` as the forwarder calls it.
        let long = "x".repeat(1000);
        let keys = [
            "",
            "a",
            "user-42",
            "clé-日本語-🚀",
            long.as_str(),
            "order-5",
        ];
        let want_keyed: Vec<u32> = keys
            .iter()
            .map(|k| 10 + hashkey::route(&ranges, hashkey::hash_key(k.as_bytes())) as u32)
            .collect();
        // The keys land on every shard, so a router that ignored the ids
        // or the ranges would be caught.
        let mut owners = want_keyed.clone();
        owners.sort_unstable();
        owners.dedup();
        assert_eq!(owners, [10, 11, 12, 13]);
        let out = split(
            &[Buffered {
                first_seq: 500,
                max_timestamp_ms: 5,
                batch: make(&keys),
            }],
            &r,
        )
        .unwrap();
        let owned: Vec<String> = keys.iter().map(|k| k.to_string()).collect();
        let seen = routed(&out, 500, &owned);
        let got: Vec<u32> = seen.iter().map(|x| x.0).collect();
        assert_eq!(got, want_keyed);
        // Keyless records hash their buffer position (big-endian u64).
        let want_keyless = [11, 13, 11, 10, 13];
        for (seq, want) in [0, 1, 41, 1 << 32, u64::MAX].into_iter().zip(want_keyless) {
            let i = r.target(hash_of(None, seq), seq).unwrap();
            assert_eq!(r.ids()[i], want, "keyless record at position {seq}");
        }
    }

    #[test]
    fn a_closed_shard_keeps_what_it_has_and_its_children_get_the_rest() {
        let all = HashRange {
            start: 0,
            end: u128::MAX,
        };
        let [lo, hi] = [hashkey::even_ranges(2)[0], hashkey::even_ranges(2)[1]];
        let keys: Vec<String> = (0..40).map(|i| format!("k{i}")).collect();
        let refs: Vec<&str> = keys.iter().map(String::as_str).collect();
        let batches = [Buffered {
            first_seq: 100,
            max_timestamp_ms: 39,
            batch: make(&refs),
        }];
        // 0 split into 1 and 2.
        let split_info = info(&[(0, all, "closing"), (1, lo, "open"), (2, hi, "open")]);
        // Until 0 refuses: everything still goes to 0.
        let seen = routed(
            &split(&batches, &router(&split_info, &[])).unwrap(),
            100,
            &keys,
        );
        assert!(seen.iter().all(|x| x.0 == 0) && seen.len() == 40);
        // 0 holds this agent's records below 120: those are left out, the
        // rest go to the child owning their key.
        let seen = routed(
            &split(&batches, &router(&split_info, &[(0, 120)])).unwrap(),
            100,
            &keys,
        );
        assert_eq!(seen.first().unwrap().1, 120);
        assert_eq!(seen.len(), 20);
        for (shard, _, key) in &seen {
            let h = hashkey::hash_key(key.as_bytes());
            assert_eq!(*shard, if lo.contains(h) { 1 } else { 2 });
        }
        // Then 1 and 2 merged into 3; 1 refused with its end at 130, 2 has
        // not answered yet: 2 is unsettled, so the forwarder probes it
        // before routing anything (3 must not take 1's records above 130
        // while 2 may still take its records below them).
        let merged = info(&[
            (0, all, "closed"),
            (1, lo, "closed"),
            (2, hi, "closed"),
            (3, all, "open"),
        ]);
        let known = |v: &[(u32, u64)]| v.iter().copied().collect::<HashMap<u32, u64>>();
        assert_eq!(unsettled(&merged, &known(&[(0, 120), (1, 130)])), vec![2]);
        assert_eq!(unsettled(&merged, &known(&[])), vec![0, 1, 2]);
        assert_eq!(unsettled(&split_info, &known(&[])), vec![0]);
        // 2's seal probe says its records end at 125: everything above
        // each parent's end goes to 3, in position order.
        let settled = [(0, 120), (1, 130), (2, 125)];
        assert!(unsettled(&merged, &known(&settled)).is_empty());
        let r = router(&merged, &settled);
        let seen = routed(&split(&batches, &r).unwrap(), 100, &keys);
        for (shard, seq, key) in &seen {
            let h = hashkey::hash_key(key.as_bytes());
            let end = if lo.contains(h) { 130 } else { 125 };
            assert!(*seq >= end, "seq {seq} is in a parent already");
            assert_eq!(*shard, 3, "seq {seq}");
        }
        let expected = (100..140u64)
            .filter(|&seq| {
                let h = hashkey::hash_key(keys[(seq - 100) as usize].as_bytes());
                seq >= if lo.contains(h) { 130 } else { 125 }
            })
            .count();
        assert_eq!(seen.len(), expected);
        // A map whose open shards leave a gap is refused.
        let gap = info(&[(0, lo, "open")]);
        assert!(Router::new(&gap, &HashMap::new()).is_err());
    }
}
