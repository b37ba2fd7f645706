//! `strata-bench tier`: tiering to object storage on one core node with the
//! local filesystem store (the default `file://<data_dir>/archive`), measured
//! on synthetic sensor readings (JSON of about 120 B, one partition key per
//! device). Each of `--runs` runs starts a fresh core and edge and measures
//! three things on one dataset:
//!
//! 1. **Tiering throughput.** `records` readings are produced through the
//!    edge and committed while no segment can seal: `segment_age_max_ms` is
//!    `--seal-after-secs` (counted from when the core applied a range's first
//!    entry, i.e. from about when the first record was produced) and
//!    `segment_bytes_max` stays at its 128 MiB default, above what a shard
//!    receives. When the first records reach that age every shard's range
//!    seals at once and the core's tiering task converts it to Parquet and
//!    writes it to the store, with no ingestion or reads running. Time: from
//!    the first object's start to the last object's end, from the core's
//!    `tiered a segment … ms=…` log lines, checked against polling `describe`
//!    until the backlog is 0. CPU: the core's utime+stime from `/proc` over
//!    that polling window (from just before the seal time). The `describe`
//!    polls are timed, while tiering and before it, to show stalls.
//! 2. **Compression.** Payload bytes (keys + values, as the core counts them)
//!    and raw JSON bytes ÷ the Parquet bytes `describe` reports.
//! 3. **Replay.** A consumer reads every shard from offset 0 with
//!    `api::fetch` (all shards in parallel over one connection), first while
//!    the tiered entries are still in the core's local log, then, after the
//!    core is restarted with `local_retention_ms = 1` and has purged them
//!    (`purged.json` in every shard directory), from the Parquet objects. Both
//!    replays check every offset and a checksum of every value against what
//!    was produced; the second checks the core's
//!    `strata_core_records_out_tier_total` counter to prove the records came
//!    from the store. The shard logs' size before and after the purge shows
//!    whether it freed disk.
//!
//! Nothing here asserts on speed. Waits poll a condition with a deadline;
//! until the configured seal time `describe` is polled too, as a latency
//! baseline for the same polling while the core tiers.

use crate::procfs;
use crate::report::{si, sig3};
use anyhow::{bail, ensure, Context, Result};
use clap::Args;
use hdrhistogram::Histogram;
use rand::{Rng, SeedableRng};
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use strata_client::{api, Client, ClientError};
use strata_schema::batch::{Builder, NewRecord};
use strata_schema::fb::ErrorCode;
use strata_tests::Pipeline;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

const STREAM: &str = "sensors";
/// Local retention while tiering and the local replay run: nothing is purged.
const KEEP_LOCAL_MS: u64 = 7 * 24 * 3600 * 1000;
/// Records per produced batch and batches in flight: the same 4096
/// unacknowledged records as the other benchmarks.
const BATCH_RECORDS: u64 = 512;
const LANES: usize = 8;
/// How often `describe` is polled while tiering runs.
const POLL: Duration = Duration::from_millis(20);
/// The CPU window opens this long before the configured seal time.
const METER_LEAD: Duration = Duration::from_millis(250);
/// Longest wait, once every shard has purged, for its log files to shrink.
const FREED_MAX: Duration = Duration::from_secs(5);

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

/// One measured value.
#[derive(Debug, Clone, Copy)]
pub struct Row {
    /// Repetition, from 1.
    pub run: u32,
    pub phase: &'static str,
    pub metric: &'static str,
    pub value: f64,
    pub unit: &'static str,
}

/// Everything measured: rows per run, the objects the core logged (with
/// their run), and notes on anything unexpected.
#[derive(Debug, Default)]
pub struct TierReport {
    /// The run being measured, from 1.
    pub run: u32,
    pub rows: Vec<Row>,
    pub objects: Vec<(u32, TieredLine)>,
    pub notes: Vec<String>,
}

impl TierReport {
    fn put(&mut self, phase: &'static str, metric: &'static str, value: f64, unit: &'static str) {
        self.rows.push(Row {
            run: self.run,
            phase,
            metric,
            value,
            unit,
        });
    }

    /// This run's value.
    fn this_run(&self, phase: &str, metric: &str) -> Option<f64> {
        self.rows
            .iter()
            .rev()
            .find(|r| r.run == self.run && r.phase == phase && r.metric == metric)
            .map(|r| r.value)
    }

    fn note(&mut self, n: String) {
        self.notes.push(format!("run {}: {n}", self.run));
    }

    /// Median, min and max over the runs.
    pub fn spread(&self, phase: &str, metric: &str) -> Option<crate::stats::Spread> {
        let v: Vec<f64> = self
            .rows
            .iter()
            .filter(|r| r.phase == phase && r.metric == metric)
            .map(|r| r.value)
            .collect();
        crate::stats::spread(&v)
    }
}

// ---- the synthetic sensor readings -----------------------------------------

/// One simulated sensor: every measurement a slow random walk. Shared by
/// the tiering and query benchmarks' generators.
pub struct Device {
    pub id: String,
    pub seq: u64,
    pub temp: f64,
    pub humidity: f64,
    pub battery: f64,
    pub rssi: i32,
}

impl Device {
    /// Device `i`, its starting values drawn from `rng`.
    pub fn new(rng: &mut rand::rngs::StdRng, i: u32) -> Self {
        Self {
            id: format!("dev-{i:04}"),
            seq: rng.random_range(0..100_000),
            temp: rng.random_range(15.0..28.0),
            humidity: rng.random_range(25.0..70.0),
            battery: rng.random_range(3.3..4.2),
            rssi: rng.random_range(-95..-40),
        }
    }

    /// Takes the next reading (one step of every walk); returns its status.
    pub fn step(&mut self, r: &mut rand::rngs::StdRng) -> &'static str {
        self.seq += 1;
        self.temp = (self.temp + r.random_range(-0.08..0.08)).clamp(-20.0, 50.0);
        self.humidity = (self.humidity + r.random_range(-0.3..0.3)).clamp(5.0, 100.0);
        self.battery = (self.battery - r.random_range(0.0..0.0004)).max(2.9);
        self.rssi = (self.rssi + r.random_range(-2..=2)).clamp(-110, -30);
        if self.battery < 3.3 {
            "low_battery"
        } else if r.random_bool(0.004) {
            "degraded"
        } else {
            "ok"
        }
    }
}

