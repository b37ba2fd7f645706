//! Kinesis views of Strata streams (pure): `DescribeStream`,
//! `DescribeStreamSummary`, `ListStreams`, `ListShards` and the
//! `ChildShards` of `GetRecords`, built from the core's `StreamInfo`.
//!
//! - Every stream is `ACTIVE` and `PROVISIONED`; a shard's
//!   `SequenceNumberRange` runs from its first retained offset's canonical
//!   number and, once the shard is closed, ends at its last record's.
//! - `ParentShardId`/`AdjacentParentShardId` are the shard's lineage.
//! - `RetentionPeriodHours`: the stream's total retention; unlimited
//!   (Strata's default: the archive keeps everything) is reported as 8760,
//!   Kinesis's largest value.
//! - ARNs are `arn:aws:kinesis:<region>:000000000000:stream/<name>`.

use super::error::KinesisError;
use super::seqno;
use serde_json::{json, Value};
use strata_protocol::{ShardInfo, StreamInfo};

/// Kinesis's longest retention, hours: what "unlimited" is shown as.
pub const RETENTION_HOURS_MAX: u64 = 8760;
/// The region in ARNs.
pub const REGION: &str = "us-east-1";

pub fn arn(stream: &str) -> String {
    format!("arn:aws:kinesis:{REGION}:000000000000:stream/{stream}")
}

/// The stream named by `StreamName` or `StreamARN`.
pub fn stream_name(name: Option<&str>, arn: Option<&str>) -> Result<String, KinesisError> {
    let name = match (name, arn) {
        (Some(n), _) => n.to_string(),
        (None, Some(a)) => a
            .rsplit_once(":stream/")
            .map(|(_, n)| n.to_string())
            .ok_or_else(|| KinesisError::invalid(format!("StreamARN {a:?} is not a stream ARN")))?,
        (None, None) => {
            return Err(KinesisError::invalid("StreamName or StreamARN is required"));
        }
    };
    strata_schema::validate_stream_name(&name).map_err(|e| KinesisError::invalid(e.to_string()))?;
    Ok(name)
}

/// Kinesis's shortest retention, hours.
pub const RETENTION_HOURS_MIN: u64 = 24;

/// The total retention (ms) that `IncreaseStreamRetentionPeriod`
/// (`increase`) or `DecreaseStreamRetentionPeriod` to `hours` sets on a
/// stream whose total retention is `current_ms` (None: unlimited, which no
/// increase can reach). Kinesis's rules: 24 to 8760 hours; an increase may
/// not lower the retention, a decrease may not raise it.
pub fn retention_change(
    current_ms: Option<u64>,
    hours: u64,
    increase: bool,
) -> Result<u64, KinesisError> {
    if !(RETENTION_HOURS_MIN..=RETENTION_HOURS_MAX).contains(&hours) {
        return Err(KinesisError::invalid(format!(
            "RetentionPeriodHours {hours} is outside {RETENTION_HOURS_MIN}..={RETENTION_HOURS_MAX}"
        )));
    }
    let want = hours * 3_600_000;
    match (current_ms, increase) {
        (None, true) => Err(KinesisError::invalid(
            "the stream's retention is unlimited (Strata's default; shown as 8760 hours): an increase cannot shorten it, use DecreaseStreamRetentionPeriod",
        )),
        (Some(cur), true) if want < cur => Err(KinesisError::invalid(format!(
            "IncreaseStreamRetentionPeriod to {hours} hours would lower the retention of {} hours",
            cur / 3_600_000
        ))),
        (Some(cur), false) if want > cur => Err(KinesisError::invalid(format!(
            "DecreaseStreamRetentionPeriod to {hours} hours would raise the retention of {} hours",
            cur / 3_600_000
        ))),
        _ => Ok(want),
    }
}

fn retention_hours(info: &StreamInfo) -> u64 {
    info.retention
        .total_ms
        .map_or(RETENTION_HOURS_MAX, |ms| (ms / 3_600_000).max(1))
}

fn secs(ms: i64) -> f64 {
    ms as f64 / 1000.0
}

