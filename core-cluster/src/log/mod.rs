//! The segment log that backs every Raft group's log storage: [`segment`] is
//! the synchronous, checksummed segment files with their in-memory index.
//! `raft::log_store` maps openraft's `RaftLogStorage` onto it.

mod error;
pub(crate) mod frame;
pub mod segment;
mod segment_file;

pub(crate) use error::io_err;
pub use segment::{LogError, LogRecord, RecordId, Recovery, SegmentLog, SegmentLogOptions};
