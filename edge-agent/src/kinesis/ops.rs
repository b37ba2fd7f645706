//! The Kinesis operations: thin async handlers that authorize the caller
//! with the edge's copy of the access rules (the same decision the QUIC
//! port and the core make), call the pure mappings (`put`, `views`,
//! `seqno`) and the core through the SDK, and answer JSON.
//!
//! | operation | needs | Strata |
//! | --- | --- | --- |
//! | PutRecord, PutRecords | produce | the QUIC produce path (`EdgeHandler::append_batch`): edge buffer, fsync, ack |
//! | CreateStream | create | `create_stream` |
//! | DeleteStream | admin | `delete_stream` (archive kept) |
//! | Increase/DecreaseStreamRetentionPeriod | alter | `set_retention` (total retention) |
//! | DescribeStream(Summary), ListShards | describe | `describe` |
//! | ListStreams | describe (per stream) | `list_streams` |
//! | GetShardIterator | consume | `seek` |
//! | GetRecords | consume | `fetch` (tiered records come back transparently) |
//! | SplitShard, MergeShards, UpdateShardCount | alter | `reshard` |
//! | SubscribeToShard (+ the consumer operations) | consume / describe | `fetch`, pushed as event-stream messages (`subscribe`) |

use super::error::KinesisError;
use super::seqno::{self, Iterators, Position};
use super::{put, views};
use crate::ingest::EdgeHandler;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;
use strata_client::api;
use strata_client::cluster::Cluster;
use strata_protocol::acl::Operation;
use strata_protocol::{Reshard, Start, StreamInfo};
use strata_runtime::server::Caller;

/// `GetRecords` returns at most this many records (Kinesis: 10,000).
pub const GET_RECORDS_MAX: u32 = 10_000;

/// What the operations share.
pub struct Kinesis {
    pub edge: Arc<EdgeHandler>,
    pub iterators: Iterators,
}

pub(super) fn parse<T: DeserializeOwned>(body: &[u8]) -> Result<T, KinesisError> {
    let body = if body.is_empty() { &b"{}"[..] } else { body };
    serde_json::from_slice(body).map_err(|e| {
        KinesisError::serialization(format!(
            "the request body is not the JSON this operation takes: {e}"
        ))
    })
}

/// `StreamName`/`StreamARN` and the other common fields of most requests.
#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
struct Target {
    #[serde(default)]
    stream_name: Option<String>,
    #[serde(default, rename = "StreamARN")]
    stream_arn: Option<String>,
}

impl Target {
    fn name(&self) -> Result<String, KinesisError> {
        views::stream_name(self.stream_name.as_deref(), self.stream_arn.as_deref())
    }
}

pub(super) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

impl Kinesis {
    pub(super) fn core(&self) -> &Arc<Cluster> {
        self.edge.registry().core()
    }

    pub(super) fn allow(
        &self,
        caller: &Caller,
        op: Operation,
        stream: &str,
    ) -> Result<(), KinesisError> {
        self.edge.rules().authorize(caller, op, stream)?;
        Ok(())
    }

    /// The offset `start` names in `stream`/`shard`, for a caller allowed
    /// to consume it (GetShardIterator, SubscribeToShard).
    pub(super) async fn seek_for(
        &self,
        caller: &Caller,
        stream: &str,
        shard: u32,
        start: Start,
    ) -> Result<u64, KinesisError> {
        self.allow(caller, Operation::Consume, stream)?;
        Ok(self
            .core()
            .to_reader(stream, shard, |c| async move {
                api::seek(&c, stream, shard, start).await
            })
            .await?)
    }

    pub(super) async fn describe(&self, stream: &str) -> Result<StreamInfo, KinesisError> {
        Ok(self.core().describe(stream).await?)
    }

