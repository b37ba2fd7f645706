//! The views clients see: streams with their shards, nodes and groups
//! (`describe`, `list`), and this node's view of the cluster (`status`).

use crate::catalog::StreamMeta;
use crate::node::Node;
use crate::raft::types::NodeId;
use strata_protocol::{NodeInfo, ShardInfo, StreamInfo};
use strata_schema::wire::RemoteError;

impl Node {
    /// The consumer groups of a stream as clients see them.
    pub(crate) fn groups_of(&self, stream: &str) -> Vec<strata_protocol::GroupInfo> {
        use strata_protocol::{GroupInfo, GroupShardInfo};
        self.meta().sm.read(|c| {
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

    pub(crate) fn info_of(&self, meta: &StreamMeta) -> StreamInfo {
        let nodes = self.meta().sm.read(|c| {
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
        let metas: Vec<StreamMeta> = self
            .meta()
            .sm
            .read(|c| c.streams.values().cloned().collect());
        metas.iter().map(|m| self.info_of(m)).collect()
    }

    /// This node's view of the cluster: nodes, metadata leader, and the
    /// shards it leads with each replica's replication lag.
    pub fn status(&self) -> ClusterView {
        let nodes = self.meta().sm.read(|c| {
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
            meta_leader: self.meta().leader().unwrap_or(0),
            nodes,
            shards,
            producers: self.meta().sm.read(|c| c.producers.len() as u64),
        }
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
