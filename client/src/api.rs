//! Typed Strata requests on top of [`Client`]: produce (to an edge), forward
//! (edge to core), stream administration, seek and fetch (consumer).

use crate::transport::{Client, ClientError};
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use std::time::Duration;
use strata_schema::fb;
use strata_schema::wire;

/// A shard as `stream describe` shows it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, Default)]
pub struct ShardInfo {
    pub id: u32,
    pub start_hash_key: String,
    pub end_hash_key: String,
    pub first_offset: u64,
    pub next_offset: u64,
    pub leader_node: u64,
    pub replicas: Vec<u64>,
    /// Offsets below this are in the object store.
    pub tiered_offset: u64,
    pub tier_objects: u64,
    pub tier_bytes: u64,
    /// Newest record timestamp in the shard (0 if empty or unknown).
    pub newest_timestamp_ms: i64,
    /// Lineage: the shards this one was split or merged from.
    pub parents: Vec<u32>,
    /// "open", "closing" (resharded, sealing) or "closed".
    pub state: String,
    /// With state "closed": the offset after its last record.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub end_offset: Option<u64>,
}

impl ShardInfo {
    /// Takes new records (not split or merged away).
    pub fn is_open(&self) -> bool {
        self.state.is_empty() || self.state == "open"
    }

    pub fn is_closed(&self) -> bool {
        self.state == "closed"
    }
}

/// A core node holding replicas of a stream (or, in cluster status, any
/// node of the cluster).
#[derive(Debug, Clone, Serialize, PartialEq, Eq, Default)]
pub struct NodeInfo {
    pub id: u64,
    pub zone: String,
    /// Client API address (QUIC).
    pub addr: String,
    /// Inter-node Raft address (cluster status only).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub peer_addr: String,
    /// "active" or "draining" (cluster status only).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub state: String,
    /// Shard replicas placed on the node (cluster status only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replicas: Option<u32>,
}

impl NodeInfo {
    pub fn from_fb(n: &fb::NodeDescription<'_>) -> Self {
        let state = n.state().unwrap_or("").to_string();
        Self {
            id: n.id(),
            zone: n.zone().unwrap_or("").to_string(),
            addr: n.addr().unwrap_or("").to_string(),
            peer_addr: n.peer_addr().unwrap_or("").to_string(),
            replicas: (!state.is_empty()).then_some(n.replicas()),
            state,
        }
    }
}

/// Writes a `NodeDescription` table.
pub fn build_node_description<'a>(
    fbb: &mut flatbuffers::FlatBufferBuilder<'a>,
    n: &NodeInfo,
) -> flatbuffers::WIPOffset<fb::NodeDescription<'a>> {
    let mut s = |v: &str| (!v.is_empty()).then(|| fbb.create_string(v));
    let zone = s(&n.zone);
    let addr = s(&n.addr);
    let peer_addr = s(&n.peer_addr);
    let state = s(&n.state);
    fb::NodeDescription::create(
        fbb,
        &fb::NodeDescriptionArgs {
            id: n.id,
            zone,
            addr,
            peer_addr,
            state,
            replicas: n.replicas.unwrap_or(0),
        },
    )
}

/// How long records are kept: `local_*` on the nodes' disks after they are
/// tiered (None: the core's `local_retention_ms`), `total_*` anywhere,
/// object store included (None: unlimited). Per shard for bytes.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
pub struct Retention {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local_bytes: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total_bytes: Option<u64>,
}

impl Retention {
    /// From wire fields where 0 means unset.
    pub fn from_wire(local_ms: u64, local_bytes: u64, total_ms: u64, total_bytes: u64) -> Self {
        let some = |v: u64| (v > 0).then_some(v);
        Self {
            local_ms: some(local_ms),
            local_bytes: some(local_bytes),
            total_ms: some(total_ms),
            total_bytes: some(total_bytes),
        }
    }
}

