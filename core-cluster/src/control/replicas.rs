//! Replica placement in action: moving a shard's voters to the catalog's
//! replicas, closing replicas that moved away, and handing leadership back
//! to a shard's preferred replica after a failover.

use crate::catalog::{MetaCommand, ShardMeta, StreamMeta};
use crate::error::{raft_err, ControlError};
use crate::node::Node;
use crate::raft::group::{replica_holds, ShardGroup};
use crate::raft::net::NetworkFactory;
use crate::raft::types::NodeId;
use crate::shard::hand_over::{hand_over, HandOver};
use openraft::BasicNode;
use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long a new replica may take to catch up (from the log, or a
/// snapshot) before the move is retried.
const LEARNER_CATCH_UP: Duration = Duration::from_secs(60);

/// How long a handing-over leader, writes paused, waits for the preferred
/// replica to receive the last entries before it gives up for this round.
const HAND_OVER_SETTLE: Duration = Duration::from_millis(500);

impl Node {
    /// Shuts down and deletes the groups of shards this node no longer hosts
    /// (their replica moved to another node and the move is settled).
    pub(crate) fn close_unhosted(&self, streams: &[StreamMeta]) {
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
    pub(crate) fn converge_replicas(self: &Arc<Self>, streams: &[StreamMeta]) {
        let me = self.cfg.node_id;
        for s in streams {
            for sh in &s.shards {
                let Some(g) = self.shard(&s.name, sh.id) else {
                    continue;
                };
                // Copied only where this node leads: most of a node's groups
                // are followers here.
                if g.leader() != Some(me) {
                    continue;
                }
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
    pub(crate) fn maybe_hand_over(
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
        let caught_up = replica_holds(m, preferred, m.last_log_index);
        {
            let mut leading = self.leading_since.lock().expect("leading_since lock");
            let decision = hand_over(
                me,
                preferred,
                leading.get(&key).copied(),
                m.current_term,
                caught_up,
                Instant::now(),
            );
            match decision {
                HandOver::Forget => {
                    leading.remove(&key);
                    return;
                }
                HandOver::Wait(l) => {
                    leading.insert(key.clone(), l);
                    return;
                }
                HandOver::Now(l) => {
                    leading.insert(key.clone(), l);
                }
            }
        }
        let Ok(addr) = self.peer_addr_of(preferred) else {
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
                .wait(Some(crate::raft::peer::CAMPAIGN_FOR))
                .metrics(|m| m.current_leader.is_some_and(|l| l != me), "new leader")
                .await;
            rc.heartbeat(true);
            rc.elect(true);
            g.handing_over.store(false, Ordering::SeqCst);
        });
    }

    pub(crate) async fn move_replicas(
        &self,
        (stream, shard): &(String, u32),
        g: &ShardGroup,
        replicas: &[u64],
        settled: bool,
    ) -> Result<(), ControlError> {
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
                    .meta()
                    .sm
                    .read(|c| c.nodes.get(&id).map(|n| n.peer_addr.clone()))
                    .ok_or(ControlError::UnknownNode(id))?;
                tracing::info!(shard = %name, node = id, "adding a replica: catching it up as a learner");
                g.raft
                    .add_learner(id, BasicNode::new(&addr), false)
                    .await
                    .map_err(raft_err(format!("adding learner {id}")))?;
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
                    .map_err(raft_err(format!("node {id} did not catch up")))?;
                tracing::info!(shard = %name, node = id, "the new replica caught up");
            }
            let voters: BTreeSet<u64> = replicas.iter().copied().collect();
            tracing::info!(shard = %name, ?voters, "changing the replica set");
            g.raft
                .change_membership(voters, false)
                .await
                .map_err(raft_err("changing membership".to_string()))?;
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
}
