//! The core's QUIC API: decodes verified requests, calls the [`Node`], and
//! encodes replies. Every failure becomes a typed error reply.

use super::access;
use crate::node::Node;
use crate::raft::command::AppendCmd;
use crate::raft::group::ShardGroup;
use crate::raft::runs::RunReader;
use crate::shard::read_plan::{plan_fetch, FetchPlan, FetchRequest, Residence, ShardRange};
use bytes::Bytes;
use flatbuffers::FlatBufferBuilder;
use std::sync::Arc;
use std::time::Duration;
use strata_protocol::{build_node_description, build_stream_description};
use strata_runtime::server::{Caller, Handler};
use strata_schema::batch;
use strata_schema::fb::{self, ErrorCode};
use strata_schema::wire::{self, RemoteError};

pub struct CoreHandler {
    pub node: Arc<Node>,
}

fn body_mismatch() -> RemoteError {
    RemoteError::new(
        ErrorCode::MalformedRequest,
        "the request body does not match its type",
    )
}

fn invalid(msg: impl Into<String>) -> RemoteError {
    RemoteError::new(ErrorCode::InvalidArgument, msg)
}

impl Handler for CoreHandler {
    async fn subscribe(&self, request: Bytes, caller: &Caller, mut send: quinn::SendStream) {
        let peer = caller.addr;
        let r = match wire::decode_request(&request).map(|req| req.body_as_subscribe_request()) {
            Ok(Some(r)) => r,
            _ => {
                let e = body_mismatch();
                let _ = strata_runtime::frame::write_frame(&mut send, e.encode()).await;
                let _ = send.finish();
                return;
            }
        };
        tracing::debug!(%peer, stream = r.stream(), shard = r.shard(), offset = r.offset(), "push subscription");
        let allowed = self.node.meta().sm.read(|c| {
            access::authorize(
                &c.acl,
                &self.node.cfg.superusers,
                caller,
                Some((strata_protocol::acl::Operation::Consume, r.stream())),
            )
        });
        let served = match allowed {
            Ok(_) => self.serve_subscription(r, &mut send).await,
            Err(e) => Err(e),
        };
        if let Err(e) = served {
            let _ = strata_runtime::frame::write_frame(&mut send, e.encode()).await;
            let _ = send.finish();
            let _ = send.stopped().await;
        }
    }

    async fn handle(&self, request: Bytes, caller: &Caller) -> Bytes {
        let peer = caller.addr;
        let result = match wire::decode_request(&request) {
            Ok(req) => self.dispatch(&request, req, caller).await,
            Err(e) => Err(RemoteError::new(ErrorCode::MalformedRequest, e.to_string())),
        };
        result.unwrap_or_else(|e| {
            tracing::debug!(%peer, error = %e, "request failed");
            e.encode()
        })
    }
}

