//! The metadata group's state: the nodes of the cluster (id, zone, addresses)
//! and the streams with their shard maps and replica placement.
//!
//! Every core node runs one metadata Raft group (3 or 5 voters spread over
//! zones; one in a single-node core). Commands are applied deterministically,
//! so every replica holds the same catalog. Placement is a pure function of
//! the catalog ([`place`]), computed by the leader before proposing.

pub mod caps;
pub mod delete;
pub mod groups;
pub mod layout;
pub mod model;
pub mod producers;
pub mod reshard;

pub use model::{NodeMeta, ProducerMeta, ShardMeta, StreamMeta};

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum MetaCommand {
    CreateStream(StreamMeta),
    /// An initial member, registered by the metadata leader at bootstrap.
    RegisterNode(NodeMeta),
    /// `strata cluster add-node`.
    AddNode(NodeMeta),
    /// `strata cluster remove-node`: mark draining and re-place its replicas
    /// ([`plan_drain`], computed at apply time so every replica agrees).
    DrainNode(u64),
    /// A shard leader finished moving its group to `replicas`.
    ReplicasSettled {
        stream: String,
        shard: u32,
        replicas: Vec<u64>,
    },
    /// A drained node holds nothing any more and left the metadata group.
    ForgetNode(u64),
    /// An edge agent announced its durable producer id.
    RegisterProducer(ProducerMeta),
    /// `stream split | merge | scale` ([`reshard`]): `close` start
    /// closing, `children` join the stream (new ids, with their parents).
    Reshard {
        stream: String,
        close: Vec<u32>,
        children: Vec<ShardMeta>,
    },
    /// A closing shard's leader applied its seal: the shard ends at `end_offset`.
    ShardSealed {
        stream: String,
        shard: u32,
        end_offset: u64,
    },
    /// A consumer-group member's heartbeat ([`groups`]).
    GroupHeartbeat {
        stream: String,
        group: String,
        heartbeat: groups::Heartbeat,
    },
    /// `strata acl add | remove`: adds `add` (under a new id) and/or
    /// removes rule `remove` (0: none).
    ChangeAcl {
        add: Option<strata_protocol::acl::Rule>,
        remove: u64,
    },
    /// `strata identity issue NAME --aws-key`: the key the leader drew.
    IssueAwsKey(strata_protocol::aws_key::AwsKey),
    /// `strata identity revoke-aws-key ID`.
    RevokeAwsKey(String),
    /// `strata stream delete` ([`delete`]): the stream leaves the catalog;
    /// the nodes that held its replicas remove them.
    DeleteStream(String),
    /// `node` closed and removed its replicas of a deleted stream.
    StreamPurged {
        stream: String,
        node: u64,
    },
    /// `strata stream retention` (Kinesis Increase/DecreaseStreamRetentionPeriod):
    /// the stream's retention from now on; tiering applies it on its next pass.
    SetRetention {
        stream: String,
        retention: strata_protocol::Retention,
    },
    /// Shard leaders' report: their dedup tables held these registered
    /// producer ids at `at_ms` ([`producers`]).
    ProducersSeen {
        ids: Vec<u64>,
        at_ms: i64,
    },
    /// Producer-id expiry, by the metadata leader: forget those of `ids`
    /// whose last sign of use is still before `before_ms` ([`producers`]).
    ForgetProducers {
        ids: Vec<u64>,
        before_ms: i64,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum MetaResponse {
    Created,
    AlreadyExists,
    Registered,
    Done,
    /// The command does not fit the catalog (the reason, for the operator).
    Refused(String),
    /// A group member's shards after its heartbeat.
    Group(groups::Assignment),
    /// The access rules changed; the id of the rule added (0: none).
    AclChanged {
        added_id: u64,
    },
}

/// The catalog every metadata replica holds.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Catalog {
    #[serde(default)]
    pub nodes: BTreeMap<u64, NodeMeta>,
    pub streams: BTreeMap<String, StreamMeta>,
    /// Durable producer ids (edge agents), for operators and for fencing.
    #[serde(default)]
    pub producers: BTreeMap<u64, ProducerMeta>,
    /// When a shard leader last reported holding each registered
    /// producer's dedup entry (the reporter's clock, carried in the
    /// command); for expiry ([`producers`]).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub producers_seen: BTreeMap<u64, i64>,
    /// Removed nodes: never registered again from the bootstrap list.
    #[serde(default)]
    pub forgotten: std::collections::BTreeSet<u64>,
    /// Consumer groups: stream → group name → group.
    #[serde(default)]
    pub groups: BTreeMap<String, BTreeMap<String, groups::Group>>,
    /// Access rules (default deny; superusers are a daemon setting).
    #[serde(default)]
    pub acl: strata_protocol::acl::Acl,
    /// AWS access keys of principals (the edge's Kinesis API).
    #[serde(default)]
    pub aws_keys: strata_protocol::aws_key::AwsKeys,
    /// Deleted streams whose replicas some nodes still have to remove:
    /// stream → those nodes. The name cannot be created again until the
    /// set is empty ([`delete`]).
    #[serde(default)]
    pub deleting: BTreeMap<String, std::collections::BTreeSet<u64>>,
}

impl Catalog {
    pub fn apply(&mut self, cmd: &MetaCommand) -> MetaResponse {
        match cmd {
            MetaCommand::CreateStream(s) => {
                if self.streams.contains_key(&s.name) {
                    MetaResponse::AlreadyExists
                } else if let Some(e) = self.still_deleting(&s.name) {
                    MetaResponse::Refused(e)
                } else {
                    self.streams.insert(s.name.clone(), s.clone());
                    MetaResponse::Created
                }
            }
            MetaCommand::RegisterNode(n) => {
                self.nodes.insert(n.id, n.clone());
                MetaResponse::Registered
            }
            MetaCommand::AddNode(n) => match self.check_new_node(n) {
                Ok(true) => MetaResponse::Registered,
                Ok(false) => {
                    self.nodes.insert(n.id, n.clone());
                    self.forgotten.remove(&n.id);
                    MetaResponse::Registered
                }
                Err(e) => MetaResponse::Refused(e.to_string()),
            },
            MetaCommand::DrainNode(id) => match plan_drain(self, *id) {
                Ok(moves) => {
                    if let Some(n) = self.nodes.get_mut(id) {
                        n.draining = true;
                    }
                    for m in moves {
                        let sh = self.shard_mut(&m.stream, m.shard).expect("planned shard");
                        let pos = sh.replicas.iter().position(|r| *r == m.from);
                        sh.replicas[pos.expect("planned replica")] = m.to;
                        if !sh.retiring.contains(&m.from) {
                            sh.retiring.push(m.from);
                        }
                        sh.moved = true;
                    }
                    MetaResponse::Done
                }
                Err(e) => MetaResponse::Refused(e.to_string()),
            },
            MetaCommand::ReplicasSettled {
                stream,
                shard,
                replicas,
            } => match self.shard_mut(stream, *shard) {
                Some(sh) if &sh.replicas == replicas => {
                    sh.retiring.clear();
                    MetaResponse::Done
                }
                Some(sh) => MetaResponse::Refused(format!(
                    "{stream}/{shard}: replicas are now {:?}, not {replicas:?}",
                    sh.replicas
                )),
                None => MetaResponse::Refused(format!("{stream}/{shard} does not exist")),
            },
            MetaCommand::RegisterProducer(p) => {
                let known = self.producers.entry(p.id).or_insert_with(|| p.clone());
                match (&known.principal, &p.principal) {
                    (Some(owner), Some(claim)) if owner != claim => MetaResponse::Refused(format!(
                        "producer id {} is registered to principal {owner:?}",
                        p.id
                    )),
                    (None, Some(_)) => {
                        known.principal = p.principal.clone();
                        MetaResponse::Registered
                    }
                    _ => MetaResponse::Registered,
                }
            }
            MetaCommand::Reshard {
                stream,
                close,
                children,
            } => match self.streams.get_mut(stream) {
                None => MetaResponse::Refused(format!("stream {stream:?} does not exist")),
                Some(s) => match reshard::check(s, close, children) {
                    Err(e) => MetaResponse::Refused(e.to_string()),
                    Ok(()) => {
                        for sh in s.shards.iter_mut().filter(|sh| close.contains(&sh.id)) {
                            sh.closing = true;
                        }
                        s.shards.extend(children.iter().cloned());
                        MetaResponse::Done
                    }
                },
            },
            MetaCommand::ShardSealed {
                stream,
                shard,
                end_offset,
            } => match self.shard_mut(stream, *shard) {
                Some(sh) if sh.closing => {
                    sh.end_offset = Some(*end_offset);
                    MetaResponse::Done
                }
                Some(_) => MetaResponse::Refused(format!("{stream}/{shard} is not closing")),
                None => MetaResponse::Refused(format!("{stream}/{shard} does not exist")),
            },
            MetaCommand::GroupHeartbeat {
                stream,
                group,
                heartbeat,
            } => {
                let Some(s) = self.streams.get(stream) else {
                    return MetaResponse::Refused(format!("stream {stream:?} does not exist"));
                };
                let shards: Vec<groups::ShardLineage> =
                    s.shards.iter().map(ShardMeta::lineage).collect();
                let groups = self.groups.entry(stream.clone()).or_default();
                let g = groups.entry(group.clone()).or_default();
                let a = g.heartbeat(&shards, heartbeat);
                if g.members.is_empty() && heartbeat.leave && g.checkpoints.is_empty() {
                    groups.remove(group);
                }
                MetaResponse::Group(a)
            }
            MetaCommand::ChangeAcl { add, remove } => {
                if *remove != 0 && !self.acl.rules.iter().any(|r| r.id == *remove) {
                    return MetaResponse::Refused(format!("there is no access rule {remove}"));
                }
                if let Some(rule) = add {
                    if let Err(e) = rule.validate() {
                        return MetaResponse::Refused(e.to_string());
                    }
                }
                self.acl.remove(*remove);
                let added_id = match add {
                    Some(rule) => self.acl.add(rule.clone()).expect("validated above"),
                    None => 0,
                };
                MetaResponse::AclChanged { added_id }
            }
            MetaCommand::IssueAwsKey(key) => {
                if key.principal.is_empty() {
                    return MetaResponse::Refused("an AWS key needs a principal".into());
                }
                if self.aws_keys.add(key.clone()) {
                    MetaResponse::Done
                } else {
                    MetaResponse::Refused(format!(
                        "AWS access key {} exists already",
                        key.access_key_id
                    ))
                }
            }
            MetaCommand::RevokeAwsKey(id) => match self.aws_keys.remove(id) {
                Some(_) => MetaResponse::Done,
                None => MetaResponse::Refused(format!("there is no AWS access key {id}")),
            },
            MetaCommand::DeleteStream(name) => self.delete_stream(name),
            MetaCommand::SetRetention { stream, retention } => match self.streams.get_mut(stream) {
                Some(s) => {
                    s.retention = *retention;
                    MetaResponse::Done
                }
                None => MetaResponse::Refused(format!("stream {stream:?} does not exist")),
            },
            MetaCommand::StreamPurged { stream, node } => self.stream_purged(stream, *node),
            MetaCommand::ProducersSeen { ids, at_ms } => self.producers_seen(ids, *at_ms),
            MetaCommand::ForgetProducers { ids, before_ms } => {
                self.forget_producers(ids, *before_ms)
            }
            MetaCommand::ForgetNode(id) => {
                if self.replica_count(*id) > 0 {
                    MetaResponse::Refused(format!("node {id} still holds replicas"))
                } else {
                    self.nodes.remove(id);
                    self.forgotten.insert(*id);
                    self.forget_deleting(*id);
                    MetaResponse::Done
                }
            }
        }
    }

    /// Whether `n` may be added: `Ok(true)` if it is already there as given.
    pub fn check_new_node(&self, n: &NodeMeta) -> Result<bool, NewNodeError> {
        if n.id == 0 {
            return Err(NewNodeError::ZeroId);
        }
        if let Some(old) = self.nodes.get(&n.id) {
            let same = old.zone == n.zone && old.addr == n.addr && old.peer_addr == n.peer_addr;
            return if same && !old.draining {
                Ok(true)
            } else if old.draining {
                Err(NewNodeError::BeingRemoved(n.id))
            } else {
                Err(NewNodeError::Exists(old.clone()))
            };
        }
        if let Some(o) = self
            .nodes
            .values()
            .find(|o| o.addr == n.addr || o.peer_addr == n.peer_addr)
        {
            return Err(NewNodeError::AddressTaken(o.clone()));
        }
        Ok(false)
    }

    fn shard_mut(&mut self, stream: &str, shard: u32) -> Option<&mut ShardMeta> {
        self.streams
            .get_mut(stream)?
            .shards
            .iter_mut()
            .find(|s| s.id == shard)
    }

    /// Shards that keep a copy on `node` (replicas and retiring copies).
    pub fn replica_count(&self, node: u64) -> usize {
        self.streams
            .values()
            .flat_map(|s| &s.shards)
            .filter(|sh| sh.hosted_on(node))
            .count()
    }

    /// Distinct zones with their active (not draining) nodes, sorted by
    /// zone then id.
    pub fn zones(&self) -> BTreeMap<&str, Vec<u64>> {
        let mut z: BTreeMap<&str, Vec<u64>> = BTreeMap::new();
        for n in self.nodes.values().filter(|n| !n.draining) {
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

/// Why replicas cannot be placed or moved.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlacementError {
    #[error("the cluster has no registered nodes yet; retry in a moment")]
    NoNodes,
    #[error(
        "replication {replication} needs {replication} zones; the cluster has {zones} ({names})"
    )]
    TooFewZones {
        replication: u32,
        zones: usize,
        names: String,
    },
    #[error("node {0} is not part of the cluster")]
    UnknownNode(u64),
    #[error("cannot move the replica of {stream}/{shard} off node {node}: no active node in a zone that shard does not already use (it uses {zones_used}); add a node first (strata cluster add-node)")]
    NoTarget {
        stream: String,
        shard: u32,
        node: u64,
        zones_used: String,
    },
}

/// Why a node cannot be added.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NewNodeError {
    #[error("node id must be non-zero")]
    ZeroId,
    #[error(
        "node {0} is being removed; add it again once it is gone from `strata cluster status`"
    )]
    BeingRemoved(u64),
    #[error("node {} already exists (zone {}, address {}, peer address {})", .0.id, .0.zone, .0.addr, .0.peer_addr)]
    Exists(NodeMeta),
    #[error("node {} already uses address {} / peer address {}", .0.id, .0.addr, .0.peer_addr)]
    AddressTaken(NodeMeta),
}

