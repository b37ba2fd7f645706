//! A core node: the metadata Raft group, one Raft group per shard, and the
//! operations the QUIC API exposes (create/describe streams, append, seek,
//! fetch). Everything here is the same code a multi-node cluster runs; a
//! single-node core simply has one member in every group.

use crate::config::CoreConfig;
use crate::log::segment::SegmentLogOptions;
use crate::log::store::LogStore;
use crate::meta::{Catalog, MetaCommand, MetaResponse, ShardMeta, StreamMeta};
use crate::raft::network::SingleNodeNetwork;
use crate::raft::shard::ShardState;
use crate::raft::sm::{GroupSm, GroupState};
use crate::raft::types::{AppendCmd, Command, CommandResponse, NodeId, Raft};
use anyhow::{Context, Result};
use openraft::error::{ClientWriteError, RaftError};
use openraft::{BasicNode, ServerState};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;
use strata_client::api::{ShardInfo, StreamInfo};
use strata_schema::fb::ErrorCode;
use strata_schema::hashkey;
use strata_schema::wire::RemoteError;

/// One Raft group: its Raft handle, state machine and log.
pub struct Group<S: GroupState> {
    pub raft: Raft,
    pub sm: GroupSm<S>,
    pub log: LogStore,
}

fn raft_config(name: &str) -> Result<Arc<openraft::Config>> {
    let c = openraft::Config {
        cluster_name: name.to_string(),
        heartbeat_interval: 100,
        election_timeout_min: 300,
        election_timeout_max: 600,
        // The shard's log is its data: it is never purged behind a snapshot.
        // Tiering to object storage decides what leaves local disk.
        snapshot_policy: openraft::SnapshotPolicy::Never,
        max_in_snapshot_log_to_keep: u64::MAX,
        max_payload_entries: 512,
        ..Default::default()
    };
    Ok(Arc::new(c.validate().context("raft config")?))
}

impl<S: GroupState> Group<S> {
    async fn open(
        name: &str,
        dir: &Path,
        node_id: NodeId,
        addr: &str,
        seg: SegmentLogOptions,
    ) -> Result<Self> {
        let log = LogStore::open(dir, seg)
            .with_context(|| format!("opening Raft log of {name} at {}", dir.display()))?;
        let sm = GroupSm::<S>::default();
        let raft = Raft::new(
            node_id,
            raft_config(name)?,
            SingleNodeNetwork,
            log.clone(),
            sm.clone(),
        )
        .await
        .with_context(|| format!("starting Raft group {name}"))?;
        if !raft.is_initialized().await? {
            let mut members = BTreeMap::new();
            members.insert(node_id, BasicNode::new(addr));
            raft.initialize(members)
                .await
                .with_context(|| format!("initializing Raft group {name}"))?;
        }
        Ok(Self { raft, sm, log })
    }

    async fn wait_leader(&self, name: &str, timeout: Duration) -> Result<()> {
        self.raft
            .wait(Some(timeout))
            .state(ServerState::Leader, name)
            .await
            .with_context(|| format!("Raft group {name} elected no leader within {timeout:?}"))?;
        Ok(())
    }
}

pub type ShardGroup = Group<ShardState>;

/// A core node.
pub struct Node {
    pub cfg: CoreConfig,
    meta: Group<Catalog>,
    shards: RwLock<HashMap<(String, u32), Arc<ShardGroup>>>,
}

fn not_leader_or(e: RaftError<NodeId, ClientWriteError<NodeId, BasicNode>>) -> RemoteError {
    match e {
        RaftError::APIError(ClientWriteError::ForwardToLeader(f)) => RemoteError::new(
            ErrorCode::NotLeader,
            format!("not the leader; leader is {:?}", f.leader_id),
        ),
        other => RemoteError::new(ErrorCode::Unavailable, format!("raft: {other}")),
    }
}

impl Node {
    fn segment_options(cfg: &CoreConfig) -> SegmentLogOptions {
        SegmentLogOptions {
            segment_bytes_max: cfg.segment_bytes_max,
            ..SegmentLogOptions::default()
        }
    }