impl CoreHandler {
    /// Answers one verified request; the body is read as the type its
    /// header names (a mismatch is a malformed request, never a panic).
    async fn dispatch(
        &self,
        request: &Bytes,
        req: fb::Request<'_>,
        caller: &Caller,
    ) -> Result<Bytes, RemoteError> {
        let superusers = &self.node.cfg.superusers;
        let grant = self
            .node
            .meta()
            .sm
            .read(|c| access::authorize(&c.acl, superusers, caller, access::needs(&req)))?;
        match req.body_type() {
            fb::RequestBody::ForwardRequest => {
                let r = req.body_as_forward_request().ok_or_else(body_mismatch)?;
                for p in r.pieces().iter() {
                    access::check_keys(&grant, caller, r.stream(), p.batch().bytes())?;
                }
                self.forward(request, r, caller).await
            }
            fb::RequestBody::WhoAmIRequest => Ok(access::whoami_reply(caller, superusers)),
            fb::RequestBody::ProducerHighWaterRequest => {
                let r = req
                    .body_as_producer_high_water_request()
                    .ok_or_else(body_mismatch)?;
                super::high_water::producer_high_water(&self.node, r, caller).await
            }
            fb::RequestBody::AclListRequest => {
                Ok(self.node.meta().sm.read(|c| access::acl_reply(&c.acl, 0)))
            }
            fb::RequestBody::AclChangeRequest => {
                let r = req.body_as_acl_change_request().ok_or_else(body_mismatch)?;
                let add = r.add().map(|a| strata_protocol::acl::rule_from_fb(&a));
                self.node.change_acl(add, r.remove_id()).await
            }
            fb::RequestBody::CreateStreamRequest => {
                let r = req
                    .body_as_create_stream_request()
                    .ok_or_else(body_mismatch)?;
                self.node
                    .create_stream(
                        r.name(),
                        r.shards(),
                        r.replication(),
                        strata_protocol::Retention::from_wire(
                            r.local_retention_ms(),
                            r.local_retention_bytes(),
                            r.retention_ms(),
                            r.retention_bytes(),
                        ),
                    )
                    .await
                    .map(|s| describe_reply(&s))
            }
            fb::RequestBody::RestoreStreamRequest => {
                let r = req
                    .body_as_restore_stream_request()
                    .ok_or_else(body_mismatch)?;
                self.node
                    .restore_stream(r.name(), r.from_url().unwrap_or(""), r.replication())
                    .await
                    .map(|s| describe_reply(&s))
            }
            fb::RequestBody::RegisterProducerRequest => {
                let r = req
                    .body_as_register_producer_request()
                    .ok_or_else(body_mismatch)?;
                self.node
                    .register_producer(r.producer_id(), r.agent().unwrap_or(""), caller)
                    .await
                    .map(|(registered_ms, producers)| {
                        wire::response(fb::ResponseBody::ProducerRegistration, |fbb| {
                            fb::ProducerRegistration::create(
                                fbb,
                                &fb::ProducerRegistrationArgs {
                                    producer_id: r.producer_id(),
                                    registered_ms,
                                    producers,
                                },
                            )
                            .as_union_value()
                        })
                    })
            }
            fb::RequestBody::GroupHeartbeatRequest => {
                let r = req
                    .body_as_group_heartbeat_request()
                    .ok_or_else(body_mismatch)?;
                self.group_heartbeat(&r).await
            }
            fb::RequestBody::ReshardRequest => {
                let r = req.body_as_reshard_request().ok_or_else(body_mismatch)?;
                match reshard_op(&r) {
                    Ok(op) => self
                        .node
                        .reshard(r.stream(), &op)
                        .await
                        .map(|s| describe_reply(&s)),
                    Err(e) => Err(e),
                }
            }
            fb::RequestBody::DescribeStreamRequest => {
                let r = req
                    .body_as_describe_stream_request()
                    .ok_or_else(body_mismatch)?;
                self.node
                    .looked_up_fresh(|| self.node.describe(r.name()))
                    .await
                    .map(|s| describe_reply(&s))
            }
            fb::RequestBody::ListStreamsRequest => {
                let mut streams = self.node.list();
                self.node.meta().sm.read(|c| {
                    streams.retain(|s| access::may_describe(&c.acl, superusers, caller, &s.name))
                });
                Ok(list_reply(&streams))
            }
            fb::RequestBody::SeekRequest => {
                self.seek(req.body_as_seek_request().ok_or_else(body_mismatch)?)
                    .await
            }
            fb::RequestBody::FetchRequest => {
                self.fetch(req.body_as_fetch_request().ok_or_else(body_mismatch)?)
                    .await
            }
            fb::RequestBody::ClusterStatusRequest => Ok(status_reply(&self.node.status())),
            fb::RequestBody::ChangeMembershipRequest => {
                let r = req
                    .body_as_change_membership_request()
                    .ok_or_else(body_mismatch)?;
                match membership_change(&r) {
                    Ok(c) => self
                        .node
                        .change_membership(&c)
                        .await
                        .map(|v| status_reply(&v)),
                    Err(e) => Err(e),
                }
            }
            fb::RequestBody::ProduceRequest => Err(invalid(
                "this is a core node: produce through an edge agent (strata produce --edge ADDR)",
            )),
            other => match super::admin::dispatch(&self.node, &req).await {
                Some(reply) => reply,
                None => Err(RemoteError::new(
                    ErrorCode::MalformedRequest,
                    format!("unknown request type {}", other.0),
                )),
            },
        }
    }

