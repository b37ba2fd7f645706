//! The operations of the client API on a node: each validates its input,
//! checks that this node may serve it (metadata leader, shard leader), and
//! commits through Raft. Errors are typed wire errors for the client.

use crate::api::views::ClusterView;
use crate::catalog::{
    place, plan_drain, MetaCommand, MetaResponse, NodeMeta, ShardMeta, StreamMeta,
};
use crate::clock::now_ms;
use crate::node::Node;
use crate::raft::command::{AppendCmd, MetaReply};
use crate::raft::group::ShardGroup;
use crate::raft::types::NodeId;
use bytes::Bytes;
use openraft::error::{ClientWriteError, RaftError};
use openraft::BasicNode;
use std::time::Duration;
use strata_protocol::{MembershipChange, StreamInfo};
use strata_runtime::server::Caller;
use strata_schema::fb::ErrorCode;
use strata_schema::hashkey;
use strata_schema::wire::RemoteError;

impl Node {
    /// Commits `cmd` on the metadata group, which this node must lead, and
    /// returns the catalog's answer.
    pub(crate) async fn commit_meta(&self, cmd: MetaCommand) -> Result<MetaReply, RemoteError> {
        Ok(self
            .meta()
            .raft
            .client_write(cmd)
            .await
            .map_err(|e| self.not_leader_or(e))?
            .data)
    }

    pub(crate) fn not_leader_or(
        &self,
        e: RaftError<NodeId, ClientWriteError<NodeId, BasicNode>>,
    ) -> RemoteError {
        match e {
            RaftError::APIError(ClientWriteError::ForwardToLeader(f)) => RemoteError::not_leader(
                format!("not the leader; leader is {:?}", f.leader_id),
                f.leader_id.and_then(|l| self.client_addr(l)),
            ),
            other => RemoteError::new(ErrorCode::Unavailable, format!("raft: {other}")),
        }
    }

    pub async fn create_stream(
        &self,
        name: &str,
        shards: u32,
        replication: u32,
        retention: strata_protocol::Retention,
    ) -> Result<StreamInfo, RemoteError> {
        self.create_stream_from(name, shards, replication, retention, None)
            .await
    }

    /// `strata stream restore`: the archive must be in this cluster's object
    /// store; one shard per manifest found there.
    pub async fn restore_stream(
        &self,
        name: &str,
        from_url: &str,
        replication: u32,
    ) -> Result<StreamInfo, RemoteError> {
        if !self.tier.enabled {
            return Err(RemoteError::new(
                ErrorCode::InvalidArgument,
                "tiering is off in this cluster: set object_store in every node's config",
            ));
        }
        let ours = self.tier.url.trim_end_matches('/');
        if !from_url.is_empty() && from_url.trim_end_matches('/') != ours {
            return Err(RemoteError::new(
                ErrorCode::InvalidArgument,
                format!(
                    "--from {from_url}: this cluster's object store is {ours}; restore reads the archive in place, so set object_store to {from_url} in the core config"
                ),
            ));
        }
        self.require_meta_leader()?;
        let shards = crate::tiering::archived_shards(&self.tier, name)
            .await
            .map_err(|e| RemoteError::new(ErrorCode::Unavailable, format!("{e:#}")))?;
        if shards == 0 {
            return Err(RemoteError::new(
                ErrorCode::UnknownStream,
                format!("no manifests of stream {name:?} under {ours}/_strata/manifests"),
            ));
        }
        self.create_stream_from(
            name,
            shards,
            replication,
            Default::default(),
            Some(self.tier.url.clone()),
        )
        .await
    }

    /// A retention this node can keep: the local byte budget holds at
    /// least one segment (the newest is always kept).
    pub(crate) fn check_retention(
        &self,
        retention: &strata_protocol::Retention,
    ) -> Result<(), RemoteError> {
        match retention
            .local_bytes
            .filter(|&b| b < self.cfg.segment_bytes_max)
        {
            Some(b) => Err(RemoteError::new(
                ErrorCode::InvalidArgument,
                format!(
                    "--local-retention-bytes {b} is below one segment ({} bytes): the newest segment is always kept",
                    self.cfg.segment_bytes_max
                ),
            )),
            None => Ok(()),
        }
    }

