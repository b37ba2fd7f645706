//! `strata-edge`: the edge agent. Receives record batches over QUIC, keeps
//! them in durable on-disk buffers, and forwards them to the core.
//!
//! - [`ingest`]: the QUIC handler producers talk to;
//! - [`kinesis`]: the Kinesis-compatible HTTPS endpoint (`kinesis_addr`);
//! - [`registry`]: the streams this agent knows (buffer, shard map, the
//!   `streams.json` cache) and its producer id;
//! - [`buffer`]: one durable buffer per stream;
//! - [`forward`]: one forwarder per stream, buffer → core;
//! - [`startup`]: the high-water check against the core and
//!   `--retire-producer`;
//! - [`agent`]: wiring; [`config`]: settings.
//!
//! Dependencies point one way: `agent` → `startup`, `forward`, `registry`;
//! `forward` → `startup` → `registry`; `ingest` → `registry`; `registry` →
//! `buffer`, `config`.
//!
//! Its dependency tree stays small (no arrow, parquet, openraft or
//! object_store): it must run on a Raspberry-class device.
#![forbid(unsafe_code)]

pub mod agent;
pub mod buffer;
pub mod config;
pub mod forward;
pub mod ingest;
pub mod kinesis;
pub mod registry;
pub mod startup;
