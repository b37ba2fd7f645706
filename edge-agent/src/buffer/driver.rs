//! [`BufferHandle`]: the async face of one [`StreamBuffer`], with group commit.
//!
//! One writer task per stream receives appends from a bounded queue. It takes
//! every append pending at that moment (up to `pending_appends_max`), writes
//! them all, runs ONE fsync, and only then answers each producer: while an
//! fsync runs, the next group queues up, so the group size adapts to the disk.
//! The file I/O runs on tokio's blocking pool, not on a dedicated thread, so
//! idle streams cost no thread.
//!
//! The buffer sits behind a `std::sync::Mutex`. The writer does not hold it
//! during the group's fsync ([`StreamBuffer::begin_sync`] /
//! [`SyncTicket::run`] / [`StreamBuffer::finish_sync`]), so the forwarder's
//! reads and acks are not stuck behind the disk. Every mutation publishes a
//! [`BufferStats`] snapshot on a `watch` channel: [`BufferHandle::stats`] and
//! [`BufferHandle::wait_durable_beyond`] read it without touching the lock.
//!
//! Memory is bounded twice: at most `pending_appends_max` queued appends and
//! at most `pending_bytes_max` queued batch bytes; beyond that `append` waits
//! (backpressure to the producer's connection).
//!
//! After an I/O failure the writer has the buffer reopen itself from disk
//! before the next group (see `reopen.rs`); until then every append is
//! answered with a retryable error.
//!
//! Metrics (label `stream`): gauge `strata_edge_buffer_bytes`, counters
//! `strata_edge_fsyncs_total`, `strata_edge_dropped_records_total` and
//! `strata_edge_buffer_reopens_total`.

use super::{BufferError, BufferStats, BufferedBatch, StreamBuffer, SyncTicket};
use bytes::Bytes;
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::{mpsc, oneshot, watch, OwnedSemaphorePermit, Semaphore};

/// Queue bounds of a [`BufferHandle`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DriverOptions {
    /// Most appends waiting for the writer; also the largest group.
    pub pending_appends_max: usize,
    /// Most batch bytes waiting for the writer. A bigger single batch waits
    /// until it is alone in the queue.
    pub pending_bytes_max: u32,
}

impl Default for DriverOptions {
    fn default() -> Self {
        Self {
            pending_appends_max: 1024,
            pending_bytes_max: 64 * 1024 * 1024,
        }
    }
}

/// A cheap, cloneable handle to one stream's buffer and its writer task.
#[derive(Clone)]
pub struct BufferHandle {
    shared: Arc<Shared>,
    appends: mpsc::Sender<AppendRequest>,
    pending_bytes: Arc<Semaphore>,
    pending_bytes_max: u32,
    stats: watch::Receiver<BufferStats>,
}

struct AppendRequest {
    records: u32,
    max_timestamp_ms: i64,
    batch: Bytes,
    reply: oneshot::Sender<Result<u64, BufferError>>,
    /// Released when the request is answered.
    _pending_bytes: OwnedSemaphorePermit,
}

struct Shared {
    stream: String,
    buffer: Mutex<StreamBuffer>,
    stats: watch::Sender<BufferStats>,
    buffer_bytes: metrics::Gauge,
    fsyncs: metrics::Counter,
    dropped_records: metrics::Counter,
    reopens: metrics::Counter,
}

impl BufferHandle {
    /// Starts the group-commit writer for `buffer`. Must be called inside a
    /// tokio runtime. The writer stops when the last handle is dropped.
    pub fn spawn(buffer: StreamBuffer, stream: String) -> Self {
        Self::spawn_with(buffer, stream, DriverOptions::default())
    }

