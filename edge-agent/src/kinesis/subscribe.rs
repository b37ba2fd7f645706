//! `SubscribeToShard` (enhanced fan-out) over HTTP/1.1: the records of one
//! shard pushed to the caller as AWS event-stream messages for up to
//! [`SUBSCRIPTION_MS`], and the stateless consumer operations it needs.
//!
//! Event-stream framing ([`encode_event`], pure): a message is its total
//! length and headers length (u32, big-endian), the CRC-32 of those 8 bytes,
//! the headers (name length u8, name, type 7 = string, value length u16,
//! value), the payload, and the CRC-32 (IEEE) of everything before it.
//! The first message is an `initial-response`; then each
//! `SubscribeToShardEvent` carries `Records`, `ContinuationSequenceNumber`,
//! `MillisBehindLatest` and, at the end of a closed shard, `ChildShards`
//! (and the subscription ends there). boto3 reads these as
//! `response["EventStream"]`.
//!
//! Consumers are not stored: `RegisterStreamConsumer` answers an `ACTIVE`
//! consumer whose ARN names the stream and the consumer
//! (`<stream ARN>/consumer/<name>:<creation s>`), `DescribeStreamConsumer`
//! reads it back from the ARN, `DeregisterStreamConsumer` has nothing to
//! remove and `ListStreamConsumers` lists none. A subscription reads the
//! shard from the core like `GetRecords` (long polls of a second).

use super::error::KinesisError;
use super::ops::{self, parse, Kinesis};
use super::{seqno, views};
use bytes::Bytes;
use serde::Deserialize;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::{Duration, Instant};
use strata_client::api;
use strata_client::cluster::Cluster;
use strata_protocol::acl::Operation;
use strata_runtime::server::Caller;
use tokio::sync::mpsc;

/// A subscription lasts this long (as in Kinesis); the client subscribes again.
pub const SUBSCRIPTION_MS: u64 = 5 * 60 * 1000;
/// An event goes out at least this often, records or not.
pub const HEARTBEAT_MS: u64 = 5_000;

const fn crc_table() -> [u32; 256] {
    let mut t = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 {
                0xEDB8_8320 ^ (c >> 1)
            } else {
                c >> 1
            };
            k += 1;
        }
        t[i] = c;
        i += 1;
    }
    t
}

static CRC_TABLE: [u32; 256] = crc_table();

/// CRC-32 (IEEE 802.3, as zlib).
pub fn crc32(data: &[u8]) -> u32 {
    !data.iter().fold(!0u32, |c, &b| {
        CRC_TABLE[((c ^ u32::from(b)) & 0xff) as usize] ^ (c >> 8)
    })
}

/// One event-stream message with string headers.
pub fn encode_message(headers: &[(&str, &str)], payload: &[u8]) -> Vec<u8> {
    let mut h = Vec::new();
    for (name, value) in headers {
        h.push(name.len() as u8);
        h.extend_from_slice(name.as_bytes());
        h.push(7);
        h.extend_from_slice(&(value.len() as u16).to_be_bytes());
        h.extend_from_slice(value.as_bytes());
    }
    let total = 12 + h.len() + payload.len() + 4;
    let mut m = Vec::with_capacity(total);
    m.extend_from_slice(&(total as u32).to_be_bytes());
    m.extend_from_slice(&(h.len() as u32).to_be_bytes());
    let prelude_crc = crc32(&m);
    m.extend_from_slice(&prelude_crc.to_be_bytes());
    m.extend_from_slice(&h);
    m.extend_from_slice(payload);
    let crc = crc32(&m);
    m.extend_from_slice(&crc.to_be_bytes());
    m
}

/// An `event` message of type `event_type` with a JSON payload.
pub fn encode_event(event_type: &str, payload: &Value) -> Vec<u8> {
    encode_message(
        &[
            (":message-type", "event"),
            (":event-type", event_type),
            (":content-type", "application/json"),
        ],
        &serde_json::to_vec(payload).expect("JSON values encode"),
    )
}

/// The ARN of consumer `name` of `stream`, registered at `created_s`.
pub fn consumer_arn(stream: &str, name: &str, created_s: u64) -> String {
    format!("{}/consumer/{name}:{created_s}", views::arn(stream))
}