    async fn group_heartbeat(
        &self,
        r: &fb::GroupHeartbeatRequest<'_>,
    ) -> Result<Bytes, RemoteError> {
        use crate::catalog::groups::{Checkpoint, Heartbeat, SESSION_MS_DEFAULT};
        let session_ms = match r.session_ms() {
            0 => SESSION_MS_DEFAULT,
            ms => u64::from(ms),
        };
        let heartbeat = Heartbeat {
            member: r.member().to_string(),
            now_ms: crate::clock::now_ms(),
            session_ms,
            generation: r.generation(),
            commits: r
                .commits()
                .map(|cs| {
                    cs.iter()
                        .map(|c| {
                            (
                                c.shard(),
                                Checkpoint {
                                    offset: c.offset(),
                                    timestamp_ms: c.timestamp_ms(),
                                },
                            )
                        })
                        .collect()
                })
                .unwrap_or_default(),
            leave: r.leave(),
        };
        let a = self
            .node
            .group_heartbeat(r.stream(), r.group(), heartbeat)
            .await?;
        Ok(wire::response(fb::ResponseBody::GroupAssignment, |fbb| {
            let shards: Vec<_> = a
                .shards
                .iter()
                .map(|(shard, cp)| {
                    let c = cp.unwrap_or_default();
                    let checkpoint = Some(fb::GroupCheckpoint::create(
                        fbb,
                        &fb::GroupCheckpointArgs {
                            shard: *shard,
                            offset: c.offset,
                            timestamp_ms: c.timestamp_ms,
                        },
                    ));
                    fb::AssignedShard::create(
                        fbb,
                        &fb::AssignedShardArgs {
                            shard: *shard,
                            has_checkpoint: cp.is_some(),
                            checkpoint,
                        },
                    )
                })
                .collect();
            let shards = Some(fbb.create_vector(&shards));
            fb::GroupAssignment::create(
                fbb,
                &fb::GroupAssignmentArgs {
                    generation: a.generation,
                    shards,
                    members: a.members,
                    refused_commits: a.refused_commits,
                },
            )
            .as_union_value()
        }))
    }
}

fn reshard_op(
    r: &fb::ReshardRequest<'_>,
) -> Result<crate::catalog::reshard::ReshardOp, RemoteError> {
    use crate::catalog::reshard::ReshardOp;
    let shards: Vec<u32> = r.shards().map(|s| s.iter().collect()).unwrap_or_default();
    match (r.op(), shards.as_slice()) {
        (fb::ReshardOp::Split, [shard]) => {
            let at = match r.at_hash_key().filter(|a| !a.is_empty()) {
                None => None,
                Some(a) => Some(
                    strata_schema::hashkey::parse_hash_key(a)
                        .map_err(|e| invalid(e.to_string()))?,
                ),
            };
            Ok(ReshardOp::Split { shard: *shard, at })
        }
        (fb::ReshardOp::Split, _) => Err(invalid("split takes exactly one shard")),
        (fb::ReshardOp::Merge, [a, b]) => Ok(ReshardOp::Merge { shards: [*a, *b] }),
        (fb::ReshardOp::Merge, _) => Err(invalid("merge takes exactly two shards")),
        (fb::ReshardOp::Scale, _) => Ok(ReshardOp::Scale { count: r.count() }),
        (other, _) => Err(invalid(format!("unknown reshard operation {}", other.0))),
    }
}

