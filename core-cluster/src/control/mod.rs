//! The control loops of a node: thin drivers that keep its Raft groups in
//! line with the metadata catalog. Each round reads the catalog and the
//! groups' metrics, asks a pure planner what to do (`meta_members`,
//! `replicas`), and performs the actions; a failed action is retried at the
//! next round, so every action is idempotent.
//!
//! - this module: the catalog watch, opening the shard groups this node
//!   hosts, sealing resharded shards, proposing metadata commands from any
//!   node;
//! - [`meta_members`]: the metadata group's learners and voters;
//! - [`replicas`]: replica moves, closing moved-away replicas, and handing
//!   leadership back to a shard's preferred replica (when:
//!   [`crate::shard::hand_over`]);
//! - [`purge`]: removing the replicas of deleted streams;
//! - [`lag`]: consumer-group lag gauges;
//! - [`quiesce`]: idle shard groups stop their timers; peer liveness;
//! - [`tiering`]: uploads, expiry and local purges per shard.

pub mod expiry;
pub mod lag;
pub mod meta_members;
pub mod purge;
pub mod quiesce;
pub mod replicas;
pub mod tiering;

use crate::catalog::layout::Layout;
use crate::catalog::{MetaCommand, MetaResponse, NodeMeta, StreamMeta};
use crate::error::raft_err;
pub use crate::error::ControlError;
use crate::node::Node;
use crate::raft::command::{MetaReply, ShardCommand, ShardResponse};
use crate::raft::group::ShardGroup;
use crate::raft::net::NetworkFactory;
use openraft::BasicNode;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// How long a replica waits for a shard's preferred leader to initialize a
/// new group before doing it itself.
const INITIALIZE_GRACE: Duration = Duration::from_secs(3);
/// How long a node waits before it tries again to open a shard group that
/// failed to open.
const OPEN_RETRY_AFTER: Duration = Duration::from_secs(10);
/// How long a node waits before it opens again a shard group whose Raft
/// stopped on an error.
const REOPEN_STOPPED_AFTER: Duration = Duration::from_secs(1);
/// How often a node reconciles when the catalog's layout does not change.
const RECONCILE_EVERY: Duration = Duration::from_millis(500);

impl Node {
    /// Keeps this node's groups in line with the catalog.
    pub(crate) async fn watch_catalog(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        let mut applied = self.meta().sm.subscribe();
        // Retry registration and group opening that waited on other nodes,
        // and follow the groups' own changes (leaders, stopped groups).
        let mut every = tokio::time::interval(RECONCILE_EVERY);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut reconciled: Option<Layout> = None;
        loop {
            tokio::select! {
                _ = applied.changed() => {
                    // Most entries (group heartbeats, offsets, producers)
                    // leave what a reconcile reads as it was.
                    let same = reconciled
                        .as_ref()
                        .is_some_and(|l| self.meta().sm.read(|c| c.has_layout(l)));
                    if same {
                        continue;
                    }
                }
                _ = every.tick() => {}
                _ = stop.wait_for(|s| *s) => return,
            }
            let layout = reconciled.insert(self.meta().sm.read(|c| c.layout()));
            if let Err(e) = self.reconcile(layout).await {
                tracing::warn!(error = %format!("{e:#}"), "reconciling with the catalog failed; retrying");
            }
        }
    }

    /// Brings this node's groups in line with the catalog's `layout`.
    pub(crate) async fn reconcile(self: &Arc<Self>, layout: &Layout) -> Result<(), ControlError> {
        self.reopen_stopped_meta().await;
        if self.meta().leader() == Some(self.cfg.node_id) {
            let (known, forgotten): (Vec<u64>, BTreeSet<u64>) = self
                .meta()
                .sm
                .read(|c| (c.nodes.keys().copied().collect(), c.forgotten.clone()));
            for m in self.cfg.initial_members() {
                if !known.contains(&m.id) && !forgotten.contains(&m.id) {
                    let cmd = MetaCommand::RegisterNode(NodeMeta {
                        id: m.id,
                        zone: m.zone.clone(),
                        addr: m.addr.to_string(),
                        peer_addr: m.peer_addr.to_string(),
                        draining: false,
                    });
                    self.meta()
                        .raft
                        .client_write(cmd)
                        .await
                        .map_err(raft_err(format!("registering node {}", m.id)))?;
                }
            }
            self.reconcile_meta_members().await?;
        }
        let streams = layout.streams();
        // A shard that cannot open (a damaged log, say) does not keep the
        // others closed or the steps below from running.
        self.close_stopped().await;
        let mut first_err = None;
        for s in streams {
            if let Err(e) = self.open_shards(s).await {
                first_err.get_or_insert(e);
            }
        }
        self.seal_closing(streams).await;
        self.purge_deleted().await;
        self.close_unhosted(streams);
        self.converge_replicas(streams);
        first_err.map_or(Ok(()), Err)
    }

