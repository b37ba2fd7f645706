//! The segment log that backs every Raft group's log storage: [`segment`] is
//! the synchronous, checksummed segment files with their in-memory index, and
//! [`store`] maps openraft's `RaftLogStorage` onto it.

mod error;
mod frame;
pub mod segment;
mod segment_file;
pub mod store;

pub use segment::{LogError, LogRecord, RecordId, Recovery, SegmentLog, SegmentLogOptions};
pub use store::{LogStore, StoreError};
