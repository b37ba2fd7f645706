//! `strata-edge`: the edge agent. Receives record batches over QUIC, keeps
//! them in durable on-disk buffers, and forwards them to the core.
//!
//! Its dependency tree stays small (no arrow, parquet, openraft or
//! object_store): it must run on a Raspberry-class device.

pub mod agent;
pub mod buffer;
pub mod config;
pub mod forwarder;
pub mod route;