    pub(crate) async fn create_stream_from(
        &self,
        name: &str,
        shards: u32,
        replication: u32,
        retention: strata_protocol::Retention,
        restore_from: Option<String>,
    ) -> Result<StreamInfo, RemoteError> {
        self.check_retention(&retention)?;
        strata_schema::validate_stream_name(name)
            .map_err(|e| RemoteError::new(ErrorCode::InvalidArgument, e.to_string()))?;
        if restore_from.is_none() {
            self.refuse_over_kept_archive(name).await?;
        }
        if shards == 0 || shards > self.cfg.shards_max {
            return Err(RemoteError::new(
                ErrorCode::InvalidArgument,
                format!(
                    "--shards {shards} must be between 1 and {}",
                    self.cfg.shards_max
                ),
            ));
        }
        self.require_meta_leader()?;
        self.meta()
            .sm
            .read(|c| self.cfg.caps().check_stream(c, name))
            .map_err(|e| RemoteError::new(ErrorCode::InvalidArgument, e.to_string()))?;
        let (replicas, replication) = self.meta().sm.read(|c| {
            let r = if replication == 0 {
                c.default_replication()
            } else {
                replication
            };
            (place(c, shards, r), r)
        });
        let replicas =
            replicas.map_err(|e| RemoteError::new(ErrorCode::InvalidArgument, e.to_string()))?;
        let meta = StreamMeta {
            name: name.to_string(),
            replication,
            created_ms: now_ms(),
            retention,
            restore_from,
            shards: hashkey::even_ranges(shards)
                .iter()
                .zip(replicas)
                .enumerate()
                .map(|(i, (r, replicas))| ShardMeta::new(i as u32, *r, replicas, Vec::new()))
                .collect(),
        };
        match self.commit_meta(MetaCommand::CreateStream(meta)).await? {
            MetaReply::Meta(MetaResponse::Created) => {}
            MetaReply::Meta(MetaResponse::AlreadyExists) => {
                return Err(RemoteError::new(
                    ErrorCode::StreamExists,
                    format!("stream {name:?} already exists"),
                ))
            }
            // A deleted stream of that name whose replicas are still being
            // removed (catalog::delete): retryable.
            MetaReply::Meta(MetaResponse::Refused(m)) => {
                return Err(RemoteError::new(ErrorCode::Unavailable, m))
            }
            other => {
                return Err(RemoteError::new(
                    ErrorCode::Internal,
                    format!("unexpected {other:?}"),
                ))
            }
        }
        // Open what this node hosts and wait (bounded) for those leaders, so
        // a single-node core is writable as soon as this returns.
        let meta = self.stream_meta(name)?;
        self.open_shards(&meta)
            .await
            .map_err(|e| RemoteError::new(ErrorCode::Internal, format!("{e:#}")))?;
        for sh in &meta.shards {
            if let Some(g) = self.shard(name, sh.id) {
                let _ = g.wait_leader(name, Duration::from_secs(10)).await;
            }
        }
        self.describe(name)
    }