    /// Closes the shard groups whose Raft stopped on an error (openraft
    /// quits a group on any storage error, e.g. a full disk); the reconcile
    /// opens them again after [`REOPEN_STOPPED_AFTER`], as a restart would:
    /// the log is read again (an unsynced tail cut) and the replica rejoins
    /// its group. Until then its requests get UNAVAILABLE.
    pub(crate) async fn close_stopped(&self) {
        let stopped: Vec<((String, u32), Arc<ShardGroup>, String)> = self
            .shard_groups()
            .into_iter()
            .filter_map(|(k, g)| {
                let err = g.failure()?;
                Some((k, g, err.to_string()))
            })
            .collect();
        for (key, g, error) in stopped {
            {
                let mut map = self.shards.write().expect("shards lock");
                if map.get(&key).is_some_and(|x| Arc::ptr_eq(x, &g)) {
                    map.remove(&key);
                }
            }
            tracing::error!(shard = %format!("{}/{}", key.0, key.1), %error, "the shard group stopped on an error; opening it again");
            // Nothing writes to its log once its Raft is shut down.
            let _ = g.raft.shutdown().await;
            self.open_not_before
                .lock()
                .expect("open_not_before lock")
                .insert(key, std::time::Instant::now() + REOPEN_STOPPED_AFTER);
        }
    }

