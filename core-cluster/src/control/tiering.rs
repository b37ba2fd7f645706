//! The tiering loop: for every shard on this node, restore it from the
//! archive when asked, upload sealed ranges and expire records (leader only),
//! and purge tiered entries from the local log (every replica). When to do
//! each is decided by [`ShardPacing`], a pure function of the clock and past
//! results; the work itself is in `crate::tiering`.

use crate::node::Node;
use crate::tiering::{expire, purge_local, restore_shard, upload_sealed, Tier, TieringError};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// How often each shard is checked.
const PASS_INTERVAL: Duration = Duration::from_millis(500);
/// Longest one shard's upload pass may take before the others get a turn.
const UPLOAD_PASS_MAX: Duration = Duration::from_secs(120);
/// Shortest and longest wait between upload retries of one shard.
const BACKOFF_MIN: Duration = Duration::from_millis(500);
const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// Fewest seconds between two local purges of one shard (each writes a snapshot).
const PURGE_INTERVAL: Duration = Duration::from_secs(5);

/// When one shard's next upload pass and local purge may run.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ShardPacing {
    retry_at: Option<Instant>,
    backoff: Duration,
    purged_at: Option<Instant>,
}

impl ShardPacing {
    /// Whether an upload pass may run at `now` (not while backing off).
    pub fn upload_due(&self, now: Instant) -> bool {
        self.retry_at.is_none_or(|t| now >= t)
    }

    /// Records an upload pass's result at `now`; returns the wait before the
    /// next try after a failure (doubling from 500 ms to 30 s), none after a
    /// success.
    pub fn handle_upload(&mut self, ok: bool, now: Instant) -> Option<Duration> {
        if ok {
            self.retry_at = None;
            self.backoff = Duration::ZERO;
            return None;
        }
        self.backoff = (self.backoff * 2).clamp(BACKOFF_MIN, BACKOFF_MAX);
        self.retry_at = Some(now + self.backoff);
        Some(self.backoff)
    }

    /// Whether a local purge may run at `now`.
    pub fn purge_due(&self, now: Instant) -> bool {
        self.purged_at
            .is_none_or(|t| now.saturating_duration_since(t) >= PURGE_INTERVAL)
    }

    /// A purge that deleted something ran at `now`.
    pub fn handle_purged(&mut self, now: Instant) {
        self.purged_at = Some(now);
    }
}

/// Runs tiering and local retention for every shard on the node until `stop`.
pub async fn run(node: Arc<Node>, tier: Arc<Tier>, mut stop: watch::Receiver<bool>) {
    if !tier.enabled {
        return;
    }
    let mut pacing: HashMap<(String, u32), ShardPacing> = HashMap::new();
    loop {
        for ((stream, shard), g) in node.shard_groups() {
            let name = format!("{stream}/{shard}");
            let st = pacing.entry((stream.clone(), shard)).or_default();
            let retention = node.retention(&stream);
            let leads = g.leader() == Some(node.cfg.node_id);
            if leads
                && node.restoring(&stream)
                && g.sm.read(|s| s.next_offset == 0 && s.tiered.is_empty())
            {
                if let Err(e) = restore_shard(&tier, &stream, shard, &g).await {
                    tracing::warn!(shard = %name, error = %format!("{e:#}"), "restoring from the archive failed; will retry");
                }
            }
            if g.leader() == Some(node.cfg.node_id) && st.upload_due(Instant::now()) {
                let upload =
                    tokio::time::timeout(UPLOAD_PASS_MAX, upload_sealed(&tier, &stream, shard, &g))
                        .await
                        .unwrap_or(Err(TieringError::Timeout(UPLOAD_PASS_MAX)));
                let pass = match upload {
                    Ok(_) => expire(&tier, &stream, shard, &g, &retention).await,
                    Err(e) => Err(e),
                };
                if let Some(wait) = st.handle_upload(pass.is_ok(), Instant::now()) {
                    let e = pass.expect_err("a failed pass");
                    metrics::counter!("strata_core_tier_errors_total").increment(1);
                    tracing::warn!(shard = %name, error = %format!("{e:#}"), retry_in_ms = wait.as_millis() as u64, "tiering failed; will retry");
                }
            }
            if st.purge_due(Instant::now()) {
                match purge_local(&tier, &g, &retention).await {
                    Ok(true) => st.handle_purged(Instant::now()),
                    Ok(false) => {}
                    Err(e) => {
                        tracing::warn!(shard = %name, error = %format!("{e:#}"), "deleting tiered local entries failed")
                    }
                }
            }
            let (next, tiered) = g.sm.read(|s| (s.next_offset, s.tiered_to()));
            metrics::gauge!("strata_core_tier_backlog_records", "stream" => stream.clone(), "shard" => shard.to_string())
                .set(next.saturating_sub(tiered) as f64);
        }
        tokio::select! {
            _ = tokio::time::sleep(PASS_INTERVAL) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failed_uploads_back_off_doubling_to_a_cap_and_a_success_resets() {
        let t0 = Instant::now();
        let mut p = ShardPacing::default();
        assert!(p.upload_due(t0));
        let waits: Vec<Duration> = (0..9)
            .map(|_| p.handle_upload(false, t0).unwrap())
            .collect();
        let ms: Vec<u128> = waits.iter().map(|w| w.as_millis()).collect();
        assert_eq!(
            ms,
            [500, 1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000]
        );
        assert!(!p.upload_due(t0 + Duration::from_secs(29)));
        assert!(p.upload_due(t0 + Duration::from_secs(30)));
        assert_eq!(p.handle_upload(true, t0), None);
        assert!(p.upload_due(t0));
        assert_eq!(p.handle_upload(false, t0), Some(BACKOFF_MIN), "reset");
    }

    #[test]
    fn purges_are_spaced_only_after_one_deleted_something() {
        let t0 = Instant::now();
        let mut p = ShardPacing::default();
        assert!(p.purge_due(t0));
        p.handle_purged(t0);
        assert!(!p.purge_due(t0 + PURGE_INTERVAL - Duration::from_millis(1)));
        assert!(p.purge_due(t0 + PURGE_INTERVAL));
    }
}
