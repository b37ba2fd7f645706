//! The catalog's data: nodes, streams with their shards (hash-key ranges,
//! replicas, lineage), and producers. Plain serde types: their form is the
//! metadata group's snapshot format.

use serde::{Deserialize, Serialize};

use super::groups::ShardLineage;

/// A core node as the cluster knows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeMeta {
    pub id: u64,
    pub zone: String,
    /// Client API address (QUIC).
    pub addr: String,
    /// Inter-node Raft address (QUIC, mutual TLS).
    pub peer_addr: String,
    /// Set by `remove-node`: the node gets no new replicas, its replicas
    /// move away, then it is forgotten.
    #[serde(default)]
    pub draining: bool,
}

/// One shard of a stream: its id, inclusive hash-key range and replicas
/// (the first is the preferred leader).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardMeta {
    pub id: u32,
    /// Decimal strings: u128 does not round-trip through every JSON reader.
    pub start_hash_key: String,
    pub end_hash_key: String,
    pub replicas: Vec<u64>,
    /// Former replicas that may still be voters of the shard's Raft group
    /// while the leader moves the group to `replicas`; they keep their copy
    /// until the leader reports the move done ([`MetaCommand::ReplicasSettled`]).
    #[serde(default)]
    pub retiring: Vec<u64>,
    /// Set once a replica has moved: the group surely exists, so no node may
    /// initialize it again (only the creation-time replicas ever do).
    #[serde(default)]
    pub moved: bool,
    /// Lineage: the shards this one was split or merged from.
    #[serde(default)]
    pub parents: Vec<u32>,
    /// Resharded: its leader seals its log ([`crate::raft::command::ShardCommand::Seal`]);
    /// no new records once that is applied.
    #[serde(default)]
    pub closing: bool,
    /// Sealed: the offset after its last record. Set once the seal applied.
    #[serde(default)]
    pub end_offset: Option<u64>,
}

impl ShardMeta {
    /// A new open shard owning `range`, with its lineage.
    pub fn new(
        id: u32,
        range: strata_schema::hashkey::HashRange,
        replicas: Vec<u64>,
        parents: Vec<u32>,
    ) -> Self {
        Self {
            id,
            start_hash_key: range.start.to_string(),
            end_hash_key: range.end.to_string(),
            replicas,
            retiring: Vec::new(),
            moved: false,
            parents,
            closing: false,
            end_offset: None,
        }
    }

    /// The shard's inclusive hash-key range.
    pub fn range(
        &self,
    ) -> Result<strata_schema::hashkey::HashRange, strata_schema::hashkey::HashKeyError> {
        Ok(strata_schema::hashkey::HashRange {
            start: strata_schema::hashkey::parse_hash_key(&self.start_hash_key)?,
            end: strata_schema::hashkey::parse_hash_key(&self.end_hash_key)?,
        })
    }

    /// "open", "closing" or "closed".
    pub fn state(&self) -> &'static str {
        match (self.closing, self.end_offset) {
            (_, Some(_)) => "closed",
            (true, None) => "closing",
            (false, None) => "open",
        }
    }

    /// The shard as a consumer group sees it.
    pub fn lineage(&self) -> ShardLineage {
        ShardLineage {
            id: self.id,
            parents: self.parents.clone(),
            end_offset: self.end_offset,
        }
    }

    /// Whether `node` must keep a copy of the shard (a replica, or one that
    /// is being moved off it).
    pub fn hosted_on(&self, node: u64) -> bool {
        self.replicas.contains(&node) || self.retiring.contains(&node)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamMeta {
    pub name: String,
    pub replication: u32,
    pub created_ms: i64,
    pub shards: Vec<ShardMeta>,
    #[serde(default)]
    pub retention: strata_protocol::Retention,
    /// Set by `stream restore`: each shard leader loads its shard's manifest
    /// from this object store URL into the (empty) shard.
    #[serde(default)]
    pub restore_from: Option<String>,
}

/// A registered producer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProducerMeta {
    pub id: u64,
    pub agent: String,
    pub registered_ms: i64,
    /// The principal that registered the id; only it may forward under it.
    /// `None`: registered without client authentication (claimed by the
    /// first authenticated registration).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub principal: Option<String>,
}
