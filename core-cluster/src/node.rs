//! A core node: the metadata Raft group, one Raft group per shard, and the
//! operations the QUIC API exposes (create/describe streams, append, seek,
//! fetch). Everything here is the same code a multi-node cluster runs; a
//! single-node core simply has one member in every group.

use crate::config::CoreConfig;
use crate::log::segment::SegmentLogOptions;
use crate::log::store::LogStore;
use crate::meta::{
    place, plan_drain, Catalog, MetaCommand, MetaResponse, NodeMeta, ShardMeta, StreamMeta,
};
use crate::raft::net::{Network, NetworkFactory};
use crate::raft::shard::ShardState;
use crate::raft::sm::{GroupSm, GroupState};
use crate::raft::types::{AppendCmd, Command, CommandResponse, NodeId, Raft};
use anyhow::{Context, Result};
use openraft::error::{ClientWriteError, InitializeError, RaftError};
use openraft::{BasicNode, ChangeMembers};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;
use strata_protocol::{MembershipChange, NodeInfo, ShardInfo, StreamInfo};
use strata_schema::fb::ErrorCode;
use strata_schema::hashkey;
use strata_schema::wire::RemoteError;
use tokio::sync::watch;

/// One Raft group: its Raft handle, state machine and log.
pub struct Group<S: GroupState> {
    pub raft: Raft,
    pub sm: GroupSm<S>,
    pub log: LogStore,
    /// Set while this leader hands leadership to the preferred replica:
    /// writes are refused (UNAVAILABLE, clients retry) for that moment.
    pub handing_over: std::sync::atomic::AtomicBool,
}

fn raft_config(name: &str) -> Result<Arc<openraft::Config>> {
    let c = openraft::Config {
        cluster_name: name.to_string(),
        // openraft 0.9 gives each AppendEntries one heartbeat interval to
        // complete (follower fsync included), and a follower waits out the
        // leader's lease (election_timeout_max) plus its own timeout before a
        // new election: together these put failover at roughly 0.6-0.8 s.
        heartbeat_interval: 100,
        election_timeout_min: 200,
        election_timeout_max: 400,
        // The shard's log is its data: it is never purged behind a snapshot.
        // Tiering to object storage decides what leaves local disk.
        snapshot_policy: openraft::SnapshotPolicy::Never,
        max_in_snapshot_log_to_keep: u64::MAX,
        // Bounds one AppendEntries so it fits in a heartbeat interval.
        max_payload_entries: 4,
        ..Default::default()
    };
    Ok(Arc::new(c.validate().context("raft config")?))
}

impl<S: GroupState> Group<S> {
    async fn open(
        name: &str,
        dir: &Path,
        node_id: NodeId,
        seg: SegmentLogOptions,
        net: Network,
    ) -> Result<Self> {
        let log = LogStore::open(dir, seg)
            .with_context(|| format!("opening Raft log of {name} at {}", dir.display()))?;
        let sm = GroupSm::<S>::open(dir)
            .with_context(|| format!("reading the snapshot of {name} at {}", dir.display()))?;
        let raft = Raft::new(node_id, raft_config(name)?, net, log.clone(), sm.clone())
            .await
            .with_context(|| format!("starting Raft group {name}"))?;
        Ok(Self {
            raft,
            sm,
            log,
            handing_over: Default::default(),
        })
    }

    /// Initializes a pristine group with `members` (id → peer address).
    async fn initialize(&self, name: &str, members: BTreeMap<NodeId, BasicNode>) -> Result<()> {
        if self.raft.is_initialized().await? {
            return Ok(());
        }
        match self.raft.initialize(members).await {
            Ok(()) => Ok(()),
            // Another member's log reached us first: already part of a cluster.
            Err(RaftError::APIError(InitializeError::NotAllowed(_))) => Ok(()),
            Err(e) => Err(anyhow::anyhow!("initializing Raft group {name}: {e}")),
        }
    }

    /// Current leader as this member sees it.
    pub fn leader(&self) -> Option<NodeId> {
        self.raft.metrics().borrow().current_leader
    }

    async fn wait_leader(&self, name: &str, timeout: Duration) -> Result<NodeId> {
        let m = self
            .raft
            .wait(Some(timeout))
            .metrics(|m| m.current_leader.is_some(), name)
            .await
            .with_context(|| format!("Raft group {name} elected no leader within {timeout:?}"))?;
        Ok(m.current_leader.expect("waited for a leader"))
    }
}

pub type ShardGroup = Group<ShardState>;

/// Whether the leader whose metrics are `m` has replicated its log up to
/// `upto` on node `id`.
fn replica_holds(m: &openraft::RaftMetrics<NodeId, BasicNode>, id: u64, upto: Option<u64>) -> bool {
    m.replication
        .as_ref()
        .and_then(|r| r.get(&id))
        .is_some_and(|l| l.as_ref().map(|l| l.index) >= upto)
}

