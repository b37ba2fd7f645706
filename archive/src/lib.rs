//! Tiering: aged shard data as Parquet objects in object storage.
//!
//! This module holds the self-contained building blocks; the shard state
//! machine decides *when* to tier and records the result in its manifest.
//!
//! - [`keys`]: the object key layout (Hive-style `stream=/date=/hour=`), so
//!   DuckDB, Spark and Athena read a stream's prefix with no glue.
//! - [`format`]: encoding a contiguous offset range of records as one Parquet
//!   object ([`format::SegmentWriter`]), with the offset/timestamp statistics
//!   and page index that let [`read`] fetch only the row groups and pages a
//!   consumer asks for.
//! - [`read`]: reading records back from an object as a `RecordBatch`
//!   flatbuffer, the form fetch responses carry.
//! - [`manifest`]: the per-shard list of tiered objects, pure and serde.
//! - [`store`]: opening an object store from a URL (`file://`, `s3://`) and
//!   uploading objects; [`durable`]: the `file://` store, fsynced on write.
//! - [`sse`]: server-side encryption settings of an S3 store.
//!
//! One object covers a contiguous run of offsets `[first_offset, next_offset)`:
//! row `i` holds offset `first_offset + i`. The writer enforces it and the
//! reader checks it, so a read can turn an offset into a row number without
//! decoding the offset column first.
#![forbid(unsafe_code)]

pub mod durable;
pub mod faulty;
pub mod format;
pub mod keys;
pub mod manifest;
pub mod read;
pub mod sse;
pub mod store;

#[cfg(test)]
mod durable_tests;
#[cfg(test)]
mod format_tests;
#[cfg(test)]
mod store_tests;

pub use format::{EncodedObject, RowsBuilder, SegmentWriter, WriterOptions};
pub use manifest::{BlockChecksums, ChecksumsMismatch, Manifest, TieredObject};
pub use read::{read_object, read_records, SegmentFormatError, TierRead};

/// Why a tiering operation failed. Each variant names the object, URL or
/// offset involved; [`TierError::is_retryable`] tells a driver whether trying
/// again later can help.
#[derive(Debug, thiserror::Error)]
pub enum TierError {
    /// Invalid writer options (a configuration error).
    #[error("tier writer options: {0}")]
    Options(String),
    /// A record was pushed out of order: an object holds a contiguous range.
    #[error("record offset {got} does not follow offset {expected}: a tiered object holds a contiguous offset range")]
    NonContiguous { expected: u64, got: u64 },
    /// Offsets are stored as Parquet int64.
    #[error("offset {0} does not fit the Parquet int64 offset column")]
    OffsetTooLarge(u64),
    /// `finish` on a writer that got no records.
    #[error("a tiered object needs at least one record")]
    Empty,
    /// Arrow or Parquet failed while encoding.
    #[error("encoding Parquet for stream {stream:?} shard {shard}: {source}")]
    Encode {
        stream: String,
        shard: u32,
        source: parquet::errors::ParquetError,
    },
    /// The object's bytes could not be decoded as Parquet.
    #[error("reading Parquet object {path}: {source}")]
    Decode {
        path: String,
        source: parquet::errors::ParquetError,
    },
    /// The object is valid Parquet but not a Strata tiered segment.
    #[error("object {path} is not a Strata tiered segment: {reason}")]
    Format {
        path: String,
        reason: read::SegmentFormatError,
    },
    /// The requested offset is not inside the object.
    #[error("offset {offset} is outside object {path}, which holds offsets [{first_offset}, {next_offset})")]
    OffsetOutOfRange {
        path: String,
        offset: u64,
        first_offset: u64,
        next_offset: u64,
    },
    /// The object store refused or failed a request.
    #[error("object store {op} {path}: {source}")]
    ObjectStore {
        op: &'static str,
        path: String,
        source: object_store::Error,
    },
    /// An object store URL that cannot be used.
    #[error("object store URL {url:?}: {reason}")]
    Url {
        url: String,
        reason: store::UrlError,
    },
    /// The object's bytes differ from what was written: a block's CRC32C
    /// does not match the manifest, or the object is shorter.
    #[error("object {path} is corrupt: {reason}")]
    Corrupt { path: String, reason: String },
    /// A manifest that cannot be decoded or breaks its invariants.
    #[error("tier manifest: {0}")]
    Manifest(String),
}

impl TierError {
    /// Whether the same call may succeed later: object store failures other
    /// than "not found", bad paths and refused credentials are (network,
    /// throttling, a restarting server). Everything else is permanent: bad
    /// bytes stay bad.
    pub fn is_retryable(&self) -> bool {
        use object_store::Error as E;
        match self {
            TierError::ObjectStore { source, .. } => !matches!(
                source,
                E::NotFound { .. }
                    | E::InvalidPath { .. }
                    | E::NotSupported { .. }
                    | E::NotImplemented { .. }
                    | E::PermissionDenied { .. }
                    | E::Unauthenticated { .. }
                    | E::UnknownConfigurationKey { .. }
            ),
            _ => false,
        }
    }
}