    fn shard_dir(&self, stream: &str, shard: u32) -> PathBuf {
        self.cfg
            .data_dir
            .join("shards")
            .join(stream)
            .join(format!("{shard:05}"))
    }

    /// Opens (or creates) the node's groups and waits for their leaders.
    pub async fn start(cfg: CoreConfig) -> Result<Arc<Self>> {
        let addr = cfg.listen_addr.to_string();
        let meta = Group::<Catalog>::open(
            "meta",
            &cfg.data_dir.join("meta"),
            cfg.node_id,
            &addr,
            Self::segment_options(&cfg),
        )
        .await?;
        meta.wait_leader("meta", Duration::from_secs(30)).await?;
        let node = Arc::new(Self {
            cfg,
            meta,
            shards: RwLock::new(HashMap::new()),
        });
        let streams: Vec<StreamMeta> = node.meta.sm.read(|c| c.streams.values().cloned().collect());
        for s in &streams {
            node.open_shards(s).await?;
        }
        tracing::info!(streams = streams.len(), "core node ready");
        Ok(node)
    }

    async fn open_shards(&self, s: &StreamMeta) -> Result<()> {
        let addr = self.cfg.listen_addr.to_string();
        for sh in &s.shards {
            if self.shard(&s.name, sh.id).is_some() {
                continue;
            }
            let name = format!("{}/{}", s.name, sh.id);
            let g = ShardGroup::open(
                &name,
                &self.shard_dir(&s.name, sh.id),
                self.cfg.node_id,
                &addr,
                Self::segment_options(&self.cfg),
            )
            .await?;
            g.wait_leader(&name, Duration::from_secs(30)).await?;
            self.shards
                .write()
                .expect("shards lock")
                .insert((s.name.clone(), sh.id), Arc::new(g));
        }
        Ok(())
    }

    pub fn shard(&self, stream: &str, shard: u32) -> Option<Arc<ShardGroup>> {
        self.shards
            .read()
            .expect("shards lock")
            .get(&(stream.to_string(), shard))
            .cloned()
    }

    fn stream_meta(&self, name: &str) -> Result<StreamMeta, RemoteError> {
        self.meta
            .sm
            .read(|c| c.streams.get(name).cloned())
            .ok_or_else(|| {
                RemoteError::new(
                    ErrorCode::UnknownStream,
                    format!("stream {name:?} does not exist"),
                )
            })
    }

    /// The shard group for a request, or the error reply naming what is missing.
    pub fn shard_for(&self, stream: &str, shard: u32) -> Result<Arc<ShardGroup>, RemoteError> {
        let meta = self.stream_meta(stream)?;
        if !meta.shards.iter().any(|s| s.id == shard) {
            return Err(RemoteError::new(
                ErrorCode::UnknownShard,
                format!(
                    "stream {stream:?} has no shard {shard} (it has {})",
                    meta.shards.len()
                ),
            ));
        }
        self.shard(stream, shard).ok_or_else(|| {
            RemoteError::new(
                ErrorCode::Unavailable,
                format!("shard {stream}/{shard} is starting"),
            )
        })
    }

    pub async fn create_stream(
        &self,
        name: &str,
        shards: u32,
        replication: u32,
    ) -> Result<StreamInfo, RemoteError> {
        strata_schema::validate_stream_name(name)
            .map_err(|m| RemoteError::new(ErrorCode::InvalidArgument, m))?;
        if shards == 0 || shards > self.cfg.shards_max {
            return Err(RemoteError::new(
                ErrorCode::InvalidArgument,
                format!(
                    "--shards {shards} must be between 1 and {}",
                    self.cfg.shards_max
                ),
            ));
        }
        let replication = replication.max(1);
        if replication > 1 {
            return Err(RemoteError::new(
                ErrorCode::InvalidArgument,
                format!("--replication {replication} needs {replication} nodes; this core has 1"),
            ));
        }
        let meta = StreamMeta {
            name: name.to_string(),
            replication,
            created_ms: now_ms(),
            shards: hashkey::even_ranges(shards)
                .iter()
                .enumerate()
                .map(|(i, r)| ShardMeta {
                    id: i as u32,
                    start_hash_key: r.start.to_string(),
                    end_hash_key: r.end.to_string(),
                    replicas: vec![self.cfg.node_id],
                })
                .collect(),
        };
        let resp = self
            .meta
            .raft
            .client_write(Command::Meta(MetaCommand::CreateStream(meta)))
            .await
            .map_err(not_leader_or)?;
        match resp.data {
            CommandResponse::Meta(MetaResponse::Created) => {}
            CommandResponse::Meta(MetaResponse::AlreadyExists) => {
                return Err(RemoteError::new(
                    ErrorCode::StreamExists,
                    format!("stream {name:?} already exists"),
                ))
            }
            other => {
                return Err(RemoteError::new(
                    ErrorCode::Internal,
                    format!("unexpected {other:?}"),
                ))
            }
        }
        let meta = self.stream_meta(name)?;
        self.open_shards(&meta)
            .await
            .map_err(|e| RemoteError::new(ErrorCode::Internal, format!("{e:#}")))?;
        self.describe(name)
    }