    /// [`spawn`](Self::spawn) with explicit queue bounds.
    pub fn spawn_with(buffer: StreamBuffer, stream: String, opts: DriverOptions) -> Self {
        assert!(
            opts.pending_appends_max > 0,
            "pending_appends_max must be > 0"
        );
        let pending_bytes_max = opts.pending_bytes_max.max(1);
        let (stats_tx, stats_rx) = watch::channel(buffer.stats());
        let shared = Arc::new(Shared {
            buffer_bytes: metrics::gauge!("strata_edge_buffer_bytes", "stream" => stream.clone()),
            fsyncs: metrics::counter!("strata_edge_fsyncs_total", "stream" => stream.clone()),
            dropped_records: metrics::counter!(
                "strata_edge_dropped_records_total",
                "stream" => stream.clone()
            ),
            reopens: metrics::counter!("strata_edge_buffer_reopens_total", "stream" => stream.clone()),
            stream,
            buffer: Mutex::new(buffer),
            stats: stats_tx,
        });
        shared
            .buffer_bytes
            .set(shared.stats.borrow().buffered_bytes as f64);
        let (appends, rx) = mpsc::channel(opts.pending_appends_max);
        tokio::spawn(run_writer(
            Arc::clone(&shared),
            rx,
            opts.pending_appends_max,
        ));
        Self {
            shared,
            appends,
            pending_bytes: Arc::new(Semaphore::new(pending_bytes_max as usize)),
            pending_bytes_max,
            stats: stats_rx,
        }
    }

    /// Appends a batch; resolves with its first seq once it is fsynced.
    /// Waits while the queue is full.
    pub async fn append(
        &self,
        records: u32,
        max_timestamp_ms: i64,
        batch: Bytes,
    ) -> Result<u64, BufferError> {
        let permits = u32::try_from(batch.len())
            .unwrap_or(u32::MAX)
            .min(self.pending_bytes_max);
        let permit = Arc::clone(&self.pending_bytes)
            .acquire_many_owned(permits)
            .await
            .map_err(|_| BufferError::Closed)?;
        let (reply, answer) = oneshot::channel();
        let request = AppendRequest {
            records,
            max_timestamp_ms,
            batch,
            reply,
            _pending_bytes: permit,
        };
        self.appends
            .send(request)
            .await
            .map_err(|_| BufferError::Closed)?;
        answer.await.map_err(|_| BufferError::Closed)?
    }

    /// See [`StreamBuffer::read_durable`].
    pub async fn read_durable(
        &self,
        from_seq: u64,
        max_bytes: usize,
    ) -> Result<Vec<BufferedBatch>, BufferError> {
        let shared = Arc::clone(&self.shared);
        tokio::task::spawn_blocking(move || shared.lock()?.read_durable(from_seq, max_bytes))
            .await
            .map_err(|_| BufferError::Closed)?
    }

    /// See [`StreamBuffer::ack`].
    pub async fn ack(&self, seq: u64) -> Result<(), BufferError> {
        self.ack_with(move |b| b.ack(seq)).await
    }

    /// See [`StreamBuffer::ack_lazily`] (what the forwarder uses).
    pub async fn ack_lazily(&self, seq: u64) -> Result<(), BufferError> {
        self.ack_with(move |b| b.ack_lazily(seq, std::time::Instant::now()))
            .await
    }

    /// See [`StreamBuffer::flush_ack`].
    pub async fn flush_ack(&self) -> Result<(), BufferError> {
        self.ack_with(StreamBuffer::flush_ack).await
    }

    async fn ack_with(
        &self,
        ack: impl FnOnce(&mut StreamBuffer) -> Result<(), BufferError> + Send + 'static,
    ) -> Result<(), BufferError> {
        let shared = Arc::clone(&self.shared);
        tokio::task::spawn_blocking(move || {
            let mut buffer = shared.lock()?;
            let result = ack(&mut buffer);
            shared.publish(&buffer);
            result
        })
        .await
        .map_err(|_| BufferError::Closed)?
    }

    /// Returns once `durable_seq > seq`, with the durable seq seen.
    pub async fn wait_durable_beyond(&self, seq: u64) -> u64 {
        let mut stats = self.stats.clone();
        let seen = stats
            .wait_for(|s| s.durable_seq > seq)
            .await
            .expect("the stats sender lives in Shared, which this handle keeps alive");
        seen.durable_seq
    }

    /// The latest published positions and counters.
    pub fn stats(&self) -> BufferStats {
        *self.stats.borrow()
    }

