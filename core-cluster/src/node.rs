//! A core node, wiring only: its metadata group, its shard groups, the
//! object store tier and the peer network, and lookups of the groups it
//! holds. What the node does lives elsewhere: `control` keeps the groups in
//! line with the catalog, `api` serves clients, `raft::group` runs one
//! group. The same code runs a single-node core and every node of a cluster.

use crate::catalog::{Catalog, StreamMeta};
use crate::config::CoreConfig;
use crate::error::ControlError;
use crate::log::segment::SegmentLogOptions;
use crate::raft::group::{Group, MetaGroup, ShardGroup};
use crate::raft::net::NetworkFactory;
use crate::raft::types::{MetaRaft, NodeId, ShardRaft};
use openraft::BasicNode;
use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;
use strata_schema::fb::ErrorCode;
use strata_schema::wire::RemoteError;
use tokio::sync::watch;

/// How long a lookup that found no such stream on a metadata follower
/// waits for its catalog to catch up before it answers so.
const CATALOG_CATCH_UP_MAX: Duration = Duration::from_secs(1);

/// How current a node's catalog is, after [`Node::looked_up_fresh`] tried to
/// catch it up.
enum CatalogFreshness {
    /// This node leads the metadata group.
    Current,
    /// It applied the metadata leader's read index.
    CaughtUp,
    /// The leader did not answer, or the catalog did not get there in time.
    Unconfirmed,
}

/// A core node.
pub struct Node {
    pub cfg: CoreConfig,
    /// The object store tier (the local filesystem by default).
    pub tier: Arc<crate::tiering::Tier>,
    /// The metadata group; replaced when it is opened again after its
    /// Raft stopped on an error ([`Self::meta`] for the current one).
    pub(crate) meta: RwLock<Arc<MetaGroup>>,
    /// When the metadata group stopped on an error may be opened again.
    pub(crate) meta_open_not_before: std::sync::Mutex<Option<std::time::Instant>>,
    pub(crate) shards: RwLock<HashMap<(String, u32), Arc<ShardGroup>>>,
    pub(crate) net: NetworkFactory,
    /// Serialises opening shard groups.
    pub(crate) opening: tokio::sync::Mutex<()>,
    /// Shards whose replica move this node (their leader) is running.
    pub(crate) moving: std::sync::Mutex<HashSet<(String, u32)>>,
    /// Since when (and in which term) this node leads a shard it is not the
    /// preferred leader of.
    pub(crate) leading_since:
        std::sync::Mutex<HashMap<(String, u32), crate::shard::hand_over::Leading>>,
    /// Shard groups that failed to open or stopped, and when they may be
    /// opened again.
    pub(crate) open_not_before: std::sync::Mutex<HashMap<(String, u32), std::time::Instant>>,
    /// When each other node was last heard from (its requests and its
    /// answers to pings): the node-level failure detector.
    pub(crate) liveness: std::sync::Mutex<crate::raft::quiesce::Liveness>,
}

impl Node {
    pub(crate) fn segment_options(cfg: &CoreConfig) -> SegmentLogOptions {
        SegmentLogOptions {
            segment_bytes_max: cfg.segment_bytes_max,
            prefill: strata_segment_log::prefill::Prefill::enabled(cfg.segment_prefill),
            ..SegmentLogOptions::default()
        }
    }

    pub(crate) fn shard_dir(&self, stream: &str, shard: u32) -> PathBuf {
        self.cfg
            .data_dir
            .join("shards")
            .join(stream)
            .join(format!("{shard:05}"))
    }

    /// Opens the node's groups. Every member of the initial cluster
    /// initializes a pristine metadata group with all initial members as
    /// voters; shard groups open as the catalog names this node a replica.
    /// Returns without waiting for other nodes: requests get UNAVAILABLE or
    /// NOT_LEADER until the groups have leaders.
    pub async fn start(
        cfg: CoreConfig,
        net: NetworkFactory,
        stop: watch::Receiver<bool>,
    ) -> Result<Arc<Self>, ControlError> {
        let members = cfg.initial_members();
        let meta = Group::<Catalog>::open(
            "meta",
            &cfg.data_dir.join("meta"),
            cfg.node_id,
            Self::segment_options(&cfg),
            net.network("meta"),
        )
        .await?;
        // Every initial member initializes a pristine metadata group with the
        // same voters (openraft: safe with an identical config), so the
        // cluster forms even if some member is down at first start.
        let voters = members
            .iter()
            .map(|m| (m.id, BasicNode::new(m.peer_addr)))
            .collect();
        // A joining node waits to be added (as a learner) by the leader.
        if !cfg.joining() {
            meta.initialize("meta", voters).await?;
        }
        let tier = Arc::new(crate::tiering::Tier::open(&cfg)?);
        let node = Arc::new(Self {
            tier,
            cfg,
            meta: RwLock::new(Arc::new(meta)),
            meta_open_not_before: Default::default(),
            shards: RwLock::new(HashMap::new()),
            net,
            opening: tokio::sync::Mutex::new(()),
            moving: Default::default(),
            leading_since: Default::default(),
            open_not_before: Default::default(),
            liveness: std::sync::Mutex::new(crate::raft::quiesce::Liveness::new(
                std::time::Instant::now(),
            )),
        });
        if members.len() == 1 {
            // A single-node core is ready once its groups are: wait here so that
            // the first request does not race the elections.
            node.meta()
                .wait_leader("meta", Duration::from_secs(30))
                .await?;
            // A shard that cannot open is logged and retried by the
            // catalog watch; the others serve.
            let layout = node.meta().sm.read(|c| c.layout());
            if let Err(e) = node.reconcile(&layout).await {
                tracing::error!(error = %e, "some shard groups did not open");
            }
        }
        tokio::spawn(node.clone().watch_catalog(stop));
        Ok(node)
    }

