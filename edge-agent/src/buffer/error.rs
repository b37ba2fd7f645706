//! Errors of the stream buffer and its driver.

use super::crypto::{Fingerprint, KeyError};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Why a buffer operation failed. `Clone` so that one failed group commit can
/// answer every producer in the group.
#[derive(Debug, Clone, thiserror::Error)]
pub enum BufferError {
    /// The buffer holds `buffer_bytes_max` worth of unforwarded data (policy
    /// `reject`, or `drop_oldest` with nothing droppable). Retryable once the
    /// forwarder catches up.
    #[error(
        "edge buffer for this stream is full ({buffered_bytes} bytes buffered + \
         {frame_bytes} bytes for this batch > buffer_bytes_max = {buffer_bytes_max})"
    )]
    Full {
        buffered_bytes: u64,
        frame_bytes: u64,
        buffer_bytes_max: u64,
    },
    #[error("batch of {batch_bytes} bytes exceeds batch_bytes_max = {batch_bytes_max}")]
    BatchTooLarge {
        batch_bytes: usize,
        batch_bytes_max: usize,
    },
    #[error("batch claims 0 records; a buffered batch holds at least one record")]
    NoRecords,
    /// Only durable records can have been forwarded, so a larger ack is a bug
    /// in the caller (or a core acking positions it never received).
    #[error("ack of seq {seq} is beyond durable_seq = {durable_seq}")]
    AckBeyondDurable { seq: u64, durable_seq: u64 },
    /// Bytes on disk that are not what this buffer wrote: never repaired
    /// silently except for the torn tail of the last segment.
    #[error("{} is corrupt at byte offset {offset}: {reason}", .path.display())]
    Corrupt {
        path: PathBuf,
        offset: u64,
        reason: String,
    },
    #[error("{op} {}: {source}", .path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: Arc<io::Error>,
    },
    #[error("invalid buffer option {key}: {reason}")]
    InvalidOptions { key: &'static str, reason: String },
    /// A buffer operation panicked while holding the driver's lock: the
    /// in-memory state may be half changed. Only a restart of the agent,
    /// which reopens the buffer from disk, recovers.
    #[error("edge buffer is unusable after an earlier failure ({reason}); restart the agent to reopen it from disk")]
    Poisoned { reason: String },
    /// An fsync (or the cut of a partly written frame) failed, so the disk
    /// may not hold what was appended since the last successful sync: this
    /// batch was refused, not stored. The buffer reopens from disk before it
    /// takes more (see `reopen.rs`). Retryable.
    #[error("batch not stored: {reason}; edge buffer {} reopens from disk before taking more records: retry", .dir.display())]
    NotStored { dir: PathBuf, reason: String },
    /// The buffer lost track of its disk (see [`Self::NotStored`]) and has
    /// not reopened yet: attempts are paced, doubling up to
    /// `REOPEN_BACKOFF_MAX`. Retryable; a disk that keeps failing keeps
    /// this answer.
    #[error(
        "edge buffer {} takes no records until it has reopened from disk after an I/O failure          ({reason}); reopen attempts failed so far: {failed_reopens}{}; retry later",
        .dir.display(),
        last_error.as_ref().map(|e| format!(" (last: {e})")).unwrap_or_default()
    )]
    Recovering {
        dir: PathBuf,
        reason: String,
        failed_reopens: u32,
        last_error: Option<String>,
    },
    /// The driver's writer task is gone (runtime shutting down).
    #[error("edge buffer writer has stopped")]
    Closed,
    /// A configured encryption key file cannot be used.
    #[error("{0}")]
    Key(#[from] KeyError),
    /// An encrypted segment holding unforwarded records, and no key
    /// configured. Found before the buffer changed anything on disk.
    #[error(
        "{} is encrypted (key fingerprint {segment_key}) and holds records not yet forwarded, \
         but no encryption_key_file is configured; nothing was changed: set encryption_key_file \
         to the key file with fingerprint {segment_key}", .path.display()
    )]
    NoKey {
        path: PathBuf,
        segment_key: Fingerprint,
    },
    /// An encrypted segment holding unforwarded records was written with a
    /// key that is not configured. Found before the buffer changed anything
    /// on disk.
    #[error(
        "{} was encrypted with the key of fingerprint {segment_key}, but the configured \
         key(s) have fingerprint(s) {configured}; nothing was changed: configure the key with fingerprint \
         {segment_key} (encryption_key_file, or encryption_previous_key_files after a key \
         rotation)", .path.display(), configured = fingerprint_list(.configured)
    )]
    WrongKey {
        path: PathBuf,
        segment_key: Fingerprint,
        configured: Vec<Fingerprint>,
    },
    #[error("the system random number generator failed; cannot start an encrypted segment")]
    NoEntropy,
}

fn fingerprint_list(fingerprints: &[Fingerprint]) -> String {
    let list: Vec<String> = fingerprints.iter().map(ToString::to_string).collect();
    list.join(", ")
}

impl BufferError {
    /// Whether the same call may succeed later without operator action.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            Self::Full { .. } | Self::NotStored { .. } | Self::Recovering { .. }
        )
    }

    pub(super) fn io(op: &'static str, path: &Path, source: io::Error) -> Self {
        Self::Io {
            op,
            path: path.to_owned(),
            source: Arc::new(source),
        }
    }
}
