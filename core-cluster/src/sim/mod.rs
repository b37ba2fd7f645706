//! A seed-driven simulation of a core shard group (issue 16, item 6).
//!
//! One process, virtual time (tokio's paused clock on a current-thread
//! runtime), three nodes each running the real shard group — openraft, the
//! segment-log `LogStore`, the shard state machine with its producer dedup —
//! over its own simulated disk (`SimFs`: a crash keeps only what was
//! fsynced), connected by an in-memory network ([`net`]) that drops, delays,
//! duplicates, reorders and partitions by seed ([`model`]). Producers
//! modelled on the edge forwarder and a reader drive it ([`producer`]);
//! nodes crash and restart on a schedule drawn from the same seed. After
//! every run, one oracle ([`oracle`]): every record acknowledged to a
//! producer is committed exactly once, in per-producer (per-key) order, on
//! every replica alike, and no read returned what the final log does not
//! hold at that offset.
//!
//! The test functions split the seeds between them, so that the test
//! harness runs them in parallel. `STRATA_SIM_SEEDS=N` runs N seeds
//! (default [`DEFAULT_SEEDS`]), from `STRATA_SIM_SEED_BASE` (default 0);
//! `STRATA_SIM_SEED=S` runs seed S alone (and prints its figures);
//! `STRATA_SIM_CHAOS_MS=T` makes every run's chaos phase T virtual ms long
//! (default: 2 to 5 s, drawn). A failing seed panics with the command that
//! replays it: a run is a function of its seed (each node start's election
//! timeout is drawn from it, the log store's blocking I/O runs inline, every
//! `select!` of ours is biased), checked by [`tests::a_seed_replays_its_run`].
//! How to run it, what it covers and what not: docs/simulation.md.

pub mod cluster;
pub mod model;
pub mod net;
pub mod oracle;
pub mod producer;
pub mod rng;
pub mod run;

use run::{run_seed, RunStats};
use std::time::Instant;

/// Seeds of a default run (CI), over all test functions.
pub const DEFAULT_SEEDS: u64 = 1_000;
/// Test functions the seeds are split between.
const PARTS: u64 = 4;

fn env_u64(name: &str) -> Option<u64> {
    let v = std::env::var(name).ok()?;
    Some(
        v.trim()
            .parse()
            .unwrap_or_else(|e| panic!("{name}={v:?} is not a number: {e}")),
    )
}

/// The seeds test function `part` runs.
fn seeds(part: u64) -> Vec<u64> {
    if let Some(seed) = env_u64("STRATA_SIM_SEED") {
        return if part == 0 { vec![seed] } else { vec![] };
    }
    let total = env_u64("STRATA_SIM_SEEDS").unwrap_or(DEFAULT_SEEDS);
    let base = env_u64("STRATA_SIM_SEED_BASE").unwrap_or(0);
    (base..base + total).filter(|s| s % PARTS == part).collect()
}

/// The one-line failure of a seed.
fn failure(seed: u64, what: &str) -> String {
    let what = what.replace('\n', " ");
    let chaos = env_u64("STRATA_SIM_CHAOS_MS")
        .map(|t| format!("STRATA_SIM_CHAOS_MS={t} "))
        .unwrap_or_default();
    format!(
        "simulation failed for seed {seed}: {what}; replay: {chaos}STRATA_SIM_SEED={seed} cargo test -p strata-core --lib sim::"
    )
}

/// Figures summed over the runs of one test function.
#[derive(Debug, Default)]
struct Totals {
    runs: u64,
    stats: RunStats,
    log_entries_max: u64,
    log_bytes_max: u64,
}

impl Totals {
    fn add(&mut self, s: &RunStats) {
        let t = &mut self.stats;
        self.runs += 1;
        t.net.messages += s.net.messages;
        t.net.dropped += s.net.dropped;
        t.net.cut += s.net.cut;
        t.net.duplicated += s.net.duplicated;
        t.net.slow += s.net.slow;
        t.net.partitions += s.net.partitions;
        t.crashes.crashes += s.crashes.crashes;
        t.crashes.torn += s.crashes.torn;
        t.virtual_ms += s.virtual_ms;
        t.attempts += s.attempts;
        t.failed_attempts += s.failed_attempts;
        t.failed_rounds += s.failed_rounds;
        t.edge_restarts += s.edge_restarts;
        t.acked += s.acked;
        t.reads += s.reads;
        t.records += s.records;
        t.term += s.term;
        self.log_entries_max = self.log_entries_max.max(s.log_entries);
        self.log_bytes_max = self.log_bytes_max.max(s.log_bytes);
    }
}

fn run_part(part: u64) {
    let started = Instant::now();
    let mut totals = Totals::default();
    for seed in seeds(part) {
        let res = std::panic::catch_unwind(|| run_seed(seed));
        match res {
            Ok(Ok(stats)) => {
                if std::env::var("STRATA_SIM_SEED").is_ok() {
                    eprintln!("sim seed {seed}: {stats:?}");
                }
                totals.add(&stats)
            }
            Ok(Err(what)) => panic!("{}", failure(seed, &what)),
            Err(p) => {
                let what = p
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_else(|| "a panic".into());
                panic!("{}", failure(seed, &format!("panicked: {what}")));
            }
        }
    }
    let t = &totals.stats;
    eprintln!(
        "sim part {part}: {} seeds in {:.1} s wall, {:.0} s virtual; messages {}, dropped {} (by partitions {}), duplicated {}, slow {}, partitions {}, crashes {} (torn {}); attempts {} (failed {}), failed rounds {}, edge restarts {}; acked {}, records {}, reads {}; terms {}; largest log {} entries, {} bytes",
        totals.runs,
        started.elapsed().as_secs_f64(),
        t.virtual_ms as f64 / 1e3,
        t.net.messages,
        t.net.dropped,
        t.net.cut,
        t.net.duplicated,
        t.net.slow,
        t.net.partitions,
        t.crashes.crashes,
        t.crashes.torn,
        t.attempts,
        t.failed_attempts,
        t.failed_rounds,
        t.edge_restarts,
        t.acked,
        t.records,
        t.reads,
        t.term,
        totals.log_entries_max,
        totals.log_bytes_max,
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeds_0() {
        run_part(0);
    }

    #[test]
    fn seeds_1() {
        run_part(1);
    }

    #[test]
    fn seeds_2() {
        run_part(2);
    }

    #[test]
    fn seeds_3() {
        run_part(3);
    }

    /// Everything a run does is drawn from its seed: run twice, it does
    /// the same (the same messages, faults, retries, terms and log).
    #[test]
    fn a_seed_replays_its_run() {
        let n = env_u64("STRATA_SIM_REPLAY_SEEDS").unwrap_or(4);
        for seed in 0..n {
            let seed = seed * 7919 + 3;
            let (a, b) = (run_seed(seed), run_seed(seed));
            assert_eq!(a, b, "seed {seed} ran differently the second time");
        }
    }

    #[test]
    fn a_failure_is_one_line_with_its_replay_command() {
        let f = failure(1234, "producer 1 seq 7 is in the log twice");
        assert!(!f.contains('\n'));
        assert!(f.starts_with("simulation failed for seed 1234: producer 1 seq 7"));
        assert!(f.ends_with("replay: STRATA_SIM_SEED=1234 cargo test -p strata-core --lib sim::"));
    }
}