    /// The metadata group as it is now (see [`Self::reopen_stopped_meta`]).
    pub(crate) fn meta(&self) -> Arc<MetaGroup> {
        self.meta.read().expect("meta lock").clone()
    }

    /// Every shard group open on this node.
    pub fn shard_groups(&self) -> Vec<((String, u32), Arc<ShardGroup>)> {
        self.shards
            .read()
            .expect("shards lock")
            .iter()
            .map(|(k, g)| (k.clone(), g.clone()))
            .collect()
    }

    /// Whether `stream` is being restored from an archive.
    pub fn restoring(&self, stream: &str) -> bool {
        self.meta().sm.read(|c| {
            c.streams
                .get(stream)
                .is_some_and(|s| s.restore_from.is_some())
        })
    }

    /// A stream's retention, from the catalog (default if unknown).
    pub fn retention(&self, stream: &str) -> strata_protocol::Retention {
        self.meta()
            .sm
            .read(|c| c.streams.get(stream).map(|s| s.retention))
            .unwrap_or_default()
    }

    pub fn shard(&self, stream: &str, shard: u32) -> Option<Arc<ShardGroup>> {
        self.shards
            .read()
            .expect("shards lock")
            .get(&(stream.to_string(), shard))
            .cloned()
    }

    /// Client address of a node, from the catalog.
    pub fn client_addr(&self, node: NodeId) -> Option<String> {
        self.meta()
            .sm
            .read(|c| c.nodes.get(&node).map(|n| n.addr.clone()))
    }

    pub(crate) fn stream_meta(&self, name: &str) -> Result<StreamMeta, RemoteError> {
        self.meta()
            .sm
            .read(|c| c.streams.get(name).cloned())
            .ok_or_else(|| {
                RemoteError::new(
                    ErrorCode::UnknownStream,
                    format!("stream {name:?} does not exist"),
                )
            })
    }

    /// Runs `lookup` again after this node's catalog caught up, when it
    /// answered that a stream or shard does not exist and this node is not
    /// the metadata leader: a follower learns that an entry committed with
    /// the leader's next message, so a stream created (or split) a moment
    /// ago through another node may not be in its catalog yet. A node that
    /// cannot catch up (the leader unreachable, or its log too far behind
    /// to apply within [`CATALOG_CATCH_UP_MAX`]) does not know, and says so:
    /// UNAVAILABLE, which clients retry (on another node), not
    /// UNKNOWN_STREAM.
    pub(crate) async fn looked_up_fresh<T>(
        &self,
        lookup: impl Fn() -> Result<T, RemoteError>,
    ) -> Result<T, RemoteError> {
        let missing =
            |e: &RemoteError| matches!(e.code, ErrorCode::UnknownStream | ErrorCode::UnknownShard);
        match lookup() {
            Err(e) if missing(&e) => match self.catch_up_catalog().await {
                CatalogFreshness::Current => Err(e),
                CatalogFreshness::CaughtUp => lookup(),
                CatalogFreshness::Unconfirmed => lookup().map_err(|e| {
                    if !missing(&e) {
                        return e;
                    }
                    RemoteError::new(
                        ErrorCode::Unavailable,
                        format!(
                            "{} on node {}, whose catalog could not catch up with the metadata leader's within {} ms; retry",
                            e.message,
                            self.cfg.node_id,
                            CATALOG_CATCH_UP_MAX.as_millis()
                        ),
                    )
                }),
            },
            r => r,
        }
    }

