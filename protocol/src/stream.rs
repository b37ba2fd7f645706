//! Streams, shards and nodes as clients see them (`stream describe`,
//! `stream list`), and their `StreamDescription` / `NodeDescription` tables.
//! The core builds these views; the SDK, the CLI and the edge read them.

use serde::{Deserialize, Serialize};
use strata_schema::fb;

use crate::group::{shard_lag, GroupInfo, ShardLag};

/// A shard as `stream describe` shows it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, Default)]
pub struct ShardInfo {
    pub id: u32,
    pub start_hash_key: String,
    pub end_hash_key: String,
    pub first_offset: u64,
    pub next_offset: u64,
    pub leader_node: u64,
    pub replicas: Vec<u64>,
    /// Offsets below this are in the object store.
    pub tiered_offset: u64,
    pub tier_objects: u64,
    pub tier_bytes: u64,
    /// Newest record timestamp in the shard (0 if empty or unknown).
    pub newest_timestamp_ms: i64,
    /// Lineage: the shards this one was split or merged from.
    pub parents: Vec<u32>,
    /// "open", "closing" (resharded, sealing) or "closed".
    pub state: String,
    /// With state "closed": the offset after its last record.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub end_offset: Option<u64>,
}

impl ShardInfo {
    /// Takes new records (not split or merged away).
    pub fn is_open(&self) -> bool {
        self.state.is_empty() || self.state == "open"
    }

    pub fn is_closed(&self) -> bool {
        self.state == "closed"
    }
}

/// A core node holding replicas of a stream (or, in cluster status, any
/// node of the cluster).
#[derive(Debug, Clone, Serialize, PartialEq, Eq, Default)]
pub struct NodeInfo {
    pub id: u64,
    pub zone: String,
    /// Client API address (QUIC).
    pub addr: String,
    /// Inter-node Raft address (cluster status only).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub peer_addr: String,
    /// "active" or "draining" (cluster status only).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub state: String,
    /// Shard replicas placed on the node (cluster status only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replicas: Option<u32>,
}

impl NodeInfo {
    pub fn from_fb(n: &fb::NodeDescription<'_>) -> Self {
        let state = n.state().unwrap_or("").to_string();
        Self {
            id: n.id(),
            zone: n.zone().unwrap_or("").to_string(),
            addr: n.addr().unwrap_or("").to_string(),
            peer_addr: n.peer_addr().unwrap_or("").to_string(),
            replicas: (!state.is_empty()).then_some(n.replicas()),
            state,
        }
    }
}

/// Writes a `NodeDescription` table.
pub fn build_node_description<'a>(
    fbb: &mut flatbuffers::FlatBufferBuilder<'a>,
    n: &NodeInfo,
) -> flatbuffers::WIPOffset<fb::NodeDescription<'a>> {
    let mut s = |v: &str| (!v.is_empty()).then(|| fbb.create_string(v));
    let zone = s(&n.zone);
    let addr = s(&n.addr);
    let peer_addr = s(&n.peer_addr);
    let state = s(&n.state);
    fb::NodeDescription::create(
        fbb,
        &fb::NodeDescriptionArgs {
            id: n.id,
            zone,
            addr,
            peer_addr,
            state,
            replicas: n.replicas.unwrap_or(0),
        },
    )
}

/// How long records are kept: `local_*` on the nodes' disks after they are
/// tiered (None: the core's `local_retention_ms`), `total_*` anywhere,
/// object store included (None: unlimited). Per shard for bytes.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
pub struct Retention {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local_bytes: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total_bytes: Option<u64>,
}

impl Retention {
    /// The wire fields `[local_ms, local_bytes, total_ms, total_bytes]`,
    /// 0 for unset (the inverse of [`Retention::from_wire`]).
    pub fn to_wire(&self) -> [u64; 4] {
        [
            self.local_ms,
            self.local_bytes,
            self.total_ms,
            self.total_bytes,
        ]
        .map(|v| v.unwrap_or(0))
    }