/// A stream as `stream describe` shows it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, Default)]
pub struct StreamInfo {
    pub name: String,
    pub replication: u32,
    pub created_ms: i64,
    pub shards: Vec<ShardInfo>,
    pub nodes: Vec<NodeInfo>,
    /// Where the stream's Parquet archive lives (`<store URL>/stream=<name>`).
    pub archive_url: String,
    pub retention: Retention,
    /// Consumer groups with their checkpoints.
    pub groups: Vec<crate::group::GroupInfo>,
}

impl StreamInfo {
    pub fn from_fb(s: &fb::StreamDescription<'_>) -> Self {
        Self {
            name: s.name().to_string(),
            replication: s.replication(),
            created_ms: s.created_ms(),
            shards: s
                .shards()
                .iter()
                .map(|sh| ShardInfo {
                    id: sh.id(),
                    start_hash_key: sh.start_hash_key().to_string(),
                    end_hash_key: sh.end_hash_key().to_string(),
                    first_offset: sh.first_offset(),
                    next_offset: sh.next_offset(),
                    leader_node: sh.leader_node(),
                    replicas: sh
                        .replicas()
                        .map(|r| r.iter().collect())
                        .unwrap_or_default(),
                    tiered_offset: sh.tiered_offset(),
                    tier_objects: sh.tier_objects(),
                    tier_bytes: sh.tier_bytes(),
                    newest_timestamp_ms: sh.newest_timestamp_ms(),
                    parents: sh.parents().map(|p| p.iter().collect()).unwrap_or_default(),
                    state: sh.state().unwrap_or("open").to_string(),
                    end_offset: (sh.state() == Some("closed")).then(|| sh.end_offset()),
                })
                .collect(),
            nodes: s
                .nodes()
                .map(|ns| ns.iter().map(|n| NodeInfo::from_fb(&n)).collect())
                .unwrap_or_default(),
            archive_url: s.archive_url().unwrap_or("").to_string(),
            retention: Retention::from_wire(
                s.local_retention_ms(),
                s.local_retention_bytes(),
                s.retention_ms(),
                s.retention_bytes(),
            ),
            groups: s
                .groups()
                .map(|gs| {
                    gs.iter()
                        .map(|g| crate::group::GroupInfo::from_fb(&g))
                        .collect()
                })
                .unwrap_or_default(),
        }
    }

    /// Records the stream holds (from each shard's first to next offset).
    pub fn records(&self) -> u64 {
        self.shards
            .iter()
            .map(|sh| sh.next_offset - sh.first_offset)
            .sum()
    }

    /// Client address of node `id`, if the description lists it.
    pub fn addr_of(&self, id: u64) -> Option<&str> {
        self.nodes
            .iter()
            .find(|n| n.id == id)
            .map(|n| n.addr.as_str())
    }

    /// Every shard's hash range (open and closed), in `shards` order.
    pub fn ranges(&self) -> Result<Vec<strata_schema::hashkey::HashRange>, String> {
        self.shards
            .iter()
            .map(|s| {
                Ok(strata_schema::hashkey::HashRange {
                    start: strata_schema::hashkey::parse_hash_key(&s.start_hash_key)?,
                    end: strata_schema::hashkey::parse_hash_key(&s.end_hash_key)?,
                })
            })
            .collect()
    }

    /// The shards that take new records.
    pub fn open_shards(&self) -> impl Iterator<Item = &ShardInfo> {
        self.shards.iter().filter(|s| s.is_open())
    }
}

pub(crate) fn bad(c: &Client, what: &str) -> ClientError {
    ClientError::BadReply {
        addr: c.addr(),
        detail: format!("expected a {what} reply"),
    }
}

/// Decodes a `StreamDescription` reply.
fn stream_description(c: &Client, reply: &Bytes) -> Result<StreamInfo, ClientError> {
    open(reply)
        .body_as_stream_description()
        .map(|s| StreamInfo::from_fb(&s))
        .ok_or_else(|| bad(c, "StreamDescription"))
}

pub(crate) fn open(reply: &Bytes) -> fb::Response<'_> {
    wire::decode_response(reply).expect("Client::call verified the reply")
}