/// Readings of `n` devices, each a slow random walk, in random device order:
/// `{"device":"dev-0042","seq":1234,"ts":1795440000123,"temp":21.37,
/// "humidity":48.2,"battery":3.91,"rssi":-67,"status":"ok"}`.
pub struct Sensors {
    rng: rand::rngs::StdRng,
    devices: Vec<Device>,
}

impl Sensors {
    pub fn new(seed: u64, n: u32) -> Self {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let devices = (0..n).map(|i| Device::new(&mut rng, i)).collect();
        Self { rng, devices }
    }

    /// Writes the next reading, stamped `ts_ms`, into `out`; returns its device.
    pub fn next(&mut self, ts_ms: i64, out: &mut Vec<u8>) -> usize {
        let i = self.rng.random_range(0..self.devices.len());
        let d = &mut self.devices[i];
        let status = d.step(&mut self.rng);
        out.clear();
        let _ = write!(
            out,
            r#"{{"device":"{}","seq":{},"ts":{ts_ms},"temp":{:.2},"humidity":{:.1},"battery":{:.2},"rssi":{},"status":"{status}"}}"#,
            d.id, d.seq, d.temp, d.humidity, d.battery, d.rssi
        );
        i
    }

    pub fn key(&self, device: usize) -> &str {
        &self.devices[device].id
    }
}

/// FNV-1a, summed over records: an order-independent checksum of values.
fn fnv1a(b: &[u8]) -> u64 {
    b.iter().fold(0xcbf2_9ce4_8422_2325, |h, &x| {
        (h ^ u64::from(x)).wrapping_mul(0x0100_0000_01b3)
    })
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

// ---- producing ----------------------------------------------------------------

#[derive(Debug, Default)]
struct Produced {
    records: u64,
    json_bytes: u64,
    key_bytes: u64,
    checksum: u64,
    first_ts_ms: i64,
    last_ts_ms: i64,
    secs: f64,
    retries: u64,
}

/// Sends every reading through the edge, `LANES` batches of
/// `BATCH_RECORDS` in flight, retrying what the edge asks to retry.
async fn produce(edge: Arc<Client>, plan: &TierPlan, seed: u64) -> Result<Produced> {
    let started = Instant::now();
    let unknown_until = started + Duration::from_secs(10);
    let mut gen = Sensors::new(seed, plan.devices);
    let lanes = Arc::new(Semaphore::new(LANES));
    let retries = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let mut in_flight = JoinSet::new();
    let mut out = Produced {
        first_ts_ms: now_ms(),
        ..Default::default()
    };
    let mut value = Vec::with_capacity(256);
    let mut b = Builder::with_capacity(BATCH_RECORDS as usize * 200 + 1024);
    while out.records < plan.records {
        let permit = lanes.clone().acquire_owned().await?;
        let n = BATCH_RECORDS.min(plan.records - out.records);
        let ts = now_ms();
        out.last_ts_ms = ts;
        for _ in 0..n {
            let dev = gen.next(ts, &mut value);
            let key = gen.key(dev);
            b.push(&NewRecord {
                key: Some(key),
                value: &value,
                timestamp_ms: ts,
                headers: &[],
            });
            out.json_bytes += value.len() as u64;
            out.key_bytes += key.len() as u64;
            out.checksum = out.checksum.wrapping_add(fnv1a(&value));
        }
        out.records += n;
        let batch = b.finish();
        let (edge, retries) = (edge.clone(), retries.clone());
        in_flight.spawn(async move {
            let _lane = permit;
            loop {
                match api::produce(&edge, STREAM, &batch).await {
                    Ok(_) => return Ok(()),
                    Err(ClientError::Remote(e))
                        if e.is_retryable()
                            || (e.code == ErrorCode::UnknownStream
                                && Instant::now() < unknown_until) =>
                    {
                        retries.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                    Err(e) => return Err(anyhow::anyhow!(e).context("producing a batch")),
                }
            }
        });
        while let Some(r) = in_flight.try_join_next() {
            r.context("producer lane panicked")??;
        }
    }
    while let Some(r) = in_flight.join_next().await {
        r.context("producer lane panicked")??;
    }
    out.secs = started.elapsed().as_secs_f64();
    out.retries = retries.load(std::sync::atomic::Ordering::Relaxed);
    Ok(out)
}

// ---- reading back --------------------------------------------------------------

#[derive(Debug)]
struct Replay {
    records: u64,
    value_bytes: u64,
    checksum: u64,
    fetches: u64,
    secs: f64,
    /// Latency of each fetch call, microseconds.
    fetch_us: Histogram<u64>,
}

/// Reads every shard `(id, end)` from offset 0 to `end`, shards in parallel
/// over one connection, checking that offsets follow each other.
async fn replay(core: &Arc<Client>, shards: &[(u32, u64)], max: u32) -> Result<Replay> {
    let started = Instant::now();
    let mut set = JoinSet::new();
    for &(shard, end) in shards {
        let core = core.clone();
        set.spawn(async move {
            let mut r = Replay {
                records: 0,
                value_bytes: 0,
                checksum: 0,
                fetches: 0,
                secs: 0.0,
                fetch_us: Histogram::new_with_bounds(1, 600_000_000, 3)?,
            };
            let mut offset = 0;
            while offset < end {
                let t = Instant::now();
                let f = api::fetch(&core, STREAM, shard, offset, max, Duration::ZERO)
                    .await
                    .with_context(|| format!("fetching shard {shard} at offset {offset}"))?;
                r.fetch_us
                    .saturating_record(t.elapsed().as_micros().max(1) as u64);
                r.fetches += 1;
                if f.records.is_empty() {
                    bail!("shard {shard}: fetch at offset {offset} returned no records (shard ends at {end})");
                }
                for rec in &f.records {
                    if rec.offset != offset {
                        bail!(
                            "shard {shard}: expected offset {offset}, got {}",
                            rec.offset
                        );
                    }
                    r.value_bytes += rec.data.len() as u64;
                    r.checksum = r.checksum.wrapping_add(fnv1a(&rec.data));
                    offset += 1;
                }
                r.records += f.records.len() as u64;
            }
            Ok::<_, anyhow::Error>(r)
        });
    }
    let mut all = Replay {
        records: 0,
        value_bytes: 0,
        checksum: 0,
        fetches: 0,
        secs: 0.0,
        fetch_us: Histogram::new_with_bounds(1, 600_000_000, 3)?,
    };
    while let Some(r) = set.join_next().await {
        let r = r.context("replay task panicked")??;
        all.records += r.records;
        all.value_bytes += r.value_bytes;
        all.checksum = all.checksum.wrapping_add(r.checksum);
        all.fetches += r.fetches;
        all.fetch_us.add(&r.fetch_us)?;
    }
    all.secs = started.elapsed().as_secs_f64();
    Ok(all)
}

// ---- the core's view: log lines, metrics, files --------------------------------

/// One `tiered a segment` line of the core's log.
#[derive(Debug, Clone, PartialEq)]
pub struct TieredLine {
    /// When the line was written (the object is uploaded and committed), ms since the epoch.
    pub at_ms: i64,
    pub key: String,
    pub records: u64,
    pub payload_bytes: u64,
    pub object_bytes: u64,
    pub ms: u64,
}

/// Removes ANSI colour sequences (the daemons' log is coloured).
pub fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // CSI: ESC [ parameters final-byte (a letter).
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Parses a `tiered a segment` line (ANSI already stripped).
pub fn parse_tiered_line(line: &str) -> Option<TieredLine> {
    let (_, fields) = line.split_once("tiered a segment")?;
    let at = line.split_whitespace().next()?;
    let at_ms = chrono::DateTime::parse_from_rfc3339(at)
        .ok()?
        .timestamp_millis();
    let field = |name: &str| {
        fields
            .split_whitespace()
            .find_map(|t| t.strip_prefix(name)?.strip_prefix('='))
    };
    let num = |name: &str| field(name)?.parse::<u64>().ok();
    Some(TieredLine {
        at_ms,
        key: field("key")?.to_string(),
        records: num("records")?,
        payload_bytes: num("payload_bytes")?,
        object_bytes: num("object_bytes")?,
        ms: num("ms")?,
    })
}

fn read_log(path: &Path) -> String {
    strip_ansi(&std::fs::read_to_string(path).unwrap_or_default())
}

/// Sum of the Prometheus samples named `name` (any labels).
pub fn prom_sum(text: &str, name: &str) -> Option<f64> {
    let mut found = None;
    for l in text.lines() {
        let Some(rest) = l.strip_prefix(name) else {
            continue;
        };
        if !(rest.starts_with(' ') || rest.starts_with('{')) {
            continue;
        }
        let v: f64 = rest.rsplit(' ').next()?.trim().parse().ok()?;
        *found.get_or_insert(0.0) += v;
    }
    found
}

async fn scrape(port: u16) -> Result<String> {
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .context("connecting to the core's metrics endpoint")?;
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        .await?;
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut buf))
        .await
        .context("reading /metrics timed out")??;
    Ok(String::from_utf8_lossy(&buf).into_owned())
}

