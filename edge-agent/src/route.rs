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

use bytes::Bytes;
use strata_client::api::Piece;
use strata_schema::batch::{self, Builder};
use strata_schema::hashkey::{self, HashRange};

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

fn shard_of(ranges: &[HashRange], key: Option<&str>, seq: u64) -> usize {
    let h = match key {
        Some(k) => hashkey::hash_key(k.as_bytes()),
        None => hashkey::hash_key(&seq.to_be_bytes()),
    };
    hashkey::route(ranges, h)
}

/// Splits `batches` by shard. `shard_ids[i]` is the id of the shard owning `ranges[i]`.
pub fn split(
    batches: &[Buffered],
    ranges: &[HashRange],
    shard_ids: &[u32],
) -> Result<Vec<ShardPieces>, batch::BatchError> {
    assert_eq!(ranges.len(), shard_ids.len());
    let mut out: Vec<ShardPieces> = shard_ids
        .iter()
        .map(|&shard| ShardPieces {
            shard,
            ..ShardPieces::default()
        })
        .collect();
    let mut builders: Vec<Option<(Builder, Vec<u32>, i64)>> =
        (0..ranges.len()).map(|_| None).collect();
    for b in batches {
        let fb = batch::open(&b.batch)?;
        let records = fb.records();
        let targets: Vec<usize> = records
            .iter()
            .enumerate()
            .map(|(i, r)| shard_of(ranges, r.key(), b.first_seq + i as u64))
            .collect();
        let Some(&first) = targets.first() else {
            continue;
        };
        if targets.iter().all(|&t| t == first) {
            out[first].records += targets.len() as u64;
            out[first].pieces.push(Piece {
                first_seq: b.first_seq,
                seq_deltas: None,
                max_timestamp_ms: b.max_timestamp_ms,
                batch: b.batch.clone(),
            });
            continue;
        }
        for (i, r) in records.iter().enumerate() {
            let t = targets[i];
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

    #[test]
    fn single_shard_batches_pass_through_unchanged() {
        let bytes = make(&["a", "b", "c"]);
        let ranges = hashkey::even_ranges(1);
        let out = split(
            &[Buffered {
                first_seq: 10,
                max_timestamp_ms: 2,
                batch: bytes.clone(),
            }],
            &ranges,
            &[0],
        )
        .unwrap();
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].pieces[0].batch, bytes);
        assert_eq!(out[0].pieces[0].seq_deltas, None);
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
            &ranges,
            &[0, 1, 2, 3],
        )
        .unwrap();
        let total: u64 = out.iter().map(|s| s.records).sum();
        assert_eq!(total, 50);
        let mut seen = Vec::new();
        for s in &out {
            for p in &s.pieces {
                let fb = batch::open(&p.batch).unwrap();
                let d = p.seq_deltas.as_ref().unwrap();
                assert_eq!(d.len(), fb.records().len());
                for (i, r) in fb.records().iter().enumerate() {
                    let seq = p.first_seq + u64::from(d[i]);
                    assert_eq!(r.key().unwrap(), keys[(seq - 100) as usize]);
                    let h = hashkey::hash_key(r.key().unwrap().as_bytes());
                    assert!(ranges[s.shard as usize].contains(h));
                    seen.push(seq);
                }
                assert!(d.windows(2).all(|w| w[0] < w[1]));
            }
        }
        seen.sort_unstable();
        assert_eq!(seen, (100..150).collect::<Vec<_>>());
    }
}