fn membership_change(
    r: &fb::ChangeMembershipRequest<'_>,
) -> Result<strata_protocol::MembershipChange, RemoteError> {
    use strata_protocol::MembershipChange;
    if r.node_id() == 0 {
        return Err(invalid("node id must be non-zero"));
    }
    match r.op() {
        fb::MembershipOp::AddNode => Ok(MembershipChange::Add {
            node_id: r.node_id(),
            zone: r.zone().unwrap_or("").to_string(),
            addr: r.addr().unwrap_or("").to_string(),
            peer_addr: r.peer_addr().unwrap_or("").to_string(),
        }),
        fb::MembershipOp::RemoveNode => Ok(MembershipChange::Remove {
            node_id: r.node_id(),
        }),
        other => Err(invalid(format!("unknown membership operation {}", other.0))),
    }
}

fn describe_reply(s: &strata_protocol::StreamInfo) -> Bytes {
    wire::response(fb::ResponseBody::StreamDescription, |fbb| {
        build_stream_description(fbb, s).as_union_value()
    })
}

fn status_reply(v: &crate::api::views::ClusterView) -> Bytes {
    wire::response(fb::ResponseBody::ClusterStatus, |fbb| {
        let nodes: Vec<_> = v
            .nodes
            .iter()
            .map(|n| build_node_description(fbb, n))
            .collect();
        let nodes = Some(fbb.create_vector(&nodes));
        let shards: Vec<_> = v
            .shards
            .iter()
            .map(|s| {
                let replicas: Vec<_> = s
                    .replicas
                    .iter()
                    .map(|&(node, matched_index, lag)| {
                        fb::ReplicaStatus::create(
                            fbb,
                            &fb::ReplicaStatusArgs {
                                node,
                                matched_index,
                                lag,
                            },
                        )
                    })
                    .collect();
                let replicas = Some(fbb.create_vector(&replicas));
                let stream = Some(fbb.create_string(&s.stream));
                fb::ShardStatus::create(
                    fbb,
                    &fb::ShardStatusArgs {
                        stream,
                        shard: s.shard,
                        leader: s.leader,
                        term: s.term,
                        last_log_index: s.last_log_index,
                        replicas,
                    },
                )
            })
            .collect();
        let shards = Some(fbb.create_vector(&shards));
        fb::ClusterStatus::create(
            fbb,
            &fb::ClusterStatusArgs {
                node: v.node,
                meta_leader: v.meta_leader,
                nodes,
                shards,
                producers: v.producers,
            },
        )
        .as_union_value()
    })
}

fn list_reply(list: &[strata_protocol::StreamInfo]) -> Bytes {
    wire::response(fb::ResponseBody::StreamList, |fbb| {
        let items: Vec<_> = list
            .iter()
            .map(|s| build_stream_description(fbb, s))
            .collect();
        let streams = Some(fbb.create_vector(&items));
        fb::StreamList::create(fbb, &fb::StreamListArgs { streams }).as_union_value()
    })
}