    /// `stream split | merge | scale`: plans the reshard on the catalog,
    /// places the children's replicas, commits it, and opens what this node
    /// hosts. The parents' leaders seal them in the background.
    pub async fn reshard(
        &self,
        stream: &str,
        op: &crate::catalog::reshard::ReshardOp,
    ) -> Result<StreamInfo, RemoteError> {
        let invalid = |m: String| RemoteError::new(ErrorCode::InvalidArgument, m);
        // The metadata leader's catalog is current: a follower that has not
        // applied the stream's creation yet must not answer UNKNOWN_STREAM.
        self.require_meta_leader()?;
        let meta = self.stream_meta(stream)?;
        let plan = crate::catalog::reshard::plan(&meta, op, self.cfg.shards_max)
            .map_err(|e| invalid(e.to_string()))?;
        // Placement rotates with the shard id, as at creation.
        let last = plan.children.iter().map(|c| c.id).max().unwrap_or(0);
        let placed = self
            .meta()
            .sm
            .read(|c| place(c, last + 1, meta.replication))
            .map_err(|e| invalid(e.to_string()))?;
        let children = plan
            .children
            .iter()
            .map(|c| {
                ShardMeta::new(
                    c.id,
                    c.range,
                    placed[c.id as usize].clone(),
                    c.parents.clone(),
                )
            })
            .collect();
        let cmd = MetaCommand::Reshard {
            stream: stream.to_string(),
            close: plan.close.clone(),
            children,
        };
        match self.commit_meta(cmd).await? {
            MetaReply::Meta(MetaResponse::Done) => {}
            MetaReply::Meta(MetaResponse::Refused(m)) => return Err(invalid(m)),
            other => {
                return Err(RemoteError::new(
                    ErrorCode::Internal,
                    format!("unexpected {other:?}"),
                ))
            }
        }
        tracing::info!(stream, closed = ?plan.close, children = ?plan.children.iter().map(|c| c.id).collect::<Vec<_>>(), "resharded");
        // Reply at once: the reshard is committed (a client retrying a slow
        // reply would be refused, its shards being closed by then). The
        // children open on every node through the catalog watch; writers
        // retry until their leaders are elected.
        self.describe(stream)
    }

    pub(crate) fn require_meta_leader(&self) -> Result<(), RemoteError> {
        match self.meta().leader() {
            Some(l) if l == self.cfg.node_id => Ok(()),
            Some(l) => Err(RemoteError::not_leader(
                format!(
                    "node {} is not the metadata leader; node {l} is",
                    self.cfg.node_id
                ),
                self.client_addr(l),
            )),
            None => Err(RemoteError::new(
                ErrorCode::Unavailable,
                "the metadata group is electing a leader",
            )),
        }
    }

    /// `strata cluster add-node` / `remove-node`, on the metadata leader. A
    /// removal only marks the node draining and re-places its replicas; the
    /// shard leaders move them, then the node is forgotten.
    pub async fn change_membership(
        &self,
        change: &MembershipChange,
    ) -> Result<ClusterView, RemoteError> {
        self.require_meta_leader()?;
        let cmd = match change {
            MembershipChange::Add {
                node_id,
                zone,
                addr,
                peer_addr,
            } => {
                for (what, a) in [("--addr", addr), ("--peer-addr", peer_addr)] {
                    a.parse::<std::net::SocketAddr>().map_err(|e| {
                        RemoteError::new(
                            ErrorCode::InvalidArgument,
                            format!("{what} {a:?} is not ip:port: {e}"),
                        )
                    })?;
                }
                if zone.is_empty() {
                    return Err(RemoteError::new(
                        ErrorCode::InvalidArgument,
                        "--zone must not be empty",
                    ));
                }
                let n = NodeMeta {
                    id: *node_id,
                    zone: zone.clone(),
                    addr: addr.clone(),
                    peer_addr: peer_addr.clone(),
                    draining: false,
                };
                self.meta()
                    .sm
                    .read(|c| c.check_new_node(&n))
                    .map_err(|e| RemoteError::new(ErrorCode::InvalidArgument, e.to_string()))?;
                MetaCommand::AddNode(n)
            }
            MembershipChange::Remove { node_id } => {
                self.meta()
                    .sm
                    .read(|c| plan_drain(c, *node_id))
                    .map_err(|e| RemoteError::new(ErrorCode::InvalidArgument, e.to_string()))?;
                MetaCommand::DrainNode(*node_id)
            }
        };
        match self.commit_meta(cmd).await? {
            MetaReply::Meta(MetaResponse::Refused(m)) => {
                Err(RemoteError::new(ErrorCode::InvalidArgument, m))
            }
            MetaReply::Meta(_) => Ok(self.status()),
            other => Err(RemoteError::new(
                ErrorCode::Internal,
                format!("unexpected {other:?}"),
            )),
        }
    }

