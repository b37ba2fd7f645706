//! The catalog's layout: the part of it a node's reconcile reads (nodes,
//! streams with their shards' placement, deletions). Most metadata entries
//! do not touch it (consumer-group heartbeats and offsets, producer
//! registrations, access rules, keys), so a node reconciles its shard groups
//! again only when the layout changed, not after every apply: with thousands
//! of shards a reconcile is a pass over all of them.

use super::{Catalog, NodeMeta, StreamMeta};
use std::collections::{BTreeMap, BTreeSet};

/// A copy of the catalog's layout, to compare the next catalog with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    nodes: BTreeMap<u64, NodeMeta>,
    /// In name order, as the catalog holds them.
    streams: Vec<StreamMeta>,
    forgotten: BTreeSet<u64>,
    deleting: BTreeMap<String, BTreeSet<u64>>,
}

impl Layout {
    /// The streams, in name order.
    pub fn streams(&self) -> &[StreamMeta] {
        &self.streams
    }
}

impl Catalog {
    /// This catalog's layout.
    pub fn layout(&self) -> Layout {
        Layout {
            nodes: self.nodes.clone(),
            streams: self.streams.values().cloned().collect(),
            forgotten: self.forgotten.clone(),
            deleting: self.deleting.clone(),
        }
    }

    /// Whether this catalog's layout is `l` (compared in place: no copy).
    pub fn has_layout(&self, l: &Layout) -> bool {
        self.nodes == l.nodes
            && self.streams.values().eq(l.streams.iter())
            && self.forgotten == l.forgotten
            && self.deleting == l.deleting
    }
}

#[cfg(test)]
mod tests {
    use super::super::groups::Heartbeat;
    use super::super::{MetaCommand, ShardMeta};
    use super::*;

    fn stream(name: &str) -> StreamMeta {
        let range = strata_schema::hashkey::HashRange {
            start: 0,
            end: u128::MAX,
        };
        StreamMeta {
            name: name.into(),
            replication: 3,
            created_ms: 0,
            shards: vec![ShardMeta::new(0, range, vec![1, 2, 3], vec![])],
            retention: Default::default(),
            restore_from: None,
        }
    }

    #[test]
    fn a_group_heartbeat_leaves_the_layout_and_a_create_changes_it() {
        let mut c = Catalog::default();
        c.apply(&MetaCommand::CreateStream(stream("s")));
        let l = c.layout();
        assert!(c.has_layout(&l));
        c.apply(&MetaCommand::GroupHeartbeat {
            stream: "s".into(),
            group: "g".into(),
            heartbeat: Heartbeat {
                member: "m1".into(),
                now_ms: 0,
                session_ms: 1_000,
                generation: 0,
                commits: Vec::new(),
                leave: false,
            },
        });
        assert!(!c.groups.is_empty(), "the heartbeat was applied");
        assert!(c.has_layout(&l));
        c.apply(&MetaCommand::CreateStream(stream("t")));
        assert!(!c.has_layout(&l));
        assert!(c.has_layout(&c.layout()));
    }
}