    /// The metadata group's counterpart of [`Self::close_stopped`]: once
    /// its Raft stopped on an error (a full disk), it is shut down and,
    /// [`REOPEN_STOPPED_AFTER`] later, opened again from its directory with
    /// its own state machine, so the catalog's watchers keep watching. Until
    /// then catalog changes get UNAVAILABLE and reads see the catalog as it
    /// was. (Before, the group stayed stopped until the node restarted.)
    pub(crate) async fn reopen_stopped_meta(&self) {
        let now = std::time::Instant::now();
        let due = self
            .meta_open_not_before
            .lock()
            .expect("meta_open_not_before lock")
            .map(|t| now >= t);
        let meta = self.meta();
        match due {
            Some(false) => {}
            None => {
                let Some(error) = meta.failure() else {
                    return;
                };
                tracing::error!(%error, "the metadata group stopped on an error; opening it again");
                *self
                    .meta_open_not_before
                    .lock()
                    .expect("meta_open_not_before lock") = Some(now + REOPEN_STOPPED_AFTER);
                // Nothing writes to its log once its Raft is shut down.
                let _ = meta.raft.shutdown().await;
            }
            Some(true) => {
                let dir = self.cfg.data_dir.join("meta");
                let opened = meta
                    .reopen(
                        "meta",
                        &dir,
                        self.cfg.node_id,
                        Self::segment_options(&self.cfg),
                        self.net.network("meta"),
                    )
                    .await;
                let next = match opened {
                    Ok(g) => {
                        *self.meta.write().expect("meta lock") = Arc::new(g);
                        tracing::info!("the metadata group is open again");
                        None
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "opening the metadata group again failed; retrying");
                        Some(std::time::Instant::now() + REOPEN_STOPPED_AFTER)
                    }
                };
                *self
                    .meta_open_not_before
                    .lock()
                    .expect("meta_open_not_before lock") = next;
            }
        }
    }

    /// Resharded shards this node leads: append the seal to the shard's log,
    /// then record where the shard ends in the catalog. Both steps are
    /// idempotent, so a failure is simply retried at the next reconcile.
    pub(crate) async fn seal_closing(&self, streams: &[StreamMeta]) {
        for s in streams {
            for sh in s
                .shards
                .iter()
                .filter(|sh| sh.closing && sh.end_offset.is_none())
            {
                let Some(g) = self.shard(&s.name, sh.id) else {
                    continue;
                };
                if g.leader() != Some(self.cfg.node_id) {
                    continue;
                }
                let name = format!("{}/{}", s.name, sh.id);
                let sealed = tokio::time::timeout(
                    Duration::from_secs(5),
                    g.raft.client_write(ShardCommand::Seal),
                )
                .await;
                let end_offset = match sealed {
                    Ok(Ok(r)) => match r.data {
                        ShardResponse::Sealed { end_offset } => end_offset,
                        other => {
                            tracing::warn!(shard = %name, reply = ?other, "unexpected reply to the seal");
                            continue;
                        }
                    },
                    Ok(Err(e)) => {
                        tracing::warn!(shard = %name, error = %e, "sealing the shard failed; will retry");
                        continue;
                    }
                    Err(_) => {
                        tracing::warn!(shard = %name, "sealing the shard timed out; will retry");
                        continue;
                    }
                };
                let cmd = MetaCommand::ShardSealed {
                    stream: s.name.clone(),
                    shard: sh.id,
                    end_offset,
                };
                match self.propose_meta(cmd).await {
                    Ok(_) => tracing::info!(shard = %name, end_offset, "shard closed"),
                    Err(e) => {
                        tracing::warn!(shard = %name, error = %format!("{e:#}"), "recording the closed shard failed; will retry")
                    }
                }
            }
        }
    }

    /// Proposes a metadata command on the metadata leader, wherever it is.
    pub(crate) async fn propose_meta(
        &self,
        cmd: MetaCommand,
    ) -> Result<MetaResponse, ControlError> {
        let data = match self.meta().leader() {
            Some(l) if l == self.cfg.node_id => {
                self.meta()
                    .raft
                    .client_write(cmd)
                    .await
                    .map_err(raft_err("metadata write".to_string()))?
                    .data
            }
            Some(l) => {
                let NetworkFactory::Quic(pool) = &self.net else {
                    return Err(ControlError::NoPeers(l));
                };
                pool.meta_write(self.peer_addr_of(l)?, cmd, Duration::from_secs(5))
                    .await
                    .map_err(raft_err(format!("metadata write through node {l}")))?
            }
            None => return Err(ControlError::NoMetaLeader),
        };
        match data {
            MetaReply::Meta(r) => Ok(r),
            other @ MetaReply::NoCommand => {
                Err(ControlError::UnexpectedReply(format!("{other:?}")))
            }
        }
    }

    pub(crate) async fn open_shards(&self, s: &StreamMeta) -> Result<(), ControlError> {
        let me = self.cfg.node_id;
        let mut first_err = None;
        for sh in s.shards.iter().filter(|sh| sh.hosted_on(me)) {
            let _guard = self.opening.lock().await;
            if self.shard(&s.name, sh.id).is_some() {
                continue;
            }
            let key = (s.name.clone(), sh.id);
            let not_before = self
                .open_not_before
                .lock()
                .expect("open_not_before lock")
                .get(&key)
                .copied();
            if not_before.is_some_and(|at| std::time::Instant::now() < at) {
                continue;
            }
            let name = format!("{}/{}", s.name, sh.id);
            let opened = ShardGroup::open(
                &name,
                &self.shard_dir(&s.name, sh.id),
                me,
                Self::segment_options(&self.cfg),
                self.net.network(&name),
            )
            .await;
            let g = match opened {
                Ok(g) => g,
                Err(e) => {
                    // Reading a damaged log again is not free: wait a while.
                    tracing::error!(shard = %name, error = %e, "could not open the shard group; the node's other shards go on");
                    self.open_not_before
                        .lock()
                        .expect("open_not_before lock")
                        .insert(key, std::time::Instant::now() + OPEN_RETRY_AFTER);
                    first_err.get_or_insert(e.into());
                    continue;
                }
            };
            self.open_not_before
                .lock()
                .expect("open_not_before lock")
                .remove(&key);
            // The preferred leader (first replica) initializes a pristine
            // group at once, so leaders start balanced over nodes and zones.
            // Any other replica initializes it too (with the identical replica
            // set, which openraft allows) if it is still pristine after a grace
            // period: a shard stays available when its preferred leader is
            // down at creation. Once a replica has moved, nobody initializes:
            // a new replica waits for the leader to add it.
            let peers = self.meta().sm.read(|c| {
                sh.replicas
                    .iter()
                    .filter_map(|r| c.nodes.get(r).map(|n| (*r, BasicNode::new(&n.peer_addr))))
                    .collect::<BTreeMap<_, _>>()
            });
            if peers.len() != sh.replicas.len() {
                return Err(ControlError::ReplicasUnregistered(name));
            }
            if sh.moved || !sh.replicas.contains(&me) {
            } else if sh.replicas.first() == Some(&me) {
                g.initialize(&name, peers).await?;
            } else {
                let (raft, name) = (g.raft.clone(), name.clone());
                tokio::spawn(async move {
                    tokio::time::sleep(INITIALIZE_GRACE).await;
                    if matches!(raft.is_initialized().await, Ok(false)) {
                        tracing::info!(shard = %name, "preferred leader absent; initializing the shard group");
                        if let Err(e) = raft.initialize(peers).await {
                            tracing::debug!(shard = %name, error = %e, "late initialize");
                        }
                    }
                });
            }
            self.shards
                .write()
                .expect("shards lock")
                .insert((s.name.clone(), sh.id), Arc::new(g));
            tracing::info!(shard = %name, replicas = ?sh.replicas, "opened shard group");
        }
        first_err.map_or(Ok(()), Err)
    }
}
