//! The SDK's producer: records in, batches out to an edge agent.
//!
//! [`Producer::send`] queues one record and returns an [`Ack`] that resolves
//! once the edge has the record's batch on disk. A background task groups
//! queued records into batches (up to `batch_records` / `batch_bytes`,
//! waiting at most `linger` for more), sends one batch at a time so records
//! keep their order, and retries a batch on retryable errors (edge restart,
//! timeout) with backoff until `retry_for` runs out. The queue is bounded:
//! when `queue_records` records wait, `send` waits too (backpressure).
//! [`SyncProducer`] wraps it for code without an async runtime.
//!
//! Delivery to the edge is at least once: if an acknowledgement is lost, the
//! retried batch is stored twice at the edge. Records from one producer
//! reach the edge, and then the core, in `send` order.

use crate::api;
use crate::transport::{Client, ClientError};
use bytes::Bytes;
use std::sync::Arc;
use std::time::Duration;
use strata_schema::batch::{Builder, NewRecord};
use tokio::sync::{mpsc, oneshot};

/// Settings of a [`Producer`].
#[derive(Debug, Clone)]
pub struct ProducerConfig {
    pub stream: String,
    /// Longest wait for more records before a batch goes out.
    pub linger: Duration,
    pub batch_records: usize,
    pub batch_bytes: usize,
    /// Records that may wait to be sent before `send` waits.
    pub queue_records: usize,
    /// How long one batch is retried before its records fail.
    pub retry_for: Duration,
}

impl ProducerConfig {
    pub fn new(stream: &str) -> Self {
        Self {
            stream: stream.into(),
            linger: Duration::from_millis(5),
            batch_records: 1000,
            batch_bytes: 1 << 20,
            queue_records: 10_000,
            retry_for: Duration::from_secs(120),
        }
    }
}

/// One record to produce.
#[derive(Debug, Clone, Default)]
pub struct Record {
    /// Partition key: records with the same key go to the same shard, in order.
    pub key: Option<String>,
    pub value: Bytes,
    /// Milliseconds since the epoch (0: the producer's clock at `send`).
    pub timestamp_ms: i64,
    pub headers: Vec<(String, Bytes)>,
}

impl Record {
    pub fn new(key: impl Into<String>, value: impl Into<Bytes>) -> Self {
        Self {
            key: Some(key.into()),
            value: value.into(),
            ..Default::default()
        }
    }
}

/// Why a record was not produced.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ProduceError {
    #[error("{0}")]
    Edge(Arc<ClientError>),
    #[error("record of {0} bytes is larger than batch_bytes")]
    TooLarge(usize),
    #[error("the producer is closed")]
    Closed,
}

/// Resolves once the record is durable at the edge (or failed).
pub struct Ack(oneshot::Receiver<Result<(), ProduceError>>);

impl std::future::Future for Ack {
    type Output = Result<(), ProduceError>;

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        std::pin::Pin::new(&mut self.0)
            .poll(cx)
            .map(|r| r.unwrap_or(Err(ProduceError::Closed)))
    }
}

enum Msg {
    Record(Record, oneshot::Sender<Result<(), ProduceError>>),
    Flush(oneshot::Sender<()>),
}

/// An async, batching producer (see the module docs).
pub struct Producer {
    tx: mpsc::Sender<Msg>,
    task: tokio::task::JoinHandle<()>,
    batch_bytes: usize,
}

impl Producer {
    /// A producer sending through `edge` (a client of an edge agent).
    pub fn new(edge: Client, cfg: ProducerConfig) -> Self {
        let (tx, rx) = mpsc::channel(cfg.queue_records.max(1));
        let batch_bytes = cfg.batch_bytes;
        let task = tokio::spawn(run(edge, cfg, rx));
        Self {
            tx,
            task,
            batch_bytes,
        }
    }

    /// Queues `record` (waiting while the queue is full); the returned
    /// [`Ack`] resolves when the edge has it on disk.
    pub async fn send(&self, mut record: Record) -> Result<Ack, ProduceError> {
        let size = record.key.as_ref().map_or(0, String::len)
            + record.value.len()
            + record
                .headers
                .iter()
                .map(|(k, v)| k.len() + v.len())
                .sum::<usize>();
        if size > self.batch_bytes {
            return Err(ProduceError::TooLarge(size));
        }
        if record.timestamp_ms == 0 {
            record.timestamp_ms = now_ms();
        }
        let (done, ack) = oneshot::channel();
        self.tx
            .send(Msg::Record(record, done))
            .await
            .map_err(|_| ProduceError::Closed)?;
        Ok(Ack(ack))
    }

    /// Sends `record` and waits until it is durable at the edge.
    pub async fn send_wait(&self, record: Record) -> Result<(), ProduceError> {
        self.send(record).await?.await
    }