/// One replica moving off a draining node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaMove {
    pub stream: String,
    pub shard: u32,
    pub from: u64,
    pub to: u64,
}

/// Where every replica on `node` goes when it is removed: to an active node
/// in a zone the shard does not use yet, preferring the removed node's zone,
/// then the node with the fewest replicas (counting earlier moves), then the
/// lowest id. Refused, naming the shard, when some replica has nowhere to go.
pub fn plan_drain(catalog: &Catalog, node: u64) -> Result<Vec<ReplicaMove>, PlacementError> {
    let Some(gone) = catalog.nodes.get(&node) else {
        return Err(PlacementError::UnknownNode(node));
    };
    let mut load: BTreeMap<u64, usize> = catalog
        .nodes
        .keys()
        .map(|&id| (id, catalog.replica_count(id)))
        .collect();
    let mut moves = Vec::new();
    for s in catalog.streams.values() {
        for sh in s.shards.iter().filter(|sh| sh.replicas.contains(&node)) {
            let zone_of = |id: &u64| catalog.nodes.get(id).map(|n| n.zone.as_str());
            let used: Vec<&str> = sh
                .replicas
                .iter()
                .filter(|&&r| r != node)
                .filter_map(zone_of)
                .collect();
            let to = catalog
                .nodes
                .values()
                .filter(|n| !n.draining && n.id != node && !sh.hosted_on(n.id))
                .filter(|n| !used.contains(&n.zone.as_str()))
                .min_by_key(|n| (n.zone != gone.zone, load[&n.id], n.id))
                .ok_or_else(|| PlacementError::NoTarget {
                    stream: s.name.clone(),
                    shard: sh.id,
                    node,
                    zones_used: used.join(", "),
                })?;
            *load.get_mut(&to.id).expect("known node") += 1;
            moves.push(ReplicaMove {
                stream: s.name.clone(),
                shard: sh.id,
                from: node,
                to: to.id,
            });
        }
    }
    Ok(moves)
}

