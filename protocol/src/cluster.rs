//! The cluster as one node sees it (`strata cluster status`) and membership
//! changes (`cluster add-node` / `remove-node`).

use serde::Serialize;
use strata_schema::fb;

use crate::stream::NodeInfo;

/// A replica's replication state, as its shard leader sees it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ReplicaLag {
    pub node: u64,
    pub matched_index: u64,
    pub lag: u64,
}

/// A shard led by the answering node.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ShardLeadership {
    pub stream: String,
    pub shard: u32,
    pub leader: u64,
    pub term: u64,
    pub last_log_index: u64,
    pub replicas: Vec<ReplicaLag>,
}

/// One node's view of the cluster.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct NodeView {
    pub node: u64,
    pub meta_leader: u64,
    pub nodes: Vec<NodeInfo>,
    pub shards: Vec<ShardLeadership>,
    /// Producer ids registered in the metadata group.
    pub producers: u64,
}

impl NodeView {
    /// From a verified `ClusterStatus` reply.
    pub fn from_fb(s: &fb::ClusterStatus<'_>) -> Self {
        NodeView {
            node: s.node(),
            meta_leader: s.meta_leader(),
            producers: s.producers(),
            nodes: s
                .nodes()
                .map(|ns| ns.iter().map(|n| NodeInfo::from_fb(&n)).collect())
                .unwrap_or_default(),
            shards: s
                .shards()
                .map(|ss| {
                    ss.iter()
                        .map(|sh| ShardLeadership {
                            stream: sh.stream().to_string(),
                            shard: sh.shard(),
                            leader: sh.leader(),
                            term: sh.term(),
                            last_log_index: sh.last_log_index(),
                            replicas: sh
                                .replicas()
                                .map(|rs| {
                                    rs.iter()
                                        .map(|r| ReplicaLag {
                                            node: r.node(),
                                            matched_index: r.matched_index(),
                                            lag: r.lag(),
                                        })
                                        .collect()
                                })
                                .unwrap_or_default(),
                        })
                        .collect()
                })
                .unwrap_or_default(),
        }
    }
}

/// A membership change for [`change_membership`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MembershipChange {
    /// Register a node that runs with the cluster's `peers` as seeds.
    Add {
        node_id: u64,
        zone: String,
        addr: String,
        peer_addr: String,
    },
    /// Drain a node: move its replicas away, then remove it.
    Remove { node_id: u64 },
}