    /// The stream this buffer belongs to.
    pub fn stream(&self) -> &str {
        &self.shared.stream
    }
}

impl Shared {
    fn lock(&self) -> Result<MutexGuard<'_, StreamBuffer>, BufferError> {
        self.buffer.lock().map_err(|_| BufferError::Poisoned {
            reason: "a buffer operation panicked".to_owned(),
        })
    }

    /// Publishes stats and metrics; called with the buffer locked, so the
    /// counter deltas are computed in order.
    fn publish(&self, buffer: &StreamBuffer) {
        let new = buffer.stats();
        let old = *self.stats.borrow();
        self.fsyncs.increment(new.fsyncs.saturating_sub(old.fsyncs));
        self.dropped_records
            .increment(new.dropped_records.saturating_sub(old.dropped_records));
        self.reopens
            .increment(new.reopens.saturating_sub(old.reopens));
        self.buffer_bytes.set(new.buffered_bytes as f64);
        self.stats.send_replace(new);
    }
}

async fn run_writer(
    shared: Arc<Shared>,
    mut appends: mpsc::Receiver<AppendRequest>,
    group_max: usize,
) {
    let mut group = Vec::with_capacity(group_max);
    while appends.recv_many(&mut group, group_max).await > 0 {
        let requests = std::mem::replace(&mut group, Vec::with_capacity(group_max));
        let shared_for_io = Arc::clone(&shared);
        let done =
            tokio::task::spawn_blocking(move || commit_group(&shared_for_io, requests)).await;
        if let Err(err) = done {
            // The producers of this group see `Closed`; later groups see
            // `Poisoned` if the panic happened under the lock.
            tracing::error!(stream = %shared.stream, %err, "edge buffer group commit failed");
        }
    }
    tracing::debug!(stream = %shared.stream, "edge buffer writer stopped");
}

/// Writes every request of the group, fsyncs once, answers every producer.
fn commit_group(shared: &Shared, group: Vec<AppendRequest>) {
    let (results, ticket) = match shared.lock() {
        Ok(mut buffer) => write_group(&mut buffer, &group, shared),
        Err(err) => {
            for request in group {
                let _ = request.reply.send(Err(err.clone()));
            }
            return;
        }
    };
    let synced = match ticket {
        None => Ok(()),
        Some(ticket) => finish_group(shared, ticket),
    };
    for (request, result) in group.into_iter().zip(results) {
        let answer = match (result, &synced) {
            (Ok(first_seq), Ok(())) => Ok(first_seq),
            (Ok(_), Err(err)) => Err(err.clone()),
            (Err(err), _) => Err(err),
        };
        // A producer that gave up is fine: its batch is buffered all the same.
        let _ = request.reply.send(answer);
    }
}

type GroupWrite = (
    Vec<Result<u64, BufferError>>,
    Option<Result<SyncTicket, BufferError>>,
);

fn write_group(buffer: &mut StreamBuffer, group: &[AppendRequest], shared: &Shared) -> GroupWrite {
    // After an I/O failure the buffer reopens (paced) before a group, never
    // inside one: a reopen discards what is not yet durable.
    if let Err(err) = buffer.recover() {
        shared.publish(buffer);
        return (group.iter().map(|_| Err(err.clone())).collect(), None);
    }
    let results: Vec<_> = group
        .iter()
        .map(|r| {
            buffer
                .append(r.records, r.max_timestamp_ms, &r.batch)
                .map(|appended| appended.first_seq)
        })
        .collect();
    let ticket = results
        .iter()
        .any(Result::is_ok)
        .then(|| buffer.begin_sync());
    shared.publish(buffer);
    (results, ticket)
}

/// Runs the fsync outside the lock, then marks the group durable.
fn finish_group(
    shared: &Shared,
    ticket: Result<SyncTicket, BufferError>,
) -> Result<(), BufferError> {
    let ticket = ticket?;
    let outcome = ticket.run();
    let mut buffer = shared.lock()?;
    let result = buffer.finish_sync(ticket, outcome);
    shared.publish(&buffer);
    result
}