    /// Registers a producer id in the metadata group, bound to the caller's
    /// principal (idempotent: the first registration's time is kept; an id
    /// registered to another principal is refused). Returns the
    /// registration time and the number of producers.
    pub async fn register_producer(
        &self,
        id: u64,
        agent: &str,
        caller: &Caller,
    ) -> Result<(i64, u64), RemoteError> {
        if id == 0 {
            return Err(RemoteError::new(
                ErrorCode::InvalidArgument,
                "producer id must be non-zero",
            ));
        }
        let principal = caller.principal.as_deref().map(str::to_string);
        let known = self.meta().sm.read(|c| {
            c.producers.get(&id).map(|p| {
                (
                    p.registered_ms,
                    c.producers.len() as u64,
                    p.principal.clone(),
                )
            })
        });
        match known {
            Some((_, _, Some(owner))) if principal.as_ref().is_some_and(|p| *p != owner) => {
                return Err(producer_taken(id, &owner, caller));
            }
            Some((since, n, owner)) if owner.is_some() || principal.is_none() => {
                return Ok((since, n))
            }
            _ => {}
        }
        self.require_meta_leader()?;
        let p = crate::catalog::ProducerMeta {
            id,
            agent: agent.chars().take(256).collect(),
            registered_ms: now_ms(),
            principal,
        };
        if let MetaReply::Meta(MetaResponse::Refused(m)) =
            self.commit_meta(MetaCommand::RegisterProducer(p)).await?
        {
            return Err(RemoteError::new(ErrorCode::PermissionDenied, m));
        }
        Ok(self.meta().sm.read(|c| {
            (
                c.producers.get(&id).map_or(0, |p| p.registered_ms),
                c.producers.len() as u64,
            )
        }))
    }

    /// With client authentication, only the principal a producer id is
    /// registered to may forward under it; an id not registered yet is
    /// refused as `Unavailable` (the edge registers it at start and
    /// retries), so nobody can take another edge's id or poison its
    /// deduplication positions before it registers.
    pub fn check_producer_owner(&self, id: u64, caller: &Caller) -> Result<(), RemoteError> {
        let Some(principal) = caller.principal.as_deref() else {
            return Ok(());
        };
        let owner = self
            .meta()
            .sm
            .read(|c| c.producers.get(&id).map(|p| p.principal.clone()));
        match owner {
            Some(Some(owner)) if owner == principal => Ok(()),
            Some(Some(owner)) => Err(producer_taken(id, &owner, caller)),
            Some(None) | None => Err(RemoteError::new(
                ErrorCode::Unavailable,
                format!("producer id {id} is not registered to principal {principal:?} yet; register it first (edge agents do at start)"),
            )),
        }
    }

    /// `strata acl add | remove`, on the metadata leader: returns the rules
    /// in force after the change.
    pub async fn change_acl(
        &self,
        add: Option<strata_protocol::acl::Rule>,
        remove: u64,
    ) -> Result<Bytes, RemoteError> {
        if let Some(r) = &add {
            r.validate()
                .map_err(|e| RemoteError::new(ErrorCode::InvalidArgument, e.to_string()))?;
        }
        self.require_meta_leader()?;
        match self
            .commit_meta(MetaCommand::ChangeAcl { add, remove })
            .await?
        {
            MetaReply::Meta(MetaResponse::AclChanged { added_id }) => Ok(self
                .meta()
                .sm
                .read(|c| crate::api::access::acl_reply(&c.acl, added_id))),
            MetaReply::Meta(MetaResponse::Refused(m)) => {
                Err(RemoteError::new(ErrorCode::InvalidArgument, m))
            }
            other => Err(RemoteError::new(
                ErrorCode::Internal,
                format!("unexpected {other:?}"),
            )),
        }
    }