/// How long a node leads a shard it is not the preferred leader of before it
/// hands leadership back (after a failover, once the preferred replica is
/// back and caught up).
const HAND_OVER_AFTER: Duration = Duration::from_secs(10);
/// How long a new replica may take to catch up (from the log, or a
/// snapshot) before the move is retried.
const LEARNER_CATCH_UP: Duration = Duration::from_secs(60);
/// How long a handing-over leader, writes paused, waits for the preferred
/// replica to receive the last entries before it gives up for this round.
const HAND_OVER_SETTLE: Duration = Duration::from_millis(500);

/// How long a replica waits for a shard's preferred leader to initialize a
/// new group before doing it itself.
const INITIALIZE_GRACE: Duration = Duration::from_secs(3);

/// A core node.
pub struct Node {
    pub cfg: CoreConfig,
    /// The object store tier (the local filesystem by default).
    pub tier: Arc<crate::tiering::Tier>,
    meta: Group<Catalog>,
    shards: RwLock<HashMap<(String, u32), Arc<ShardGroup>>>,
    net: NetworkFactory,
    /// Serialises opening shard groups.
    opening: tokio::sync::Mutex<()>,
    /// Shards whose replica move this node (their leader) is running.
    moving: std::sync::Mutex<HashSet<(String, u32)>>,
    /// Since when (and in which term) this node leads a shard it is not the
    /// preferred leader of.
    leading_since: std::sync::Mutex<HashMap<(String, u32), (u64, std::time::Instant)>>,
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