/// Writes a `StreamDescription` table.
pub fn build_stream_description<'a>(
    fbb: &mut flatbuffers::FlatBufferBuilder<'a>,
    s: &StreamInfo,
) -> flatbuffers::WIPOffset<fb::StreamDescription<'a>> {
    let shards: Vec<_> = s
        .shards
        .iter()
        .map(|sh| {
            let start = Some(fbb.create_string(&sh.start_hash_key));
            let end = Some(fbb.create_string(&sh.end_hash_key));
            let replicas = Some(fbb.create_vector(&sh.replicas));
            let parents = Some(fbb.create_vector(&sh.parents));
            let state = Some(fbb.create_string(&sh.state));
            fb::ShardDescription::create(
                fbb,
                &fb::ShardDescriptionArgs {
                    id: sh.id,
                    start_hash_key: start,
                    end_hash_key: end,
                    first_offset: sh.first_offset,
                    next_offset: sh.next_offset,
                    leader_node: sh.leader_node,
                    replicas,
                    tiered_offset: sh.tiered_offset,
                    tier_objects: sh.tier_objects,
                    tier_bytes: sh.tier_bytes,
                    newest_timestamp_ms: sh.newest_timestamp_ms,
                    parents,
                    state,
                    end_offset: sh.end_offset.unwrap_or(0),
                },
            )
        })
        .collect();
    let shards = Some(fbb.create_vector(&shards));
    let nodes: Vec<_> = s
        .nodes
        .iter()
        .map(|n| build_node_description(fbb, n))
        .collect();
    let nodes = Some(fbb.create_vector(&nodes));
    let name = Some(fbb.create_string(&s.name));
    let archive_url = Some(fbb.create_string(&s.archive_url));
    let groups: Vec<_> = s
        .groups
        .iter()
        .map(|g| crate::group::build_group_description(fbb, g))
        .collect();
    let groups = Some(fbb.create_vector(&groups));
    fb::StreamDescription::create(
        fbb,
        &fb::StreamDescriptionArgs {
            archive_url,
            local_retention_ms: s.retention.local_ms.unwrap_or(0),
            local_retention_bytes: s.retention.local_bytes.unwrap_or(0),
            retention_ms: s.retention.total_ms.unwrap_or(0),
            retention_bytes: s.retention.total_bytes.unwrap_or(0),
            name,
            replication: s.replication,
            created_ms: s.created_ms,
            shards,
            nodes,
            groups,
        },
    )
}

/// Sends one batch to an edge; returns once the edge made it durable.
pub async fn produce(c: &Client, stream: &str, batch: &[u8]) -> Result<u32, ClientError> {
    let req = wire::request(fb::RequestBody::ProduceRequest, |fbb| {
        let stream = Some(fbb.create_string(stream));
        let batch = Some(fbb.create_vector(batch));
        fb::ProduceRequest::create(fbb, &fb::ProduceRequestArgs { stream, batch }).as_union_value()
    });
    let reply = c.call(&req).await?;
    let r = open(&reply);
    r.body_as_produce_response()
        .map(|p| p.records())
        .ok_or_else(|| bad(c, "ProduceResponse"))
}

/// One run of records for [`forward`].
#[derive(Debug, Clone)]
pub struct Piece {
    pub first_seq: u64,
    pub seq_deltas: Option<Vec<u32>>,
    pub max_timestamp_ms: i64,
    pub batch: Bytes,
}

/// Result of a [`forward`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Forwarded {
    pub appended: u64,
    pub duplicates: u64,
    pub next_offset: u64,
}

/// How long a forward may take: commit time grows with the entries it
/// carries (each piece is one Raft entry), so a fixed short timeout would
/// retry a large forward forever, while a dead leader must still be noticed
/// quickly for small ones. 1 s, plus 2 s per MiB.
pub fn forward_timeout(request_bytes: usize) -> Duration {
    Duration::from_millis(1000 + (request_bytes as u64 * 2000) / (1024 * 1024))
}

