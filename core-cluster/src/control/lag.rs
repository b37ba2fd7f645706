//! Consumer-group lag as Prometheus gauges, from the shards this node leads.

use crate::node::Node;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

impl Node {
    /// Every few seconds, for each shard this node leads, sets the lag of
    /// each consumer group of its stream: `strata_core_group_lag_records`
    /// and `strata_core_group_lag_ms` (labels stream, group, shard).
    pub async fn report_group_lag(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        loop {
            for ((stream, shard), g) in self.shard_groups() {
                if g.leader() != Some(self.cfg.node_id) {
                    continue;
                }
                let (first, next, newest) =
                    g.sm.read(|s| (s.first_offset, s.next_offset, s.newest_timestamp_ms()));
                let lags: Vec<(String, u64, i64)> = self.meta().sm.read(|c| {
                    c.groups
                        .get(&stream)
                        .into_iter()
                        .flatten()
                        .map(|(name, grp)| {
                            let cp = grp.checkpoints.get(&shard).copied();
                            let (records, ms) = strata_protocol::shard_lag(first, next, newest, cp);
                            (name.clone(), records, ms)
                        })
                        .collect()
                });
                for (group, records, ms) in lags {
                    let labels = [
                        ("stream", stream.clone()),
                        ("group", group),
                        ("shard", shard.to_string()),
                    ];
                    metrics::gauge!("strata_core_group_lag_records", &labels).set(records as f64);
                    metrics::gauge!("strata_core_group_lag_ms", &labels).set(ms as f64);
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(5)) => {}
                _ = stop.wait_for(|s| *s) => return,
            }
        }
    }
}