/// One shard as Kinesis describes it.
pub fn shard(s: &ShardInfo) -> Value {
    let mut v = json!({
        "ShardId": seqno::shard_id(s.id),
        "HashKeyRange": {"StartingHashKey": s.start_hash_key, "EndingHashKey": s.end_hash_key},
        "SequenceNumberRange": {"StartingSequenceNumber": seqno::canonical(s.id, s.first_offset)},
    });
    if let Some(p) = s.parents.first() {
        v["ParentShardId"] = json!(seqno::shard_id(*p));
    }
    if let Some(p) = s.parents.get(1) {
        v["AdjacentParentShardId"] = json!(seqno::shard_id(*p));
    }
    if s.is_closed() {
        let end = s.end_offset.unwrap_or(s.next_offset);
        // An empty closed shard has no last record: its range ends where it starts.
        let last = end.max(s.first_offset + 1) - 1;
        v["SequenceNumberRange"]["EndingSequenceNumber"] = json!(seqno::canonical(s.id, last));
    }
    v
}

fn summary_fields(info: &StreamInfo) -> Value {
    json!({
        "StreamName": info.name,
        "StreamARN": arn(&info.name),
        "StreamStatus": "ACTIVE",
        "StreamModeDetails": {"StreamMode": "PROVISIONED"},
        "RetentionPeriodHours": retention_hours(info),
        "StreamCreationTimestamp": secs(info.created_ms),
        "EnhancedMonitoring": [{"ShardLevelMetrics": []}],
        "EncryptionType": "NONE",
    })
}

/// `DescribeStream`: every shard (no paging: `HasMoreShards` false).
pub fn describe_stream(info: &StreamInfo) -> Value {
    let mut d = summary_fields(info);
    d["Shards"] = Value::Array(info.shards.iter().map(shard).collect());
    d["HasMoreShards"] = json!(false);
    json!({ "StreamDescription": d })
}

/// `DescribeStreamSummary`.
pub fn describe_stream_summary(info: &StreamInfo) -> Value {
    let mut d = summary_fields(info);
    d["OpenShardCount"] = json!(info.shards.iter().filter(|s| s.is_open()).count());
    d["ConsumerCount"] = json!(0);
    json!({ "StreamDescriptionSummary": d })
}

/// `ListStreams`, after `exclusive_start` and at most `limit` names.
pub fn list_streams(streams: &[StreamInfo], exclusive_start: Option<&str>, limit: usize) -> Value {
    let mut names: Vec<&StreamInfo> = streams
        .iter()
        .filter(|s| exclusive_start.is_none_or(|x| s.name.as_str() > x))
        .collect();
    names.sort_by(|a, b| a.name.cmp(&b.name));
    let more = names.len() > limit;
    names.truncate(limit);
    json!({
        "StreamNames": names.iter().map(|s| s.name.clone()).collect::<Vec<_>>(),
        "HasMoreStreams": more,
        "StreamSummaries": names.iter().map(|s| json!({
            "StreamName": s.name,
            "StreamARN": arn(&s.name),
            "StreamStatus": "ACTIVE",
            "StreamModeDetails": {"StreamMode": "PROVISIONED"},
            "StreamCreationTimestamp": secs(s.created_ms),
        })).collect::<Vec<_>>(),
    })
}

/// `ListShards`: shards after `exclusive_start`, at most `limit`; a
/// `NextToken` (the last shard id given) when more remain.
pub fn list_shards(info: &StreamInfo, exclusive_start: Option<u32>, limit: usize) -> Value {
    let mut shards: Vec<&ShardInfo> = info
        .shards
        .iter()
        .filter(|s| exclusive_start.is_none_or(|x| s.id > x))
        .collect();
    shards.sort_by_key(|s| s.id);
    let more = shards.len() > limit;
    shards.truncate(limit);
    let mut v = json!({ "Shards": shards.iter().map(|s| shard(s)).collect::<Vec<_>>() });
    if more {
        if let Some(last) = shards.last() {
            v["NextToken"] = json!(format!("{}|{}", info.name, last.id));
        }
    }
    v
}

