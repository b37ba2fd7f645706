//! Drives quiescence and the node-level failure detector
//! ([`crate::raft::quiesce`] decides): pings every other node, and every
//! [`CHECK_EVERY`] checks each shard group this node holds — quiesce an
//! idle one it leads, wake one whose log grew, and take over a group whose
//! leader's node is down.

use crate::node::Node;
use crate::raft::group::ShardGroup;
use crate::raft::net::NetworkFactory;
use crate::raft::network::PeerPool;
use crate::raft::peer::QuiesceRequest;
use crate::raft::quiesce::{self, Step, CHECK_EVERY, DETECT_EVERY, DOWN_AFTER, PING_EVERY};
use crate::raft::types::NodeId;
use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// How long a quiesce request may take.
const QUIESCE_TTL: Duration = Duration::from_secs(1);
/// The pause between the quiesce heartbeat and the quiesce requests.
const QUIESCE_AFTER_HEARTBEAT: Duration = Duration::from_millis(50);
/// How soon the same group may be taken over again (its first campaign
/// may lose to another candidate).
const TAKE_OVER_AGAIN: Duration = Duration::from_secs(2);
/// Elections started per detector check (every `DETECT_EVERY`) when a
/// node is down: about 2,000 groups a second.
const TAKE_OVER_PER_CHECK: usize = 100;

impl Node {
    /// Runs until `stop`: the pings and the checks.
    pub async fn run_quiescence(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        let NetworkFactory::Quic(pool) = self.net.clone() else {
            return;
        };
        let idle_after = (self.cfg.quiesce_after_ms > 0)
            .then(|| Duration::from_millis(self.cfg.quiesce_after_ms));
        let pings = tokio::spawn(ping_peers(self.clone(), pool.clone()));
        let mut taken_over: HashMap<(String, u32), Instant> = HashMap::new();
        let mut was_down = BTreeSet::new();
        let mut last_check = Instant::now();
        loop {
            tokio::select! {
                _ = tokio::time::sleep(DETECT_EVERY) => {}
                _ = stop.wait_for(|s| *s) => break,
            }
            let now = Instant::now();
            let down = self
                .liveness
                .lock()
                .expect("liveness lock")
                .down(self.peers().into_keys(), now);
            if down != was_down {
                tracing::info!(down = ?down, "peer liveness changed");
                was_down = down.clone();
            }
            taken_over.retain(|_, at| now.duration_since(*at) < TAKE_OVER_AGAIN);
            if !down.is_empty() {
                self.take_over(&down, &mut taken_over, now).await;
            }
            if now.duration_since(last_check) >= CHECK_EVERY {
                last_check = now;
                self.check_quiet(&pool, idle_after, &down, now).await;
            }
        }
        pings.abort();
    }

    /// Wakes and elects, on this node, each group whose leader's node is
    /// `down` and for which this node is the first live voter: awake
    /// groups (those with traffic) first, and at most
    /// [`TAKE_OVER_PER_CHECK`] per check, so a node that led thousands of
    /// quiet shards does not start thousands of elections (and their
    /// fsyncs) at once and starve the busy ones.
    async fn take_over(
        &self,
        down: &BTreeSet<NodeId>,
        taken_over: &mut HashMap<(String, u32), Instant>,
        now: Instant,
    ) {
        let mut groups: HashMap<_, _> = self
            .shard_groups()
            .into_iter()
            .filter(|(key, g)| {
                let (_, leader, _) = g.brief();
                leader.is_some_and(|l| down.contains(&l)) && !taken_over.contains_key(key)
            })
            .filter(|(_, g)| quiesce::takes_over(&g.view(), down))
            .collect();
        let due = groups
            .iter()
            .map(|(key, g)| (g.is_quiesced(), key.clone()))
            .collect();
        for key in quiesce::take_over_first(due, TAKE_OVER_PER_CHECK) {
            let Some(g) = groups.remove(&key) else {
                continue;
            };
            tracing::info!(shard = %format!("{}/{}", key.0, key.1), "the leader's node is down; campaigning");
            g.wake();
            let _ = g.raft.trigger().elect().await;
            taken_over.insert(key, now);
        }
    }