    /// Runs operation `op` for `caller`.
    pub async fn handle(
        &self,
        op: &str,
        body: &[u8],
        caller: &Caller,
    ) -> Result<Value, KinesisError> {
        match op {
            "PutRecord" => self.put_record(body, caller).await,
            "PutRecords" => self.put_records(body, caller).await,
            "CreateStream" => self.create_stream(body, caller).await,
            "DeleteStream" => self.delete_stream(body, caller).await,
            "DescribeStream" | "DescribeStreamSummary" | "ListShards" => {
                self.describe_op(op, body, caller).await
            }
            "ListStreams" => self.list_streams(body, caller).await,
            "GetShardIterator" => self.get_shard_iterator(body, caller).await,
            "GetRecords" => self.get_records(body, caller).await,
            "SplitShard" | "MergeShards" | "UpdateShardCount" => {
                self.reshard(op, body, caller).await
            }
            "IncreaseStreamRetentionPeriod" => self.retention(body, caller, true).await,
            "DecreaseStreamRetentionPeriod" => self.retention(body, caller, false).await,
            "RegisterStreamConsumer"
            | "DescribeStreamConsumer"
            | "DeregisterStreamConsumer"
            | "ListStreamConsumers" => self.consumer_op(op, body, caller).await,
            _ => Err(unsupported(op)),
        }
    }

    async fn put(
        &self,
        stream: &str,
        entries: &[put::PutEntry],
        caller: &Caller,
    ) -> Result<(put::Planned, Result<u64, KinesisError>), KinesisError> {
        // Checked again by `append_batch`; first, so a caller without the
        // right cannot make the agent open a buffer for a stream.
        self.allow(caller, Operation::Produce, stream)?;
        // The shard map the edge routes by (described by the core once, then cached).
        let state = self.edge.stream(stream).await?;
        let info = state.info.lock().expect("info lock").clone();
        let planned = put::plan(entries, &put::open_ranges(&info)?, now_ms())?;
        let appended = self
            .edge
            .append_batch(stream, planned.batch.clone(), caller)
            .await
            .map(|(_, first_seq)| first_seq)
            .map_err(KinesisError::from);
        Ok((planned, appended))
    }

    async fn put_record(&self, body: &[u8], caller: &Caller) -> Result<Value, KinesisError> {
        let r: put::PutRecordRequest = parse(body)?;
        let stream = views::stream_name(r.stream_name.as_deref(), r.stream_arn.as_deref())?;
        let (planned, appended) = self
            .put(&stream, std::slice::from_ref(&r.entry), caller)
            .await?;
        let first = appended?;
        let (shard, index) = planned.results[0];
        Ok(json!({
            "ShardId": seqno::shard_id(shard),
            "SequenceNumber": seqno::edge(first + u64::from(index)),
            "EncryptionType": "NONE",
        }))
    }

    async fn put_records(&self, body: &[u8], caller: &Caller) -> Result<Value, KinesisError> {
        let r: put::PutRecordsRequest = parse(body)?;
        let stream = views::stream_name(r.stream_name.as_deref(), r.stream_arn.as_deref())?;
        let (planned, appended) = self.put(&stream, &r.records, caller).await?;
        let records: Vec<Value> = match &appended {
            Ok(first) => planned
                .results
                .iter()
                .map(|(shard, index)| {
                    json!({
                        "SequenceNumber": seqno::edge(first + u64::from(*index)),
                        "ShardId": seqno::shard_id(*shard),
                    })
                })
                .collect(),
            // The buffer is full (policy `reject`): every record failed,
            // which Kinesis reports per record with HTTP 200.
            Err(e) if e.kind == "ProvisionedThroughputExceededException" => planned
                .results
                .iter()
                .map(|_| json!({"ErrorCode": e.kind, "ErrorMessage": e.message}))
                .collect(),
            Err(e) => return Err(e.clone()),
        };
        let failed = if appended.is_ok() { 0 } else { records.len() };
        Ok(json!({"FailedRecordCount": failed, "Records": records, "EncryptionType": "NONE"}))
    }