    /// Waits until every record queued so far was sent (or failed).
    pub async fn flush(&self) -> Result<(), ProduceError> {
        let (done, flushed) = oneshot::channel();
        self.tx
            .send(Msg::Flush(done))
            .await
            .map_err(|_| ProduceError::Closed)?;
        flushed.await.map_err(|_| ProduceError::Closed)
    }

    /// Sends what is queued, then stops.
    pub async fn close(self) {
        drop(self.tx);
        let _ = self.task.await;
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

type Waiter = oneshot::Sender<Result<(), ProduceError>>;

async fn run(edge: Client, cfg: ProducerConfig, mut rx: mpsc::Receiver<Msg>) {
    let mut flushes: Vec<oneshot::Sender<()>> = Vec::new();
    loop {
        // Wait for the first record of a batch, then linger for more.
        let first = match rx.recv().await {
            Some(Msg::Record(r, w)) => (r, w),
            Some(Msg::Flush(f)) => {
                let _ = f.send(());
                continue;
            }
            None => return,
        };
        let mut batch = vec![first];
        let mut bytes = batch[0].0.value.len();
        let deadline = tokio::time::Instant::now() + cfg.linger;
        let mut closed = false;
        while batch.len() < cfg.batch_records && bytes < cfg.batch_bytes {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(Msg::Record(r, w))) => {
                    bytes += r.value.len();
                    batch.push((r, w));
                }
                Ok(Some(Msg::Flush(f))) => {
                    flushes.push(f);
                    break;
                }
                Ok(None) => {
                    closed = true;
                    break;
                }
                Err(_) => break,
            }
        }
        let result = send_batch(&edge, &cfg, &batch).await;
        for (_, w) in batch {
            let _ = w.send(result.clone());
        }
        for f in flushes.drain(..) {
            let _ = f.send(());
        }
        if closed {
            return;
        }
    }
}

async fn send_batch(
    edge: &Client,
    cfg: &ProducerConfig,
    batch: &[(Record, Waiter)],
) -> Result<(), ProduceError> {
    let mut b = Builder::default();
    for (r, _) in batch {
        let headers: Vec<(&str, &[u8])> = r
            .headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_ref()))
            .collect();
        b.push(&NewRecord {
            key: r.key.as_deref(),
            value: &r.value,
            timestamp_ms: r.timestamp_ms,
            headers: &headers,
        });
    }
    let encoded = b.finish();
    let give_up = tokio::time::Instant::now() + cfg.retry_for;
    let mut backoff = Duration::from_millis(50);
    loop {
        match api::produce(edge, &cfg.stream, &encoded).await {
            Ok(_) => return Ok(()),
            Err(e) if e.is_retryable() && tokio::time::Instant::now() + backoff < give_up => {
                tracing::debug!(error = %e, retry_in_ms = backoff.as_millis() as u64, "produce failed; retrying");
                // Back off before retrying a failed request (not synchronisation).
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(2));
            }
            Err(e) => return Err(ProduceError::Edge(Arc::new(e))),
        }
    }
}

/// A [`Producer`] for code without an async runtime: it runs its own.
pub struct SyncProducer {
    rt: tokio::runtime::Runtime,
    inner: Option<Producer>,
}

impl SyncProducer {
    /// Connects to the edge at `edge` trusting `ca`.
    pub fn connect(
        edge: std::net::SocketAddr,
        ca: &std::path::Path,
        cfg: ProducerConfig,
    ) -> Result<Self, ClientError> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .map_err(|e| ClientError::Tls(format!("starting the producer's runtime: {e}")))?;
        let inner = rt.block_on(async { Client::new(edge, ca).map(|c| Producer::new(c, cfg)) })?;
        Ok(Self {
            rt,
            inner: Some(inner),
        })
    }

    fn producer(&self) -> Result<&Producer, ProduceError> {
        self.inner.as_ref().ok_or(ProduceError::Closed)
    }

    /// Queues a record (blocking while the queue is full).
    pub fn send(&self, record: Record) -> Result<Ack, ProduceError> {
        let p = self.producer()?;
        self.rt.block_on(p.send(record))
    }

    /// Sends a record and blocks until it is durable at the edge.
    pub fn send_wait(&self, record: Record) -> Result<(), ProduceError> {
        let p = self.producer()?;
        self.rt.block_on(p.send_wait(record))
    }

    /// Blocks until every queued record was sent (or failed).
    pub fn flush(&self) -> Result<(), ProduceError> {
        let p = self.producer()?;
        self.rt.block_on(p.flush())
    }

    /// Waits for an [`Ack`] from [`SyncProducer::send`].
    pub fn wait(&self, ack: Ack) -> Result<(), ProduceError> {
        self.rt.block_on(ack)
    }
}

impl Drop for SyncProducer {
    fn drop(&mut self) {
        if let Some(p) = self.inner.take() {
            self.rt.block_on(p.close());
        }
    }
}
