//! The Strata SDK: QUIC transport with TLS, typed requests (produce, admin,
//! consume), and the dev PKI. The `strata` CLI is built on it.

pub mod api;
pub mod cluster;
pub mod daemon;
pub mod group;
pub mod lineage;
pub mod producer;
pub mod reader;
pub mod settings;
pub mod tls;
pub mod transport;

pub use transport::{Client, ClientError};