    /// Opens the node's groups. Every member of the initial cluster
    /// initializes a pristine metadata group with all initial members as
    /// voters; shard groups open as the catalog names this node a replica.
    /// Returns without waiting for other nodes: requests get UNAVAILABLE or
    /// NOT_LEADER until the groups have leaders.
    pub async fn start(
        cfg: CoreConfig,
        net: NetworkFactory,
        stop: watch::Receiver<bool>,
    ) -> Result<Arc<Self>> {
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
            meta,
            shards: RwLock::new(HashMap::new()),
            net,
            opening: tokio::sync::Mutex::new(()),
            moving: Default::default(),
            leading_since: Default::default(),
        });
        if members.len() == 1 {
            // A single-node core is ready once its groups are: wait here so that
            // the first request does not race the elections.
            node.meta
                .wait_leader("meta", Duration::from_secs(30))
                .await?;
            node.reconcile().await?;
        }
        tokio::spawn(node.clone().watch_catalog(stop));
        Ok(node)
    }

    /// Keeps this node's groups in line with the catalog.
    async fn watch_catalog(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        let mut applied = self.meta.sm.subscribe();
        loop {
            if let Err(e) = self.reconcile().await {
                tracing::warn!(error = %format!("{e:#}"), "reconciling with the catalog failed; retrying");
            }
            tokio::select! {
                _ = applied.changed() => {}
                // Retry registration and group opening that waited on other nodes.
                _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                _ = stop.wait_for(|s| *s) => return,
            }
        }
    }

    async fn reconcile(self: &Arc<Self>) -> Result<()> {
        if self.meta.leader() == Some(self.cfg.node_id) {
            let (known, forgotten): (Vec<u64>, BTreeSet<u64>) = self
                .meta
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
                    self.meta
                        .raft
                        .client_write(Command::Meta(cmd))
                        .await
                        .map_err(|e| anyhow::anyhow!("registering node {}: {e}", m.id))?;
                }
            }
            self.reconcile_meta_members().await?;
        }
        let streams: Vec<StreamMeta> = self.meta.sm.read(|c| c.streams.values().cloned().collect());
        for s in &streams {
            self.open_shards(s).await?;
        }
        self.seal_closing(&streams).await;
        self.close_unhosted(&streams);
        self.converge_replicas(&streams);
        Ok(())
    }

    /// Resharded shards this node leads: append the seal to the shard's log,
    /// then record where the shard ends in the catalog. Both steps are
    /// idempotent, so a failure is simply retried at the next reconcile.
    async fn seal_closing(&self, streams: &[StreamMeta]) {
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
                    g.raft.client_write(Command::Seal),
                )
                .await;
                let end_offset = match sealed {
                    Ok(Ok(r)) => match r.data {
                        CommandResponse::Sealed { end_offset } => end_offset,
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

    /// Metadata leader: every active node is a member of the metadata group
    /// (new ones join as learners), draining voters are replaced by active
    /// members (other zones first) so the voter count holds, and a drained
    /// node that holds nothing is removed from the group and the catalog.
    async fn reconcile_meta_members(&self) -> Result<()> {
        let membership = self
            .meta
            .raft
            .metrics()
            .borrow()
            .membership_config
            .membership()
            .clone();
        if membership.get_joint_config().len() > 1 {
            return Ok(()); // a change is being committed
        }
        let voters: BTreeSet<u64> = membership.voter_ids().collect();
        let members: BTreeSet<u64> = membership.nodes().map(|(id, _)| *id).collect();
        let cat = self.meta.sm.read(|c| c.clone());
        let raft_err = |what: String| move |e: RaftError<NodeId, _>| anyhow::anyhow!("{what}: {e}");
        for n in cat.nodes.values() {
            if !n.draining && !members.contains(&n.id) {
                tracing::info!(node = n.id, zone = %n.zone, "adding node to the metadata group as a learner");
                self.meta
                    .raft
                    .add_learner(n.id, BasicNode::new(&n.peer_addr), false)
                    .await
                    .map_err(raft_err(format!(
                        "adding node {} to the metadata group",
                        n.id
                    )))?;
            }
        }
        let draining = |id: &u64| cat.nodes.get(id).is_some_and(|n| n.draining);
        let mut want: BTreeSet<u64> = voters.iter().copied().filter(|v| !draining(v)).collect();
        while want.len() < voters.len() {
            let zones: Vec<&str> = want
                .iter()
                .filter_map(|v| cat.nodes.get(v).map(|n| n.zone.as_str()))
                .collect();
            let Some(c) = cat
                .nodes
                .values()
                .filter(|n| !n.draining && members.contains(&n.id) && !want.contains(&n.id))
                .min_by_key(|n| (zones.contains(&n.zone.as_str()), n.id))
            else {
                break;
            };
            want.insert(c.id);
        }
        if want != voters && !want.is_empty() {
            tracing::info!(?voters, ?want, "replacing draining metadata voters");
            self.meta
                .raft
                .change_membership(ChangeMembers::ReplaceAllVoters(want), true)
                .await
                .map_err(raft_err("changing the metadata voters".into()))?;
            return Ok(());
        }
        for n in cat.nodes.values() {
            if !n.draining || cat.replica_count(n.id) > 0 || voters.contains(&n.id) {
                continue;
            }
            // Forget first, then leave the group: when the drained node is
            // this leader, it can commit nothing once it has removed itself.
            tracing::info!(node = n.id, "node drained: removing it from the cluster");
            self.meta
                .raft
                .client_write(Command::Meta(MetaCommand::ForgetNode(n.id)))
                .await
                .map_err(raft_err(format!("forgetting node {}", n.id)))?;
            if members.contains(&n.id) {
                self.meta
                    .raft
                    .change_membership(ChangeMembers::RemoveNodes([n.id].into()), false)
                    .await
                    .map_err(raft_err(format!(
                        "removing node {} from the metadata group",
                        n.id
                    )))?;
            }
        }
        // A forgotten node whose removal from the group did not finish.
        for id in members.iter().filter(|id| cat.forgotten.contains(id)) {
            if voters.contains(id) {
                continue;
            }
            self.meta
                .raft
                .change_membership(ChangeMembers::RemoveNodes([*id].into()), false)
                .await
                .map_err(raft_err(format!(
                    "removing node {id} from the metadata group"
                )))?;
        }
        Ok(())
    }

    /// Shuts down and deletes the groups of shards this node no longer hosts
    /// (their replica moved to another node and the move is settled).
    fn close_unhosted(&self, streams: &[StreamMeta]) {
        let me = self.cfg.node_id;
        let hosted: HashSet<(&str, u32)> = streams
            .iter()
            .flat_map(|s| {
                s.shards
                    .iter()
                    .filter(|sh| sh.hosted_on(me))
                    .map(|sh| (s.name.as_str(), sh.id))
            })
            .collect();
        let gone: Vec<((String, u32), Arc<ShardGroup>)> = {
            let mut map = self.shards.write().expect("shards lock");
            let keys: Vec<(String, u32)> = map
                .keys()
                .filter(|(s, id)| !hosted.contains(&(s.as_str(), *id)))
                .cloned()
                .collect();
            keys.into_iter()
                .filter_map(|k| map.remove(&k).map(|g| (k, g)))
                .collect()
        };
        for ((stream, shard), g) in gone {
            let dir = self.shard_dir(&stream, shard);
            tracing::info!(shard = %format!("{stream}/{shard}"), "replica moved away: closing and deleting it");
            tokio::spawn(async move {
                let _ = g.raft.shutdown().await;
                drop(g);
                if let Err(e) = std::fs::remove_dir_all(&dir) {
                    tracing::warn!(dir = %dir.display(), error = %e, "deleting a moved replica");
                }
            });
        }
    }

    /// Shard leaders: move each group's voters to the catalog's replicas
    /// (new replicas first catch up as learners; then one joint-consensus
    /// change, so a majority of the old and of the new set hold every
    /// commit), then report the move settled to the metadata leader.
    fn converge_replicas(self: &Arc<Self>, streams: &[StreamMeta]) {
        let me = self.cfg.node_id;
        for s in streams {
            for sh in &s.shards {
                let Some(g) = self.shard(&s.name, sh.id) else {
                    continue;
                };
                let m = g.raft.metrics().borrow().clone();
                if m.current_leader != Some(me) {
                    continue;
                }
                let joint = m.membership_config.membership().get_joint_config().clone();
                let desired: BTreeSet<u64> = sh.replicas.iter().copied().collect();
                let settled = joint.len() == 1 && joint[0] == desired;
                let key = (s.name.clone(), sh.id);
                if settled && sh.retiring.is_empty() {
                    self.maybe_hand_over(key, g, sh, &m);
                    continue;
                }
                if !self.moving.lock().expect("moving lock").insert(key.clone()) {
                    continue;
                }
                let node = self.clone();
                let replicas = sh.replicas.clone();
                tokio::spawn(async move {
                    let name = format!("{}/{}", key.0, key.1);
                    if let Err(e) = node.move_replicas(&key, &g, &replicas, settled).await {
                        tracing::warn!(shard = %name, error = %format!("{e:#}"), "moving replicas; will retry");
                    }
                    node.moving.lock().expect("moving lock").remove(&key);
                });
            }
        }
    }

    /// Leader balancing: a leader that is not the shard's preferred replica
    /// (the first, placed so that leaders spread over nodes and zones) hands
    /// leadership back once it has led for [`HAND_OVER_AFTER`] and the
    /// preferred replica is fully caught up, as after a failover.
    fn maybe_hand_over(
        self: &Arc<Self>,
        key: (String, u32),
        g: Arc<ShardGroup>,
        sh: &ShardMeta,
        m: &openraft::RaftMetrics<NodeId, BasicNode>,
    ) {
        let me = self.cfg.node_id;
        let Some(&preferred) = sh.replicas.first() else {
            return;
        };
        let mut since = self.leading_since.lock().expect("leading_since lock");
        if preferred == me {
            since.remove(&key);
            return;
        }
        let (term, at) = *since
            .entry(key.clone())
            .and_modify(|e| {
                if e.0 != m.current_term {
                    *e = (m.current_term, std::time::Instant::now());
                }
            })
            .or_insert((m.current_term, std::time::Instant::now()));
        let caught_up = replica_holds(m, preferred, m.last_log_index);
        if at.elapsed() < HAND_OVER_AFTER || !caught_up {
            return;
        }
        // Back off before another try if this one does not take.
        since.insert(key.clone(), (term, std::time::Instant::now()));
        drop(since);
        let Some(addr) = self
            .meta
            .sm
            .read(|c| c.nodes.get(&preferred).map(|n| n.peer_addr.clone()))
            .and_then(|a| a.parse().ok())
        else {
            return;
        };
        let NetworkFactory::Quic(pool) = self.net.clone() else {
            return;
        };
        tokio::spawn(async move {
            let name = format!("{}/{}", key.0, key.1);
            tracing::info!(shard = %name, to = preferred, "handing leadership to the preferred replica");
            use std::sync::atomic::Ordering;
            g.handing_over.store(true, Ordering::SeqCst);
            // Writes accepted just before the pause may still be on their
            // way: the preferred replica must hold every entry before it
            // campaigns, or the voters refuse it (its log is behind) while
            // its higher term unseats every other leader for a while.
            let settled = g
                .raft
                .wait(Some(HAND_OVER_SETTLE))
                .metrics(
                    |m| replica_holds(m, preferred, m.last_log_index),
                    "preferred replica holds the whole log",
                )
                .await
                .is_ok();
            if !settled {
                tracing::info!(shard = %name, to = preferred, "preferred replica did not catch up; hand-over postponed");
                g.handing_over.store(false, Ordering::SeqCst);
                return;
            }
            let rc = g.raft.runtime_config();
            rc.heartbeat(false);
            rc.elect(false);
            if let Err(e) = pool.elect(addr, &name, Duration::from_secs(1)).await {
                tracing::info!(shard = %name, error = %e, "preferred replica could not campaign");
            }
            let _ = g
                .raft
                .wait(Some(crate::peer::CAMPAIGN_FOR))
                .metrics(|m| m.current_leader.is_some_and(|l| l != me), "new leader")
                .await;
            rc.heartbeat(true);
            rc.elect(true);
            g.handing_over.store(false, Ordering::SeqCst);
        });
    }

    async fn move_replicas(
        &self,
        (stream, shard): &(String, u32),
        g: &ShardGroup,
        replicas: &[u64],
        settled: bool,
    ) -> Result<()> {
        let name = format!("{stream}/{shard}");
        if !settled {
            let (members, voters_now): (BTreeSet<u64>, BTreeSet<u64>) = {
                let m = g.raft.metrics().borrow().membership_config.clone();
                let m = m.membership();
                (
                    m.nodes().map(|(id, _)| *id).collect(),
                    m.voter_ids().collect(),
                )
            };
            for &id in replicas.iter().filter(|id| !members.contains(id)) {
                let addr = self
                    .meta
                    .sm
                    .read(|c| c.nodes.get(&id).map(|n| n.peer_addr.clone()))
                    .with_context(|| format!("node {id} is not in the catalog"))?;
                tracing::info!(shard = %name, node = id, "adding a replica: catching it up as a learner");
                g.raft
                    .add_learner(id, BasicNode::new(&addr), false)
                    .await
                    .map_err(|e| anyhow::anyhow!("adding learner {id}: {e}"))?;
            }
            // openraft's blocking add_learner stops waiting after 500 ms
            // without an error: each new replica must hold the whole log (or
            // the snapshot) before it may count towards a majority.
            for &id in replicas.iter().filter(|id| !voters_now.contains(id)) {
                let target = g.raft.metrics().borrow().last_log_index;
                g.raft
                    .wait(Some(LEARNER_CATCH_UP))
                    .metrics(
                        |m| replica_holds(m, id, target),
                        "the new replica to catch up",
                    )
                    .await
                    .map_err(|e| anyhow::anyhow!("node {id} did not catch up: {e}"))?;
                tracing::info!(shard = %name, node = id, "the new replica caught up");
            }
            let voters: BTreeSet<u64> = replicas.iter().copied().collect();
            tracing::info!(shard = %name, ?voters, "changing the replica set");
            g.raft
                .change_membership(voters, false)
                .await
                .map_err(|e| anyhow::anyhow!("changing membership: {e}"))?;
        }
        let r = self
            .propose_meta(MetaCommand::ReplicasSettled {
                stream: stream.clone(),
                shard: *shard,
                replicas: replicas.to_vec(),
            })
            .await?;
        tracing::info!(shard = %name, ?replicas, result = ?r, "replica move settled");
        Ok(())
    }

    /// Proposes a metadata command on the metadata leader, wherever it is.
    async fn propose_meta(&self, cmd: MetaCommand) -> Result<MetaResponse> {
        let data = match self.meta.leader() {
            Some(l) if l == self.cfg.node_id => {
                self.meta
                    .raft
                    .client_write(Command::Meta(cmd))
                    .await
                    .map_err(|e| anyhow::anyhow!("metadata write: {e}"))?
                    .data
            }
            Some(l) => {
                let NetworkFactory::Quic(pool) = &self.net else {
                    anyhow::bail!(
                        "metadata leader {l} is another node, but this core has no peers"
                    );
                };
                let addr = self
                    .meta
                    .sm
                    .read(|c| c.nodes.get(&l).map(|n| n.peer_addr.clone()))
                    .with_context(|| format!("metadata leader {l} is not in the catalog"))?;
                let addr = addr
                    .parse()
                    .with_context(|| format!("peer address {addr}"))?;
                pool.meta_write(addr, cmd, Duration::from_secs(5))
                    .await
                    .map_err(|e| anyhow::anyhow!("metadata write through node {l}: {e}"))?
            }
            None => anyhow::bail!("the metadata group has no leader"),
        };
        match data {
            CommandResponse::Meta(r) => Ok(r),
            other => anyhow::bail!("unexpected metadata reply {other:?}"),
        }
    }

    async fn open_shards(&self, s: &StreamMeta) -> Result<()> {
        let me = self.cfg.node_id;
        for sh in s.shards.iter().filter(|sh| sh.hosted_on(me)) {
            let _guard = self.opening.lock().await;
            if self.shard(&s.name, sh.id).is_some() {
                continue;
            }
            let name = format!("{}/{}", s.name, sh.id);
            let g = ShardGroup::open(
                &name,
                &self.shard_dir(&s.name, sh.id),
                me,
                Self::segment_options(&self.cfg),
                self.net.network(&name),
            )
            .await?;
            // The preferred leader (first replica) initializes a pristine
            // group at once, so leaders start balanced over nodes and zones.
            // Any other replica initializes it too (with the identical replica
            // set, which openraft allows) if it is still pristine after a grace
            // period: a shard stays available when its preferred leader is
            // down at creation. Once a replica has moved, nobody initializes:
            // a new replica waits for the leader to add it.
            let peers = self.meta.sm.read(|c| {
                sh.replicas
                    .iter()
                    .filter_map(|r| c.nodes.get(r).map(|n| (*r, BasicNode::new(&n.peer_addr))))
                    .collect::<BTreeMap<_, _>>()
            });
            if peers.len() != sh.replicas.len() {
                anyhow::bail!("shard {name}: some replicas are not registered yet");
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
        Ok(())
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
        self.meta.sm.read(|c| {
            c.streams
                .get(stream)
                .is_some_and(|s| s.restore_from.is_some())
        })
    }

    /// A stream's retention, from the catalog (default if unknown).
    pub fn retention(&self, stream: &str) -> strata_protocol::Retention {
        self.meta
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
        self.meta
            .sm
            .read(|c| c.nodes.get(&node).map(|n| n.addr.clone()))
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

    /// Commits `cmd` on the metadata group, which this node must lead, and
    /// returns the catalog's answer.
    async fn commit_meta(&self, cmd: MetaCommand) -> Result<CommandResponse, RemoteError> {
        Ok(self
            .meta
            .raft
            .client_write(Command::Meta(cmd))
            .await
            .map_err(|e| self.not_leader_or(e))?
            .data)
    }

    fn not_leader_or(
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

    async fn create_stream_from(
        &self,
        name: &str,
        shards: u32,
        replication: u32,
        retention: strata_protocol::Retention,
        restore_from: Option<String>,
    ) -> Result<StreamInfo, RemoteError> {
        if let Some(b) = retention
            .local_bytes
            .filter(|&b| b < self.cfg.segment_bytes_max)
        {
            return Err(RemoteError::new(
                ErrorCode::InvalidArgument,
                format!(
                    "--local-retention-bytes {b} is below one segment ({} bytes): the newest segment is always kept",
                    self.cfg.segment_bytes_max
                ),
            ));
        }
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
        self.require_meta_leader()?;
        let (replicas, replication) = self.meta.sm.read(|c| {
            let r = if replication == 0 {
                c.default_replication()
            } else {
                replication
            };
            (place(c, shards, r), r)
        });
        let replicas = replicas.map_err(|m| RemoteError::new(ErrorCode::InvalidArgument, m))?;
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
        op: &crate::reshard::ReshardOp,
    ) -> Result<StreamInfo, RemoteError> {
        let invalid = |m: String| RemoteError::new(ErrorCode::InvalidArgument, m);
        let meta = self.stream_meta(stream)?;
        self.require_meta_leader()?;
        let plan = crate::reshard::plan(&meta, op, self.cfg.shards_max).map_err(invalid)?;
        // Placement rotates with the shard id, as at creation.
        let last = plan.children.iter().map(|c| c.id).max().unwrap_or(0);
        let placed = self
            .meta
            .sm
            .read(|c| place(c, last + 1, meta.replication))
            .map_err(invalid)?;
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
            CommandResponse::Meta(MetaResponse::Done) => {}
            CommandResponse::Meta(MetaResponse::Refused(m)) => return Err(invalid(m)),
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

    fn require_meta_leader(&self) -> Result<(), RemoteError> {
        match self.meta.leader() {
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
                self.meta
                    .sm
                    .read(|c| c.check_new_node(&n))
                    .map_err(|m| RemoteError::new(ErrorCode::InvalidArgument, m))?;
                MetaCommand::AddNode(n)
            }
            MembershipChange::Remove { node_id } => {
                self.meta
                    .sm
                    .read(|c| plan_drain(c, *node_id))
                    .map_err(|m| RemoteError::new(ErrorCode::InvalidArgument, m))?;
                MetaCommand::DrainNode(*node_id)
            }
        };
        match self.commit_meta(cmd).await? {
            CommandResponse::Meta(MetaResponse::Refused(m)) => {
                Err(RemoteError::new(ErrorCode::InvalidArgument, m))
            }
            CommandResponse::Meta(_) => Ok(self.status()),
            other => Err(RemoteError::new(
                ErrorCode::Internal,
                format!("unexpected {other:?}"),
            )),
        }
    }

    /// Registers a producer id in the metadata group (idempotent: the first
    /// registration's time is kept). Returns it and the number of producers.
    pub async fn register_producer(&self, id: u64, agent: &str) -> Result<(i64, u64), RemoteError> {
        if id == 0 {
            return Err(RemoteError::new(
                ErrorCode::InvalidArgument,
                "producer id must be non-zero",
            ));
        }
        let known = self.meta.sm.read(|c| {
            c.producers
                .get(&id)
                .map(|p| (p.registered_ms, c.producers.len() as u64))
        });
        if let Some(k) = known {
            return Ok(k);
        }
        self.require_meta_leader()?;
        let p = crate::meta::ProducerMeta {
            id,
            agent: agent.chars().take(256).collect(),
            registered_ms: now_ms(),
        };
        self.commit_meta(MetaCommand::RegisterProducer(p)).await?;
        Ok(self.meta.sm.read(|c| {
            (
                c.producers.get(&id).map_or(0, |p| p.registered_ms),
                c.producers.len() as u64,
            )
        }))
    }

    /// A consumer-group member's heartbeat, on the metadata leader: joins or
    /// keeps the member, applies its commits, rebalances if the member set
    /// changed, and returns the member's shards.
    pub async fn group_heartbeat(
        &self,
        stream: &str,
        group: &str,
        heartbeat: crate::groups::Heartbeat,
    ) -> Result<crate::groups::Assignment, RemoteError> {
        let invalid = |m: String| RemoteError::new(ErrorCode::InvalidArgument, m);
        crate::groups::validate_name("group", group).map_err(invalid)?;
        crate::groups::validate_name("member", &heartbeat.member).map_err(invalid)?;
        self.stream_meta(stream)?;
        self.require_meta_leader()?;
        let cmd = MetaCommand::GroupHeartbeat {
            stream: stream.to_string(),
            group: group.to_string(),
            heartbeat,
        };
        match self.commit_meta(cmd).await? {
            CommandResponse::Meta(MetaResponse::Group(a)) => Ok(a),
            CommandResponse::Meta(MetaResponse::Refused(m)) => {
                Err(RemoteError::new(ErrorCode::UnknownStream, m))
            }
            other => Err(RemoteError::new(
                ErrorCode::Internal,
                format!("unexpected {other:?}"),
            )),
        }
    }

    /// Every few seconds, for each shard this node leads, sets the lag of
    /// each consumer group of its stream: `strata_core_group_lag_records`
    /// and `strata_core_group_lag_ms` (labels stream, group, shard).
    pub async fn report_group_lag(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        loop {
            for ((stream, shard), g) in self.shard_groups() {
                if g.leader() != Some(self.cfg.node_id) {
                    continue;
                }
                let (first, next, newest) =
                    g.sm.read(|s| (s.first_offset, s.next_offset, s.newest_timestamp_ms()));
                let lags: Vec<(String, u64, i64)> = self.meta.sm.read(|c| {
                    c.groups
                        .get(&stream)
                        .into_iter()
                        .flatten()
                        .map(|(name, grp)| {
                            let cp = grp.checkpoints.get(&shard).copied();
                            let (records, ms) = strata_protocol::shard_lag(first, next, newest, cp);
                            (name.clone(), records, ms)
                        })
                        .collect()
                });
                for (group, records, ms) in lags {
                    let labels = [
                        ("stream", stream.clone()),
                        ("group", group),
                        ("shard", shard.to_string()),
                    ];
                    metrics::gauge!("strata_core_group_lag_records", &labels).set(records as f64);
                    metrics::gauge!("strata_core_group_lag_ms", &labels).set(ms as f64);
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(5)) => {}
                _ = stop.wait_for(|s| *s) => return,
            }
        }
    }

    /// The consumer groups of a stream as clients see them.
    fn groups_of(&self, stream: &str) -> Vec<strata_protocol::GroupInfo> {
        use strata_protocol::{GroupInfo, GroupShardInfo};
        self.meta.sm.read(|c| {
            let Some(groups) = c.groups.get(stream) else {
                return Vec::new();
            };
            groups
                .iter()
                .map(|(name, g)| {
                    let mut shards: Vec<u32> = g
                        .owners
                        .keys()
                        .chain(g.checkpoints.keys())
                        .copied()
                        .collect();
                    shards.sort_unstable();
                    shards.dedup();
                    GroupInfo {
                        name: name.clone(),
                        generation: g.generation,
                        members: g.members.keys().cloned().collect(),
                        shards: shards
                            .into_iter()
                            .map(|s| GroupShardInfo {
                                shard: s,
                                owner: g.owners.get(&s).cloned().unwrap_or_default(),
                                checkpoint: g.checkpoints.get(&s).copied(),
                            })
                            .collect(),
                    }
                })
                .collect()
        })
    }

    pub fn describe(&self, name: &str) -> Result<StreamInfo, RemoteError> {
        let meta = self.stream_meta(name)?;
        Ok(self.info_of(&meta))
    }

    fn info_of(&self, meta: &StreamMeta) -> StreamInfo {
        let nodes = self.meta.sm.read(|c| {
            let mut ids: Vec<u64> = meta
                .shards
                .iter()
                .flat_map(|s| s.replicas.iter().copied())
                .collect();
            ids.sort_unstable();
            ids.dedup();
            ids.iter()
                .filter_map(|id| c.nodes.get(id))
                .map(|n| NodeInfo {
                    id: n.id,
                    zone: n.zone.clone(),
                    addr: n.addr.clone(),
                    ..Default::default()
                })
                .collect()
        });
        StreamInfo {
            name: meta.name.clone(),
            replication: meta.replication,
            created_ms: meta.created_ms,
            shards: meta
                .shards
                .iter()
                .map(|sh| {
                    let local = self.shard(&meta.name, sh.id);
                    let (first, next, tiered, objects, tier_bytes, newest) = local
                        .as_ref()
                        .map(|g| {
                            g.sm.read(|s| {
                                (
                                    s.first_offset,
                                    s.next_offset,
                                    s.tiered_to(),
                                    s.tiered.len() as u64,
                                    s.tiered.iter().map(|o| o.bytes).sum(),
                                    s.newest_timestamp_ms(),
                                )
                            })
                        })
                        .unwrap_or((0, 0, 0, 0, 0, 0));
                    ShardInfo {
                        id: sh.id,
                        start_hash_key: sh.start_hash_key.clone(),
                        end_hash_key: sh.end_hash_key.clone(),
                        first_offset: first,
                        next_offset: next,
                        leader_node: local.and_then(|g| g.leader()).unwrap_or(0),
                        replicas: sh.replicas.clone(),
                        tiered_offset: tiered,
                        tier_objects: objects,
                        tier_bytes,
                        newest_timestamp_ms: newest,
                        parents: sh.parents.clone(),
                        state: sh.state().to_string(),
                        end_offset: sh.end_offset,
                    }
                })
                .collect(),
            nodes,
            retention: meta.retention,
            archive_url: if self.tier.enabled {
                format!(
                    "{}/stream={}",
                    self.tier.url.trim_end_matches('/'),
                    meta.name
                )
            } else {
                String::new()
            },
            groups: self.groups_of(&meta.name),
        }
    }

    pub fn list(&self) -> Vec<StreamInfo> {
        let metas: Vec<StreamMeta> = self.meta.sm.read(|c| c.streams.values().cloned().collect());
        metas.iter().map(|m| self.info_of(m)).collect()
    }

    /// This node's view of the cluster: nodes, metadata leader, and the
    /// shards it leads with each replica's replication lag.
    pub fn status(&self) -> ClusterView {
        let nodes = self.meta.sm.read(|c| {
            c.nodes
                .values()
                .map(|n| NodeInfo {
                    id: n.id,
                    zone: n.zone.clone(),
                    addr: n.addr.clone(),
                    peer_addr: n.peer_addr.clone(),
                    state: if n.draining { "draining" } else { "active" }.into(),
                    replicas: Some(c.replica_count(n.id) as u32),
                })
                .collect()
        });
        let mut shards = Vec::new();
        let groups: Vec<_> = self
            .shards
            .read()
            .expect("shards lock")
            .iter()
            .map(|(k, g)| (k.clone(), g.clone()))
            .collect();
        for ((stream, shard), g) in groups {
            let m = g.raft.metrics().borrow().clone();
            if m.current_leader != Some(self.cfg.node_id) {
                continue;
            }
            let last = m.last_log_index.unwrap_or(0);
            let replicas = m
                .replication
                .map(|r| {
                    r.iter()
                        .map(|(id, matched)| {
                            let matched = matched.map_or(0, |l| l.index);
                            (*id, matched, last.saturating_sub(matched))
                        })
                        .collect()
                })
                .unwrap_or_default();
            shards.push(ShardView {
                stream,
                shard,
                leader: self.cfg.node_id,
                term: m.current_term,
                last_log_index: last,
                replicas,
            });
        }
        shards.sort_by(|a, b| (&a.stream, a.shard).cmp(&(&b.stream, b.shard)));
        ClusterView {
            node: self.cfg.node_id,
            meta_leader: self.meta.leader().unwrap_or(0),
            nodes,
            shards,
            producers: self.meta.sm.read(|c| c.producers.len() as u64),
        }
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
            // Skip proposing what is certainly a duplicate or certainly
            // refused; apply still decides.
            let (dup, sealed, next_seq) = g.sm.read(|s| {
                (
                    s.duplicate_prefix(&cmd),
                    s.sealed,
                    s.producer_next_seq(cmd.producer_id),
                )
            });
            if dup == cmd.records as usize {
                duplicates += u64::from(cmd.records);
                continue;
            }
            if sealed {
                return Err(closed(next_seq));
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
            match res
                .map_err(|e| self.not_leader_or(RaftError::APIError(e)))?
                .data
            {
                CommandResponse::Appended {
                    appended: a,
                    duplicates: d,
                    ..
                } => {
                    appended += a;
                    duplicates += d;
                }
                CommandResponse::Closed { producer_next_seq } => {
                    return Err(closed(producer_next_seq));
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

impl crate::peer::GroupRegistry for Node {
    fn raft(&self, group: &str) -> Option<Raft> {
        if group == "meta" {
            return Some(self.meta.raft.clone());
        }
        let (stream, shard) = group.rsplit_once('/')?;
        let shard: u32 = shard.parse().ok()?;
        self.shard(stream, shard).map(|g| g.raft.clone())
    }
}

/// What [`Node::status`] reports.
#[derive(Debug, Clone)]
pub struct ClusterView {
    pub node: NodeId,
    pub meta_leader: NodeId,
    pub nodes: Vec<NodeInfo>,
    pub shards: Vec<ShardView>,
    pub producers: u64,
}

#[derive(Debug, Clone)]
pub struct ShardView {
    pub stream: String,
    pub shard: u32,
    pub leader: NodeId,
    pub term: u64,
    pub last_log_index: u64,
    /// (node, matched index, lag in entries)
    pub replicas: Vec<(NodeId, u64, u64)>,
}

/// The reply to a forward that reached a sealed shard.
fn closed(producer_next_seq: u64) -> RemoteError {
    RemoteError::shard_closed(
        "the shard is closed (split or merged): its records go to its children now (see stream describe)",
        producer_next_seq,
    )
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}
