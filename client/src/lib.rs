//! The Strata SDK: QUIC transport with TLS, typed requests (produce, admin,
//! consume), and the dev PKI. The `strata` CLI is built on it.

#![forbid(unsafe_code)]

pub mod access;
pub mod api;
pub mod cluster;
pub mod group;
pub mod lineage;
pub mod producer;
pub mod reader;
pub mod transport;

/// Client identities (`Identity`) and principals.
pub use strata_runtime::identity;
/// TLS configs and the dev PKI, for SDK users (`client_config`, `DevPki`).
pub use strata_runtime::tls;

pub use transport::{Client, ClientError};