fn free_tcp_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// Bytes of the files under `dir` whose name ends with `suffix`.
fn dir_bytes(dir: &Path, suffix: &str) -> u64 {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return 0;
    };
    rd.flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => dir_bytes(&e.path(), suffix),
            Ok(_) if e.file_name().to_string_lossy().ends_with(suffix) => {
                e.metadata().map_or(0, |m| m.len())
            }
            _ => 0,
        })
        .sum()
}

// ---- the measurement -----------------------------------------------------------

struct Run<'a> {
    plan: &'a TierPlan,
    p: Pipeline,
    core: Arc<Client>,
    metrics_port: u16,
}

impl Run<'_> {
    fn core_pid(&self) -> Result<u32> {
        let needle = self.p.dir.path().join("core.toml").display().to_string();
        procfs::find_pid(&needle).with_context(|| format!("no process runs with {needle}"))
    }

    fn shard_dir(&self, shard: u32) -> PathBuf {
        self.p
            .dir
            .path()
            .join(format!("core/shards/{STREAM}/{shard:05}"))
    }

    async fn describe(&self) -> Result<api::StreamInfo> {
        api::describe_stream(&self.core, STREAM)
            .await
            .context("describing the stream")
    }

    /// Polls `describe` every [`POLL`] until `done` holds; also returns
    /// how long each `describe` took, microseconds.
    async fn poll_until(
        &self,
        what: &str,
        deadline: Instant,
        done: impl Fn(&api::StreamInfo) -> bool,
    ) -> Result<(api::StreamInfo, Instant, Vec<u64>)> {
        let mut took = Vec::new();
        loop {
            let t = Instant::now();
            let d = self.describe().await?;
            took.push(t.elapsed().as_micros() as u64);
            if done(&d) {
                return Ok((d, Instant::now(), took));
            }
            if Instant::now() > deadline {
                bail!("timed out waiting for {what}: {:?}", shard_view(&d));
            }
            tokio::time::sleep(POLL).await;
        }
    }

    fn no_purge_yet(&self) -> bool {
        (0..self.plan.shards).all(|s| !self.shard_dir(s).join("purged.json").exists())
    }
}

/// (id, next_offset, tiered_offset) per shard, for error messages.
fn shard_view(d: &api::StreamInfo) -> Vec<(u32, u64, u64)> {
    d.shards
        .iter()
        .map(|s| (s.id, s.next_offset, s.tiered_offset))
        .collect()
}

fn mb(bytes: f64) -> f64 {
    bytes / 1e6
}

/// Runs the three measurements `plan.runs` times, appending to `rep` as it
/// goes (so a late failure keeps the earlier figures). A failed run is noted
/// and the others still run; the first error is returned at the end. Each
/// run's core log is copied to `dir/tier-core-<run>.log`.
pub async fn measure(plan: &TierPlan, dir: &Path, rep: &mut TierReport) -> Result<()> {
    let mut outcome = Ok(());
    for run in 1..=plan.runs {
        rep.run = run;
        if plan.runs > 1 {
            eprintln!("   run {run}/{}", plan.runs);
        }
        if let Err(e) = measure_once(plan, dir, rep).await {
            eprintln!("   run {run} failed: {e:#}");
            rep.note(format!("failed: {e:#}"));
            if outcome.is_ok() {
                outcome = Err(e.context(format!("tiering run {run}")));
            }
        }
    }
    outcome
}

