//! The metadata group's state: the nodes of the cluster (id, zone, addresses)
//! and the streams with their shard maps and replica placement.
//!
//! Every core node runs one metadata Raft group (3 or 5 voters spread over
//! zones; one in a single-node core). Commands are applied deterministically,
//! so every replica holds the same catalog. Placement is a pure function of
//! the catalog ([`place`]), computed by the leader before proposing.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A core node as the cluster knows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeMeta {
    pub id: u64,
    pub zone: String,
    /// Client API address (QUIC).
    pub addr: String,
    /// Inter-node Raft address (QUIC, mutual TLS).
    pub peer_addr: String,
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
    RegisterNode(NodeMeta),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum MetaResponse {
    Created,
    AlreadyExists,
    Registered,
}

/// The catalog every metadata replica holds.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Catalog {
    #[serde(default)]
    pub nodes: BTreeMap<u64, NodeMeta>,
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
            MetaCommand::RegisterNode(n) => {
                self.nodes.insert(n.id, n.clone());
                MetaResponse::Registered
            }
        }
    }

    /// Distinct zones with their nodes, sorted by zone then id.
    pub fn zones(&self) -> BTreeMap<&str, Vec<u64>> {
        let mut z: BTreeMap<&str, Vec<u64>> = BTreeMap::new();
        for n in self.nodes.values() {
            z.entry(n.zone.as_str()).or_default().push(n.id);
        }
        z
    }

    /// Replication when a stream asks for none: 3 with at least 3 zones,
    /// else one replica per zone.
    pub fn default_replication(&self) -> u32 {
        (self.zones().len() as u32).clamp(1, 3)
    }
}

/// Places `replication` replicas of each of `shards` shards in distinct
/// zones. Shard `i` starts at zone `i mod zones`, so preferred leaders (the
/// first replica) rotate over zones and, within a zone, over its nodes.
pub fn place(catalog: &Catalog, shards: u32, replication: u32) -> Result<Vec<Vec<u64>>, String> {
    let zones: Vec<Vec<u64>> = catalog.zones().into_values().collect();
    if zones.is_empty() {
        return Err("the cluster has no registered nodes yet; retry in a moment".into());
    }
    if replication as usize > zones.len() {
        return Err(format!(
            "replication {replication} needs {replication} zones; the cluster has {} ({})",
            zones.len(),
            catalog
                .zones()
                .keys()
                .cloned()
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    let nz = zones.len();
    Ok((0..shards as usize)
        .map(|i| {
            (0..replication as usize)
                .map(|j| {
                    let zone = &zones[(i + j) % nz];
                    zone[(i / nz) % zone.len()]
                })
                .collect()
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn catalog(nodes: &[(u64, &str)]) -> Catalog {
        let mut c = Catalog::default();
        for &(id, zone) in nodes {
            c.apply(&MetaCommand::RegisterNode(NodeMeta {
                id,
                zone: zone.into(),
                addr: format!("127.0.0.1:{}", 7500 + id),
                peer_addr: format!("127.0.0.1:{}", 7600 + id),
            }));
        }
        c
    }

    #[test]
    fn replicas_sit_in_distinct_zones_and_leaders_balance() {
        let c = catalog(&[(1, "az-a"), (2, "az-b"), (3, "az-c"), (4, "az-a")]);
        assert_eq!(c.default_replication(), 3);
        let p = place(&c, 12, 3).unwrap();
        let zone = |id: u64| c.nodes[&id].zone.clone();
        for reps in &p {
            let mut zs: Vec<String> = reps.iter().map(|&r| zone(r)).collect();
            zs.sort();
            zs.dedup();
            assert_eq!(zs.len(), 3, "{reps:?}");
        }
        let mut leaders: BTreeMap<u64, usize> = BTreeMap::new();
        for reps in &p {
            *leaders.entry(reps[0]).or_default() += 1;
        }
        // 12 shards over 4 nodes in 3 zones: az-a's two nodes share its 4.
        assert_eq!(
            leaders.values().copied().collect::<Vec<_>>(),
            vec![2, 4, 4, 2]
        );
    }

    #[test]
    fn replication_beyond_zones_is_refused() {
        let c = catalog(&[(1, "az-a"), (2, "az-a")]);
        assert_eq!(c.default_replication(), 1);
        assert!(place(&c, 1, 2).unwrap_err().contains("zones"));
        assert!(place(&Catalog::default(), 1, 1).is_err());
    }
}