    pub fn describe(&self, name: &str) -> Result<StreamInfo, RemoteError> {
        let meta = self.stream_meta(name)?;
        Ok(self.info_of(&meta))
    }

    fn info_of(&self, meta: &StreamMeta) -> StreamInfo {
        StreamInfo {
            name: meta.name.clone(),
            replication: meta.replication,
            created_ms: meta.created_ms,
            shards: meta
                .shards
                .iter()
                .map(|sh| {
                    let (first, next) = self
                        .shard(&meta.name, sh.id)
                        .map(|g| g.sm.read(|s| (s.first_offset, s.next_offset)))
                        .unwrap_or((0, 0));
                    ShardInfo {
                        id: sh.id,
                        start_hash_key: sh.start_hash_key.clone(),
                        end_hash_key: sh.end_hash_key.clone(),
                        first_offset: first,
                        next_offset: next,
                        leader_node: self.cfg.node_id,
                        replicas: sh.replicas.clone(),
                    }
                })
                .collect(),
        }
    }

    pub fn list(&self) -> Vec<StreamInfo> {
        let metas: Vec<StreamMeta> = self.meta.sm.read(|c| c.streams.values().cloned().collect());
        metas.iter().map(|m| self.info_of(m)).collect()
    }

    /// Appends runs to a shard in order; returns (appended, duplicates, next offset).
    pub async fn append(
        &self,
        g: &ShardGroup,
        cmds: Vec<AppendCmd>,
    ) -> Result<(u64, u64, u64), RemoteError> {
        let mut receivers = Vec::with_capacity(cmds.len());
        let mut duplicates = 0u64;
        for cmd in cmds {
            // Skip proposing what is certainly a duplicate; apply still decides.
            let dup = g.sm.read(|s| s.duplicate_prefix(&cmd));
            if dup == cmd.records as usize {
                duplicates += u64::from(cmd.records);
                continue;
            }
            let rx = g
                .raft
                .client_write_ff(Command::Append(cmd))
                .await
                .map_err(|e| RemoteError::new(ErrorCode::Unavailable, format!("raft: {e}")))?;
            receivers.push(rx);
        }
        let mut appended = 0u64;
        for rx in receivers {
            let res = rx
                .await
                .map_err(|_| RemoteError::new(ErrorCode::Unavailable, "raft group stopped"))?;
            match res.map_err(|e| not_leader_or(RaftError::APIError(e)))?.data {
                CommandResponse::Appended {
                    appended: a,
                    duplicates: d,
                    ..
                } => {
                    appended += a;
                    duplicates += d;
                }
                other => {
                    return Err(RemoteError::new(
                        ErrorCode::Internal,
                        format!("unexpected {other:?}"),
                    ))
                }
            }
        }
        let next = g.sm.read(|s| s.next_offset);
        metrics::counter!("strata_core_records_in_total").increment(appended);
        metrics::counter!("strata_core_duplicates_total").increment(duplicates);
        Ok((appended, duplicates, next))
    }

    pub async fn shutdown(&self) {
        let groups: Vec<_> = self
            .shards
            .read()
            .expect("shards lock")
            .values()
            .cloned()
            .collect();
        for g in groups {
            let _ = g.raft.shutdown().await;
        }
        let _ = self.meta.raft.shutdown().await;
    }
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}