/// The stream, consumer name and creation time a consumer ARN names.
pub fn parse_consumer_arn(arn: &str) -> Result<(String, String, u64), KinesisError> {
    let bad = || {
        KinesisError::invalid(format!(
            "ConsumerARN {arn:?} is not a consumer ARN of this endpoint"
        ))
    };
    let (stream_arn, consumer) = arn.split_once("/consumer/").ok_or_else(bad)?;
    let stream = views::stream_name(None, Some(stream_arn))?;
    let (name, created) = consumer.rsplit_once(':').ok_or_else(bad)?;
    if name.is_empty() {
        return Err(bad());
    }
    Ok((
        stream,
        name.to_string(),
        created.parse().map_err(|_| bad())?,
    ))
}

/// The `Consumer` / `ConsumerDescription` object.
pub fn consumer(stream: &str, name: &str, created_s: u64) -> Value {
    json!({
        "ConsumerName": name,
        "ConsumerARN": consumer_arn(stream, name, created_s),
        "ConsumerStatus": "ACTIVE",
        "ConsumerCreationTimestamp": created_s as f64,
        "StreamARN": views::arn(stream),
    })
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ConsumerReq {
    #[serde(default)]
    stream_name: Option<String>,
    #[serde(default, rename = "StreamARN")]
    stream_arn: Option<String>,
    #[serde(default)]
    consumer_name: Option<String>,
    #[serde(default, rename = "ConsumerARN")]
    consumer_arn: Option<String>,
}

impl Kinesis {
    /// `RegisterStreamConsumer`, `DescribeStreamConsumer`,
    /// `DeregisterStreamConsumer`, `ListStreamConsumers` (consumers are
    /// not stored: see the module doc).
    pub(super) async fn consumer_op(
        &self,
        op: &str,
        body: &[u8],
        caller: &Caller,
    ) -> Result<Value, KinesisError> {
        let r: ConsumerReq = parse(body)?;
        let (stream, name, created) = match &r.consumer_arn {
            Some(arn) => {
                let (s, n, c) = parse_consumer_arn(arn)?;
                (s, Some(n), c)
            }
            None => (
                views::stream_name(r.stream_name.as_deref(), r.stream_arn.as_deref())?,
                r.consumer_name.clone(),
                (ops::now_ms() / 1000) as u64,
            ),
        };
        self.allow(caller, Operation::Describe, &stream)?;
        // The stream must exist.
        self.describe(&stream).await?;
        let need_name = || {
            name.clone().ok_or_else(|| {
                KinesisError::invalid(format!("{op} needs ConsumerName or ConsumerARN"))
            })
        };
        Ok(match op {
            "RegisterStreamConsumer" => {
                json!({ "Consumer": consumer(&stream, &need_name()?, created) })
            }
            "DescribeStreamConsumer" => {
                json!({ "ConsumerDescription": consumer(&stream, &need_name()?, created) })
            }
            "DeregisterStreamConsumer" => json!({}),
            _ => json!({ "Consumers": [] }),
        })
    }

    /// `SubscribeToShard`: checks the request and the caller's `consume`
    /// right, resolves the start, and returns the event-stream messages
    /// (the first an `initial-response`) as they are made. Dropping the
    /// receiver (the client went away) ends the subscription.
    pub async fn subscribe_to_shard(
        &self,
        body: &[u8],
        caller: &Caller,
    ) -> Result<mpsc::Receiver<Bytes>, KinesisError> {
        #[derive(Deserialize)]
        #[serde(rename_all = "PascalCase")]
        struct StartingPosition {
            #[serde(rename = "Type")]
            kind: String,
            #[serde(default)]
            sequence_number: Option<String>,
            #[serde(default)]
            timestamp: Option<f64>,
        }
        #[derive(Deserialize)]
        #[serde(rename_all = "PascalCase")]
        struct Req {
            #[serde(rename = "ConsumerARN")]
            consumer_arn: String,
            shard_id: String,
            starting_position: StartingPosition,
        }
        let r: Req = parse(body)?;
        let (stream, _, _) = parse_consumer_arn(&r.consumer_arn)?;
        let shard = seqno::parse_shard_id(&r.shard_id)?;
        let p = &r.starting_position;
        let start = ops::start_of(&p.kind, p.sequence_number.as_deref(), p.timestamp, shard)?;
        let offset = self.seek_for(caller, &stream, shard, start).await?;
        let (tx, rx) = mpsc::channel(4);
        tx.try_send(Bytes::from(encode_event("initial-response", &json!({}))))
            .expect("a fresh channel has room");
        tokio::spawn(push(self.core().clone(), stream, shard, offset, tx));
        Ok(rx)
    }
}

/// Pushes `shard` from `offset` into `tx` until the subscription's time is
/// up, the shard's end, an error, or the receiver is gone.
async fn push(
    core: Arc<Cluster>,
    stream: String,
    shard: u32,
    mut offset: u64,
    tx: mpsc::Sender<Bytes>,
) {
    let deadline = Instant::now() + Duration::from_millis(SUBSCRIPTION_MS);
    let mut last_sent: Option<Instant> = None;
    while Instant::now() < deadline {
        let s = stream.as_str();
        let at = offset;
        let fetched = core
            .to_reader(s, shard, |c| async move {
                api::fetch(&c, s, shard, at, 10_000, Duration::from_secs(1)).await
            })
            .await;
        let f = match fetched {
            Ok(f) => f,
            Err(e) => {
                let e = KinesisError::from(e);
                let m = encode_message(
                    &[
                        (":message-type", "exception"),
                        (":exception-type", "InternalFailureException"),
                        (":content-type", "application/json"),
                    ],
                    &serde_json::to_vec(&json!({"message": e.to_string()})).expect("JSON encodes"),
                );
                let _ = tx.send(Bytes::from(m)).await;
                return;
            }
        };
        let due = last_sent.is_none_or(|t| t.elapsed() >= Duration::from_millis(HEARTBEAT_MS));
        if !f.records.is_empty() || f.end_of_shard || due {
            let (records, behind) = ops::page(shard, &f, ops::now_ms());
            let mut event = json!({
                "Records": records,
                "ContinuationSequenceNumber": seqno::canonical(shard, f.next_offset.saturating_sub(1)),
                "MillisBehindLatest": behind,
            });
            if f.end_of_shard {
                if let Ok(info) = core.describe(s).await {
                    event["ChildShards"] = views::child_shards(&info, shard);
                }
            }
            if tx
                .send(Bytes::from(encode_event("SubscribeToShardEvent", &event)))
                .await
                .is_err()
            {
                return;
            }
            last_sent = Some(Instant::now());
        }
        offset = f.next_offset;
        if f.end_of_shard {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32_is_zlibs() {
        assert_eq!(crc32(b""), 0);
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
    }

    /// The structure and both checksums, as botocore's EventStreamBuffer checks them.
    #[test]
    fn messages_are_framed_and_checksummed() {
        let m = encode_event("SubscribeToShardEvent", &json!({"Records": []}));
        let total = u32::from_be_bytes(m[0..4].try_into().unwrap()) as usize;
        let headers = u32::from_be_bytes(m[4..8].try_into().unwrap()) as usize;
        assert_eq!(total, m.len());
        assert_eq!(
            u32::from_be_bytes(m[8..12].try_into().unwrap()),
            crc32(&m[..8])
        );
        assert_eq!(
            u32::from_be_bytes(m[total - 4..].try_into().unwrap()),
            crc32(&m[..total - 4])
        );
        let h = &m[12..12 + headers];
        assert_eq!(h[0] as usize, ":message-type".len());
        assert_eq!(&h[1..14], b":message-type");
        assert_eq!(h[14], 7);
        assert_eq!(&m[12 + headers..total - 4], br#"{"Records":[]}"#);
    }

    #[test]
    fn consumer_arns_round_trip() {
        let arn = consumer_arn("sensors", "app", 17);
        assert_eq!(
            parse_consumer_arn(&arn).unwrap(),
            ("sensors".into(), "app".into(), 17)
        );
        assert!(parse_consumer_arn("arn:aws:kinesis:x:0:stream/s").is_err());
        assert!(parse_consumer_arn(&format!("{}/consumer/:1", views::arn("s"))).is_err());
    }
}