/// Appends pieces to one shard of the core, exactly once per (producer, seq).
pub async fn forward(
    c: &Client,
    stream: &str,
    shard: u32,
    producer_id: u64,
    pieces: &[Piece],
) -> Result<Forwarded, ClientError> {
    let req = wire::request(fb::RequestBody::ForwardRequest, |fbb| {
        let ps: Vec<_> = pieces
            .iter()
            .map(|p| {
                let deltas = p.seq_deltas.as_ref().map(|d| fbb.create_vector(d));
                let batch = Some(fbb.create_vector(&p.batch));
                fb::ForwardPiece::create(
                    fbb,
                    &fb::ForwardPieceArgs {
                        first_seq: p.first_seq,
                        seq_deltas: deltas,
                        max_timestamp_ms: p.max_timestamp_ms,
                        batch,
                    },
                )
            })
            .collect();
        let pieces = Some(fbb.create_vector(&ps));
        let stream = Some(fbb.create_string(stream));
        fb::ForwardRequest::create(
            fbb,
            &fb::ForwardRequestArgs {
                stream,
                shard,
                producer_id,
                pieces,
            },
        )
        .as_union_value()
    });
    let reply = c
        .call_with_timeout(&req, forward_timeout(req.len()))
        .await?;
    let r = open(&reply);
    let f = r
        .body_as_forward_response()
        .ok_or_else(|| bad(c, "ForwardResponse"))?;
    Ok(Forwarded {
        appended: f.appended(),
        duplicates: f.duplicates(),
        next_offset: f.next_offset(),
    })
}

pub async fn create_stream(
    c: &Client,
    name: &str,
    shards: u32,
    replication: u32,
) -> Result<StreamInfo, ClientError> {
    create_stream_with(c, name, shards, replication, &Retention::default()).await
}

/// [`create_stream`] with a retention.
pub async fn create_stream_with(
    c: &Client,
    name: &str,
    shards: u32,
    replication: u32,
    retention: &Retention,
) -> Result<StreamInfo, ClientError> {
    let req = wire::request(fb::RequestBody::CreateStreamRequest, |fbb| {
        let name = Some(fbb.create_string(name));
        fb::CreateStreamRequest::create(
            fbb,
            &fb::CreateStreamRequestArgs {
                name,
                shards,
                replication,
                local_retention_ms: retention.local_ms.unwrap_or(0),
                local_retention_bytes: retention.local_bytes.unwrap_or(0),
                retention_ms: retention.total_ms.unwrap_or(0),
                retention_bytes: retention.total_bytes.unwrap_or(0),
            },
        )
        .as_union_value()
    });
    stream_description(c, &c.call(&req).await?)
}

/// A reshard (`strata stream split | merge | scale`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reshard {
    /// Split `shard` in two at hash key `at` (the upper child's first key;
    /// None: the middle).
    Split { shard: u32, at: Option<u128> },
    /// Merge two shards with adjacent hash-key ranges.
    Merge { shards: [u32; 2] },
    /// Close every open shard and create `count` with uniform ranges.
    Scale { count: u32 },
}

/// Reshards a stream; answered (by the metadata leader) once the change is
/// committed, with the stream's new shards. Parents seal in the background.
pub async fn reshard(c: &Client, stream: &str, op: &Reshard) -> Result<StreamInfo, ClientError> {
    let req = wire::request(fb::RequestBody::ReshardRequest, |fbb| {
        let (kind, shards, at, count) = match op {
            Reshard::Split { shard, at } => (fb::ReshardOp::Split, vec![*shard], *at, 0),
            Reshard::Merge { shards } => (fb::ReshardOp::Merge, shards.to_vec(), None, 0),
            Reshard::Scale { count } => (fb::ReshardOp::Scale, vec![], None, *count),
        };
        let stream = Some(fbb.create_string(stream));
        let shards = Some(fbb.create_vector(&shards));
        let at_hash_key = at.map(|a| fbb.create_string(&a.to_string()));
        fb::ReshardRequest::create(
            fbb,
            &fb::ReshardRequestArgs {
                stream,
                op: kind,
                shards,
                at_hash_key,
                count,
            },
        )
        .as_union_value()
    });
    stream_description(c, &c.call(&req).await?)
}