    /// A consumer-group member's heartbeat, on the metadata leader: joins or
    /// keeps the member, applies its commits, rebalances if the member set
    /// changed, and returns the member's shards.
    pub async fn group_heartbeat(
        &self,
        stream: &str,
        group: &str,
        heartbeat: crate::catalog::groups::Heartbeat,
    ) -> Result<crate::catalog::groups::Assignment, RemoteError> {
        let invalid = |m: String| RemoteError::new(ErrorCode::InvalidArgument, m);
        crate::catalog::groups::validate_name("group", group)
            .map_err(|e| invalid(e.to_string()))?;
        crate::catalog::groups::validate_name("member", &heartbeat.member)
            .map_err(|e| invalid(e.to_string()))?;
        self.require_meta_leader()?;
        self.stream_meta(stream)?;
        self.meta()
            .sm
            .read(|c| {
                let caps = self.cfg.caps();
                caps.check_member(c, stream, group, &heartbeat.member, heartbeat.leave)
            })
            .map_err(|e| invalid(e.to_string()))?;
        let cmd = MetaCommand::GroupHeartbeat {
            stream: stream.to_string(),
            group: group.to_string(),
            heartbeat,
        };
        match self.commit_meta(cmd).await? {
            MetaReply::Meta(MetaResponse::Group(a)) => Ok(a),
            MetaReply::Meta(MetaResponse::Refused(m)) => {
                Err(RemoteError::new(ErrorCode::UnknownStream, m))
            }
            other => Err(RemoteError::new(
                ErrorCode::Internal,
                format!("unexpected {other:?}"),
            )),
        }
    }

    /// Answers a forward without records (a seal probe): refused with
    /// `SHARD_CLOSED` and where `producer_id`'s records end once the shard
    /// is sealed, else the shard's next offset. An agent asks before it
    /// sends a closed shard's children anything, so a child never gets a
    /// producer's records out of position order (a merge's two parents
    /// seal at different moments; see the edge's forward driver). Read
    /// from the applied state: a seal is final, so any replica's applied
    /// seal gives the final position.
    pub fn seal_probe(&self, g: &ShardGroup, producer_id: u64) -> Result<u64, RemoteError> {
        let (sealed, next_seq, next_offset) =
            g.sm.read(|s| (s.sealed, s.producer_next_seq(producer_id), s.next_offset));
        if sealed {
            return Err(closed(next_seq));
        }
        Ok(next_offset)
    }

    /// Appends runs to a shard in order, grouped into Raft entries of up to
    /// `ENTRY_BYTES_MAX` bytes (group commit: one fsync and one replication
    /// round per entry, not per run); returns (appended, duplicates, next
    /// offset).
    pub async fn append(
        &self,
        g: &ShardGroup,
        cmds: Vec<AppendCmd>,
    ) -> Result<(u64, u64, u64), RemoteError> {
        use crate::raft::append::{append, AppendError};
        let unavailable = |m: String| RemoteError::new(ErrorCode::Unavailable, m);
        match append(g, cmds).await {
            Ok(a) => {
                metrics::counter!("strata_core_records_in_total").increment(a.appended);
                metrics::counter!("strata_core_duplicates_total").increment(a.duplicates);
                Ok((a.appended, a.duplicates, a.next_offset))
            }
            Err(AppendError::Closed(next_seq)) => Err(closed(next_seq)),
            Err(e @ (AppendError::Propose(_) | AppendError::Stopped)) => {
                Err(unavailable(e.to_string()))
            }
            Err(AppendError::Write(e)) => Err(self.not_leader_or(RaftError::APIError(e))),
            Err(e @ AppendError::Unexpected(_)) => {
                Err(RemoteError::new(ErrorCode::Internal, e.to_string()))
            }
        }
    }
}

/// The reply to a forward that reached a sealed shard.
fn closed(producer_next_seq: u64) -> RemoteError {
    RemoteError::shard_closed(
        "the shard is closed (split or merged): its records go to its children now (see stream describe)",
        producer_next_seq,
    )
}

fn producer_taken(id: u64, owner: &str, caller: &Caller) -> RemoteError {
    RemoteError::new(
        ErrorCode::PermissionDenied,
        format!(
            "producer id {id} is registered to principal {owner:?}, not {:?}",
            caller.name()
        ),
    )
}