    /// The quiescence check of every group: wake, quiesce, or nothing.
    async fn check_quiet(
        &self,
        pool: &Arc<PeerPool>,
        idle_after: Option<Duration>,
        down: &BTreeSet<NodeId>,
        now: Instant,
    ) {
        let mut quiescing = tokio::task::JoinSet::new();
        let mut quiesced = 0u64;
        for (key, g) in self.shard_groups() {
            // The common case, cheaply: a quiet group.
            let (me, leader, last) = g.brief();
            let q = g.quiet.lock().expect("quiet lock").clone();
            if q.quiesced {
                if quiesce::wakes(&q, me, leader, last, down) {
                    g.wake();
                } else {
                    quiesced += 1;
                }
                continue;
            }
            let v = g.view();
            let step = quiesce::check(
                &mut g.quiet.lock().expect("quiet lock"),
                &v,
                now,
                idle_after,
                down,
            );
            match step {
                Step::Nothing => {}
                Step::Wake => g.wake(),
                Step::Quiesce { req, asked, absent } => {
                    let name = format!("{}/{}", key.0, key.1);
                    let addrs = self.peer_addrs(&asked);
                    quiescing.spawn(quiesce_group(pool.clone(), g, name, req, addrs, absent));
                }
            }
        }
        while let Some(r) = quiescing.join_next().await {
            quiesced += u64::from(r.unwrap_or(false));
        }
        metrics::gauge!("strata_core_quiesced_groups").set(quiesced as f64);
    }

    /// Every other node of the catalog, with its peer address.
    fn peers(&self) -> HashMap<NodeId, SocketAddr> {
        let me = self.cfg.node_id;
        self.meta().sm.read(|c| {
            c.nodes
                .iter()
                .filter(|(id, _)| **id != me)
                .filter_map(|(id, n)| Some((*id, n.peer_addr.parse().ok()?)))
                .collect()
        })
    }

    /// The peer addresses of `nodes`; None if one is unknown.
    fn peer_addrs(&self, nodes: &BTreeSet<NodeId>) -> Option<Vec<SocketAddr>> {
        let peers = self.peers();
        nodes.iter().map(|n| peers.get(n).copied()).collect()
    }
}

/// Pings every other node every [`PING_EVERY`], each with its own
/// deadline, and notes who answered (requests from a node count too:
/// `Node::heard_from`).
async fn ping_peers(node: Arc<Node>, pool: Arc<PeerPool>) {
    loop {
        for (id, addr) in node.peers() {
            let (pool, node) = (pool.clone(), node.clone());
            tokio::spawn(async move {
                if pool.ping(addr, DOWN_AFTER).await.is_ok() {
                    node.liveness
                        .lock()
                        .expect("liveness lock")
                        .answered(id, Instant::now());
                }
            });
        }
        tokio::time::sleep(PING_EVERY).await;
    }
}

/// The leader's side of quiescing `g`: a heartbeat (the followers learn
/// the commit index), then every follower must agree; then its own timers
/// stop. Whether the group is quiesced.
async fn quiesce_group(
    pool: Arc<PeerPool>,
    g: Arc<ShardGroup>,
    name: String,
    req: QuiesceRequest,
    followers: Option<Vec<SocketAddr>>,
    absent: BTreeSet<NodeId>,
) -> bool {
    let Some(followers) = followers else {
        return false;
    };
    if g.raft.trigger().heartbeat().await.is_err() {
        return false;
    }
    // Let the heartbeat go first: a follower agrees only once it applied
    // the leader's commit index, which the heartbeat carries.
    tokio::time::sleep(QUIESCE_AFTER_HEARTBEAT).await;
    let asks = followers
        .iter()
        .map(|addr| pool.quiesce(*addr, &name, req, QUIESCE_TTL));
    let agreed = futures::future::join_all(asks)
        .await
        .into_iter()
        .all(|r| matches!(r, Ok(true)));
    // Nothing was appended meanwhile and this node still leads.
    let v = g.view();
    if !agreed || v.last_log_index != Some(req.last_log_index) || v.leader != Some(v.me) {
        g.quiet.lock().expect("quiet lock").postpone(Instant::now());
        return false;
    }
    g.quiesce(req.last_log_index, absent);
    tracing::debug!(shard = %name, index = req.last_log_index, "quiesced");
    true
}