/// Recreates `name` from its archive in the cluster's object store (see
/// `strata stream restore`).
pub async fn restore_stream(
    c: &Client,
    name: &str,
    from_url: &str,
    replication: u32,
) -> Result<StreamInfo, ClientError> {
    let req = wire::request(fb::RequestBody::RestoreStreamRequest, |fbb| {
        let name = Some(fbb.create_string(name));
        let from_url = Some(fbb.create_string(from_url));
        fb::RestoreStreamRequest::create(
            fbb,
            &fb::RestoreStreamRequestArgs {
                name,
                from_url,
                replication,
            },
        )
        .as_union_value()
    });
    stream_description(c, &c.call(&req).await?)
}

/// Registers a durable producer id with the metadata group (idempotent);
/// returns (first registration time in ms, producers known).
pub async fn register_producer(
    c: &Client,
    producer_id: u64,
    agent: &str,
) -> Result<(i64, u64), ClientError> {
    let req = wire::request(fb::RequestBody::RegisterProducerRequest, |fbb| {
        let agent = Some(fbb.create_string(agent));
        fb::RegisterProducerRequest::create(
            fbb,
            &fb::RegisterProducerRequestArgs { producer_id, agent },
        )
        .as_union_value()
    });
    let reply = c.call(&req).await?;
    let r = open(&reply);
    r.body_as_producer_registration()
        .map(|p| (p.registered_ms(), p.producers()))
        .ok_or_else(|| bad(c, "ProducerRegistration"))
}

pub async fn list_streams(c: &Client) -> Result<Vec<StreamInfo>, ClientError> {
    let req = wire::request(fb::RequestBody::ListStreamsRequest, |fbb| {
        fb::ListStreamsRequest::create(fbb, &fb::ListStreamsRequestArgs {}).as_union_value()
    });
    let reply = c.call(&req).await?;
    let r = open(&reply);
    r.body_as_stream_list()
        .map(|l| {
            l.streams()
                .iter()
                .map(|s| StreamInfo::from_fb(&s))
                .collect()
        })
        .ok_or_else(|| bad(c, "StreamList"))
}

pub async fn describe_stream(c: &Client, name: &str) -> Result<StreamInfo, ClientError> {
    let req = wire::request(fb::RequestBody::DescribeStreamRequest, |fbb| {
        let name = Some(fbb.create_string(name));
        fb::DescribeStreamRequest::create(fbb, &fb::DescribeStreamRequestArgs { name })
            .as_union_value()
    });
    stream_description(c, &c.call(&req).await?)
}

/// Where to start reading a shard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    Oldest,
    Latest,
    Offset(u64),
    TimestampMs(i64),
}

/// Resolves `start` to an offset of `shard`.
pub async fn seek(c: &Client, stream: &str, shard: u32, start: Start) -> Result<u64, ClientError> {
    let (kind, value) = match start {
        Start::Oldest => (fb::StartKind::Oldest, 0),
        Start::Latest => (fb::StartKind::Latest, 0),
        Start::Offset(o) => (fb::StartKind::Offset, o as i64),
        Start::TimestampMs(t) => (fb::StartKind::Timestamp, t),
    };
    let req = wire::request(fb::RequestBody::SeekRequest, |fbb| {
        let stream = Some(fbb.create_string(stream));
        fb::SeekRequest::create(
            fbb,
            &fb::SeekRequestArgs {
                stream,
                shard,
                kind,
                value,
            },
        )
        .as_union_value()
    });
    let reply = c.call(&req).await?;
    let r = open(&reply);
    r.body_as_seek_response()
        .map(|s| s.offset())
        .ok_or_else(|| bad(c, "SeekResponse"))
}

/// One record as a consumer sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumedRecord {
    pub shard: u32,
    pub offset: u64,
    pub timestamp_ms: i64,
    pub key: Option<String>,
    pub data: Bytes,
    pub headers: Vec<(String, Bytes)>,
}

/// A page of records from [`fetch`].
#[derive(Debug, Clone)]
pub struct Fetched {
    pub records: Vec<ConsumedRecord>,
    pub next_offset: u64,
    pub high_watermark: u64,
    /// The shard is closed (split or merged) and this page reached its end:
    /// read its children next.
    pub end_of_shard: bool,
}

