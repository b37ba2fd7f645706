//! The campaign's traffic: producer lanes writing keyed records through the
//! edge for as long as the campaign runs, and a consumer group whose members
//! read the core and commit their positions. Both keep going through every
//! fault (retrying, rejoining) and record what they were told and handed,
//! for the oracle ([`super::oracle`]).
//!
//! A lane owns a fixed set of keys and sends one batch at a time, so each
//! key's records are sent in order; a batch whose answer is lost (error,
//! timeout) is sent again as a new attempt, so each acknowledged
//! `(record, attempt)` must be in the core exactly once.

use super::oracle::{self, Deliveries};
use anyhow::Result;
use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use strata_client::cluster::Cluster;
use strata_client::group::{GroupConfig, GroupConsumer};
use strata_client::{api, Client};
use strata_schema::batch::{Builder, NewRecord};
use tokio::sync::watch;

/// The longest stretch without an event (an acknowledgement, the core's
/// count growing): pure, fed the times at which events happen.
#[derive(Debug, Clone, Default)]
pub struct Gaps {
    last: Option<Instant>,
    /// The longest gap and when it ended.
    pub longest: Duration,
    pub longest_end: Option<Instant>,
}

impl Gaps {
    pub fn handle_event(&mut self, now: Instant) {
        if let Some(last) = self.last {
            let gap = now.saturating_duration_since(last);
            if gap > self.longest {
                self.longest = gap;
                self.longest_end = Some(now);
            }
        }
        self.last = Some(now);
    }

    /// The stretch since the last event counts too, if it is longer.
    pub fn close(&mut self, now: Instant) {
        self.handle_event(now);
    }
}

/// Shared state of the producer lanes.
#[derive(Default)]
pub struct Produced {
    pub acked: Mutex<HashSet<(u64, u32)>>,
    pub acked_count: AtomicU64,
    /// Requests that failed and were sent again.
    pub retries: AtomicU64,
    pub gaps: Mutex<Gaps>,
}

/// Settings of the producer lanes.
#[derive(Debug, Clone)]
pub struct ProduceCfg {
    pub stream: String,
    pub lanes: u64,
    pub keys: u64,
    pub batch: u64,
    /// Pause between a lane's acknowledged batches (a steady, modest rate).
    pub pace: Duration,
}

/// Running producer lanes.
pub struct Producers {
    pub state: Arc<Produced>,
    stop: Arc<AtomicBool>,
    lanes: tokio::task::JoinSet<()>,
}

pub fn start_producers(edge: SocketAddr, ca: &Path, cfg: &ProduceCfg) -> Result<Producers> {
    let state = Arc::new(Produced::default());
    let stop = Arc::new(AtomicBool::new(false));
    let mut lanes = tokio::task::JoinSet::new();
    for lane in 0..cfg.lanes {
        let client = Client::new(edge, ca)?;
        let (state, stop, cfg) = (state.clone(), stop.clone(), cfg.clone());
        lanes.spawn(async move { run_lane(lane, client, &cfg, &state, &stop).await });
    }
    Ok(Producers { state, stop, lanes })
}