/// The `ChildShards` of a closed shard: those naming it as a parent.
pub fn child_shards(info: &StreamInfo, parent: u32) -> Value {
    Value::Array(
        info.shards
            .iter()
            .filter(|s| s.parents.contains(&parent))
            .map(|s| {
                json!({
                    "ShardId": seqno::shard_id(s.id),
                    "ParentShards": s.parents.iter().map(|p| seqno::shard_id(*p)).collect::<Vec<_>>(),
                    "HashKeyRange": {"StartingHashKey": s.start_hash_key, "EndingHashKey": s.end_hash_key},
                })
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info() -> StreamInfo {
        let mk = |id: u32, start: &str, end: &str, parents: Vec<u32>, state: &str| ShardInfo {
            id,
            start_hash_key: start.into(),
            end_hash_key: end.into(),
            first_offset: 0,
            next_offset: 10,
            leader_node: 1,
            replicas: vec![1],
            tiered_offset: 0,
            tier_objects: 0,
            tier_bytes: 0,
            newest_timestamp_ms: 0,
            parents,
            state: state.into(),
            end_offset: (state == "closed").then_some(10),
        };
        StreamInfo {
            name: "s".into(),
            replication: 1,
            created_ms: 1_500,
            shards: vec![
                mk(
                    0,
                    "0",
                    "340282366920938463463374607431768211455",
                    vec![],
                    "closed",
                ),
                mk(
                    1,
                    "0",
                    "170141183460469231731687303715884105727",
                    vec![0],
                    "open",
                ),
                mk(
                    2,
                    "170141183460469231731687303715884105728",
                    "340282366920938463463374607431768211455",
                    vec![0],
                    "open",
                ),
            ],
            nodes: vec![],
            archive_url: String::new(),
            retention: Default::default(),
            groups: vec![],
        }
    }

    #[test]
    fn retention_changes_follow_kinesis_rules() {
        let h = |n: u64| n * 3_600_000;
        assert_eq!(retention_change(None, 48, false).unwrap(), h(48));
        assert!(retention_change(None, 8760, true).is_err());
        assert_eq!(retention_change(Some(h(48)), 72, true).unwrap(), h(72));
        assert_eq!(retention_change(Some(h(48)), 48, true).unwrap(), h(48));
        assert!(retention_change(Some(h(48)), 24, true).is_err());
        assert!(retention_change(Some(h(48)), 72, false).is_err());
        assert_eq!(retention_change(Some(h(48)), 24, false).unwrap(), h(24));
        for bad in [0, 23, 8761] {
            let e = retention_change(Some(h(48)), bad, false).unwrap_err();
            assert_eq!(e.kind, "InvalidArgumentException");
        }
    }

    #[test]
    fn shards_carry_lineage_ranges_and_sequence_ranges() {
        let d = describe_stream(&info());
        let shards = d["StreamDescription"]["Shards"].as_array().unwrap();
        assert_eq!(
            shards[0]["SequenceNumberRange"]["EndingSequenceNumber"],
            seqno::canonical(0, 9)
        );
        assert!(shards[1]["SequenceNumberRange"]
            .get("EndingSequenceNumber")
            .is_none());
        assert_eq!(shards[1]["ParentShardId"], "shardId-000000000000");
        assert_eq!(
            shards[2]["HashKeyRange"]["EndingHashKey"],
            "340282366920938463463374607431768211455"
        );
        assert_eq!(d["StreamDescription"]["RetentionPeriodHours"], 8760);
        assert_eq!(d["StreamDescription"]["StreamCreationTimestamp"], 1.5);
        let s = describe_stream_summary(&info());
        assert_eq!(s["StreamDescriptionSummary"]["OpenShardCount"], 2);
        let c = child_shards(&info(), 0);
        assert_eq!(c.as_array().unwrap().len(), 2);
        assert_eq!(c[1]["ParentShards"][0], "shardId-000000000000");
    }

    #[test]
    fn listings_page() {
        let l = list_shards(&info(), None, 2);
        assert_eq!(l["Shards"].as_array().unwrap().len(), 2);
        assert_eq!(l["NextToken"], "s|1");
        let l = list_shards(&info(), Some(1), 100);
        assert_eq!(l["Shards"][0]["ShardId"], "shardId-000000000002");
        assert!(l.get("NextToken").is_none());
        let mut b = info();
        b.name = "b".into();
        let l = list_streams(&[info(), b], None, 1);
        assert_eq!(l["StreamNames"], json!(["b"]));
        assert_eq!(l["HasMoreStreams"], true);
        let l = list_streams(&[info()], Some("b"), 10);
        assert_eq!(l["StreamNames"], json!(["s"]));
    }

    #[test]
    fn stream_names_come_from_the_name_or_the_arn() {
        assert_eq!(stream_name(Some("a"), None).unwrap(), "a");
        assert_eq!(stream_name(None, Some(&arn("b"))).unwrap(), "b");
        assert!(stream_name(None, None).is_err());
        assert!(stream_name(None, Some("arn:x")).is_err());
    }
}
