//! A forwarding round as pure decisions, with no I/O and no clock of its own:
//!
//! - [`plan_round`]: which requests go to which shard — the durable batches
//!   read from the buffer, split by shard ([`super::route`]), each shard's
//!   pieces cut into requests of at most `request_bytes_max` bytes;
//! - [`outcome`]: what the shards' replies mean for the buffer — advance,
//!   re-route after a reshard, or retry;
//! - [`Pacing`]: when the next round runs, given `now`.
//!
//! The driver (`driver.rs`) reads the buffer, sends, and performs what these
//! return.

use super::error::RoundError;
use super::route::{self, Buffered, Router};
use crate::buffer::BufferedBatch;
use std::time::{Duration, Instant};
use strata_client::ClientError;
use strata_protocol::Piece;
use strata_schema::batch::BatchError;
use strata_schema::fb::ErrorCode;

/// Most bytes of pieces in one forward request: small enough that one
/// forward commits well within its timeout (the core writes a request as
/// Raft entries of up to 256 KiB; see `strata_client::api::forward_timeout`).
pub const REQUEST_BYTES_MAX: usize = 1024 * 1024;

/// What one round sends.
#[derive(Debug)]
pub struct RoundPlan {
    /// The position after the round's last record: where the buffer
    /// advances once every shard acknowledged.
    pub end_seq: u64,
    /// One entry per shard that gets records, in shard-id order.
    pub shards: Vec<ShardSend>,
}

/// One shard's part of a round.
#[derive(Debug)]
pub struct ShardSend {
    pub shard: u32,
    /// Records in `requests`.
    pub records: u64,
    /// Forward requests, sent one at a time in this (buffer) order.
    pub requests: Vec<Vec<Piece>>,
}

