//! Why a forwarding round failed, and which failures may pass on retry.

use super::route::RouteError;
use crate::buffer::BufferError;
use strata_client::ClientError;
use strata_schema::batch::BatchError;
use strata_schema::fb::ErrorCode;

/// Why a forwarding round failed. Every failure keeps the records in the
/// buffer; the round is retried whole.
#[derive(Debug, thiserror::Error)]
pub enum RoundError {
    /// The core refused or could not be reached.
    #[error("{0}")]
    Core(#[from] ClientError),
    #[error("reading the buffer: {0}")]
    Read(#[source] BufferError),
    #[error("bad shard map: {0}")]
    ShardMap(#[from] RouteError),
    #[error("a buffered batch failed verification: {0}")]
    Batch(#[from] BatchError),
    #[error("advancing the buffer: {0}")]
    Ack(#[source] BufferError),
    /// These shards refused records as closed; their positions are noted
    /// and the shard map is fresh.
    #[error("shards {0:?} are closed")]
    Resharded(Vec<u32>),
    /// These shards are closed in the shard map but not sealed yet: their
    /// children get nothing until the seal says where this agent's records
    /// in them end.
    #[error("shards {0:?} are closing (waiting for their seal)")]
    Closing(Vec<u32>),
}

impl RoundError {
    /// Whether the same round may succeed later without anyone stepping in.
    pub fn is_retryable(&self) -> bool {
        match self {
            RoundError::Core(e) => e.is_retryable(),
            RoundError::Read(_)
            | RoundError::ShardMap(_)
            | RoundError::Batch(_)
            | RoundError::Ack(_) => false,
            RoundError::Resharded(_) | RoundError::Closing(_) => true,
        }
    }

    /// The core's error code, if the core answered.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            RoundError::Core(e) => e.code(),
            _ => None,
        }
    }
}