/// Places `replication` replicas of each of `shards` shards in distinct
/// zones. Shard `i` starts at zone `i mod zones`, so preferred leaders (the
/// first replica) rotate over zones and, within a zone, over its nodes.
pub fn place(
    catalog: &Catalog,
    shards: u32,
    replication: u32,
) -> Result<Vec<Vec<u64>>, PlacementError> {
    let zones: Vec<Vec<u64>> = catalog.zones().into_values().collect();
    if zones.is_empty() {
        return Err(PlacementError::NoNodes);
    }
    if replication as usize > zones.len() {
        return Err(PlacementError::TooFewZones {
            replication,
            zones: zones.len(),
            names: catalog
                .zones()
                .keys()
                .cloned()
                .collect::<Vec<_>>()
                .join(", "),
        });
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
                draining: false,
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

    fn stream(c: &Catalog, name: &str, shards: u32, rf: u32) -> StreamMeta {
        StreamMeta {
            name: name.into(),
            replication: rf,
            created_ms: 0,
            retention: Default::default(),
            restore_from: None,
            shards: place(c, shards, rf)
                .unwrap()
                .into_iter()
                .enumerate()
                .map(|(i, replicas)| {
                    let range = strata_schema::hashkey::HashRange { start: 0, end: 0 };
                    ShardMeta::new(i as u32, range, replicas, vec![])
                })
                .collect(),
        }
    }

    #[test]
    fn draining_moves_replicas_to_free_zones_then_forgets_the_node() {
        let mut c = catalog(&[(1, "az-a"), (2, "az-b"), (3, "az-c")]);
        c.apply(&MetaCommand::CreateStream(stream(&c, "s", 3, 3)));
        // Nowhere to go: every zone already holds a replica.
        let err = plan_drain(&c, 3).unwrap_err().to_string();
        assert!(err.contains("add a node first"), "{err}");
        assert_eq!(
            c.apply(&MetaCommand::DrainNode(3)),
            MetaResponse::Refused(err)
        );
        assert!(!c.nodes[&3].draining);

        // Node 4 in az-c (the removed node's zone) and node 5 in az-a.
        for (id, zone) in [(4, "az-c"), (5, "az-a")] {
            let n = NodeMeta {
                id,
                zone: zone.into(),
                addr: format!("127.0.0.1:{}", 7500 + id),
                peer_addr: format!("127.0.0.1:{}", 7600 + id),
                draining: false,
            };
            assert_eq!(c.apply(&MetaCommand::AddNode(n)), MetaResponse::Registered);
        }
        let moves = plan_drain(&c, 3).unwrap();
        assert_eq!(moves.len(), 3);
        assert!(moves.iter().all(|m| m.from == 3 && m.to == 4), "{moves:?}");
        assert_eq!(c.apply(&MetaCommand::DrainNode(3)), MetaResponse::Done);
        assert!(c.nodes[&3].draining);
        for sh in &c.streams["s"].shards {
            assert!(sh.replicas.contains(&4) && !sh.replicas.contains(&3));
            assert_eq!(sh.retiring, vec![3]);
            assert!(sh.moved);
        }
        // Still hosted while moves are unsettled: not forgettable yet.
        assert_eq!(c.replica_count(3), 3);
        assert!(matches!(
            c.apply(&MetaCommand::ForgetNode(3)),
            MetaResponse::Refused(_)
        ));
        // A draining node gets no new replicas.
        assert!(place(&c, 6, 3).unwrap().iter().flatten().all(|&r| r != 3));
        // A stale settle is refused; the right one clears `retiring`.
        let stale = MetaCommand::ReplicasSettled {
            stream: "s".into(),
            shard: 0,
            replicas: vec![1, 2, 3],
        };
        assert!(matches!(c.apply(&stale), MetaResponse::Refused(_)));
        for i in 0..3 {
            let replicas = c.streams["s"].shards[i].replicas.clone();
            let cmd = MetaCommand::ReplicasSettled {
                stream: "s".into(),
                shard: i as u32,
                replicas,
            };
            assert_eq!(c.apply(&cmd), MetaResponse::Done);
        }
        assert_eq!(c.replica_count(3), 0);
        assert_eq!(c.apply(&MetaCommand::ForgetNode(3)), MetaResponse::Done);
        assert!(!c.nodes.contains_key(&3) && c.forgotten.contains(&3));
    }

    #[test]
    fn adding_a_node_twice_or_with_a_used_address_is_refused() {
        let c = catalog(&[(1, "az-a")]);
        let mut n = c.nodes[&1].clone();
        assert_eq!(c.check_new_node(&n), Ok(true));
        n.zone = "az-b".into();
        assert!(c
            .check_new_node(&n)
            .unwrap_err()
            .to_string()
            .contains("already exists"));
        n.id = 2;
        assert!(c
            .check_new_node(&n)
            .unwrap_err()
            .to_string()
            .contains("already uses"));
        n.id = 0;
        assert!(c.check_new_node(&n).is_err());
    }

    #[test]
    fn aws_keys_are_issued_and_revoked_raising_the_version() {
        use rand::SeedableRng;
        use strata_protocol::aws_key::AwsKey;
        let mut c = Catalog::default();
        let mut rng = rand::rngs::StdRng::seed_from_u64(9);
        let key = AwsKey::generate("admin", &mut rng);
        let issue = MetaCommand::IssueAwsKey(key.clone());
        assert_eq!(c.apply(&issue), MetaResponse::Done);
        assert!(matches!(c.apply(&issue), MetaResponse::Refused(_)));
        assert_eq!(c.aws_keys.find(&key.access_key_id), Some(&key));
        assert_eq!(c.aws_keys.version, 1);
        let nobody = MetaCommand::IssueAwsKey(AwsKey::generate("", &mut rng));
        assert!(matches!(c.apply(&nobody), MetaResponse::Refused(_)));
        let revoke = MetaCommand::RevokeAwsKey(key.access_key_id.clone());
        assert_eq!(c.apply(&revoke), MetaResponse::Done);
        assert_eq!(c.aws_keys.version, 2);
        let MetaResponse::Refused(why) = c.apply(&revoke) else {
            panic!("revoked twice");
        };
        assert!(why.contains(&key.access_key_id), "{why}");
    }

    #[test]
    fn replication_beyond_zones_is_refused() {
        let c = catalog(&[(1, "az-a"), (2, "az-a")]);
        assert_eq!(c.default_replication(), 1);
        assert!(place(&c, 1, 2).unwrap_err().to_string().contains("zones"));
        assert!(place(&Catalog::default(), 1, 1).is_err());
    }
}