async fn measure_once(plan: &TierPlan, dir: &Path, rep: &mut TierReport) -> Result<()> {
    let metrics_port = free_tcp_port()?;
    let core_extra = format!(
        "metrics_addr = \"127.0.0.1:{metrics_port}\"\nsegment_age_max_ms = {}\nlocal_retention_ms = {KEEP_LOCAL_MS}\n",
        plan.seal_after.as_millis()
    );
    let p = Pipeline::start_with("", &core_extra)
        .await
        .context("starting strata-core and strata-edge")?;
    let core = Arc::new(p.client(p.core_addr));
    let mut run = Run {
        plan,
        p,
        core,
        metrics_port,
    };
    let r = phases(&mut run, rep).await;
    let log_path = run.p.core.log.clone();
    let _ = std::fs::copy(&log_path, dir.join(format!("tier-core-{}.log", rep.run)));
    let log = read_log(&log_path);
    let mut odd: Vec<String> = Vec::new();
    for l in log
        .lines()
        .filter(|l| l.contains(" WARN ") || l.contains(" ERROR "))
    {
        let l: String = l.chars().take(400).collect();
        if odd.len() < 10 && !odd.contains(&l) {
            odd.push(l);
        }
    }
    for l in odd {
        rep.note(format!("core log: {l}"));
    }
    r
}