/// Plans a round over `batches` (durable, in buffer order), routed by
/// `router`. None when there is nothing to send.
pub fn plan_round(
    batches: Vec<BufferedBatch>,
    router: &Router,
    request_bytes_max: usize,
) -> Result<Option<RoundPlan>, BatchError> {
    let Some(last) = batches.last() else {
        return Ok(None);
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
    let shards = route::split(&buffered, router)?
        .into_iter()
        .map(|sp| ShardSend {
            shard: sp.shard,
            records: sp.records,
            requests: chunk(sp.pieces, request_bytes_max),
        })
        .collect();
    Ok(Some(RoundPlan { end_seq, shards }))
}

/// Cuts `pieces` into requests, in order, each of at most `bytes_max` bytes
/// of batches — or a single piece, when that piece alone is larger.
pub fn chunk(pieces: Vec<Piece>, bytes_max: usize) -> Vec<Vec<Piece>> {
    let mut requests = Vec::new();
    let mut current: Vec<Piece> = Vec::new();
    let mut bytes = 0;
    for piece in pieces {
        if !current.is_empty() && bytes + piece.batch.len() > bytes_max {
            requests.push(std::mem::take(&mut current));
            bytes = 0;
        }
        bytes += piece.batch.len();
        current.push(piece);
    }
    if !current.is_empty() {
        requests.push(current);
    }
    requests
}

/// How one shard's requests ended.
#[derive(Debug, PartialEq, Eq)]
pub enum ShardReply<E> {
    /// Every request acknowledged.
    Acked,
    /// The shard is closed (`SHARD_CLOSED`); this agent's records in it end
    /// before `producer_next_seq`.
    Closed { producer_next_seq: u64 },
    /// The first other failure; later requests were not sent.
    Failed(E),
}

/// The reply a failed request stands for.
pub fn classify(e: ClientError) -> ShardReply<ClientError> {
    match closed_position(&e) {
        Some(producer_next_seq) => ShardReply::Closed { producer_next_seq },
        None => ShardReply::Failed(e),
    }
}

/// Where this agent's records end in a shard that refused with
/// `SHARD_CLOSED`; None for any other failure.
pub fn closed_position(e: &ClientError) -> Option<u64> {
    match e {
        ClientError::Remote(r) if r.code == ErrorCode::ShardClosed => Some(r.producer_next_seq),
        _ => None,
    }
}

/// What a round's replies mean.
#[derive(Debug, PartialEq, Eq)]
pub enum RoundOutcome<E> {
    /// Every shard acknowledged: advance the buffer to `ack_to`;
    /// `records` were forwarded.
    Advance { ack_to: u64, records: u64 },
    /// These shards refused as closed, with where this agent's records in
    /// each end: note them, refresh the shard map and go again at once (the
    /// next plan drops what they hold and routes the rest to their
    /// children). Wins over other failures, which the next round retries.
    Resharded { closed: Vec<(u32, u64)> },
    /// Retry the whole round (the core drops what it already has by
    /// producer id and position); the first failure.
    Retry(E),
}

/// Folds the shards' replies (in `plan.shards` order) into the round's outcome.
pub fn outcome<E>(plan: &RoundPlan, replies: Vec<ShardReply<E>>) -> RoundOutcome<E> {
    assert_eq!(plan.shards.len(), replies.len(), "one reply per shard");
    let mut records = 0;
    let mut failed = None;
    let mut closed = Vec::new();
    for (send, reply) in plan.shards.iter().zip(replies) {
        match reply {
            ShardReply::Acked => records += send.records,
            ShardReply::Closed { producer_next_seq } => {
                closed.push((send.shard, producer_next_seq))
            }
            ShardReply::Failed(e) => failed = failed.or(Some(e)),
        }
    }
    if !closed.is_empty() {
        return RoundOutcome::Resharded { closed };
    }
    match failed {
        Some(e) => RoundOutcome::Retry(e),
        None => RoundOutcome::Advance {
            ack_to: plan.end_seq,
            records,
        },
    }
}

/// The pause after a failed round when the last round went through.
pub const BACKOFF_MIN: Duration = Duration::from_millis(50);

/// When a stream's next round runs, and how much it reads. Failed rounds
/// are retried after a pause that doubles from [`BACKOFF_MIN`] up to
/// `backoff_max`; a round that went through resets it; a reshard retries at
/// once.
///
/// After a failed round the next one reads a single batch
/// ([`read_bytes_max`](Self::read_bytes_max)): while the core is away a
/// retry only has to find out whether it is back, and a full round read
/// for every retry would reread up to `forward_bytes_max` from disk and
/// hold that much memory each time, for nothing. The first round that goes
/// through restores full rounds.
#[derive(Debug, Clone)]
pub struct Pacing {
    backoff: Duration,
    backoff_max: Duration,
    failing: bool,
}

/// What the driver does after a round.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Next {
    /// Start the next round as soon as there are durable records.
    Round,
    /// Shards closed under the round: the map is fresh, go again at once.
    Reroute,
    /// Wait until `at` (`delay` after `now`), then start the next round.
    Retry {
        at: Instant,
        delay: Duration,
        /// The core no longer knows the stream or shard: describe it again first.
        refresh_map: bool,
        /// Not retryable: someone must step in (logged as an error); the
        /// records stay buffered and the round is retried anyway.
        refused: bool,
    },
}

impl Pacing {
    pub fn new(backoff_max: Duration) -> Self {
        Self {
            backoff: BACKOFF_MIN,
            backoff_max,
            failing: false,
        }
    }

    /// Batch bytes the next round reads from the buffer: `round_max`, or
    /// after a failed round 1 (the buffer returns at least one batch).
    pub fn read_bytes_max(&self, round_max: usize) -> usize {
        if self.failing {
            1
        } else {
            round_max
        }
    }

    /// The next step after a round that ended with `result` at `now`.
    pub fn handle_round(&mut self, now: Instant, result: Result<(), &RoundError>) -> Next {
        let e = match result {
            Ok(()) => {
                self.backoff = BACKOFF_MIN;
                self.failing = false;
                return Next::Round;
            }
            Err(RoundError::Resharded(_)) => return Next::Reroute,
            Err(e) => e,
        };
        self.failing = true;
        let delay = self.backoff;
        self.backoff = (self.backoff * 2).min(self.backoff_max);
        Next::Retry {
            at: now + delay,
            delay,
            refresh_map: matches!(
                e.code(),
                Some(ErrorCode::UnknownShard | ErrorCode::UnknownStream)
            ),
            refused: !e.is_retryable(),
        }
    }
}

#[cfg(test)]
#[path = "plan_tests.rs"]
mod tests;
