//! The forwarder: one task per stream drives the round planner
//! ([`super::plan`]) against the buffer and the core. It performs I/O only:
//! read durable batches, send the planned requests (shards in parallel, one
//! request at a time per shard), then advance the buffer, re-route or wait
//! as the planner says. Before its first round it waits for the stream's
//! high-water check ([`crate::startup::gate`]); a round carries the records
//! of one producer id only (positions below a retired id's switch go under
//! that id, see `registry::identity`).

use super::error::RoundError;
use super::plan::{self, Next, Pacing, RoundOutcome, ShardReply, ShardSend, REQUEST_BYTES_MAX};
use super::route::{self, Router};
use crate::registry::{Registry, StreamState};
use std::sync::Arc;
use std::time::{Duration, Instant};
use strata_client::{api, ClientError};
use tokio::sync::watch;

/// Forwards `stream` until `shutdown` turns true.
pub async fn run(
    registry: Arc<Registry>,
    stream: Arc<StreamState>,
    mut shutdown: watch::Receiver<bool>,
) {
    let name = stream.name.as_str();
    let mut pacing = Pacing::new(Duration::from_millis(registry.cfg().retry_backoff_ms_max));
    if !crate::startup::gate(&registry, &stream, &mut shutdown).await {
        return;
    }
    loop {
        let acked = stream.buffer.stats().acked_seq;
        tokio::select! {
            _ = stream.buffer.wait_durable_beyond(acked) => {}
            _ = shutdown.wait_for(|s| *s) => return,
        }
        let read_max = pacing.read_bytes_max(registry.cfg().forward_bytes_max);
        let result = round(&registry, &stream, read_max).await;
        match pacing.handle_round(Instant::now(), result.as_ref().map(|_| ())) {
            Next::Round => {}
            Next::Reroute => {
                if let Err(RoundError::Resharded(closed)) = &result {
                    tracing::info!(stream = %name, shards = ?closed, "shards closed by a reshard; routing to their children");
                }
            }
            Next::Retry {
                at,
                delay,
                refresh_map,
                refused,
            } => {
                metrics::counter!("strata_edge_forward_errors_total").increment(1);
                if let Err(e) = &result {
                    if refused {
                        tracing::error!(stream = %name, error = %e, "the core refused buffered records; keeping them and retrying");
                    } else {
                        tracing::warn!(stream = %name, error = %e, retry_in_ms = delay.as_millis() as u64, "forwarding failed; will retry");
                    }
                }
                if refresh_map {
                    let _ = registry.refresh(&stream).await;
                }
                tokio::select! {
                    _ = tokio::time::sleep_until(at.into()) => {}
                    _ = shutdown.wait_for(|s| *s) => return,
                }
            }
        }
    }
}

/// One round: read up to `read_max` batch bytes, plan, send, then act on
/// the outcome.
async fn round(
    registry: &Registry,
    stream: &StreamState,
    read_max: usize,
) -> Result<(), RoundError> {
    let acked = stream.buffer.stats().acked_seq;
    let mut batches = stream
        .buffer
        .read_durable(acked, read_max)
        .await
        .map_err(RoundError::Read)?;
    let Some(first) = batches.first() else {
        return Ok(());
    };
    let (producer_id, id_ends) = registry.producer_for(&stream.name, first.first_seq);
    if let Some(end) = id_ends {
        batches.retain(|b| b.first_seq < end);
    }
    let unsettled = {
        let info = stream.info.lock().expect("info lock");
        let closed_at = stream.closed_at.lock().expect("closed_at lock");
        route::unsettled(&info, &closed_at)
    };
    if !unsettled.is_empty() {
        settle(registry, stream, producer_id, unsettled).await?;
    }
    let router = {
        let info = stream.info.lock().expect("info lock");
        let closed_at = stream.closed_at.lock().expect("closed_at lock");
        Router::new(&info, &closed_at)?
    };
    let Some(round) = plan::plan_round(batches, &router, REQUEST_BYTES_MAX)? else {
        return Ok(());
    };
    let sends = round
        .shards
        .iter()
        .map(|s| send(registry, &stream.name, producer_id, s));
    let replies = futures::future::join_all(sends).await;
    match plan::outcome(&round, replies) {
        RoundOutcome::Advance { ack_to, records } => {
            stream
                .buffer
                .ack_lazily(ack_to)
                .await
                .map_err(RoundError::Ack)?;
            metrics::counter!("strata_edge_records_out_total").increment(records);
            let s = stream.buffer.stats();
            metrics::gauge!("strata_edge_forward_lag_records", "stream" => stream.name.clone())
                .set((s.next_seq - s.acked_seq) as f64);
            Ok(())
        }
        RoundOutcome::Resharded { closed } => {
            stream
                .closed_at
                .lock()
                .expect("closed_at lock")
                .extend(closed.iter().copied());
            registry.refresh(stream).await?;
            Err(RoundError::Resharded(
                closed.into_iter().map(|(shard, _)| shard).collect(),
            ))
        }
        RoundOutcome::Retry(e) => Err(e.into()),
    }
}

/// Learns where `producer_id`'s records end in each closed shard of
/// `shards` with a seal probe (a forward without records): a sealed shard
/// refuses it with `SHARD_CLOSED` and the position, noted in `closed_at`.
/// `Closing` when some shard is not sealed yet (the round is retried).
async fn settle(
    registry: &Registry,
    stream: &StreamState,
    producer_id: u64,
    shards: Vec<u32>,
) -> Result<(), RoundError> {
    let name = stream.name.as_str();
    let probes = shards.iter().map(|&shard| async move {
        let r = registry
            .core()
            .to_leader(name, shard, |c| async move {
                api::forward(&c, name, shard, producer_id, &[]).await
            })
            .await;
        (shard, r)
    });
    let mut closing = Vec::new();
    for (shard, r) in futures::future::join_all(probes).await {
        match r {
            Ok(_) => closing.push(shard),
            Err(e) => {
                let at = plan::closed_position(&e).ok_or(RoundError::Core(e))?;
                stream
                    .closed_at
                    .lock()
                    .expect("closed_at lock")
                    .insert(shard, at);
            }
        }
    }
    if closing.is_empty() {
        Ok(())
    } else {
        Err(RoundError::Closing(closing))
    }
}

/// Sends one shard its requests under `producer_id` in order, stopping at
/// the first failure.
async fn send(
    registry: &Registry,
    name: &str,
    producer_id: u64,
    s: &ShardSend,
) -> ShardReply<ClientError> {
    for pieces in &s.requests {
        let sent = registry
            .core()
            .to_leader_hedged(name, s.shard, |c| async move {
                api::forward(&c, name, s.shard, producer_id, pieces).await
            })
            .await;
        if let Err(e) = sent {
            return plan::classify(e);
        }
    }
    ShardReply::Acked
}