async fn phases(run: &mut Run<'_>, rep: &mut TierReport) -> Result<()> {
    let plan = run.plan;
    api::create_stream(&run.core, STREAM, plan.shards, 1)
        .await
        .context("creating the stream")?;

    // -- ingest: produce and wait until the core has committed everything.
    eprintln!(
        "   producing {} sensor readings ({} devices, {} shards)...",
        plan.records, plan.devices, plan.shards
    );
    let edge = Arc::new(run.p.client(run.p.edge_addr));
    let started = Instant::now();
    let seed = plan.seed.wrapping_add(u64::from(rep.run) - 1);
    let prod = produce(edge.clone(), plan, seed).await?;
    edge.close().await;
    let (d, committed_at, _) = run
        .poll_until(
            "every record to be committed",
            Instant::now() + plan.phase_max,
            |d| d.shards.iter().map(|s| s.next_offset).sum::<u64>() >= prod.records,
        )
        .await?;
    let commit_secs = (committed_at - started).as_secs_f64();
    rep.put("ingest", "records", prod.records as f64, "records");
    rep.put("ingest", "json_bytes", prod.json_bytes as f64, "B");
    rep.put("ingest", "key_bytes", prod.key_bytes as f64, "B");
    rep.put(
        "ingest",
        "json_bytes_per_record",
        prod.json_bytes as f64 / prod.records as f64,
        "B",
    );
    rep.put("ingest", "produce_secs", prod.secs, "s");
    rep.put("ingest", "committed_secs", commit_secs, "s");
    rep.put(
        "ingest",
        "committed_records_per_s",
        prod.records as f64 / commit_secs,
        "records/s",
    );
    rep.put(
        "ingest",
        "producer_retries",
        prod.retries as f64,
        "requests",
    );
    eprintln!(
        "   committed {} records in {:.1} s ({}/s)",
        prod.records,
        commit_secs,
        si(prod.records as f64 / commit_secs)
    );
    let ingest_ms = now_ms() - prod.first_ts_ms;
    if d.shards.iter().any(|s| s.tiered_offset > 0) {
        rep.note(format!(
            "tiering started before every record was committed ({} ms after the first record, \
             seal age {} ms): it overlapped ingestion, so its time and CPU include ingestion; \
             rerun with a larger --seal-after-secs",
            ingest_ms,
            plan.seal_after.as_millis()
        ));
    }

    // -- tiering: wait for the seal time, then poll until the backlog is 0.
    // The core counts the age from when it applied the first entry, a few
    // ms after the first record was stamped here.
    let pid = run.core_pid()?;
    let seal_at_ms = prod.first_ts_ms + plan.seal_after.as_millis() as i64;
    let idle0 = (Instant::now(), procfs::read_proc(pid)?.cpu_s);
    let lead_until = seal_at_ms - METER_LEAD.as_millis() as i64;
    if lead_until > now_ms() {
        eprintln!(
            "   waiting {:.1} s for the records to reach the seal age...",
            (lead_until - now_ms()) as f64 / 1000.0
        );
    }
    // The seal time is fixed by the configuration; until then `describe`
    // is polled as during tiering, as a baseline for its latency.
    let mut idle_took = Vec::new();
    while now_ms() < lead_until {
        let t = Instant::now();
        run.describe().await?;
        idle_took.push(t.elapsed().as_micros() as u64);
        tokio::time::sleep(POLL.min(Duration::from_millis((lead_until - now_ms()).max(0) as u64)))
            .await;
    }
    let (t1, cpu1, busy1) = (
        Instant::now(),
        procfs::read_proc(pid)?.cpu_s,
        procfs::machine_busy_s()?,
    );
    let bench1 = procfs::read_proc(std::process::id())?.cpu_s;
    if (t1 - idle0.0).as_secs_f64() >= 1.0 {
        rep.put(
            "tiering",
            "core_idle_cores_before",
            (cpu1 - idle0.1) / (t1 - idle0.0).as_secs_f64(),
            "cores",
        );
    }
    let records = prod.records;
    let (d, t2, took) = run
        .poll_until("the tiering backlog to drain", t1 + plan.phase_max, |d| {
            d.shards.iter().map(|s| s.next_offset).sum::<u64>() == records
                && d.shards.iter().all(|s| s.tiered_offset == s.next_offset)
        })
        .await?;
    let done_ms = now_ms();
    let cpu2 = procfs::read_proc(pid)?.cpu_s;
    let busy2 = procfs::machine_busy_s()?;
    let bench2 = procfs::read_proc(std::process::id())?.cpu_s;
    let window = (t2 - t1).as_secs_f64();
    let core_cpu = cpu2 - cpu1;

    let log = read_log(&run.p.core.log);
    let objs: Vec<TieredLine> = log.lines().filter_map(parse_tiered_line).collect();
    ensure!(
        !objs.is_empty(),
        "the backlog drained but the core logged no `tiered a segment` line"
    );
    rep.objects
        .extend(objs.iter().map(|o| (rep.run, o.clone())));
    let first_start = objs
        .iter()
        .map(|o| o.at_ms - o.ms as i64)
        .min()
        .unwrap_or(seal_at_ms);
    let last_end = objs.iter().map(|o| o.at_ms).max().unwrap_or(done_ms);
    let log_secs = ((last_end - first_start) as f64 / 1000.0).max(1e-3);
    let payload: u64 = objs.iter().map(|o| o.payload_bytes).sum();
    let logged_records: u64 = objs.iter().map(|o| o.records).sum();
    let logged_object_bytes: u64 = objs.iter().map(|o| o.object_bytes).sum();
    let busy_ms: u64 = objs.iter().map(|o| o.ms).sum();
    let parquet: u64 = d.shards.iter().map(|s| s.tier_bytes).sum();
    let objects: u64 = d.shards.iter().map(|s| s.tier_objects).sum();
    rep.put("tiering", "objects", objects as f64, "objects");
    rep.put("tiering", "records", logged_records as f64, "records");
    rep.put("tiering", "payload_bytes", payload as f64, "B");
    rep.put("tiering", "secs", log_secs, "s");
    rep.put("tiering", "object_busy_secs", busy_ms as f64 / 1000.0, "s");
    rep.put(
        "tiering",
        "secs_polled_from_seal_time",
        (done_ms - seal_at_ms) as f64 / 1000.0,
        "s",
    );
    rep.put(
        "tiering",
        "start_after_seal_time_secs",
        (first_start - seal_at_ms) as f64 / 1000.0,
        "s",
    );
    rep.put(
        "tiering",
        "payload_mb_per_s",
        mb(payload as f64) / log_secs,
        "MB/s",
    );
    rep.put(
        "tiering",
        "records_per_s",
        logged_records as f64 / log_secs,
        "records/s",
    );
    rep.put("tiering", "core_cpu_secs", core_cpu, "s");
    for (mut took, p50, max) in [
        (idle_took, "describe_idle_p50_ms", "describe_idle_max_ms"),
        (took, "describe_p50_ms", "describe_max_ms"),
    ] {
        took.sort_unstable();
        if let Some(&m) = took.last() {
            rep.put("tiering", max, m as f64 / 1000.0, "ms");
            rep.put("tiering", p50, took[took.len() / 2] as f64 / 1000.0, "ms");
        }
    }
    rep.put("tiering", "cpu_window_secs", window, "s");
    rep.put("tiering", "core_cores", core_cpu / window, "cores");
    rep.put(
        "tiering",
        "other_cores",
        ((busy2 - busy1) - core_cpu - (bench2 - bench1)).max(0.0) / window,
        "cores",
    );
    if core_cpu > 0.0 {
        rep.put(
            "tiering",
            "payload_mb_per_core_s",
            mb(payload as f64) / core_cpu,
            "MB/core-s",
        );
        rep.put(
            "tiering",
            "records_per_core_s",
            logged_records as f64 / core_cpu,
            "records/core-s",
        );
    }
    let mut per_obj: Vec<f64> = objs
        .iter()
        .filter(|o| o.ms > 0)
        .map(|o| mb(o.payload_bytes as f64) / (o.ms as f64 / 1000.0))
        .collect();
    per_obj.sort_by(f64::total_cmp);
    if let Some(&m) = per_obj.get(per_obj.len() / 2) {
        rep.put("tiering", "object_payload_mb_per_s_median", m, "MB/s");
    }
    eprintln!(
        "   tiered {} records ({:.1} MB payload) into {} objects in {:.2} s: {:.1} MB/s, core CPU {:.2} s",
        logged_records,
        mb(payload as f64),
        objects,
        log_secs,
        mb(payload as f64) / log_secs,
        core_cpu
    );
    if logged_records != records {
        rep.note(format!(
            "the core logged {logged_records} tiered records, {records} were produced"
        ));
    }

    // -- compression.
    let archive = run.p.dir.path().join("core/archive");
    let files = dir_bytes(&archive.join(format!("stream={STREAM}")), ".parquet");
    rep.put("compression", "parquet_bytes", parquet as f64, "B");
    rep.put(
        "compression",
        "parquet_bytes_per_record",
        parquet as f64 / records as f64,
        "B",
    );
    rep.put(
        "compression",
        "payload_over_parquet",
        payload as f64 / parquet.max(1) as f64,
        "x",
    );
    rep.put(
        "compression",
        "json_over_parquet",
        prod.json_bytes as f64 / parquet.max(1) as f64,
        "x",
    );
    if logged_object_bytes != parquet || files != parquet {
        rep.note(format!(
            "Parquet bytes disagree: describe says {parquet}, the log {logged_object_bytes}, \
             the files under {} {files}",
            archive.display()
        ));
    }
    if payload != prod.json_bytes + prod.key_bytes {
        rep.note(format!(
            "the core counted {payload} payload bytes; the producer sent {} of JSON and {} of keys",
            prod.json_bytes, prod.key_bytes
        ));
    }
    match scrape(run.metrics_port).await {
        Ok(m) => {
            for (name, want) in [
                ("strata_core_tier_payload_bytes_total", payload),
                ("strata_core_tier_object_bytes_total", logged_object_bytes),
                ("strata_core_tier_records_total", logged_records),
            ] {
                let got = prom_sum(&m, name);
                if got != Some(want as f64) {
                    rep.note(format!(
                        "metric {name} is {got:?}; the log lines add up to {want}"
                    ));
                }
            }
        }
        Err(e) => rep
            .notes
            .push(format!("could not read the core's metrics: {e:#}")),
    }

    // -- replay from the local log (tiered, not purged).
    let ends: Vec<(u32, u64)> = d.shards.iter().map(|s| (s.id, s.next_offset)).collect();
    ensure!(
        run.no_purge_yet(),
        "a shard was purged before the local replay"
    );
    eprintln!("   replaying from the local log...");
    replay_phase(run, rep, "replay_local", &ends, &prod, pid).await?;
    ensure!(
        run.no_purge_yet(),
        "a shard was purged during the local replay: it is not a local-only figure"
    );

    // -- restart with local_retention_ms = 1; wait for every shard's purge.
    let shard_log_bytes = |run: &Run<'_>| {
        (0..plan.shards)
            .map(|s| dir_bytes(&run.shard_dir(s).join("log"), ".log"))
            .sum::<u64>()
    };
    let log_before = shard_log_bytes(run);
    rep.put("purge", "local_log_bytes_before", log_before as f64, "B");
    let cfg_path = run.p.dir.path().join("core.toml");
    let cfg = std::fs::read_to_string(&cfg_path)?;
    let keep = format!("local_retention_ms = {KEEP_LOCAL_MS}");
    ensure!(cfg.contains(&keep), "core.toml has no `{keep}` line");
    let stop_started = Instant::now();
    if !run.p.core.stop() {
        rep.note("the core did not exit cleanly (0) on SIGTERM before the restart".into());
    }
    std::fs::write(&cfg_path, cfg.replace(&keep, "local_retention_ms = 1"))?;
    eprintln!("   restarting the core with local_retention_ms = 1...");
    run.p.restart_core().await?;
    let restarted = Instant::now();
    rep.put(
        "purge",
        "restart_secs",
        (restarted - stop_started).as_secs_f64(),
        "s",
    );
    let deadline = restarted + plan.phase_max;
    loop {
        if (0..plan.shards).all(|s| run.shard_dir(s).join("purged.json").exists()) {
            break;
        }
        if Instant::now() > deadline {
            bail!(
                "no purged.json in every shard directory within {:?} of the restart",
                plan.phase_max
            );
        }
        tokio::time::sleep(POLL).await;
    }
    let purged_at = Instant::now();
    rep.put(
        "purge",
        "purged_secs_after_restart",
        (purged_at - restarted).as_secs_f64(),
        "s",
    );
    // purged.json is written before segment files are deleted: give the
    // deletion up to FREED_MAX to show on disk.
    let mut after = shard_log_bytes(run);
    while after >= log_before && purged_at.elapsed() < FREED_MAX {
        tokio::time::sleep(POLL).await;
        after = shard_log_bytes(run);
    }
    rep.put("purge", "local_log_bytes_after", after as f64, "B");
    if after >= log_before {
        rep.note(format!(
            "the local purge freed no disk within {FREED_MAX:?}: the shard logs hold {after} bytes, \
             as before it (a purge deletes whole segment files only)"
        ));
    }
    let d = run.describe().await?;
    let after: Vec<(u32, u64)> = d.shards.iter().map(|s| (s.id, s.next_offset)).collect();
    if after != ends || d.shards.iter().any(|s| s.tiered_offset != s.next_offset) {
        rep.note(format!(
            "after the restart describe shows (shard, next, tiered) {:?}; before it {:?}",
            shard_view(&d),
            ends
        ));
    }
    let pid = run.core_pid()?;
    let before = scrape(run.metrics_port)
        .await
        .ok()
        .and_then(|m| prom_sum(&m, "strata_core_records_out_tier_total"))
        .unwrap_or(0.0);

    // -- replay from the object store.
    eprintln!("   replaying from the object store...");
    replay_phase(run, rep, "replay_tier", &ends, &prod, pid).await?;
    match scrape(run.metrics_port).await {
        Ok(m) => {
            let from_tier =
                prom_sum(&m, "strata_core_records_out_tier_total").unwrap_or(0.0) - before;
            rep.put(
                "replay_tier",
                "records_served_from_tier",
                from_tier,
                "records",
            );
            if from_tier < records as f64 {
                rep.note(format!(
                    "only {from_tier} of {records} replayed records came from the object store \
                     (strata_core_records_out_tier_total): the rest were still local"
                ));
            }
        }
        Err(e) => rep
            .notes
            .push(format!("could not read the core's metrics: {e:#}")),
    }
    if let (Some(t), Some(l)) = (
        rep.this_run("replay_tier", "records_per_s"),
        rep.this_run("replay_local", "records_per_s"),
    ) {
        rep.put("replay_tier", "over_local", t / l, "x");
    }
    Ok(())
}

