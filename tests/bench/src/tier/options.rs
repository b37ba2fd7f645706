//! The `tier` command's flags ([`TierOpts`]) and what one measurement does
//! ([`TierPlan`]), including the tiny version `smoke` runs.

use clap::Args;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Args, Debug)]
pub struct TierOpts {
    /// Results directory [default: target/bench/<UTC timestamp>].
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Sensor readings to produce.
    #[arg(long, default_value_t = 1_000_000)]
    pub records: u64,
    /// Shards of the stream.
    #[arg(long, default_value_t = 4)]
    pub shards: u32,
    /// Devices (distinct partition keys).
    #[arg(long, default_value_t = 1000)]
    pub devices: u32,
    /// The core's segment_age_max_ms, in seconds: must be longer than
    /// producing and committing every record takes, so that tiering starts
    /// only afterwards.
    #[arg(long, default_value_t = 30.0)]
    pub seal_after_secs: f64,
    /// max_records of each consumer fetch.
    #[arg(long, default_value_t = 10_000)]
    pub fetch_records: u32,
    /// Seed of the sensor readings.
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
    /// Repetitions, each on a fresh core and edge with a new dataset.
    #[arg(long, default_value_t = 3)]
    pub runs: u32,
    /// Do not run `cargo build --release` for strata-core and strata-edge first.
    #[arg(long)]
    pub no_build: bool,
}

/// What one tiering measurement does.
#[derive(Debug, Clone)]
pub struct TierPlan {
    pub records: u64,
    pub shards: u32,
    pub devices: u32,
    pub seal_after: Duration,
    pub fetch_records: u32,
    pub seed: u64,
    pub runs: u32,
    /// Longest wait for each phase (commit, tiering, purge, one replay).
    pub phase_max: Duration,
}

impl TierPlan {
    pub fn from_opts(o: &TierOpts) -> Self {
        Self {
            records: o.records.max(1),
            shards: o.shards.max(1),
            devices: o.devices.max(1),
            seal_after: Duration::from_secs_f64(o.seal_after_secs.max(0.001)),
            fetch_records: o.fetch_records.max(1),
            seed: o.seed,
            runs: o.runs.max(1),
            phase_max: Duration::from_secs(180),
        }
    }

    /// The tiny version `smoke` runs (figures mean nothing).
    pub fn smoke(seed: u64) -> Self {
        Self {
            records: 20_000,
            shards: 4,
            devices: 100,
            seal_after: Duration::from_secs(3),
            fetch_records: 10_000,
            seed,
            runs: 1,
            phase_max: Duration::from_secs(60),
        }
    }

    pub fn describe(&self) -> String {
        format!(
            "{} run(s), each on a fresh core and edge: {} sensor readings (JSON), {} devices \
             as partition keys, {} shards, one core node (RF=1), object store = local \
             filesystem (file://<data_dir>/archive); segment_age_max_ms = {}, \
             segment_bytes_max = 128 MiB (default); consumer fetches of at most {} records; \
             seed {} (+ run number)",
            self.runs,
            self.records,
            self.devices,
            self.shards,
            self.seal_after.as_millis(),
            self.fetch_records,
            self.seed
        )
    }
}