    async fn create_stream(&self, body: &[u8], caller: &Caller) -> Result<Value, KinesisError> {
        #[derive(Deserialize)]
        #[serde(rename_all = "PascalCase")]
        struct Req {
            stream_name: String,
            #[serde(default)]
            shard_count: Option<u32>,
        }
        let r: Req = parse(body)?;
        let name = views::stream_name(Some(&r.stream_name), None)?;
        let shards = r.shard_count.unwrap_or(1);
        if !(1..=1024).contains(&shards) {
            return Err(KinesisError::invalid(format!(
                "ShardCount must be 1 to 1024, not {shards}"
            )));
        }
        self.allow(caller, Operation::Create, &name)?;
        let name = name.as_str();
        self.core()
            .any(|c| async move { api::create_stream(&c, name, shards, 0).await })
            .await?;
        Ok(json!({}))
    }

    /// Increase/DecreaseStreamRetentionPeriod: the stream's total retention
    /// (`views::retention_change` decides), its local retention kept.
    async fn retention(
        &self,
        body: &[u8],
        caller: &Caller,
        increase: bool,
    ) -> Result<Value, KinesisError> {
        #[derive(Deserialize)]
        #[serde(rename_all = "PascalCase")]
        struct Req {
            #[serde(flatten)]
            target: Target,
            retention_period_hours: u64,
        }
        let r: Req = parse(body)?;
        let name = r.target.name()?;
        self.allow(caller, Operation::Alter, &name)?;
        let info = self.describe(&name).await?;
        let total_ms =
            views::retention_change(info.retention.total_ms, r.retention_period_hours, increase)?;
        let retention = &strata_protocol::Retention {
            total_ms: Some(total_ms),
            ..info.retention
        };
        let name = name.as_str();
        self.core()
            .any(|c| async move { api::set_retention(&c, name, retention).await })
            .await?;
        Ok(json!({}))
    }

    async fn delete_stream(&self, body: &[u8], caller: &Caller) -> Result<Value, KinesisError> {
        let r: Target = parse(body)?;
        let name = r.name()?;
        self.allow(caller, Operation::Admin, &name)?;
        let name = name.as_str();
        self.core()
            .any(|c| async move { api::delete_stream(&c, name, false).await })
            .await?;
        Ok(json!({}))
    }

    async fn describe_op(
        &self,
        op: &str,
        body: &[u8],
        caller: &Caller,
    ) -> Result<Value, KinesisError> {
        #[derive(Deserialize, Default)]
        #[serde(rename_all = "PascalCase")]
        struct Req {
            #[serde(flatten)]
            target: Target,
            #[serde(default)]
            next_token: Option<String>,
            #[serde(default)]
            exclusive_start_shard_id: Option<String>,
            #[serde(default)]
            max_results: Option<usize>,
        }
        let r: Req = parse(body)?;
        // ListShards' NextToken carries the stream (and the last shard given).
        let (name, after) = match r.next_token.as_deref().and_then(|t| t.rsplit_once('|')) {
            Some((n, last)) => (n.to_string(), Some(seqno::parse_shard_id(last)?)),
            None => (
                r.target.name()?,
                r.exclusive_start_shard_id
                    .as_deref()
                    .map(seqno::parse_shard_id)
                    .transpose()?,
            ),
        };
        self.allow(caller, Operation::Describe, &name)?;
        let info = self.describe(&name).await?;
        Ok(match op {
            "DescribeStream" => views::describe_stream(&info),
            "DescribeStreamSummary" => views::describe_stream_summary(&info),
            _ => views::list_shards(&info, after, r.max_results.unwrap_or(1000).clamp(1, 10_000)),
        })
    }

    async fn list_streams(&self, body: &[u8], caller: &Caller) -> Result<Value, KinesisError> {
        #[derive(Deserialize, Default)]
        #[serde(rename_all = "PascalCase")]
        struct Req {
            #[serde(default)]
            limit: Option<usize>,
            #[serde(default)]
            exclusive_start_stream_name: Option<String>,
            #[serde(default)]
            next_token: Option<String>,
        }
        let r: Req = parse(body)?;
        let streams = self
            .core()
            .any(|c| async move { api::list_streams(&c).await })
            .await?;
        let visible: Vec<StreamInfo> = streams
            .into_iter()
            .filter(|s| self.allow(caller, Operation::Describe, &s.name).is_ok())
            .collect();
        let after = r.next_token.or(r.exclusive_start_stream_name);
        let mut v = views::list_streams(
            &visible,
            after.as_deref(),
            r.limit.unwrap_or(100).clamp(1, 10_000),
        );
        if v["HasMoreStreams"] == json!(true) {
            if let Some(last) = v["StreamNames"].as_array().and_then(|a| a.last()).cloned() {
                v["NextToken"] = last;
            }
        }
        Ok(v)
    }

