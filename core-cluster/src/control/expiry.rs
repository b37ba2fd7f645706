//! Producer-id expiry (docs/operations.md, "Producer id expiry"): a rare
//! round (every 10 minutes, or a quarter of `producer_idle_expiry_ms` when
//! that is shorter) in which this node
//!
//! - as a shard leader, commits `ShardCommand::ForgetProducers` for the
//!   dedup entries idle longer than the idle time
//!   ([`ShardState::idle_producers`](crate::raft::shard::ShardState::idle_producers)):
//!   only a shard with something to forget gets an entry, so idle
//!   (quiesced) groups stay quiet;
//! - reports to the catalog the registered ids its led shards still hold
//!   and whose catalog time is getting old ([`producers::stale_held`]);
//! - as the metadata leader, commits `MetaCommand::ForgetProducers` for
//!   the ids with no sign of use for the idle time ([`producers::idle`]).
//!
//! The decisions are the pure planners named; this loop only reads the
//! states and commits. A failed commit is retried at the next round (every
//! command is idempotent and guarded against use since the decision).

use crate::catalog::{producers, MetaCommand};
use crate::clock::now_ms;
use crate::node::Node;
use crate::raft::command::{ShardCommand, ShardResponse};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// Longest time between two rounds.
const ROUND_MAX: Duration = Duration::from_secs(10 * 60);
/// Most ids one command names (a larger backlog takes several rounds).
const IDS_PER_COMMAND: usize = 10_000;
/// Longest a commit may take before the round moves on.
const COMMIT_TIMEOUT: Duration = Duration::from_secs(10);

/// Time between rounds for an idle time: at most a quarter of it, so that
/// a held id is reported well before the catalog could call it idle (at
/// least 1 s, at most [`ROUND_MAX`]).
pub fn round_interval(idle_ms: u64) -> Duration {
    Duration::from_millis(idle_ms / 4).clamp(Duration::from_secs(1), ROUND_MAX)
}

/// Whether the metadata leader may forget catalog ids `running` after this
/// process started: only after two rounds, so that every node has had a
/// round to report the ids its shards hold (after a whole-cluster outage
/// longer than half the idle time, every catalog time is old).
pub fn catalog_forget_allowed(running: Duration, idle_ms: u64) -> bool {
    running >= 2 * round_interval(idle_ms)
}

impl Node {
    /// Runs producer-id expiry rounds until `stop` (none when
    /// `producer_idle_expiry_ms` is 0).
    pub async fn run_producer_expiry(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        let idle_ms = self.cfg.producer_idle_expiry_ms;
        if idle_ms == 0 {
            return;
        }
        let started = tokio::time::Instant::now();
        let started_ms = now_ms();
        let every = round_interval(idle_ms);
        loop {
            tokio::select! {
                _ = tokio::time::sleep(every) => {}
                _ = stop.wait_for(|s| *s) => return,
            }
            let may_forget_catalog = catalog_forget_allowed(started.elapsed(), idle_ms);
            self.producer_expiry_round(idle_ms, started_ms, may_forget_catalog)
                .await;
        }
    }

    async fn producer_expiry_round(&self, idle_ms: u64, started_ms: i64, may_forget_catalog: bool) {
        let now = now_ms();
        let me = self.cfg.node_id;
        let mut held = Vec::new();
        for ((stream, shard), g) in self.shard_groups() {
            if g.leader() != Some(me) {
                continue;
            }
            let (forget, ids) = g.sm.read(|s| {
                let forget = s.idle_producers(now, idle_ms, started_ms, IDS_PER_COMMAND);
                let ids: Vec<u64> = s.producers.keys().copied().collect();
                (forget, ids)
            });
            held.extend(
                ids.into_iter()
                    .filter(|id| forget.binary_search_by_key(id, |&(f, _)| f).is_err()),
            );
            if forget.is_empty() {
                continue;
            }
            let n = forget.len();
            let write = g.raft.client_write(ShardCommand::ForgetProducers(forget));
            match tokio::time::timeout(COMMIT_TIMEOUT, write).await {
                Ok(Ok(r)) => match r.data {
                    ShardResponse::Forgot { producers } => tracing::info!(
                        shard = %format!("{stream}/{shard}"),
                        idle = n,
                        forgotten = producers,
                        "forgot idle producer ids"
                    ),
                    other => {
                        tracing::warn!(shard = %format!("{stream}/{shard}"), reply = ?other, "unexpected reply to a producer expiry")
                    }
                },
                Ok(Err(e)) => {
                    tracing::warn!(shard = %format!("{stream}/{shard}"), error = %e, "producer expiry failed; will retry")
                }
                Err(_) => {
                    tracing::warn!(shard = %format!("{stream}/{shard}"), "producer expiry not committed in time; will retry")
                }
            }
        }
        let report = self
            .meta()
            .sm
            .read(|c| producers::stale_held(c, held, now, idle_ms));
        for ids in report.chunks(IDS_PER_COMMAND) {
            let cmd = MetaCommand::ProducersSeen {
                ids: ids.to_vec(),
                at_ms: now,
            };
            if let Err(e) = self.propose_meta(cmd).await {
                tracing::warn!(error = %e, "reporting held producer ids failed; will retry");
                return;
            }
        }
        if !may_forget_catalog || self.meta().leader() != Some(me) {
            return;
        }
        let idle = self
            .meta()
            .sm
            .read(|c| producers::idle(c, now, idle_ms, IDS_PER_COMMAND));
        if let Some((ids, before_ms)) = idle {
            let n = ids.len();
            match self
                .propose_meta(MetaCommand::ForgetProducers { ids, before_ms })
                .await
            {
                Ok(_) => tracing::info!(idle = n, "forgot idle producer ids in the catalog"),
                Err(e) => tracing::warn!(error = %e, "catalog producer expiry failed; will retry"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounds_are_rare_but_a_quarter_of_the_idle_time_at_most() {
        let week = 7 * 24 * 3600 * 1000;
        assert_eq!(round_interval(week), ROUND_MAX);
        assert_eq!(round_interval(60_000), Duration::from_secs(15));
        assert_eq!(round_interval(10), Duration::from_secs(1));
        assert!(!catalog_forget_allowed(Duration::from_secs(60), week));
        assert!(catalog_forget_allowed(Duration::from_secs(1200), week));
        assert!(catalog_forget_allowed(Duration::from_secs(30), 60_000));
    }
}
