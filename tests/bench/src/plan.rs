//! What one `all` or `smoke` run does: the systems, sizes, rates and
//! limits. Its own module because the runner ([`crate::run`]) executes it and
//! the report ([`crate::report`]) describes it, and the runner also uses the
//! report's number formatting: kept here, neither imports the other's types.

use crate::load::Load;
use crate::stats::System;
use std::path::PathBuf;
use std::time::Duration;

/// What to run.
#[derive(Debug, Clone)]
pub struct Plan {
    pub systems: Vec<System>,
    /// Record value sizes, bytes.
    pub sizes: Vec<usize>,
    /// Repetitions of every case.
    pub runs: u32,
    pub warmup: Duration,
    pub measure: Duration,
    /// Fixed rates for latency, records/s (plus the unpaced `max`).
    pub rates: Vec<u64>,
    /// Unacknowledged records at most, for every system.
    pub window: usize,
    /// Strata batches in flight.
    pub lanes: usize,
    pub shards: u32,
    pub seed: u64,
    /// Longest wait for a throughput run's records to be committed.
    pub drain_max: Duration,
    /// Longest wait after a latency window for the consumer to see every
    /// acked record; past it the percentiles are lower bounds (noted).
    pub consume_wait_max: Duration,
    /// `None`: NATS rows are skipped (smoke without nats-server).
    pub nats_bin: Option<PathBuf>,
    /// Run latency at `max` even when the window alone queues for seconds
    /// (see [`MAX_LATENCY_QUEUE_S`](crate::run::MAX_LATENCY_QUEUE_S)).
    pub always_max_latency: bool,
}

impl Plan {
    pub fn loads(&self) -> Vec<Load> {
        let mut l: Vec<Load> = self.rates.iter().map(|&r| Load::Rate(r)).collect();
        l.push(Load::Max);
        l
    }
}