async fn run_lane(
    lane: u64,
    client: Client,
    cfg: &ProduceCfg,
    state: &Produced,
    stop: &AtomicBool,
) {
    let mut mine = (0u64..).filter(|i| (i % cfg.keys) % cfg.lanes == lane);
    while !stop.load(Ordering::SeqCst) {
        let chunk: Vec<u64> = mine.by_ref().take(cfg.batch as usize).collect();
        let mut attempt = 0u32;
        loop {
            let mut b = Builder::default();
            for &i in &chunk {
                let key = format!("key-{}", i % cfg.keys);
                let v = oracle::value(i, attempt);
                b.push(&NewRecord {
                    key: Some(&key),
                    value: v.as_bytes(),
                    timestamp_ms: i as i64,
                    headers: &[],
                });
            }
            let sent = tokio::time::timeout(
                Duration::from_secs(10),
                api::produce(&client, &cfg.stream, &b.finish()),
            )
            .await;
            if let Ok(Ok(_)) = sent {
                state
                    .acked
                    .lock()
                    .unwrap()
                    .extend(chunk.iter().map(|&i| (i, attempt)));
                state
                    .acked_count
                    .fetch_add(chunk.len() as u64, Ordering::SeqCst);
                state.gaps.lock().unwrap().handle_event(Instant::now());
                break;
            }
            state.retries.fetch_add(1, Ordering::SeqCst);
            if stop.load(Ordering::SeqCst) {
                // Given up unacknowledged: allowed to be there or not.
                return;
            }
            attempt += 1;
            // Back off before retrying a failed request (not synchronisation).
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        tokio::time::sleep(cfg.pace).await;
    }
}

impl Producers {
    pub fn acked_count(&self) -> u64 {
        self.state.acked_count.load(Ordering::SeqCst)
    }

    /// Asks every lane to stop after its current request, then waits.
    pub async fn stop(mut self) -> Arc<Produced> {
        self.stop.store(true, Ordering::SeqCst);
        while self.lanes.join_next().await.is_some() {}
        self.state
    }
}

/// Shared state of the consumer group's members.
#[derive(Default)]
pub struct Consumed {
    pub deliveries: Mutex<Deliveries>,
    /// Times a member's run ended in an error and it joined again.
    pub rejoins: AtomicU64,
    pub rebalances: AtomicU64,
}

/// Running group members.
pub struct Consumers {
    pub state: Arc<Consumed>,
    stop: watch::Sender<bool>,
    members: tokio::task::JoinSet<()>,
}

pub fn start_consumers(
    seeds: Vec<SocketAddr>,
    ca: &Path,
    stream: &str,
    group: &str,
    members: u32,
) -> Result<Consumers> {
    let state = Arc::new(Consumed::default());
    let (stop, stop_rx) = watch::channel(false);
    let mut set = tokio::task::JoinSet::new();
    for m in 0..members {
        let cluster = Cluster::new(seeds.clone(), ca)?;
        let mut cfg = GroupConfig::new(stream, group, &format!("member-{m}"));
        cfg.session = Duration::from_secs(3);
        cfg.max_records = 2_000;
        let (state, stop_rx) = (state.clone(), stop_rx.clone());
        set.spawn(async move { run_member(cluster, cfg, state, stop_rx).await });
    }
    Ok(Consumers {
        state,
        stop,
        members: set,
    })
}

async fn run_member(
    cluster: Cluster,
    cfg: GroupConfig,
    state: Arc<Consumed>,
    stop: watch::Receiver<bool>,
) {
    while !*stop.borrow() {
        let mut member = GroupConsumer::new(&cluster, cfg.clone());
        let handle = |shard: u32, records: Vec<strata_client::api::ConsumedRecord>| {
            let n = records.len();
            let mut d = state.deliveries.lock().unwrap();
            for r in records {
                let e = d
                    .entry((shard, r.offset))
                    .or_insert_with(|| (r.data.to_vec(), 0));
                if e.0 != r.data {
                    // Two different records handed out at one position: keep
                    // the later (the core's final log decides which is right,
                    // and the other shows as an uncommitted read then).
                    e.0 = r.data.to_vec();
                }
                e.1 += 1;
            }
            async move { Ok::<usize, std::convert::Infallible>(n) }
        };
        match member.run(handle, stop.clone()).await {
            Ok(stats) => {
                state
                    .rebalances
                    .fetch_add(stats.rebalances, Ordering::SeqCst);
            }
            Err(_) => {
                state.rejoins.fetch_add(1, Ordering::SeqCst);
                // Back off before joining again (not synchronisation).
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
        }
    }
}

impl Consumers {
    /// Distinct positions handed out so far.
    pub fn positions(&self) -> usize {
        self.state.deliveries.lock().unwrap().len()
    }

    pub async fn stop(mut self) -> Arc<Consumed> {
        let _ = self.stop.send(true);
        while self.members.join_next().await.is_some() {}
        self.state
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_longest_gap_between_events_is_kept() {
        let t0 = Instant::now();
        let mut g = Gaps::default();
        for ms in [0, 100, 250, 1_250, 1_300] {
            g.handle_event(t0 + Duration::from_millis(ms));
        }
        assert_eq!(g.longest, Duration::from_millis(1_000));
        assert_eq!(g.longest_end, Some(t0 + Duration::from_millis(1_250)));
        g.close(t0 + Duration::from_millis(2_800));
        assert_eq!(g.longest, Duration::from_millis(1_500));
    }
}
