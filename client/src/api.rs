//! Typed Strata requests on top of [`Client`]: produce (to an edge), forward
//! (edge to core), stream administration, seek and fetch (consumer).

use crate::transport::{Client, ClientError};
use bytes::Bytes;
use std::time::Duration;
use strata_schema::fb;
use strata_schema::wire;

pub use strata_protocol::{
    build_node_description, build_stream_description, Forwarded, MembershipChange, NodeInfo,
    NodeView, Piece, ReplicaLag, Reshard, Retention, ShardInfo, ShardLeadership, Start, StreamInfo,
};

fn node_view(c: &Client, reply: &Bytes) -> Result<NodeView, ClientError> {
    open(reply)
        .body_as_cluster_status()
        .map(|s| NodeView::from_fb(&s))
        .ok_or_else(|| bad(c, "ClusterStatus"))
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

/// Sends one batch to an edge; returns once the edge made it durable.
pub async fn produce(c: &Client, stream: &str, batch: &[u8]) -> Result<u32, ClientError> {
    let size = batch.len() + stream.len() + 128;
    let req = wire::request_with(size, fb::RequestBody::ProduceRequest, |fbb| {
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

/// How long a forward may take: commit time grows with its bytes (the
/// core writes a forward as Raft entries of up to 256 KiB, and a slow disk
/// or a slow follower takes longer for more of them), so a fixed short
/// timeout would retry a large forward forever. 1 s, plus 2 s per MiB. A
/// dead leader is noticed sooner: the edge hedges its forwards
/// (`Cluster::to_leader_hedged`).
pub fn forward_timeout(request_bytes: usize) -> Duration {
    Duration::from_millis(1000 + (request_bytes as u64 * 2000) / (1024 * 1024))
}

/// About the size of a forward request: its batches and sequence deltas,
/// plus room for the tables around them.
fn forward_bytes(stream: &str, pieces: &[Piece]) -> usize {
    let piece_bytes: usize = pieces
        .iter()
        .map(|p| p.batch.len() + p.seq_deltas.as_ref().map_or(0, |d| 4 * d.len()) + 64)
        .sum();
    piece_bytes + stream.len() + 256
}

/// Appends pieces to one shard of the core, exactly once per (producer, seq).
pub async fn forward(
    c: &Client,
    stream: &str,
    shard: u32,
    producer_id: u64,
    pieces: &[Piece],
) -> Result<Forwarded, ClientError> {
    let req = wire::request_with(
        forward_bytes(stream, pieces),
        fb::RequestBody::ForwardRequest,
        |fbb| {
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
        },
    );
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
    let [local_retention_ms, local_retention_bytes, retention_ms, retention_bytes] =
        retention.to_wire();
    let req = wire::request(fb::RequestBody::CreateStreamRequest, |fbb| {
        let name = Some(fbb.create_string(name));
        fb::CreateStreamRequest::create(
            fbb,
            &fb::CreateStreamRequestArgs {
                name,
                shards,
                replication,
                local_retention_ms,
                local_retention_bytes,
                retention_ms,
                retention_bytes,
            },
        )
        .as_union_value()
    });
    // Creating waits for the new shard groups' leaders (the core bounds
    // each wait at 10 s), so the call gets at least CREATE_TIMEOUT whatever
    // the client's per-call timeout: a cluster client's short attempt
    // timeout would give up and retry on another node, which then answers
    // STREAM_EXISTS for the stream this call created.
    let timeout = c.timeout().max(CREATE_TIMEOUT);
    stream_description(c, &c.call_with_timeout(&req, timeout).await?)
}

/// The least time a create call is given (see [`create_stream_with`]).
pub const CREATE_TIMEOUT: Duration = Duration::from_secs(30);

/// What `delete_stream` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamDeleted {
    pub name: String,
    /// Where the stream's archive is (empty: tiering is off).
    pub archive_url: String,
    /// Objects deleted from the archive (with `purge_archive`).
    pub archive_objects_deleted: u64,
}

/// Deletes a stream everywhere (needs `admin`): its catalog entry, consumer
/// groups and every replica's data; the archive is kept unless
/// `purge_archive`. Answered by the metadata leader once the deletion is
/// committed; replicas remove their data in the background, and the name
/// can be created again once they all did.
pub async fn delete_stream(
    c: &Client,
    name: &str,
    purge_archive: bool,
) -> Result<StreamDeleted, ClientError> {
    let req = wire::request(fb::RequestBody::DeleteStreamRequest, |fbb| {
        let name = Some(fbb.create_string(name));
        fb::DeleteStreamRequest::create(
            fbb,
            &fb::DeleteStreamRequestArgs {
                name,
                purge_archive,
            },
        )
        .as_union_value()
    });
    let reply = c.call(&req).await?;
    open(&reply)
        .body_as_stream_deleted()
        .map(|d| StreamDeleted {
            name: d.name().to_string(),
            archive_url: d.archive_url().unwrap_or_default().to_string(),
            archive_objects_deleted: d.archive_objects_deleted(),
        })
        .ok_or_else(|| bad(c, "StreamDeleted"))
}

/// Replaces a stream's retention (needs `alter`; answered by the metadata
/// leader once committed). Tiering applies it on its next pass.
pub async fn set_retention(
    c: &Client,
    name: &str,
    retention: &strata_protocol::Retention,
) -> Result<StreamInfo, ClientError> {
    let [local_retention_ms, local_retention_bytes, retention_ms, retention_bytes] =
        retention.to_wire();
    let req = wire::request(fb::RequestBody::SetRetentionRequest, |fbb| {
        let name = Some(fbb.create_string(name));
        fb::SetRetentionRequest::create(
            fbb,
            &fb::SetRetentionRequestArgs {
                name,
                local_retention_ms,
                local_retention_bytes,
                retention_ms,
                retention_bytes,
            },
        )
        .as_union_value()
    });
    stream_description(c, &c.call(&req).await?)
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

/// Where a producer's records in one shard end, as the shard's leader has
/// applied them (see [`producer_high_water`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProducerHighWater {
    pub shard: u32,
    /// The position after the producer's last record in the shard (0: none).
    pub producer_next_seq: u64,
    /// The shard was closed by a reshard.
    pub sealed: bool,
}

/// Asks a shard's leader where `producer_id`'s records in it end (needs
/// `produce` on the stream and the id registered to the caller). Route it
/// with `Cluster::to_leader`: a follower answers `NOT_LEADER`.
pub async fn producer_high_water(
    c: &Client,
    stream: &str,
    shard: u32,
    producer_id: u64,
) -> Result<ProducerHighWater, ClientError> {
    let req = wire::request(fb::RequestBody::ProducerHighWaterRequest, |fbb| {
        let stream = Some(fbb.create_string(stream));
        fb::ProducerHighWaterRequest::create(
            fbb,
            &fb::ProducerHighWaterRequestArgs {
                stream,
                shard,
                producer_id,
            },
        )
        .as_union_value()
    });
    let reply = c.call(&req).await?;
    let r = open(&reply);
    r.body_as_producer_high_water()
        .map(|h| ProducerHighWater {
            shard: h.shard(),
            producer_next_seq: h.producer_next_seq(),
            sealed: h.sealed(),
        })
        .ok_or_else(|| bad(c, "ProducerHighWater"))
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

pub async fn cluster_status(c: &Client) -> Result<NodeView, ClientError> {
    let req = wire::request(fb::RequestBody::ClusterStatusRequest, |fbb| {
        fb::ClusterStatusRequest::create(fbb, &fb::ClusterStatusRequestArgs {}).as_union_value()
    });
    let reply = c.call(&req).await?;
    node_view(c, &reply)
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