    /// Brings this node's catalog up to what the metadata leader had
    /// committed when asked (its read index), waiting at most
    /// [`CATALOG_CATCH_UP_MAX`].
    async fn catch_up_catalog(&self) -> CatalogFreshness {
        let meta = self.meta();
        let (leader, last) = {
            let m = meta.raft.metrics();
            let m = m.borrow();
            (m.current_leader, m.last_log_index)
        };
        if leader == Some(self.cfg.node_id) {
            return CatalogFreshness::Current;
        }
        let deadline = tokio::time::Instant::now() + CATALOG_CATCH_UP_MAX;
        // What the leader had committed when asked (a stream created through
        // it among that); without its answer, what this node's log holds.
        let read = match (leader, &self.net) {
            (Some(l), NetworkFactory::Quic(pool)) => match self.peer_addr_of(l) {
                Ok(addr) => pool
                    .read_index(addr, CATALOG_CATCH_UP_MAX)
                    .await
                    .inspect_err(|e| tracing::debug!(leader = l, error = %e, "read index"))
                    .ok(),
                Err(_) => None,
            },
            _ => None,
        };
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let applied = meta
            .raft
            .wait(Some(left))
            .applied_index_at_least(read.flatten().max(last), "the catalog catching up")
            .await;
        match (read, applied) {
            (Some(_), Ok(_)) => CatalogFreshness::CaughtUp,
            _ => CatalogFreshness::Unconfirmed,
        }
    }

    /// The peer address of node `id`, from the catalog.
    pub(crate) fn peer_addr_of(&self, id: NodeId) -> Result<std::net::SocketAddr, ControlError> {
        let addr = self
            .meta()
            .sm
            .read(|c| c.nodes.get(&id).map(|n| n.peer_addr.clone()))
            .ok_or(ControlError::UnknownNode(id))?;
        addr.parse()
            .map_err(|source| ControlError::PeerAddr { addr, source })
    }

    /// The local shard group for a read (any replica serves committed records).
    pub fn shard_for(&self, stream: &str, shard: u32) -> Result<Arc<ShardGroup>, RemoteError> {
        let meta = self.stream_meta(stream)?;
        let Some(sh) = meta.shards.iter().find(|s| s.id == shard) else {
            return Err(RemoteError::new(
                ErrorCode::UnknownShard,
                format!(
                    "stream {stream:?} has no shard {shard} (it has {})",
                    meta.shards.len()
                ),
            ));
        };
        if !sh.hosted_on(self.cfg.node_id) {
            let hint = sh.replicas.first().and_then(|r| self.client_addr(*r));
            return Err(RemoteError::not_leader(
                format!(
                    "node {} holds no replica of {stream}/{shard}",
                    self.cfg.node_id
                ),
                hint,
            ));
        }
        self.shard(stream, shard).ok_or_else(|| {
            RemoteError::new(
                ErrorCode::Unavailable,
                format!("shard {stream}/{shard} is starting"),
            )
        })
    }

    /// The local shard group for a write: this node must lead it.
    pub fn shard_leader_for(
        &self,
        stream: &str,
        shard: u32,
    ) -> Result<Arc<ShardGroup>, RemoteError> {
        let g = self.shard_for(stream, shard)?;
        match g.leader() {
            Some(l)
                if l == self.cfg.node_id
                    && g.handing_over.load(std::sync::atomic::Ordering::SeqCst) =>
            {
                Err(RemoteError::new(
                    ErrorCode::Unavailable,
                    format!("{stream}/{shard} is handing leadership to its preferred replica"),
                ))
            }
            Some(l) if l == self.cfg.node_id => Ok(g),
            Some(l) => Err(RemoteError::not_leader(
                format!(
                    "node {} does not lead {stream}/{shard}; node {l} does",
                    self.cfg.node_id
                ),
                self.client_addr(l),
            )),
            None => Err(RemoteError::new(
                ErrorCode::Unavailable,
                format!("shard {stream}/{shard} is electing a leader"),
            )),
        }
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
        let _ = self.meta().raft.shutdown().await;
    }
}

impl crate::raft::peer::GroupRegistry for Node {
    fn meta_raft(&self) -> Option<MetaRaft> {
        Some(self.meta().raft.clone())
    }

    fn shard_raft(&self, group: &str) -> Option<ShardRaft> {
        self.shard_group(group).map(|g| g.raft.clone())
    }

    fn members(&self) -> std::collections::BTreeSet<NodeId> {
        self.meta().sm.read(|c| c.nodes.keys().copied().collect())
    }

    fn heard_from(&self, node: NodeId) {
        self.liveness
            .lock()
            .expect("liveness lock")
            .answered(node, std::time::Instant::now());
    }

    fn shard_message(&self, group: &str) {
        if let Some(g) = self.shard_group(group) {
            g.wake();
        }
    }

    fn quiesce_shard(&self, group: &str, req: &crate::raft::peer::QuiesceRequest) -> bool {
        self.shard_group(group)
            .is_some_and(|g| g.follower_quiesce(req))
    }
}

impl Node {
    /// The shard group named `"<stream>/<shard>"`, if open here.
    fn shard_group(&self, group: &str) -> Option<Arc<ShardGroup>> {
        let (stream, shard) = group.rsplit_once('/')?;
        self.shard(stream, shard.parse().ok()?)
    }
}
