//! The Kinesis Data Streams API at the edge: an HTTPS endpoint
//! (`kinesis_addr`) speaking AWS JSON 1.1, so AWS SDKs, the AWS CLI and
//! Kinesis tools produce to and read from Strata by changing one endpoint
//! URL. See docs/kinesis.md for the operations, their mapping and the
//! differences from Kinesis.
//!
//! - [`server`]: TLS, HTTP/1.1, limits, request → operation, SigV4 check;
//! - [`sigv4`]: AWS Signature V4 verification (pure);
//! - [`ops`]: the operations (thin: authorize, map, call the core or the
//!   edge's produce path);
//! - [`put`]: PutRecord(s) → one Strata batch, Kinesis limits (pure);
//! - [`kpl`]: KPL aggregate de-aggregation (pure);
//! - [`subscribe`]: `SubscribeToShard` as event-stream messages, consumers;
//! - [`views`]: stream and shard descriptions (pure);
//! - [`seqno`]: shard ids, sequence numbers, signed shard iterators (pure);
//! - [`error`]: Kinesis error types and their JSON.
//!
//! Writes take the QUIC produce path (`ingest::EdgeHandler::append_batch`):
//! acknowledged after the edge buffer's fsync. Reads and stream changes go
//! to the core through the SDK, as this agent's principal, after the
//! caller's own principal passed the access rules here.

pub mod error;
pub mod kpl;
pub mod ops;
pub mod put;
pub mod seqno;
pub mod server;
pub mod sigv4;
pub mod subscribe;
pub mod views;

pub use error::KinesisError;

#[cfg(test)]
mod prop_tests;