async fn replay_phase(
    run: &Run<'_>,
    rep: &mut TierReport,
    phase: &'static str,
    ends: &[(u32, u64)],
    prod: &Produced,
    pid: u32,
) -> Result<()> {
    let (cpu0, bench0) = (
        procfs::read_proc(pid)?.cpu_s,
        procfs::read_proc(std::process::id())?.cpu_s,
    );
    let r = tokio::time::timeout(
        run.plan.phase_max,
        replay(&run.core, ends, run.plan.fetch_records),
    )
    .await
    .with_context(|| format!("{phase} took longer than {:?}", run.plan.phase_max))??;
    let core_cpu = procfs::read_proc(pid)?.cpu_s - cpu0;
    let bench_cpu = procfs::read_proc(std::process::id())?.cpu_s - bench0;
    ensure!(
        r.records == prod.records && r.checksum == prod.checksum,
        "{phase}: read {} records (checksum {:x}); {} were produced (checksum {:x})",
        r.records,
        r.checksum,
        prod.records,
        prod.checksum
    );
    let secs = r.secs.max(1e-6);
    rep.put(phase, "records", r.records as f64, "records");
    rep.put(phase, "secs", secs, "s");
    rep.put(phase, "records_per_s", r.records as f64 / secs, "records/s");
    rep.put(
        phase,
        "value_mb_per_s",
        mb(r.value_bytes as f64) / secs,
        "MB/s",
    );
    rep.put(phase, "fetches", r.fetches as f64, "requests");
    rep.put(
        phase,
        "fetch_p50_ms",
        r.fetch_us.value_at_quantile(0.5) as f64 / 1000.0,
        "ms",
    );
    rep.put(
        phase,
        "fetch_p99_ms",
        r.fetch_us.value_at_quantile(0.99) as f64 / 1000.0,
        "ms",
    );
    rep.put(phase, "core_cores", core_cpu / secs, "cores");
    rep.put(phase, "bench_cores", bench_cpu / secs, "cores");
    eprintln!(
        "   {phase}: {} records in {:.2} s ({}/s, {:.1} MB/s of values)",
        r.records,
        secs,
        si(r.records as f64 / secs),
        mb(r.value_bytes as f64) / secs
    );
    Ok(())
}

// ---- output ----------------------------------------------------------------------

