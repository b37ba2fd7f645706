//! One forwarder per stream: drains the stream's buffer in order to the core.
//!
//! Each round reads durable batches from the acknowledged position, splits
//! them by core shard ([`crate::route`]), sends every shard's pieces (shards in
//! parallel, one request at a time per shard, in buffer order), and advances
//! the buffer only once every shard acknowledged. A failed round is retried
//! whole: the core drops what it already has by (producer id, position), so a
//! retry never writes a record twice. While the core is unreachable the
//! forwarder backs off (bounded) and the buffer keeps accepting. A shard
//! closed by a reshard refuses with `SHARD_CLOSED` and where this agent's
//! records in it end; the forwarder notes that, refreshes the shard map and
//! retries at once, and [`route`] sends the rest to the children.

use crate::agent::{Agent, StreamState};
use crate::route::{self, Buffered, Router};
use std::sync::Arc;
use std::time::Duration;
use strata_client::api;
use strata_client::ClientError;
use strata_schema::fb::ErrorCode;
use tokio::sync::watch;

/// Most bytes of pieces in one forward request:
/// small enough that one forward commits well within its timeout (each
/// piece is a Raft entry; see `api::forward_timeout`).
const REQUEST_BYTES_MAX: usize = 1024 * 1024;

pub async fn run(
    agent: Arc<Agent>,
    name: String,
    stream: Arc<StreamState>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut backoff = Duration::from_millis(50);
    let backoff_max = Duration::from_millis(agent.cfg.retry_backoff_ms_max);
    loop {
        let acked = stream.buffer.stats().acked_seq;
        tokio::select! {
            _ = stream.buffer.wait_durable_beyond(acked) => {}
            _ = shutdown.wait_for(|s| *s) => return,
        }
        match round(&agent, &name, &stream).await {
            Ok(()) => backoff = Duration::from_millis(50),
            // Shards closed under us: the map is fresh, go again at once.
            Err(RoundError::Resharded(closed)) => {
                tracing::info!(stream = %name, shards = ?closed, "shards closed by a reshard; routing to their children");
            }
            Err(e) => {
                metrics::counter!("strata_edge_forward_errors_total").increment(1);
                if !e.is_retryable() {
                    tracing::error!(stream = %name, error = %e, "the core refused buffered records; keeping them and retrying");
                } else {
                    tracing::warn!(stream = %name, error = %e, retry_in_ms = backoff.as_millis() as u64, "forwarding failed; will retry");
                }
                if matches!(
                    e.code(),
                    Some(ErrorCode::UnknownShard | ErrorCode::UnknownStream)
                ) {
                    let _ = agent.refresh(&stream, &name).await;
                }
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = shutdown.wait_for(|s| *s) => return,
                }
                backoff = (backoff * 2).min(backoff_max);
            }
        }
    }
}

/// Why a forwarding round failed.
#[derive(Debug, thiserror::Error)]
enum RoundError {
    #[error("{0}")]
    Core(#[from] ClientError),
    #[error("{0}")]
    Local(String),
    /// These shards refused records as closed; their positions are noted.
    #[error("shards {0:?} are closed")]
    Resharded(Vec<u32>),
}

impl RoundError {
    fn is_retryable(&self) -> bool {
        match self {
            RoundError::Core(e) => e.is_retryable(),
            RoundError::Local(_) => false,
            RoundError::Resharded(_) => true,
        }
    }

    fn code(&self) -> Option<ErrorCode> {
        match self {
            RoundError::Core(e) => e.code(),
            RoundError::Local(_) | RoundError::Resharded(_) => None,
        }
    }
}

async fn round(agent: &Agent, name: &str, stream: &StreamState) -> Result<(), RoundError> {
    let stats = stream.buffer.stats();
    let batches = stream
        .buffer
        .read_durable(stats.acked_seq, agent.cfg.forward_bytes_max)
        .await
        .map_err(|e| RoundError::Local(format!("reading the buffer: {e}")))?;
    let Some(last) = batches.last() else {
        return Ok(());
    };
    let end_seq = last.first_seq + u64::from(last.records);
    let buffered: Vec<Buffered> = batches
        .into_iter()
        .map(|b| Buffered {
            first_seq: b.first_seq,
            max_timestamp_ms: b.max_timestamp_ms,
            batch: b.batch,
        })
        .collect();
    let router = {
        let info = stream.info.lock().expect("info lock");
        let closed_at = stream.closed_at.lock().expect("closed_at lock");
        Router::new(&info, &closed_at)
            .map_err(|e| RoundError::Local(format!("bad shard map: {e}")))?
    };
    let per_shard = route::split(&buffered, &router)
        .map_err(|e| RoundError::Local(format!("a buffered batch failed verification: {e}")))?;
    let sends = per_shard.iter().map(|sp| async move {
        let mut start = 0;
        while start < sp.pieces.len() {
            let mut end = start;
            let mut bytes = 0;
            while end < sp.pieces.len()
                && (end == start || bytes + sp.pieces[end].batch.len() <= REQUEST_BYTES_MAX)
            {
                bytes += sp.pieces[end].batch.len();
                end += 1;
            }
            let pieces = &sp.pieces[start..end];
            agent
                .core
                .to_leader(name, sp.shard, |c| async move {
                    api::forward(&c, name, sp.shard, agent.producer_id, pieces).await
                })
                .await?;
            start = end;
        }
        Ok::<u64, ClientError>(sp.records)
    });
    let results = futures::future::join_all(sends).await;
    let mut forwarded = 0;
    let mut failed = None;
    let mut closed = Vec::new();
    for (sp, r) in per_shard.iter().zip(results) {
        match r {
            Ok(n) => forwarded += n,
            Err(ClientError::Remote(e)) if e.code == ErrorCode::ShardClosed => {
                closed.push(sp.shard);
                stream
                    .closed_at
                    .lock()
                    .expect("closed_at lock")
                    .insert(sp.shard, e.producer_next_seq);
            }
            Err(e) => failed = failed.or(Some(e)),
        }
    }
    if !closed.is_empty() {
        agent.refresh(stream, name).await?;
        return Err(RoundError::Resharded(closed));
    }
    if let Some(e) = failed {
        return Err(e.into());
    }
    stream
        .buffer
        .ack(end_seq)
        .await
        .map_err(|e| RoundError::Local(format!("advancing the buffer: {e}")))?;
    metrics::counter!("strata_edge_records_out_total").increment(forwarded);
    let s = stream.buffer.stats();
    metrics::gauge!("strata_edge_forward_lag_records", "stream" => name.to_string())
        .set((s.next_seq - s.acked_seq) as f64);
    Ok(())
}