    /// From wire fields where 0 means unset.
    pub fn from_wire(local_ms: u64, local_bytes: u64, total_ms: u64, total_bytes: u64) -> Self {
        let some = |v: u64| (v > 0).then_some(v);
        Self {
            local_ms: some(local_ms),
            local_bytes: some(local_bytes),
            total_ms: some(total_ms),
            total_bytes: some(total_bytes),
        }
    }
}

/// A stream as `stream describe` shows it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, Default)]
pub struct StreamInfo {
    pub name: String,
    pub replication: u32,
    pub created_ms: i64,
    pub shards: Vec<ShardInfo>,
    pub nodes: Vec<NodeInfo>,
    /// Where the stream's Parquet archive lives (`<store URL>/stream=<name>`).
    pub archive_url: String,
    pub retention: Retention,
    /// Consumer groups with their checkpoints.
    pub groups: Vec<GroupInfo>,
}

impl StreamInfo {
    pub fn from_fb(s: &fb::StreamDescription<'_>) -> Self {
        Self {
            name: s.name().to_string(),
            replication: s.replication(),
            created_ms: s.created_ms(),
            shards: s
                .shards()
                .iter()
                .map(|sh| ShardInfo {
                    id: sh.id(),
                    start_hash_key: sh.start_hash_key().to_string(),
                    end_hash_key: sh.end_hash_key().to_string(),
                    first_offset: sh.first_offset(),
                    next_offset: sh.next_offset(),
                    leader_node: sh.leader_node(),
                    replicas: sh
                        .replicas()
                        .map(|r| r.iter().collect())
                        .unwrap_or_default(),
                    tiered_offset: sh.tiered_offset(),
                    tier_objects: sh.tier_objects(),
                    tier_bytes: sh.tier_bytes(),
                    newest_timestamp_ms: sh.newest_timestamp_ms(),
                    parents: sh.parents().map(|p| p.iter().collect()).unwrap_or_default(),
                    state: sh.state().unwrap_or("open").to_string(),
                    end_offset: (sh.state() == Some("closed")).then(|| sh.end_offset()),
                })
                .collect(),
            nodes: s
                .nodes()
                .map(|ns| ns.iter().map(|n| NodeInfo::from_fb(&n)).collect())
                .unwrap_or_default(),
            archive_url: s.archive_url().unwrap_or("").to_string(),
            retention: Retention::from_wire(
                s.local_retention_ms(),
                s.local_retention_bytes(),
                s.retention_ms(),
                s.retention_bytes(),
            ),
            groups: s
                .groups()
                .map(|gs| gs.iter().map(|g| GroupInfo::from_fb(&g)).collect())
                .unwrap_or_default(),
        }
    }

    /// Records the stream holds (from each shard's first to next offset).
    /// The description comes from a server: a shard whose offsets are
    /// reversed counts as empty, and the total saturates.
    pub fn records(&self) -> u64 {
        self.shards.iter().fold(0u64, |total, sh| {
            total.saturating_add(sh.next_offset.saturating_sub(sh.first_offset))
        })
    }

    /// Client address of node `id`, if the description lists it.
    pub fn addr_of(&self, id: u64) -> Option<&str> {
        self.nodes
            .iter()
            .find(|n| n.id == id)
            .map(|n| n.addr.as_str())
    }

    /// Every shard's hash range (open and closed), in `shards` order.
    pub fn ranges(
        &self,
    ) -> Result<Vec<strata_schema::hashkey::HashRange>, strata_schema::hashkey::HashKeyError> {
        self.shards
            .iter()
            .map(|s| {
                Ok(strata_schema::hashkey::HashRange {
                    start: strata_schema::hashkey::parse_hash_key(&s.start_hash_key)?,
                    end: strata_schema::hashkey::parse_hash_key(&s.end_hash_key)?,
                })
            })
            .collect()
    }

    /// The shards that take new records.
    pub fn open_shards(&self) -> impl Iterator<Item = &ShardInfo> {
        self.shards.iter().filter(|s| s.is_open())
    }
}