    async fn get_shard_iterator(
        &self,
        body: &[u8],
        caller: &Caller,
    ) -> Result<Value, KinesisError> {
        #[derive(Deserialize)]
        #[serde(rename_all = "PascalCase")]
        struct Req {
            #[serde(flatten)]
            target: Target,
            shard_id: String,
            shard_iterator_type: String,
            #[serde(default)]
            starting_sequence_number: Option<String>,
            #[serde(default)]
            timestamp: Option<f64>,
        }
        let r: Req = parse(body)?;
        let stream = r.target.name()?;
        let shard = seqno::parse_shard_id(&r.shard_id)?;
        let start = start_of(
            &r.shard_iterator_type,
            r.starting_sequence_number.as_deref(),
            r.timestamp,
            shard,
        )?;
        let offset = self.seek_for(caller, &stream, shard, start).await?;
        let it = self.iterators.issue(
            &Position {
                stream,
                shard,
                offset,
            },
            now_ms(),
        );
        Ok(json!({ "ShardIterator": it }))
    }

    async fn get_records(&self, body: &[u8], caller: &Caller) -> Result<Value, KinesisError> {
        #[derive(Deserialize)]
        #[serde(rename_all = "PascalCase")]
        struct Req {
            shard_iterator: String,
            #[serde(default)]
            limit: Option<u32>,
        }
        let r: Req = parse(body)?;
        let limit = r.limit.unwrap_or(GET_RECORDS_MAX);
        if !(1..=GET_RECORDS_MAX).contains(&limit) {
            return Err(KinesisError::invalid(format!(
                "Limit must be 1 to {GET_RECORDS_MAX}, not {limit}"
            )));
        }
        let now = now_ms();
        let pos = self.iterators.open(&r.shard_iterator, now)?;
        self.allow(caller, Operation::Consume, &pos.stream)?;
        let (s, shard, offset) = (pos.stream.as_str(), pos.shard, pos.offset);
        let f = self
            .core()
            .to_reader(s, shard, |c| async move {
                api::fetch(&c, s, shard, offset, limit, Duration::ZERO).await
            })
            .await?;
        let (records, behind) = page(shard, &f, now);
        let mut v = json!({ "Records": records, "MillisBehindLatest": behind });
        if f.end_of_shard {
            let info = self.describe(s).await?;
            v["NextShardIterator"] = Value::Null;
            v["ChildShards"] = views::child_shards(&info, shard);
        } else {
            let next = Position {
                stream: pos.stream.clone(),
                shard,
                offset: f.next_offset,
            };
            v["NextShardIterator"] = json!(self.iterators.issue(&next, now));
        }
        Ok(v)
    }

