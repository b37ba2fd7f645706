//! `PutRecord` and `PutRecords` as Strata batches (pure).
//!
//! A request's records become one Strata `RecordBatch` (key = partition
//! key, value = data, timestamp = arrival), appended to the stream's edge
//! buffer by the same function as a QUIC produce: all or nothing, durable
//! before the answer. KPL aggregates are expanded into their user records
//! first ([`super::kpl`]).
//!
//! Limits are Kinesis's and checked before anything is written: a record's
//! data plus partition key at most 1 MiB, a `PutRecords` request at most
//! 500 records and 5 MiB, a partition key 1 to 256 characters, an
//! `ExplicitHashKey` a decimal 128-bit number. Any violation refuses the
//! whole request with `InvalidArgumentException`.
//!
//! `ExplicitHashKey`: the edge's forwarder routes a record by the MD5 of its
//! Strata key, so such a record is stored under a *routing key* whose MD5
//! falls in the shard that owns the explicit hash key (the first of
//! `"{hash key}/0"`, `"{hash key}/1"`, ... that does), deterministic so one
//! explicit hash key keeps its order; its partition key travels in the
//! header [`PARTITION_KEY_HEADER`], which `GetRecords` returns as
//! `PartitionKey`.

use super::error::KinesisError;
use super::kpl;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use bytes::Bytes;
use serde::Deserialize;
use strata_protocol::StreamInfo;
use strata_schema::batch::{Builder, NewRecord};
use strata_schema::hashkey::{self, HashRange};

/// Kinesis's largest record: data plus partition key.
pub const RECORD_BYTES_MAX: usize = 1024 * 1024;
/// Kinesis's largest `PutRecords` request (data plus partition keys).
pub const REQUEST_BYTES_MAX: usize = 5 * 1024 * 1024;
/// Most records in one `PutRecords`.
pub const REQUEST_RECORDS_MAX: usize = 500;
/// Longest partition key, characters.
pub const PARTITION_KEY_CHARS_MAX: usize = 256;
/// The header that keeps a record's partition key when its Strata key is a
/// routing key for an `ExplicitHashKey`.
pub const PARTITION_KEY_HEADER: &str = "kinesis.partition-key";
/// Routing keys tried for an explicit hash key before giving up (a shard
/// owning less than about 1/100,000 of the key space).
const ROUTING_TRIES_MAX: u32 = 1_000_000;