/// Writes a `StreamDescription` table.
pub fn build_stream_description<'a>(
    fbb: &mut flatbuffers::FlatBufferBuilder<'a>,
    s: &StreamInfo,
) -> flatbuffers::WIPOffset<fb::StreamDescription<'a>> {
    let shards: Vec<_> = s
        .shards
        .iter()
        .map(|sh| {
            let start = Some(fbb.create_string(&sh.start_hash_key));
            let end = Some(fbb.create_string(&sh.end_hash_key));
            let replicas = Some(fbb.create_vector(&sh.replicas));
            let parents = Some(fbb.create_vector(&sh.parents));
            let state = Some(fbb.create_string(&sh.state));
            fb::ShardDescription::create(
                fbb,
                &fb::ShardDescriptionArgs {
                    id: sh.id,
                    start_hash_key: start,
                    end_hash_key: end,
                    first_offset: sh.first_offset,
                    next_offset: sh.next_offset,
                    leader_node: sh.leader_node,
                    replicas,
                    tiered_offset: sh.tiered_offset,
                    tier_objects: sh.tier_objects,
                    tier_bytes: sh.tier_bytes,
                    newest_timestamp_ms: sh.newest_timestamp_ms,
                    parents,
                    state,
                    end_offset: sh.end_offset.unwrap_or(0),
                },
            )
        })
        .collect();
    let shards = Some(fbb.create_vector(&shards));
    let nodes: Vec<_> = s
        .nodes
        .iter()
        .map(|n| build_node_description(fbb, n))
        .collect();
    let nodes = Some(fbb.create_vector(&nodes));
    let name = Some(fbb.create_string(&s.name));
    let archive_url = Some(fbb.create_string(&s.archive_url));
    let groups: Vec<_> = s
        .groups
        .iter()
        .map(|g| crate::group::build_group_description(fbb, g))
        .collect();
    let groups = Some(fbb.create_vector(&groups));
    fb::StreamDescription::create(
        fbb,
        &fb::StreamDescriptionArgs {
            archive_url,
            local_retention_ms: s.retention.local_ms.unwrap_or(0),
            local_retention_bytes: s.retention.local_bytes.unwrap_or(0),
            retention_ms: s.retention.total_ms.unwrap_or(0),
            retention_bytes: s.retention.total_bytes.unwrap_or(0),
            name,
            replication: s.replication,
            created_ms: s.created_ms,
            shards,
            nodes,
            groups,
        },
    )
}

impl GroupInfo {
    /// Lag per shard of `stream` (which must describe the same stream). A
    /// shard without a checkpoint counts from the shard's first offset.
    pub fn lag(&self, stream: &StreamInfo) -> Vec<ShardLag> {
        stream
            .shards
            .iter()
            .map(|sh| {
                let cp = self
                    .shards
                    .iter()
                    .find(|g| g.shard == sh.id)
                    .and_then(|g| g.checkpoint);
                let (records, ms) =
                    shard_lag(sh.first_offset, sh.next_offset, sh.newest_timestamp_ms, cp);
                ShardLag {
                    shard: sh.id,
                    records,
                    ms,
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use strata_schema::wire;

    /// Found by the wire_request fuzz target: a `StreamDescription` reply
    /// whose shard has `first_offset > next_offset` made `records()`
    /// overflow in the SDK and the CLI (a panic with overflow checks).
    #[test]
    fn records_of_a_description_with_bad_offsets_do_not_overflow() {
        let shard = |first_offset, next_offset| ShardInfo {
            first_offset,
            next_offset,
            ..ShardInfo::default()
        };
        let info = StreamInfo {
            name: "s".into(),
            shards: vec![shard(10, 4), shard(0, u64::MAX), shard(1, u64::MAX)],
            ..StreamInfo::default()
        };
        let reply = wire::response(fb::ResponseBody::StreamDescription, |fbb| {
            build_stream_description(fbb, &info).as_union_value()
        });
        let resp = wire::decode_response(&reply).unwrap();
        let read = StreamInfo::from_fb(&resp.body_as_stream_description().unwrap());
        assert_eq!(read.records(), u64::MAX);
        let one = StreamInfo {
            shards: vec![shard(10, 4), shard(2, 7)],
            ..read
        };
        assert_eq!(one.records(), 5);
    }
}