impl CoreHandler {
    /// `frame` is the request frame `r` was read from: batches are sliced out of it, not copied.
    async fn forward(
        &self,
        frame: &Bytes,
        r: fb::ForwardRequest<'_>,
        caller: &Caller,
    ) -> Result<Bytes, RemoteError> {
        if r.producer_id() == 0 {
            return Err(invalid("producer_id 0 is reserved"));
        }
        self.node.check_producer_owner(r.producer_id(), caller)?;
        let g = self
            .node
            .looked_up_fresh(|| self.node.shard_leader_for(r.stream(), r.shard()))
            .await?;
        if r.pieces().is_empty() {
            let next_offset = self.node.seal_probe(&g, r.producer_id())?;
            return Ok(forwarded(0, 0, next_offset));
        }
        let limits = self.node.cfg.limits();
        let mut cmds = Vec::with_capacity(r.pieces().len());
        for (i, p) in r.pieces().iter().enumerate() {
            let bytes = p.batch().bytes();
            let summary = batch::verify(bytes, &limits)
                .map_err(|e| RemoteError::new(e.code(), format!("piece {i}: {e}")))?;
            let seq_deltas = match p.seq_deltas() {
                None => None,
                Some(d) => {
                    let d: Vec<u32> = d.iter().collect();
                    if d.len() != summary.records || d.windows(2).any(|w| w[0] >= w[1]) {
                        return Err(invalid(format!(
                            "piece {i}: seq_deltas must have one strictly increasing entry per record"
                        )));
                    }
                    Some(d)
                }
            };
            let cmd = AppendCmd {
                producer_id: r.producer_id(),
                first_seq: p.first_seq(),
                seq_deltas,
                max_timestamp_ms: summary.max_timestamp_ms,
                records: summary.records as u32,
                batch: frame.slice_ref(bytes),
            };
            // Exactly what the log's decoder checks (a last delta of
            // u32::MAX used to overflow here).
            cmd.check_seqs()
                .map_err(|e| invalid(format!("piece {i}: {e}")))?;
            cmds.push(cmd);
        }
        let (appended, duplicates, next_offset) = self.node.append(&g, cmds).await?;
        Ok(forwarded(appended, duplicates, next_offset))
    }

    async fn seek(&self, r: fb::SeekRequest<'_>) -> Result<Bytes, RemoteError> {
        let g = self
            .node
            .looked_up_fresh(|| self.node.shard_for(r.stream(), r.shard()))
            .await?;
        let (first, next) = g.sm.read(|s| (s.first_offset, s.next_offset));
        let offset = match r.kind() {
            fb::StartKind::Oldest => first,
            fb::StartKind::Latest => next,
            fb::StartKind::Offset => {
                let o =
                    u64::try_from(r.value()).map_err(|_| invalid("offset must not be negative"))?;
                if o < first || o > next {
                    return Err(RemoteError::new(
                        ErrorCode::OffsetOutOfRange,
                        format!(
                            "offset {o} is outside [{first}, {next}] of shard {}",
                            r.shard()
                        ),
                    ));
                }
                o
            }
            fb::StartKind::Timestamp => seek_time(&g, r.value())?,
            other => return Err(invalid(format!("unknown start kind {}", other.0))),
        };
        Ok(wire::response(fb::ResponseBody::SeekResponse, |fbb| {
            fb::SeekResponse::create(fbb, &fb::SeekResponseArgs { offset }).as_union_value()
        }))
    }

    async fn fetch(&self, r: fb::FetchRequest<'_>) -> Result<Bytes, RemoteError> {
        let wait = Duration::from_millis(u64::from(r.wait_ms()));
        self.fetch_at(
            r.stream(),
            r.shard(),
            r.offset(),
            r.max_records(),
            r.max_bytes(),
            wait,
        )
        .await
        .map(|f| f.reply)
    }