/// One record of a request.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct PutEntry {
    #[serde(default)]
    pub data: Option<String>,
    #[serde(default)]
    pub partition_key: Option<String>,
    #[serde(default)]
    pub explicit_hash_key: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct PutRecordRequest {
    #[serde(default)]
    pub stream_name: Option<String>,
    #[serde(default, rename = "StreamARN")]
    pub stream_arn: Option<String>,
    #[serde(flatten)]
    pub entry: PutEntry,
    /// Accepted; this edge's numbers increase anyway.
    #[serde(default)]
    pub sequence_number_for_ordering: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct PutRecordsRequest {
    #[serde(default)]
    pub stream_name: Option<String>,
    #[serde(default, rename = "StreamARN")]
    pub stream_arn: Option<String>,
    #[serde(default)]
    pub records: Vec<PutEntry>,
}

/// A request's records as one batch.
#[derive(Debug)]
pub struct Planned {
    pub batch: Bytes,
    /// Strata records in the batch (more than Kinesis records with KPL
    /// aggregates).
    pub records: u32,
    /// Per Kinesis record, in request order: the shard it goes to now and
    /// the index of its first Strata record in the batch.
    pub results: Vec<(u32, u32)>,
}

struct Checked {
    data: Vec<u8>,
    partition_key: String,
    explicit_hash_key: Option<u128>,
}

fn check(i: usize, e: &PutEntry) -> Result<Checked, KinesisError> {
    let at = |what: String| KinesisError::invalid(format!("Records[{i}]: {what}"));
    let data = STANDARD
        .decode(e.data.as_deref().unwrap_or(""))
        .map_err(|err| at(format!("Data is not base64: {err}")))?;
    let pk = e
        .partition_key
        .clone()
        .ok_or_else(|| at("PartitionKey is required".into()))?;
    let chars = pk.chars().count();
    if chars == 0 || chars > PARTITION_KEY_CHARS_MAX {
        return Err(at(format!(
            "PartitionKey must be 1 to {PARTITION_KEY_CHARS_MAX} characters, not {chars}"
        )));
    }
    if data.len() + pk.len() > RECORD_BYTES_MAX {
        return Err(at(format!(
            "the record's data and partition key are {} bytes, over the 1 MiB ({RECORD_BYTES_MAX} bytes) limit",
            data.len() + pk.len()
        )));
    }
    let explicit_hash_key = e
        .explicit_hash_key
        .as_deref()
        .map(|s| hashkey::parse_hash_key(s).map_err(|err| at(format!("ExplicitHashKey: {err}"))))
        .transpose()?;
    Ok(Checked {
        data,
        partition_key: pk,
        explicit_hash_key,
    })
}

/// The open shards' ranges, in hash-key order.
pub fn open_ranges(info: &StreamInfo) -> Result<Vec<(u32, HashRange)>, KinesisError> {
    let mut out = Vec::new();
    for s in info.shards.iter().filter(|s| s.is_open()) {
        let parse = |t: &str| {
            hashkey::parse_hash_key(t).map_err(|e| {
                KinesisError::new("InternalFailure", format!("stream {}: {e}", info.name))
            })
        };
        out.push((
            s.id,
            HashRange {
                start: parse(&s.start_hash_key)?,
                end: parse(&s.end_hash_key)?,
            },
        ));
    }
    out.sort_by_key(|(_, r)| r.start);
    if out.is_empty() || out[0].1.start != 0 || out[out.len() - 1].1.end != u128::MAX {
        return Err(KinesisError::new(
            "InternalFailure",
            format!(
                "the open shards of {} do not cover the hash-key space",
                info.name
            ),
        ));
    }
    Ok(out)
}

/// The open shard owning `key`.
fn owner(ranges: &[(u32, HashRange)], key: u128) -> (u32, HashRange) {
    let only: Vec<HashRange> = ranges.iter().map(|(_, r)| *r).collect();
    ranges[hashkey::route(&only, key)]
}

/// The routing key for an explicit hash key (see the module doc).
pub fn routing_key(ehk: u128, range: HashRange) -> Option<String> {
    (0..ROUTING_TRIES_MAX)
        .map(|n| format!("{ehk}/{n}"))
        .find(|k| range.contains(hashkey::hash_key(k.as_bytes())))
}

/// Builds the batch of `entries` for a stream whose open shards are
/// `ranges`, stamped `now_ms`.
pub fn plan(
    entries: &[PutEntry],
    ranges: &[(u32, HashRange)],
    now_ms: i64,
) -> Result<Planned, KinesisError> {
    if entries.is_empty() || entries.len() > REQUEST_RECORDS_MAX {
        return Err(KinesisError::invalid(format!(
            "a PutRecords request carries 1 to {REQUEST_RECORDS_MAX} records, not {}",
            entries.len()
        )));
    }
    let checked = entries
        .iter()
        .enumerate()
        .map(|(i, e)| check(i, e))
        .collect::<Result<Vec<_>, _>>()?;
    let total: usize = checked
        .iter()
        .map(|c| c.data.len() + c.partition_key.len())
        .sum();
    if total > REQUEST_BYTES_MAX {
        return Err(KinesisError::invalid(format!(
            "the request's records are {total} bytes, over the 5 MiB ({REQUEST_BYTES_MAX} bytes) limit"
        )));
    }
    let mut b = Builder::with_capacity(total + 64 * checked.len() + 1024);
    let mut results = Vec::with_capacity(checked.len());
    let mut records = 0u32;
    for (i, c) in checked.iter().enumerate() {
        let mut first_shard = None;
        let first = records;
        let mut push = |pk: &str, ehk: Option<u128>, data: &[u8]| -> Result<u32, KinesisError> {
            let (shard, key, header) = match ehk {
                None => (
                    owner(ranges, hashkey::hash_key(pk.as_bytes())).0,
                    pk.to_string(),
                    None,
                ),
                Some(h) => {
                    let (shard, range) = owner(ranges, h);
                    let key = routing_key(h, range).ok_or_else(|| {
                        KinesisError::invalid(format!(
                            "Records[{i}]: ExplicitHashKey {h}: the shard owning it is too narrow to route to"
                        ))
                    })?;
                    (shard, key, Some(pk))
                }
            };
            let headers: Vec<(&str, &[u8])> = header
                .map(|p| vec![(PARTITION_KEY_HEADER, p.as_bytes())])
                .unwrap_or_default();
            b.push(&NewRecord {
                key: Some(&key),
                value: data,
                timestamp_ms: now_ms,
                headers: &headers,
            });
            records += 1;
            Ok(shard)
        };
        if kpl::is_aggregated(&c.data) {
            let users = kpl::deaggregate(&c.data)
                .map_err(|e| KinesisError::invalid(format!("Records[{i}]: {e}")))?;
            for u in users {
                let ehk = u
                    .explicit_hash_key
                    .map(|s| {
                        hashkey::parse_hash_key(s).map_err(|e| {
                            KinesisError::invalid(format!("Records[{i}]: KPL user record: {e}"))
                        })
                    })
                    .transpose()?;
                let shard = push(u.partition_key, ehk, u.data)?;
                first_shard.get_or_insert(shard);
            }
        } else {
            first_shard = Some(push(&c.partition_key, c.explicit_hash_key, &c.data)?);
        }
        // An aggregate without user records stores nothing: it reports the
        // shard of its own partition key.
        let shard = first_shard
            .unwrap_or_else(|| owner(ranges, hashkey::hash_key(c.partition_key.as_bytes())).0);
        results.push((shard, first));
    }
    if records == 0 {
        return Err(KinesisError::invalid(
            "the request holds no records (only empty KPL aggregates)",
        ));
    }
    Ok(Planned {
        batch: b.finish(),
        records,
        results,
    })
}

#[cfg(test)]
#[path = "put_tests.rs"]
mod tests;
