//! Removing this node's replicas of deleted streams
//! ([`crate::catalog::delete`]): close the stream's shard groups, delete
//! `shards/<stream>/`, then report it to the metadata leader. Every step is
//! idempotent, so a failure (or a crash in between) is retried at the next
//! reconcile; a node that was down during the deletion does it when it
//! comes back, before it could open anything under that name again.

use crate::catalog::MetaCommand;
use crate::node::Node;
use std::sync::Arc;

impl Node {
    pub(crate) async fn purge_deleted(self: &Arc<Self>) {
        let me = self.cfg.node_id;
        for stream in self.meta().sm.read(|c| c.to_purge(me)) {
            let groups: Vec<_> = {
                let mut map = self.shards.write().expect("shards lock");
                let keys: Vec<(String, u32)> =
                    map.keys().filter(|(s, _)| *s == stream).cloned().collect();
                keys.into_iter().filter_map(|k| map.remove(&k)).collect()
            };
            for g in groups {
                let _ = g.raft.shutdown().await;
            }
            let dir = self.cfg.data_dir.join("shards").join(&stream);
            match std::fs::remove_dir_all(&dir) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    tracing::warn!(dir = %dir.display(), error = %e, "removing a deleted stream's replicas; will retry");
                    continue;
                }
            }
            let cmd = MetaCommand::StreamPurged {
                stream: stream.clone(),
                node: me,
            };
            match self.propose_meta(cmd).await {
                Ok(_) => {
                    tracing::info!(stream = %stream, "removed the replicas of a deleted stream")
                }
                Err(e) => {
                    tracing::warn!(stream = %stream, error = %format!("{e:#}"), "reporting a deleted stream's replicas removed; will retry")
                }
            }
        }
    }
}
