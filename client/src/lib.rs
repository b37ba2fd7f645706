//! The Strata SDK: QUIC transport with TLS, typed requests (produce, admin,
//! consume), and the dev PKI. The `strata` CLI is built on it.

#![forbid(unsafe_code)]

pub mod api;
pub mod cluster;
pub mod group;
pub mod lineage;
pub mod producer;
pub mod reader;
pub mod transport;

/// TLS configs and the dev PKI, for SDK users (`client_config`, `DevPki`).
pub use strata_runtime::tls;
/// Client identities (`Identity`) and principals.
pub use strata_runtime::identity;

pub use transport::{Client, ClientError};
