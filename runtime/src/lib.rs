//! What Strata's daemons and clients share beneath the protocol: one
//! verified frame per QUIC stream direction (`frame`), the request server
//! with its limits and graceful shutdown (`server`), TLS 1.3 configs and the
//! dev PKI (`tls`), client identities and principals (`identity`), the daemon wrapper (`daemon`) and config loading
//! (`settings`). The SDK builds its client on it; the edge agent and the
//! core build their servers on it.
#![forbid(unsafe_code)]

pub mod daemon;
pub mod frame;
pub mod identity;
pub mod server;
pub mod settings;
pub mod tls;
mod tls_error;