    /// A `FetchResponse` from `offset` (waiting up to `wait` for records
    /// there, unless the shard is sealed).
    async fn fetch_at(
        &self,
        stream: &str,
        shard: u32,
        offset: u64,
        max_records: u32,
        max_bytes: u32,
        wait: Duration,
    ) -> Result<Fetch, RemoteError> {
        let g = self
            .node
            .looked_up_fresh(|| self.node.shard_for(stream, shard))
            .await?;
        // The range, and the `next` the reply reports, are those seen before
        // any wait; where the offset lives is read again after it.
        let range = g.sm.read(ShardRange::of);
        let wait_max = Duration::from_millis(self.node.cfg.fetch_wait_ms_max);
        let mut req = FetchRequest {
            offset,
            max_records,
            max_bytes,
            wait,
        };
        let limits = loop {
            let purged = g.log.purged_index();
            let residence = g.sm.read(|s| Residence::of(s, offset, purged));
            match plan_fetch(range, residence, &req, wait_max) {
                FetchPlan::OutOfRange {
                    offset,
                    first,
                    next,
                } => {
                    return Err(RemoteError::new(
                        ErrorCode::OffsetOutOfRange,
                        format!("offset {offset} is outside [{first}, {next}] of shard {shard}"),
                    ))
                }
                FetchPlan::Wait(wait) => {
                    let mut rx = g.sm.subscribe();
                    let _ = tokio::time::timeout(wait, async {
                        while g.sm.read(|s| s.next_offset) <= offset {
                            if rx.changed().await.is_err() {
                                break;
                            }
                        }
                    })
                    .await;
                    req.wait = Duration::ZERO;
                }
                FetchPlan::ReadLog(l) => {
                    return read_batches(&g, offset, l.max_records, l.max_bytes)
                }
                FetchPlan::ReadTier(l) => break l,
            }
        };
        // Its log entry is deleted here (tiered, past local retention): read
        // the Parquet object.
        let t = crate::tiering::read_tiered(
            &self.node.tier,
            &g,
            offset,
            limits.max_records as usize,
            limits.max_bytes,
        )
        .await
        .map_err(|e| RemoteError::new(ErrorCode::Unavailable, format!("reading the tier: {e}")))?;
        metrics::counter!("strata_core_records_out_tier_total").increment(t.records as u64);
        let batches = [(t.first_offset, 0, t.batch)];
        Ok(Fetch::new(
            &batches,
            t.next_offset,
            range.next,
            range.sealed,
        ))
    }

    /// A push subscription: a `FetchResponse` frame as soon as records
    /// commit after the subscriber's position, until it stops reading or
    /// the shard ends (a closed shard's last frame says `end_of_shard`). The
    /// frames wait for QUIC flow control, so a slow subscriber holds back
    /// only this task; writers and other subscribers go on.
    async fn serve_subscription(
        &self,
        r: fb::SubscribeRequest<'_>,
        send: &mut quinn::SendStream,
    ) -> Result<(), RemoteError> {
        let (stream, shard) = (r.stream(), r.shard());
        let mut offset = r.offset();
        let wait = Duration::from_millis(self.node.cfg.fetch_wait_ms_max);
        loop {
            let fetched = tokio::select! {
                f = self.fetch_at(stream, shard, offset, r.max_records(), r.max_bytes(), wait) => f?,
                _ = send.stopped() => return Ok(()),
            };
            if fetched.next == offset && !fetched.end_of_shard {
                continue;
            }
            metrics::counter!("strata_core_push_frames_total").increment(1);
            if strata_runtime::frame::write_frame(send, fetched.reply.clone())
                .await
                .is_err()
            {
                return Ok(()); // the subscriber went away
            }
            if fetched.end_of_shard {
                let _ = send.finish();
                let _ = send.stopped().await;
                return Ok(());
            }
            offset = fetched.next;
        }
    }
}

/// Offset of the first record whose timestamp is >= `ts` (or the end).
fn seek_time(g: &ShardGroup, ts: i64) -> Result<u64, RemoteError> {
    if let Some(offset) = g.sm.read(|s| s.locate_time_tiered(ts)) {
        // In a tiered object this replica no longer indexes: its first
        // offset is close enough, as for a deleted entry below.
        return Ok(offset);
    }
    let found = g.sm.read(|s| s.locate_time(ts).map(|i| s.index[i]));
    let Some(e) = found else {
        return Ok(g.sm.read(|s| s.next_offset));
    };
    let Ok(cmd) = RunReader::new(&g.log).run(&e) else {
        // Deleted locally (tiered): the entry's first offset is close enough.
        return Ok(e.base_offset);
    };
    let b = batch::open(&cmd.batch).map_err(internal)?;
    for (i, rec) in b.records().iter().enumerate().skip(e.skip as usize) {
        if rec.timestamp_ms() >= ts {
            return Ok(e.base_offset + (i - e.skip as usize) as u64);
        }
    }
    Ok(e.base_offset + u64::from(e.count))
}

fn internal(e: impl std::fmt::Display) -> RemoteError {
    RemoteError::new(ErrorCode::Internal, e.to_string())
}

