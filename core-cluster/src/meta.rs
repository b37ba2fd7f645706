//! The metadata group's state machine: streams and their shard maps.
//!
//! Every core node runs one metadata Raft group. In a single-node core it has
//! one member; the cluster issue adds voters across zones. Commands are
//! applied deterministically, so every replica holds the same catalog.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// One shard of a stream: its id and inclusive hash-key range.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardMeta {
    pub id: u32,
    /// Decimal strings: u128 does not round-trip through every JSON reader.
    pub start_hash_key: String,
    pub end_hash_key: String,
    pub replicas: Vec<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamMeta {
    pub name: String,
    pub replication: u32,
    pub created_ms: i64,
    pub shards: Vec<ShardMeta>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum MetaCommand {
    CreateStream(StreamMeta),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum MetaResponse {
    Created,
    AlreadyExists,
}

/// The catalog every metadata replica holds.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Catalog {
    pub streams: BTreeMap<String, StreamMeta>,
}

impl Catalog {
    pub fn apply(&mut self, cmd: &MetaCommand) -> MetaResponse {
        match cmd {
            MetaCommand::CreateStream(s) => {
                if self.streams.contains_key(&s.name) {
                    MetaResponse::AlreadyExists
                } else {
                    self.streams.insert(s.name.clone(), s.clone());
                    MetaResponse::Created
                }
            }
        }
    }
}
