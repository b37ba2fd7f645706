//! `strata-core`: the core cluster node.
#![forbid(unsafe_code)]

pub mod api;
pub mod catalog;
pub mod clock;
pub mod config;
pub mod control;
pub mod error;
pub mod log;
pub mod node;
pub mod raft;
pub mod shard;
#[cfg(test)]
mod sim;
/// The archive format (Parquet objects, keys, manifests, object store).
pub use strata_archive as tier;
pub mod tiering;