/// Reads committed records of one shard from `offset`, waiting up to `wait`
/// for new records when there are none.
pub async fn fetch(
    c: &Client,
    stream: &str,
    shard: u32,
    offset: u64,
    max_records: u32,
    wait: Duration,
) -> Result<Fetched, ClientError> {
    let req = wire::request(fb::RequestBody::FetchRequest, |fbb| {
        let stream = Some(fbb.create_string(stream));
        fb::FetchRequest::create(
            fbb,
            &fb::FetchRequestArgs {
                stream,
                shard,
                offset,
                max_records,
                max_bytes: 8 * 1024 * 1024,
                wait_ms: wait.as_millis() as u32,
            },
        )
        .as_union_value()
    });
    let reply = c
        .call_with_timeout(&req, wait + Duration::from_secs(30))
        .await?;
    fetched_from(c.addr(), shard, &reply, max_records)
}

/// The records of a `FetchResponse` reply (verified).
fn fetched_from(
    addr: std::net::SocketAddr,
    shard: u32,
    reply: &Bytes,
    max_records: u32,
) -> Result<Fetched, ClientError> {
    let r = open(reply);
    let f = r
        .body_as_fetch_response()
        .ok_or_else(|| ClientError::BadReply {
            addr,
            detail: "expected a FetchResponse reply".into(),
        })?;
    let mut records = Vec::new();
    for fetched in f.batches().iter() {
        let bytes = fetched.batch().bytes();
        let batch = strata_schema::batch::open(bytes).map_err(|e| ClientError::BadReply {
            addr,
            detail: e.to_string(),
        })?;
        let skip = fetched.skip() as usize;
        for (i, rec) in batch.records().iter().enumerate().skip(skip) {
            if records.len() >= max_records as usize {
                break;
            }
            records.push(ConsumedRecord {
                shard,
                offset: fetched.base_offset() + (i - skip) as u64,
                timestamp_ms: rec.timestamp_ms(),
                key: rec.key().map(str::to_string),
                data: Bytes::copy_from_slice(rec.value().map_or(&[][..], |v| v.bytes())),
                headers: rec
                    .headers()
                    .map(|hs| {
                        hs.iter()
                            .map(|h| {
                                (
                                    h.key().to_string(),
                                    Bytes::copy_from_slice(
                                        h.value().map_or(&[][..], |v| v.bytes()),
                                    ),
                                )
                            })
                            .collect()
                    })
                    .unwrap_or_default(),
            });
        }
    }
    let next_offset = records.last().map_or(f.next_offset(), |r| r.offset + 1);
    Ok(Fetched {
        end_of_shard: f.end_of_shard() && next_offset >= f.next_offset(),
        records,
        next_offset,
        high_watermark: f.high_watermark(),
    })
}

/// A push subscription to one shard ([`subscribe`]).
pub struct Subscription {
    addr: std::net::SocketAddr,
    shard: u32,
    /// Kept open: dropping the subscription stops the core's stream.
    _send: quinn::SendStream,
    recv: quinn::RecvStream,
}

impl Subscription {
    /// The next records as they commit (waits as long as it takes). An
    /// error ends the subscription.
    pub async fn next(&mut self) -> Result<Fetched, ClientError> {
        let reply = crate::transport::read_reply(&mut self.recv, self.addr).await?;
        fetched_from(self.addr, self.shard, &reply, u32::MAX)
    }
}

/// Subscribes to one shard from `offset`: the node (any replica) pushes
/// committed records as they commit, without polling.
pub async fn subscribe(
    c: &Client,
    stream: &str,
    shard: u32,
    offset: u64,
    max_records: u32,
) -> Result<Subscription, ClientError> {
    let req = wire::request(fb::RequestBody::SubscribeRequest, |fbb| {
        let stream = Some(fbb.create_string(stream));
        fb::SubscribeRequest::create(
            fbb,
            &fb::SubscribeRequestArgs {
                stream,
                shard,
                offset,
                max_records,
                max_bytes: 0,
            },
        )
        .as_union_value()
    });
    let (send, recv) = c.open_stream(&req).await?;
    Ok(Subscription {
        addr: c.addr(),
        shard,
        _send: send,
        recv,
    })
}

