//! Strata under test: `strata_tests::Pipeline` (real `strata-core` and
//! `strata-edge` on free loopback ports, dev PKI, temporary data dirs, killed
//! on drop), a producer that sends batches to the edge over one QUIC
//! connection with `lanes` batches in flight, and a consumer that long-polls
//! every shard of the core.
//!
//! RF=3 runs on `strata_tests::cluster::TestCluster`: three core nodes in
//! three zones on loopback with mutual TLS between them, and one edge that
//! forwards to the shard leaders. Admin, reads and the committed count go to
//! each shard's leader through `strata_client::cluster::Cluster`. A core size
//! the harness cannot start answers [`NotAvailable`], which the runner
//! reports as a "not available yet" row.

use crate::load::{instant_of, now_ns, read_stamp, write_stamp, LatencyRecorder, Load, Ticker};
use crate::procfs;
use crate::target::{ProducerEnd, ProducerSpec, Progress, Target};
use anyhow::{anyhow, Context, Result};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use strata_client::cluster::Cluster;
use strata_client::{api, Client, ClientError};
use strata_schema::batch::{Builder, NewRecord};
use strata_schema::fb::ErrorCode;
use strata_tests::cluster::TestCluster;
use strata_tests::Pipeline;
use tokio::sync::{watch, Semaphore};
use tokio::task::{JoinHandle, JoinSet};

/// A configuration the harness cannot run yet; the runner reports it as a
/// "not available yet" row instead of failing.
#[derive(Debug)]
pub struct NotAvailable(pub String);

impl std::fmt::Display for NotAvailable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "not available yet: {}", self.0)
    }
}

impl std::error::Error for NotAvailable {}

/// The processes: a single-node pipeline or a three-zone cluster.
enum Deployment {
    Single(Pipeline),
    Cluster(TestCluster),
}

/// A producer -> edge -> core pipeline.
pub struct StrataTarget {
    deployment: Deployment,
    /// Routes admin and reads to shard leaders (one seed for a single node).
    core: Arc<Cluster>,
    edge_addr: SocketAddr,
    ca: PathBuf,
    shards: u32,
    replication: u32,
    pids: Vec<(&'static str, u32)>,
}

impl StrataTarget {
    /// Starts an edge and a core of `core_nodes` nodes (1, or 3 in three
    /// zones); streams get `shards` shards replicated on every core node.
    pub async fn start(core_nodes: u32, shards: u32) -> Result<Self> {
        let (deployment, seeds, edge_addr, ca, mut pids) = match core_nodes {
            1 => {
                let p = Pipeline::start("").await?;
                let dir = p.dir.path().to_path_buf();
                let pids = vec![("core", pid_of(&dir, "core.toml")?)];
                let (seeds, edge, ca) = (vec![p.core_addr], p.edge_addr, p.pki.ca.clone());
                (Deployment::Single(p), seeds, edge, ca, pids)
            }
            3 => return Self::on_cluster(TestCluster::start(3, false).await?, shards),
            n => {
                return Err(NotAvailable(format!(
                    "a {n}-node core (the harness starts 1 or 3 nodes)"
                ))
                .into())
            }
        };
        let dir = match &deployment {
            Deployment::Single(p) => p.dir.path().to_path_buf(),
            Deployment::Cluster(c) => c.dir.path().to_path_buf(),
        };
        pids.insert(0, ("edge", pid_of(&dir, "edge.toml")?));
        Ok(Self {
            deployment,
            core: Arc::new(Cluster::new(seeds, &ca)?),
            edge_addr,
            ca,
            shards,
            replication: core_nodes,
            pids,
        })
    }
}

/// The process running with config file `cfg` of the test directory `dir`.
pub fn pid_of(dir: &Path, cfg: &str) -> Result<u32> {
    let needle = dir.join(cfg).display().to_string();
    procfs::find_pid(&needle).with_context(|| format!("no process runs with {needle}"))
}

impl StrataTarget {
    /// The target on a running three-zone cluster `c` (it may already hold
    /// other streams); streams get `shards` shards on every node.
    pub fn on_cluster(c: TestCluster, shards: u32) -> Result<Self> {
        let dir = c.dir.path();
        let mut pids = vec![("edge", pid_of(dir, "edge.toml")?)];
        for id in 1..=c.nodes.len() {
            pids.push(("core", pid_of(dir, &format!("core-{id}.toml"))?));
        }
        Ok(Self {
            core: Arc::new(Cluster::new(c.seeds(), &c.pki.ca)?),
            edge_addr: c.edge_addr,
            ca: c.pki.ca.clone(),
            shards,
            replication: c.nodes.len() as u32,
            pids,
            deployment: Deployment::Cluster(c),
        })
    }

