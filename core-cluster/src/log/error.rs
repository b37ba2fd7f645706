//! Errors of the segment log ([`super::segment`]) and the helper that turns
//! an `io::Error` into one naming the operation and the file.

use std::io;
use std::path::{Path, PathBuf};

/// Errors of the segment log.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("corrupt segment {path} at byte {pos}: {reason}")]
    Corrupt {
        path: PathBuf,
        pos: u64,
        reason: String,
    },
    /// An invalid record the log knows was durable (at or below the index
    /// the caller of `open` saw synced): damage, never cut as a torn tail.
    #[error("corrupt segment {path} at byte {pos}, the record of index {index}: {reason}; records through index {synced} were made durable, so this is damaged data, not a torn write, and it was not cut")]
    DurableCorrupt {
        path: PathBuf,
        pos: u64,
        index: u64,
        synced: u64,
        reason: String,
    },
    #[error("segments are not contiguous: {prev} ends at index {prev_last}, but the next segment is {next}")]
    Gap {
        prev: PathBuf,
        prev_last: u64,
        next: PathBuf,
    },
    #[error("cannot append index {index}: the next index is {expected}")]
    NotNext { index: u64, expected: u64 },
    #[error("record of {bytes} bytes exceeds record_bytes_max = {max}")]
    TooLarge { bytes: usize, max: usize },
    #[error("invalid segment log option {key}: {reason}")]
    InvalidOption { key: &'static str, reason: String },
    #[error("segment log in {dir} failed earlier and must be reopened")]
    Failed { dir: PathBuf },
}

pub(crate) fn io_err<'a>(
    op: &'static str,
    path: &'a Path,
) -> impl FnOnce(io::Error) -> LogError + 'a {
    move |source| LogError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}