/// The Markdown section for the table.
pub fn render(rep: &TierReport, plan: &TierPlan) -> String {
    let f = |p: &str, m: &str, fmt: fn(f64) -> String| match rep.spread(p, m) {
        Some(s) if s.n > 1 => format!("{} [{}–{}]", fmt(s.median), fmt(s.min), fmt(s.max)),
        Some(s) => fmt(s.median),
        None => "—".into(),
    };
    let mut out = String::new();
    let _ = writeln!(
        out,
        "\n### Tiering to object storage (`strata-bench tier`)\n\n\
         {}. MB = 10^6 bytes. Payload = partition keys + values, as the core counts it. \
         Figures: median [min–max] over the runs.\n",
        plan.describe()
    );
    let _ = writeln!(out, "| figure | value |\n| --- | --- |");
    let mut row = |k: &str, v: String| {
        let _ = writeln!(out, "| {k} | {v} |");
    };
    row(
        "produced and committed",
        format!(
            "{} readings, {} MB of JSON ({} B each); committed in {} s ({}/s)",
            f("ingest", "records", si),
            f("ingest", "json_bytes", |b| sig3(mb(b))),
            f("ingest", "json_bytes_per_record", sig3),
            f("ingest", "committed_secs", sig3),
            f("ingest", "committed_records_per_s", si)
        ),
    );
    row(
        "tiering time (core log: first object's start to last object's end)",
        format!(
            "{} s for {} objects, {} MB payload (backlog 0 seen {} s after the seal time)",
            f("tiering", "secs", sig3),
            f("tiering", "objects", |x| format!("{x:.0}")),
            f("tiering", "payload_bytes", |b| sig3(mb(b))),
            f("tiering", "secs_polled_from_seal_time", sig3)
        ),
    );
    row(
        "**tiering throughput**",
        format!(
            "**{} MB/s** payload, **{} records/s** (median object {} MB/s)",
            f("tiering", "payload_mb_per_s", sig3),
            f("tiering", "records_per_s", si),
            f("tiering", "object_payload_mb_per_s_median", sig3)
        ),
    );
    row(
        "core CPU while tiering (utime+stime)",
        format!(
            "{} s over {} s = {} cores (other processes: {} cores)",
            f("tiering", "core_cpu_secs", sig3),
            f("tiering", "cpu_window_secs", sig3),
            f("tiering", "core_cores", sig3),
            f("tiering", "other_cores", sig3)
        ),
    );
    row(
        "`describe` latency, polled every 20 ms",
        format!(
            "while tiering: p50 {} ms, max {} ms; idle before: p50 {} ms, max {} ms",
            f("tiering", "describe_p50_ms", sig3),
            f("tiering", "describe_max_ms", sig3),
            f("tiering", "describe_idle_p50_ms", sig3),
            f("tiering", "describe_idle_max_ms", sig3)
        ),
    );
    row(
        "**per core-second**",
        format!(
            "**{} MB** payload, **{} records**",
            f("tiering", "payload_mb_per_core_s", sig3),
            f("tiering", "records_per_core_s", si)
        ),
    );
    row(
        "Parquet (zstd 3)",
        format!(
            "{} MB, {} B per record",
            f("compression", "parquet_bytes", |b| sig3(mb(b))),
            f("compression", "parquet_bytes_per_record", sig3)
        ),
    );
    row(
        "**compression**",
        format!(
            "payload ÷ Parquet **{}×**, JSON ÷ Parquet **{}×**",
            f("compression", "payload_over_parquet", sig3),
            f("compression", "json_over_parquet", sig3)
        ),
    );
    row(
        "local purge",
        format!(
            "core restarted with local_retention_ms = 1 in {} s; every shard purged {} s later; \
             shard log files {} MB before, {} MB after (up to 5 s later)",
            f("purge", "restart_secs", sig3),
            f("purge", "purged_secs_after_restart", sig3),
            f("purge", "local_log_bytes_before", |b| sig3(mb(b))),
            f("purge", "local_log_bytes_after", |b| sig3(mb(b)))
        ),
    );
    let _ = writeln!(
        out,
        "\nReplay: one consumer reads all {} shards from offset 0 in parallel (`api::fetch`, \
         at most {} records per fetch), checking every offset and value.\n",
        plan.shards, plan.fetch_records
    );
    let _ = writeln!(
        out,
        "| read from | records/s | MB/s (values) | time s | fetches | fetch p50 ms | fetch p99 ms | core cores | consumer cores |\n\
         | --- | --- | --- | --- | --- | --- | --- | --- | --- |"
    );
    for (label, p) in [
        ("local disk (Raft log)", "replay_local"),
        ("object store (Parquet; local log purged)", "replay_tier"),
    ] {
        let _ = writeln!(
            out,
            "| {label} | {} | {} | {} | {} | {} | {} | {} | {} |",
            f(p, "records_per_s", si),
            f(p, "value_mb_per_s", sig3),
            f(p, "secs", sig3),
            f(p, "fetches", |x| format!("{x:.0}")),
            f(p, "fetch_p50_ms", sig3),
            f(p, "fetch_p99_ms", sig3),
            f(p, "core_cores", sig3),
            f(p, "bench_cores", sig3)
        );
    }
    let _ = writeln!(
        out,
        "| **tier ÷ local** | **{}** | | | | | | | |",
        f("replay_tier", "over_local", |x| format!("{x:.2}×"))
    );
    if !rep.notes.is_empty() {
        let _ = writeln!(out, "\nTiering notes:\n");
        for n in &rep.notes {
            let _ = writeln!(out, "- {n}");
        }
    }
    out
}

/// tier.csv (`run,phase,metric,value,unit`), tier-summary.csv (median,
/// min and max over the runs) and tier-objects.csv (one row per object the
/// core logged).
pub fn write_csv(dir: &Path, rep: &TierReport) -> Result<()> {
    let mut s = String::from("run,phase,metric,value,unit\n");
    for r in &rep.rows {
        let _ = writeln!(
            s,
            "{},{},{},{},{}",
            r.run, r.phase, r.metric, r.value, r.unit
        );
    }
    std::fs::write(dir.join("tier.csv"), s)?;
    let mut s = String::from("phase,metric,median,min,max,runs,unit\n");
    let mut seen: Vec<(&str, &str)> = Vec::new();
    for r in &rep.rows {
        if seen.contains(&(r.phase, r.metric)) {
            continue;
        }
        seen.push((r.phase, r.metric));
        if let Some(sp) = rep.spread(r.phase, r.metric) {
            let _ = writeln!(
                s,
                "{},{},{},{},{},{},{}",
                r.phase, r.metric, sp.median, sp.min, sp.max, sp.n, r.unit
            );
        }
    }
    std::fs::write(dir.join("tier-summary.csv"), s)?;
    let mut s = String::from("run,key,records,payload_bytes,object_bytes,ms,payload_mb_per_s\n");
    for (run, o) in &rep.objects {
        let _ = writeln!(
            s,
            "{run},{},{},{},{},{},{}",
            o.key,
            o.records,
            o.payload_bytes,
            o.object_bytes,
            o.ms,
            mb(o.payload_bytes as f64) / (o.ms.max(1) as f64 / 1000.0)
        );
    }
    std::fs::write(dir.join("tier-objects.csv"), s)?;
    Ok(())
}