    /// The cluster under test, if this target runs one.
    pub fn cluster(&mut self) -> Option<&mut TestCluster> {
        match &mut self.deployment {
            Deployment::Cluster(c) => Some(c),
            Deployment::Single(_) => None,
        }
    }
}

impl Target for StrataTarget {
    fn processes(&self) -> Vec<(&'static str, u32)> {
        self.pids.clone()
    }

    async fn create(&mut self, name: &str) -> Result<()> {
        match &self.deployment {
            Deployment::Single(_) => {
                let (shards, rf) = (self.shards, self.replication);
                self.core
                    .any(|c| async move { api::create_stream(&c, name, shards, rf).await })
                    .await
                    .with_context(|| format!("creating stream {name}"))?;
            }
            // Also waits until every shard has a leader.
            Deployment::Cluster(c) => c.create_stream(name, self.shards, self.replication).await?,
        }
        Ok(())
    }

    fn spawn_producer(
        &self,
        name: &str,
        spec: ProducerSpec,
        progress: Arc<Progress>,
    ) -> JoinHandle<Result<ProducerEnd>> {
        let edge = Client::new(self.edge_addr, &self.ca).map(Arc::new);
        let stream: Arc<str> = name.into();
        tokio::spawn(async move {
            let edge = edge?;
            let r = produce(edge.clone(), stream, spec, progress).await;
            edge.close().await;
            r
        })
    }

    fn spawn_consumer(
        &self,
        name: &str,
        window_ns: (u64, u64),
        consumed: Arc<AtomicU64>,
        done: watch::Receiver<bool>,
    ) -> JoinHandle<Result<LatencyRecorder>> {
        // Reads go to each shard's leader: the freshest committed data.
        let core = self.core.clone();
        let stream: Arc<str> = name.into();
        tokio::spawn(async move {
            let info = core.describe(&stream).await?;
            let mut shards = JoinSet::new();
            for sh in info.shards {
                let (core, stream, consumed, done) =
                    (core.clone(), stream.clone(), consumed.clone(), done.clone());
                shards.spawn(async move {
                    let mut rec = LatencyRecorder::new(window_ns);
                    let mut offset = sh.first_offset;
                    // Stop when told, or when the run was abandoned (sender dropped).
                    while !*done.borrow() && done.has_changed().is_ok() {
                        let wait = Duration::from_millis(100);
                        let f = core
                            .to_leader(&stream, sh.id, |c| {
                                let stream = stream.clone();
                                async move {
                                    api::fetch(&c, &stream, sh.id, offset, 10_000, wait).await
                                }
                            })
                            .await?;
                        let now = now_ns();
                        for r in &f.records {
                            if let Some(stamp) = read_stamp(&r.data) {
                                rec.handle_record(stamp, now);
                            }
                        }
                        consumed.fetch_add(f.records.len() as u64, Ordering::Relaxed);
                        offset = f.next_offset;
                    }
                    Ok::<_, anyhow::Error>(rec)
                });
            }
            let mut all = LatencyRecorder::new(window_ns);
            while let Some(r) = shards.join_next().await {
                let rec = r.context("consumer task panicked")??;
                all.hist.add(&rec.hist)?;
                all.seen += rec.seen;
            }
            Ok(all)
        })
    }