    async fn reshard(&self, op: &str, body: &[u8], caller: &Caller) -> Result<Value, KinesisError> {
        #[derive(Deserialize)]
        #[serde(rename_all = "PascalCase")]
        struct Req {
            #[serde(flatten)]
            target: Target,
            #[serde(default)]
            shard_to_split: Option<String>,
            #[serde(default)]
            new_starting_hash_key: Option<String>,
            #[serde(default)]
            shard_to_merge: Option<String>,
            #[serde(default)]
            adjacent_shard_to_merge: Option<String>,
            #[serde(default)]
            target_shard_count: Option<u32>,
        }
        let r: Req = parse(body)?;
        let stream = r.target.name()?;
        let need = |v: &Option<String>, what: &str| {
            v.as_deref()
                .ok_or_else(|| KinesisError::invalid(format!("{op} needs {what}")))
                .and_then(seqno::parse_shard_id)
        };
        let change = match op {
            "SplitShard" => Reshard::Split {
                shard: need(&r.shard_to_split, "ShardToSplit")?,
                at: Some(
                    r.new_starting_hash_key
                        .as_deref()
                        .ok_or_else(|| KinesisError::invalid("SplitShard needs NewStartingHashKey"))
                        .and_then(|s| {
                            strata_schema::hashkey::parse_hash_key(s)
                                .map_err(|e| KinesisError::invalid(e.to_string()))
                        })?,
                ),
            },
            "MergeShards" => Reshard::Merge {
                shards: [
                    need(&r.shard_to_merge, "ShardToMerge")?,
                    need(&r.adjacent_shard_to_merge, "AdjacentShardToMerge")?,
                ],
            },
            _ => Reshard::Scale {
                count: r.target_shard_count.ok_or_else(|| {
                    KinesisError::invalid("UpdateShardCount needs TargetShardCount")
                })?,
            },
        };
        self.allow(caller, Operation::Alter, &stream)?;
        let before = self.describe(&stream).await?;
        let s = stream.as_str();
        let change = &change;
        let after = self
            .core()
            .any(|c| async move { api::reshard(&c, s, change).await })
            .await?;
        if op != "UpdateShardCount" {
            return Ok(json!({}));
        }
        let open = |i: &StreamInfo| i.shards.iter().filter(|s| s.is_open()).count();
        Ok(json!({
            "StreamName": stream,
            "StreamARN": views::arn(&stream),
            "CurrentShardCount": open(&before),
            "TargetShardCount": open(&after),
        }))
    }
}

/// Where a `ShardIteratorType` / `StartingPosition` type starts in `shard`.
pub(super) fn start_of(
    kind: &str,
    seq: Option<&str>,
    timestamp: Option<f64>,
    shard: u32,
) -> Result<Start, KinesisError> {
    let seq = || {
        seq.ok_or_else(|| KinesisError::invalid(format!("{kind} needs a starting sequence number")))
            .and_then(|s| seqno::parse_canonical(s, shard))
    };
    Ok(match kind {
        "TRIM_HORIZON" => Start::Oldest,
        "LATEST" => Start::Latest,
        "AT_SEQUENCE_NUMBER" => Start::Offset(seq()?),
        "AFTER_SEQUENCE_NUMBER" => Start::Offset(seq()?.saturating_add(1)),
        "AT_TIMESTAMP" => {
            let t = timestamp.ok_or_else(|| KinesisError::invalid("AT_TIMESTAMP needs Timestamp"))?;
            Start::TimestampMs((t * 1000.0).round() as i64)
        }
        other => {
            return Err(KinesisError::invalid(format!(
                "starting position type {other:?} is not one of TRIM_HORIZON, LATEST, AT_SEQUENCE_NUMBER, AFTER_SEQUENCE_NUMBER, AT_TIMESTAMP"
            )))
        }
    })
}

/// A fetched page as Kinesis records, and how far behind the shard's
/// newest record its last one is (0 when caught up).
pub(super) fn page(shard: u32, f: &api::Fetched, now_ms: i64) -> (Vec<Value>, i64) {
    let records = f
        .records
        .iter()
        .map(|rec| {
            let pk = rec
                .headers
                .iter()
                .find(|(k, _)| k == put::PARTITION_KEY_HEADER)
                .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
                .or_else(|| rec.key.clone())
                .unwrap_or_default();
            json!({
                "SequenceNumber": seqno::canonical(shard, rec.offset),
                "ApproximateArrivalTimestamp": rec.timestamp_ms as f64 / 1000.0,
                "Data": STANDARD.encode(&rec.data),
                "PartitionKey": pk,
            })
        })
        .collect();
    let behind = match f.records.last() {
        Some(last) if f.next_offset < f.high_watermark => (now_ms - last.timestamp_ms).max(0),
        _ => 0,
    };
    (records, behind)
}

/// The error for an operation this endpoint does not implement.
pub fn unsupported(op: &str) -> KinesisError {
    KinesisError::new(
        "UnknownOperationException",
        format!("{op} is not supported by the Strata edge's Kinesis API (see docs/kinesis.md for the operations it serves)"),
    )
}