/// A `FetchResponse` of `(base offset, skip, batch bytes)` items.
/// `end_of_shard`: the shard is sealed and `next_offset` is its end.
fn fetch_reply<B: AsRef<[u8]>>(
    batches: &[(u64, u32, B)],
    next_offset: u64,
    high_watermark: u64,
    end_of_shard: bool,
) -> Bytes {
    let bytes: usize = batches.iter().map(|(_, _, b)| b.as_ref().len()).sum();
    let fbb = FlatBufferBuilder::with_capacity(bytes + 1024);
    wire::response_with(fbb, fb::ResponseBody::FetchResponse, |fbb| {
        let items: Vec<_> = batches
            .iter()
            .map(|(base, skip, b)| {
                let batch = Some(fbb.create_vector(b.as_ref()));
                fb::FetchedBatch::create(
                    fbb,
                    &fb::FetchedBatchArgs {
                        base_offset: *base,
                        skip: *skip,
                        batch,
                    },
                )
            })
            .collect();
        let batches = Some(fbb.create_vector(&items));
        fb::FetchResponse::create(
            fbb,
            &fb::FetchResponseArgs {
                batches,
                next_offset,
                high_watermark,
                end_of_shard,
            },
        )
        .as_union_value()
    })
}

fn read_batches(
    g: &ShardGroup,
    offset: u64,
    max_records: u64,
    max_bytes: usize,
) -> Result<Fetch, RemoteError> {
    let (entries, next, sealed) = g.sm.read(|s| {
        let mut out = Vec::new();
        if let Some(i) = s.locate(offset) {
            let mut records = 0u64;
            for e in &s.index[i..] {
                out.push(*e);
                records += u64::from(e.count);
                if records >= max_records || out.len() >= 1024 {
                    break;
                }
            }
        }
        (out, s.next_offset, s.sealed)
    });
    let mut fetched = Vec::with_capacity(entries.len());
    let mut bytes = 0usize;
    let mut next_offset = offset;
    let mut runs = RunReader::new(&g.log);
    for e in entries {
        let cmd = match runs.run(&e).map_err(internal) {
            Ok(c) => c,
            // Purged while we read: return what we have, the next fetch
            // goes to the tier.
            Err(_) if !fetched.is_empty() => break,
            Err(e) => return Err(e),
        };
        if !fetched.is_empty() && bytes + cmd.batch.len() > max_bytes {
            break;
        }
        let d = offset.saturating_sub(e.base_offset);
        bytes += cmd.batch.len();
        next_offset = e.base_offset + u64::from(e.count);
        fetched.push((e.base_offset + d, e.skip + d as u32, cmd.batch));
    }
    let out_records: u64 = next_offset - offset;
    metrics::counter!("strata_core_records_out_total").increment(out_records);
    Ok(Fetch::new(&fetched, next_offset, next, sealed))
}

/// A `FetchResponse` frame and where it leaves the reader.
struct Fetch {
    reply: Bytes,
    next: u64,
    /// The shard is sealed and `next` is its end.
    end_of_shard: bool,
}

impl Fetch {
    /// `batches` up to `next` of a shard whose records end before
    /// `high_watermark`, and for good if it is `sealed`.
    fn new<B: AsRef<[u8]>>(
        batches: &[(u64, u32, B)],
        next: u64,
        high_watermark: u64,
        sealed: bool,
    ) -> Self {
        let end_of_shard = sealed && next >= high_watermark;
        Self {
            reply: fetch_reply(batches, next, high_watermark, end_of_shard),
            next,
            end_of_shard,
        }
    }
}

/// A forward's answer.
fn forwarded(appended: u64, duplicates: u64, next_offset: u64) -> Bytes {
    wire::response(fb::ResponseBody::ForwardResponse, |fbb| {
        fb::ForwardResponse::create(
            fbb,
            &fb::ForwardResponseArgs {
                appended,
                duplicates,
                next_offset,
            },
        )
        .as_union_value()
    })
}