/// A replica's replication state, as its shard leader sees it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ReplicaLag {
    pub node: u64,
    pub matched_index: u64,
    pub lag: u64,
}

/// A shard led by the answering node.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ShardLeadership {
    pub stream: String,
    pub shard: u32,
    pub leader: u64,
    pub term: u64,
    pub last_log_index: u64,
    pub replicas: Vec<ReplicaLag>,
}

/// One node's view of the cluster.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct NodeView {
    pub node: u64,
    pub meta_leader: u64,
    pub nodes: Vec<NodeInfo>,
    pub shards: Vec<ShardLeadership>,
    /// Producer ids registered in the metadata group.
    pub producers: u64,
}

pub async fn cluster_status(c: &Client) -> Result<NodeView, ClientError> {
    let req = wire::request(fb::RequestBody::ClusterStatusRequest, |fbb| {
        fb::ClusterStatusRequest::create(fbb, &fb::ClusterStatusRequestArgs {}).as_union_value()
    });
    let reply = c.call(&req).await?;
    node_view(c, &reply)
}

fn node_view(c: &Client, reply: &Bytes) -> Result<NodeView, ClientError> {
    let r = open(reply);
    let s = r
        .body_as_cluster_status()
        .ok_or_else(|| bad(c, "ClusterStatus"))?;
    Ok(NodeView {
        node: s.node(),
        meta_leader: s.meta_leader(),
        producers: s.producers(),
        nodes: s
            .nodes()
            .map(|ns| ns.iter().map(|n| NodeInfo::from_fb(&n)).collect())
            .unwrap_or_default(),
        shards: s
            .shards()
            .map(|ss| {
                ss.iter()
                    .map(|sh| ShardLeadership {
                        stream: sh.stream().to_string(),
                        shard: sh.shard(),
                        leader: sh.leader(),
                        term: sh.term(),
                        last_log_index: sh.last_log_index(),
                        replicas: sh
                            .replicas()
                            .map(|rs| {
                                rs.iter()
                                    .map(|r| ReplicaLag {
                                        node: r.node(),
                                        matched_index: r.matched_index(),
                                        lag: r.lag(),
                                    })
                                    .collect()
                            })
                            .unwrap_or_default(),
                    })
                    .collect()
            })
            .unwrap_or_default(),
    })
}

/// A membership change for [`change_membership`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MembershipChange {
    /// Register a node that runs with the cluster's `peers` as seeds.
    Add {
        node_id: u64,
        zone: String,
        addr: String,
        peer_addr: String,
    },
    /// Drain a node: move its replicas away, then remove it.
    Remove { node_id: u64 },
}

/// Asks the metadata leader to add or remove a node; returns its view of the
/// cluster once the change is committed (a removal then runs in the
/// background: watch `state` and `replicas` of the node).
pub async fn change_membership(
    c: &Client,
    change: &MembershipChange,
) -> Result<NodeView, ClientError> {
    let req = wire::request(fb::RequestBody::ChangeMembershipRequest, |fbb| {
        let (op, node_id, zone, addr, peer_addr) = match change {
            MembershipChange::Add {
                node_id,
                zone,
                addr,
                peer_addr,
            } => (
                fb::MembershipOp::AddNode,
                *node_id,
                Some(fbb.create_string(zone)),
                Some(fbb.create_string(addr)),
                Some(fbb.create_string(peer_addr)),
            ),
            MembershipChange::Remove { node_id } => {
                (fb::MembershipOp::RemoveNode, *node_id, None, None, None)
            }
        };
        fb::ChangeMembershipRequest::create(
            fbb,
            &fb::ChangeMembershipRequestArgs {
                op,
                node_id,
                zone,
                addr,
                peer_addr,
            },
        )
        .as_union_value()
    });
    let reply = c.call(&req).await?;
    node_view(c, &reply)
}