    async fn committed(&self, name: &str) -> Result<Option<u64>> {
        // Each shard's leader knows its committed (applied) end.
        let mut total = 0;
        for shard in 0..self.shards {
            let info = self
                .core
                .to_leader(name, shard, |c| async move {
                    api::describe_stream(&c, name).await
                })
                .await?;
            total += info
                .shards
                .iter()
                .find(|s| s.id == shard)
                .map_or(0, |s| s.next_offset);
        }
        Ok(Some(total))
    }

    async fn finish_run(&mut self, _name: &str, _end: ProducerEnd) -> Result<()> {
        // Streams cannot be deleted yet; each run writes a new one. The
        // producer always waits for its in-flight batches, so nothing lingers.
        Ok(())
    }
}

/// Sends batches of keyless records until `spec.until`, then waits for the
/// batches in flight. At most `lanes` batches (`window` records) are
/// unacknowledged; a fixed rate sends each 1 ms tick as one batch.
async fn produce(
    edge: Arc<Client>,
    stream: Arc<str>,
    spec: ProducerSpec,
    progress: Arc<Progress>,
) -> Result<ProducerEnd> {
    let lanes = spec.lanes.max(1);
    let unknown_until = Instant::now() + Duration::from_secs(10);
    let batch_max = (spec.window / lanes).max(1) as u64;
    let lanes_free = Arc::new(Semaphore::new(lanes));
    let mut in_flight = JoinSet::new();
    let mut ticker = match spec.load {
        Load::Rate(r) => Some(Ticker::new(r, now_ns())),
        Load::Max => None,
    };
    let mut value = spec.template.to_vec();
    let mut b = Builder::with_capacity(batch_max as usize * (value.len() + 32) + 1024);
    while Instant::now() < spec.until {
        let (scheduled, mut n) = match &mut ticker {
            Some(t) => {
                let (due, n) = t.next_tick();
                tokio::time::sleep_until(instant_of(due).into()).await;
                (Some(due), n)
            }
            None => (None, batch_max),
        };
        while n > 0 && Instant::now() < spec.until {
            let permit = lanes_free.clone().acquire_owned().await?;
            let stamp = scheduled.unwrap_or_else(now_ns);
            let count = n.min(batch_max);
            n -= count;
            write_stamp(&mut value, stamp);
            let timestamp_ms = chrono::Utc::now().timestamp_millis();
            for _ in 0..count {
                b.push(&NewRecord {
                    key: None,
                    value: &value,
                    timestamp_ms,
                    headers: &[],
                });
            }
            let batch = b.finish();
            let (edge, stream, progress) = (edge.clone(), stream.clone(), progress.clone());
            in_flight.spawn(async move {
                let _lane = permit;
                loop {
                    match api::produce(&edge, &stream, &batch).await {
                        Ok(_) => break,
                        Err(ClientError::Remote(e))
                            if e.is_retryable()
                                || (e.code == ErrorCode::UnknownStream
                                    && Instant::now() < unknown_until) =>
                        {
                            // BUFFER_FULL or UNAVAILABLE: the edge asks us to
                            // back off. UNKNOWN_STREAM: in a cluster the edge
                            // may ask a node that has not applied the new
                            // stream yet; give metadata a few seconds.
                            progress.retries.fetch_add(1, Ordering::Relaxed);
                            tokio::time::sleep(Duration::from_millis(5)).await;
                        }
                        Err(e) => return Err(anyhow!(e).context("producing a batch")),
                    }
                }
                progress.handle_ack(count, stamp);
                Ok(())
            });
            while let Some(r) = in_flight.try_join_next() {
                r.context("producer lane panicked")??;
            }
        }
    }
    while let Some(r) = in_flight.join_next().await {
        r.context("producer lane panicked")??;
    }
    Ok(ProducerEnd::default())
}
