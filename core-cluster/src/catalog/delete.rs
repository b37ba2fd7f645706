//! Deleting a stream (`strata stream delete`), in two steps so that a name
//! can be reused safely:
//!
//! 1. [`MetaCommand::DeleteStream`](super::MetaCommand::DeleteStream)
//!    removes the stream and its consumer groups from the catalog and
//!    records, in [`Catalog::deleting`], every node that holds a copy of
//!    one of its shards (replicas and copies being moved away).
//! 2. Each of those nodes closes its shard groups of the stream and removes
//!    their data, then proposes
//!    [`MetaCommand::StreamPurged`](super::MetaCommand::StreamPurged); the
//!    entry goes once every node reported.
//!
//! Until then a stream of that name cannot be created: a node that was down
//! during the deletion would otherwise reopen its old replica (old log, old
//! Raft membership) as a replica of the new stream. Removing a node from the
//! cluster (`ForgetNode`) drops it from every pending deletion.

use super::{Catalog, MetaResponse};

impl Catalog {
    /// Step 1: the stream leaves the catalog.
    pub(super) fn delete_stream(&mut self, name: &str) -> MetaResponse {
        let Some(s) = self.streams.remove(name) else {
            return MetaResponse::Refused(format!("stream {name:?} does not exist"));
        };
        self.groups.remove(name);
        let hosts: std::collections::BTreeSet<u64> = s
            .shards
            .iter()
            .flat_map(|sh| sh.replicas.iter().chain(&sh.retiring))
            .copied()
            .collect();
        if !hosts.is_empty() {
            self.deleting.insert(name.to_string(), hosts);
        }
        MetaResponse::Done
    }

    /// Step 2: `node` removed its copies of the deleted `stream`.
    pub(super) fn stream_purged(&mut self, stream: &str, node: u64) -> MetaResponse {
        let Some(hosts) = self.deleting.get_mut(stream) else {
            return MetaResponse::Done;
        };
        hosts.remove(&node);
        if hosts.is_empty() {
            self.deleting.remove(stream);
        }
        MetaResponse::Done
    }

    /// A forgotten node will never report: it holds nothing any more.
    pub(super) fn forget_deleting(&mut self, node: u64) {
        for hosts in self.deleting.values_mut() {
            hosts.remove(&node);
        }
        self.deleting.retain(|_, hosts| !hosts.is_empty());
    }

    /// Why a stream of this name cannot be created yet, if it cannot.
    pub fn still_deleting(&self, name: &str) -> Option<String> {
        let hosts = self.deleting.get(name)?;
        let list: Vec<String> = hosts.iter().map(u64::to_string).collect();
        Some(format!(
            "stream {name:?} was deleted and node(s) {} have not removed its data yet (a node that is down does so when it comes back, or remove it with `strata cluster remove-node`); retry in a moment",
            list.join(", ")
        ))
    }

    /// Deleted streams this node still has to remove.
    pub fn to_purge(&self, node: u64) -> Vec<String> {
        self.deleting
            .iter()
            .filter(|(_, hosts)| hosts.contains(&node))
            .map(|(name, _)| name.clone())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::super::{MetaCommand, MetaResponse, NodeMeta, ShardMeta, StreamMeta};
    use super::*;

    fn catalog() -> Catalog {
        let mut c = Catalog::default();
        for id in 1..=3 {
            c.apply(&MetaCommand::RegisterNode(NodeMeta {
                id,
                zone: format!("az-{id}"),
                addr: format!("127.0.0.1:{}", 7500 + id),
                peer_addr: format!("127.0.0.1:{}", 7600 + id),
                draining: false,
            }));
        }
        c
    }

    fn stream(name: &str, replicas: &[u64]) -> StreamMeta {
        let range = strata_schema::hashkey::HashRange {
            start: 0,
            end: u128::MAX,
        };
        let mut sh = ShardMeta::new(0, range, replicas.to_vec(), vec![]);
        sh.retiring = vec![3];
        StreamMeta {
            name: name.into(),
            replication: replicas.len() as u32,
            created_ms: 0,
            shards: vec![sh],
            retention: Default::default(),
            restore_from: None,
        }
    }

    /// Not deletion, but the other catalog change of a stream's life: its
    /// retention is replaced whole; an unknown stream is refused.
    #[test]
    fn retention_is_replaced_and_an_unknown_stream_refused() {
        let mut c = catalog();
        c.apply(&MetaCommand::CreateStream(stream("orders", &[1, 2])));
        let r = strata_protocol::Retention {
            total_ms: Some(48 * 3_600_000),
            ..Default::default()
        };
        let set = |stream: &str| MetaCommand::SetRetention {
            stream: stream.into(),
            retention: r,
        };
        assert_eq!(c.apply(&set("orders")), MetaResponse::Done);
        assert_eq!(c.streams["orders"].retention, r);
        assert!(matches!(c.apply(&set("nope")), MetaResponse::Refused(_)));
    }

    #[test]
    fn a_deleted_name_is_free_once_every_host_removed_its_data() {
        let mut c = catalog();
        let s = stream("orders", &[1, 2]);
        assert_eq!(
            c.apply(&MetaCommand::CreateStream(s.clone())),
            MetaResponse::Created
        );
        c.groups.entry("orders".into()).or_default();
        assert_eq!(
            c.apply(&MetaCommand::DeleteStream("orders".into())),
            MetaResponse::Done
        );
        assert!(!c.streams.contains_key("orders") && !c.groups.contains_key("orders"));
        assert_eq!(c.to_purge(1), vec!["orders".to_string()]);
        assert_eq!(c.to_purge(3), vec!["orders".to_string()], "retiring copy");
        let MetaResponse::Refused(why) = c.apply(&MetaCommand::CreateStream(s.clone())) else {
            panic!("created while deleting");
        };
        assert!(why.contains("1, 2, 3"), "{why}");
        for node in [1, 2] {
            let purged = MetaCommand::StreamPurged {
                stream: "orders".into(),
                node,
            };
            assert_eq!(c.apply(&purged), MetaResponse::Done);
            assert_eq!(c.apply(&purged), MetaResponse::Done, "idempotent");
        }
        assert!(c.to_purge(1).is_empty());
        // Node 3 is removed from the cluster instead of reporting.
        assert_eq!(c.apply(&MetaCommand::ForgetNode(3)), MetaResponse::Done);
        assert!(c.deleting.is_empty());
        assert_eq!(
            c.apply(&MetaCommand::CreateStream(s)),
            MetaResponse::Created
        );
    }

    #[test]
    fn deleting_an_unknown_stream_is_refused_by_name() {
        let mut c = catalog();
        let MetaResponse::Refused(why) = c.apply(&MetaCommand::DeleteStream("nope".into())) else {
            panic!("deleted a stream that does not exist");
        };
        assert!(why.contains("\"nope\""), "{why}");
    }

    #[test]
    fn older_snapshots_without_new_fields_load() {
        let json = r#"{"streams":{}}"#;
        let c: Catalog = serde_json::from_str(json).unwrap();
        assert!(c.deleting.is_empty() && c.aws_keys.keys.is_empty());
    }
}