/// `strata-bench tier`: the measurement with its own results directory.
pub async fn command(o: TierOpts) -> Result<()> {
    let started = Instant::now();
    let started_utc = chrono::Utc::now();
    for b in ["strata-core", "strata-edge"] {
        strata_tests::bin(b)?;
    }
    let dir = crate::results_dir(o.out.clone())?;
    let plan = TierPlan::from_opts(&o);
    let m = procfs::machine();
    let tmp = std::env::temp_dir();
    let fsync = procfs::fsync_probe(&tmp, Duration::from_secs(1))?;
    let mut facts = crate::report::machine_facts(started_utc, "tier".into(), &m, 1.0, &tmp, &fsync);
    facts.push(("settings".into(), plan.describe()));
    eprintln!("results: {}", dir.display());
    let mut rep = TierReport::default();
    let outcome = measure(&plan, &dir, &mut rep).await;
    crate::report::closing_facts(&mut facts, started, &outcome);
    let mut table = String::from("### Machine and settings\n\n");
    for (k, v) in &facts {
        let _ = writeln!(table, "- {k}: {v}");
    }
    table.push_str(&render(&rep, &plan));
    println!("{table}");
    std::fs::write(dir.join("table.md"), &table)?;
    write_csv(&dir, &rep)?;
    crate::report::write_facts(&dir, &facts)?;
    eprintln!(
        "wrote {}/{{table.md,tier.csv,tier-summary.csv,tier-objects.csv,tier-core-*.log,machine.csv}}",
        dir.display()
    );
    outcome
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sensor_readings_look_real_and_are_seeded() {
        let mut a = Sensors::new(1, 1000);
        let mut b = Sensors::new(1, 1000);
        let (mut va, mut vb) = (Vec::new(), Vec::new());
        let mut total = 0;
        for _ in 0..1000 {
            let da = a.next(1_795_440_000_123, &mut va);
            assert_eq!(da, b.next(1_795_440_000_123, &mut vb));
            assert_eq!(va, vb);
            let s = std::str::from_utf8(&va).unwrap();
            assert!(s.starts_with(&format!(r#"{{"device":"{}","seq":"#, a.key(da))));
            assert!(s.contains(r#","ts":1795440000123,"temp":"#) && s.ends_with("\"}"));
            total += va.len();
        }
        let avg = total / 1000;
        assert!((100..=150).contains(&avg), "{avg} B per reading");
    }

    #[test]
    fn tiered_lines_parse_with_and_without_colour() {
        let plain = "2026-11-23T14:20:01.123456Z  INFO strata_core::tiering: tiered a segment \
                     key=archive/stream=sensors/date=2026-11-23/hour=14/shard-1-00000000000000000000.parquet \
                     records=250123 payload_bytes=30123456 object_bytes=3012345 ms=1234";
        let want = TieredLine {
            at_ms: 1_795_443_601_123,
            key: "archive/stream=sensors/date=2026-11-23/hour=14/shard-1-00000000000000000000.parquet".into(),
            records: 250_123,
            payload_bytes: 30_123_456,
            object_bytes: 3_012_345,
            ms: 1234,
        };
        assert_eq!(parse_tiered_line(plain), Some(want.clone()));
        let coloured = "\u{1b}[2m2026-11-23T14:20:01.123456Z\u{1b}[0m \u{1b}[32m INFO\u{1b}[0m \
                        \u{1b}[2mstrata_core::tiering\u{1b}[0m\u{1b}[2m:\u{1b}[0m tiered a segment \
                        \u{1b}[3mkey\u{1b}[0m\u{1b}[2m=\u{1b}[0marchive/stream=sensors/date=2026-11-23/hour=14/shard-1-00000000000000000000.parquet \
                        \u{1b}[3mrecords\u{1b}[0m\u{1b}[2m=\u{1b}[0m250123 \u{1b}[3mpayload_bytes\u{1b}[0m\u{1b}[2m=\u{1b}[0m30123456 \
                        \u{1b}[3mobject_bytes\u{1b}[0m\u{1b}[2m=\u{1b}[0m3012345 \u{1b}[3mms\u{1b}[0m\u{1b}[2m=\u{1b}[0m1234";
        assert_eq!(parse_tiered_line(&strip_ansi(coloured)), Some(want));
        assert_eq!(parse_tiered_line("2026-11-23T14:20:01Z INFO other"), None);
    }

    #[test]
    fn prometheus_samples_are_summed_over_labels() {
        let m = "# TYPE strata_core_records_out_tier_total counter\n\
                 strata_core_records_out_tier_total 1200\n\
                 strata_core_tier_records_total{stream=\"a\"} 5\n\
                 strata_core_tier_records_total{stream=\"b\"} 7\n\
                 strata_core_tier_records_total_x 100\n";
        assert_eq!(
            prom_sum(m, "strata_core_records_out_tier_total"),
            Some(1200.0)
        );
        assert_eq!(prom_sum(m, "strata_core_tier_records_total"), Some(12.0));
        assert_eq!(prom_sum(m, "strata_core_tier_objects_total"), None);
    }

    #[test]
    fn checksum_is_order_independent() {
        let vs: [&[u8]; 3] = [b"a", b"bc", b"def"];
        let fwd = vs.iter().fold(0u64, |s, v| s.wrapping_add(fnv1a(v)));
        let rev = vs.iter().rev().fold(0u64, |s, v| s.wrapping_add(fnv1a(v)));
        assert_eq!(fwd, rev);
        assert_ne!(fnv1a(b"ab"), fnv1a(b"ba"));
    }
}
