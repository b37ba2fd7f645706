//! What the runner needs from a system under test ([`Target`]), the
//! producer's settings and counters, and the [`Meter`] that turns `/proc`
//! readings of the system's processes into per-run resource metrics.

use crate::load::{LatencyRecorder, Load};
use crate::procfs::{self, ProcReading};
use anyhow::Result;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// How a producer sends.
#[derive(Clone)]
pub struct ProducerSpec {
    pub load: Load,
    /// Value template (see [`crate::load::template`]).
    pub template: Arc<Vec<u8>>,
    /// Most unacknowledged records at any time, the same for every system.
    pub window: usize,
    /// Strata: batches in flight (each `window / lanes` records when unpaced).
    pub lanes: usize,
    /// Stop issuing new records at this instant.
    pub until: Instant,
}

/// Live counters of one producer.
pub struct Progress {
    /// Records acknowledged by the system.
    pub acked: AtomicU64,
    /// Requests retried after a retryable refusal (e.g. `BUFFER_FULL`).
    pub retries: AtomicU64,
    /// Send-to-ack latency of the records stamped inside the window.
    pub ack_latency: Mutex<LatencyRecorder>,
}

impl Progress {
    pub fn new(window_ns: (u64, u64)) -> Self {
        Self {
            acked: AtomicU64::new(0),
            retries: AtomicU64::new(0),
            ack_latency: Mutex::new(LatencyRecorder::new(window_ns)),
        }
    }

    /// Counts `records` acked now that were stamped `stamp_ns`.
    pub fn handle_ack(&self, records: u64, stamp_ns: u64) {
        self.acked.fetch_add(records, Ordering::Relaxed);
        let now = crate::load::now_ns();
        self.ack_latency
            .lock()
            .expect("ack latency lock")
            .handle_records(stamp_ns, now, records);
    }
}

/// How a producer ended.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProducerEnd {
    /// Records sent but still unacknowledged when the producer gave up
    /// waiting; the system is restarted before its next run when non-zero.
    pub abandoned: u64,
}

/// A running system under test.
#[allow(async_fn_in_trait)] // used with static dispatch from one task only
pub trait Target {
    /// Process ids by role (e.g. `edge`, `core`, `nats`), for CPU and memory.
    fn processes(&self) -> Vec<(&'static str, u32)>;
    /// Creates an empty stream for one run.
    async fn create(&mut self, name: &str) -> Result<()>;
    fn spawn_producer(
        &self,
        name: &str,
        spec: ProducerSpec,
        progress: Arc<Progress>,
    ) -> JoinHandle<Result<ProducerEnd>>;
    /// Reads the stream from its start until `done`, recording the latency
    /// of each record and counting it in `consumed`.
    fn spawn_consumer(
        &self,
        name: &str,
        window_ns: (u64, u64),
        consumed: Arc<AtomicU64>,
        done: watch::Receiver<bool>,
    ) -> JoinHandle<Result<LatencyRecorder>>;
    /// Records committed at the far end when that differs from the ack
    /// (Strata: committed in the core); `None` when the ack is the end.
    async fn committed(&self, name: &str) -> Result<Option<u64>>;
    /// Cleans up after a run (deletes the stream, or restarts the system
    /// when `end.abandoned` records are still being processed).
    async fn finish_run(&mut self, name: &str, end: ProducerEnd) -> Result<()>;
}

/// Resource use of a system's processes (and this process, role `bench`)
/// over a window.
pub struct Meter {
    procs: Vec<(&'static str, u32)>,
    start: Vec<ProcReading>,
    busy0_s: f64,
    t0: Instant,
}

impl Meter {
    /// Resets every process's peak RSS and takes the first readings.
    pub fn start(mut procs: Vec<(&'static str, u32)>) -> Result<Self> {
        procs.push(("bench", std::process::id()));
        let mut start = Vec::with_capacity(procs.len());
        for &(_, pid) in &procs {
            // A kernel without clear_refs only makes the peak a lifetime peak.
            let _ = procfs::reset_peak(pid);
            start.push(procfs::read_proc(pid)?);
        }
        Ok(Self {
            procs,
            start,
            busy0_s: procfs::machine_busy_s()?,
            t0: Instant::now(),
        })
    }

    /// Metrics for the window so far, with CPU normalised by `records`
    /// handled in it: `cpu_cores_<role>` (cores used), `cpu_per_100k_<role>`
    /// (cores needed per 100k records/s), `hwm_mb_<role>` and `rss_mb_<role>`
    /// (largest process of the role), `machine_cores` and `other_cores`
    /// (busy cores not used by the measured processes: noise).
    pub fn stop(&self, records: u64) -> Result<Vec<(String, f64)>> {
        let secs = self.t0.elapsed().as_secs_f64().max(1e-9);
        let busy_s = procfs::machine_busy_s()? - self.busy0_s;
        let mut roles: Vec<&'static str> = Vec::new();
        for &(r, _) in &self.procs {
            if !roles.contains(&r) {
                roles.push(r);
            }
        }
        let mut out = Vec::new();
        let mut ours_s = 0.0;
        for role in roles {
            let (mut cpu_s, mut hwm, mut rss) = (0.0, 0u64, 0u64);
            for (i, &(r, pid)) in self.procs.iter().enumerate() {
                if r != role {
                    continue;
                }
                let now = procfs::read_proc(pid)?;
                cpu_s += now.cpu_s - self.start[i].cpu_s;
                hwm = hwm.max(now.hwm_kib);
                rss = rss.max(now.rss_kib);
            }
            ours_s += cpu_s;
            out.push((format!("cpu_cores_{role}"), cpu_s / secs));
            if records > 0 {
                out.push((
                    format!("cpu_per_100k_{role}"),
                    cpu_s / records as f64 * 100_000.0,
                ));
            }
            out.push((format!("hwm_mb_{role}"), hwm as f64 / 1024.0));
            out.push((format!("rss_mb_{role}"), rss as f64 / 1024.0));
        }
        out.push(("machine_cores".into(), busy_s / secs));
        out.push(("other_cores".into(), ((busy_s - ours_s) / secs).max(0.0)));
        Ok(out)
    }
}
