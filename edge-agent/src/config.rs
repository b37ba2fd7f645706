//! `strata-edge` configuration: TOML file, then `STRATA_EDGE_*` environment.
//! Every key is documented in `deploy/config/edge.example.toml`.

use crate::buffer::{BufferError, FullPolicy};
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::PathBuf;

fn default_listen() -> SocketAddr {
    "127.0.0.1:7400".parse().expect("valid")
}
fn default_core() -> Vec<SocketAddr> {
    vec!["127.0.0.1:7500".parse().expect("valid")]
}
fn default_record_bytes_max() -> usize {
    1024 * 1024
}
fn default_batch_records_max() -> usize {
    100_000
}
fn default_batch_bytes_max() -> usize {
    16 * 1024 * 1024
}
fn default_buffer_bytes_max() -> u64 {
    1024 * 1024 * 1024
}
fn default_true() -> bool {
    true
}
fn default_segment_bytes_max() -> u64 {
    64 * 1024 * 1024
}
fn default_full_policy() -> FullPolicy {
    FullPolicy::Reject
}
/// Lower than the core's: every stream a connection once had open at once
/// keeps its QUIC reassembly state while the connection lives.
fn default_requests_per_connection_max() -> usize {
    64
}
fn default_forward_bytes_max() -> usize {
    8 * 1024 * 1024
}
fn default_retry_backoff_ms_max() -> u64 {
    2_000
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EdgeConfig {
    /// Directory for stream buffers, the producer id and the stream cache.
    pub data_dir: PathBuf,
    /// UDP address of the QUIC ingest endpoint.
    #[serde(default = "default_listen")]
    pub listen_addr: SocketAddr,
    /// TCP address of the Kinesis-compatible HTTPS endpoint (AWS JSON 1.1,
    /// SigV4 with AWS keys of Strata principals; docs/kinesis.md), served
    /// with `tls_cert`/`tls_key`; unset = disabled.
    #[serde(default)]
    pub kinesis_addr: Option<SocketAddr>,
    /// Address of the Prometheus `/metrics` endpoint; unset = disabled.
    #[serde(default)]
    pub metrics_addr: Option<SocketAddr>,
    /// PEM certificate chain this agent presents to producers.
    pub tls_cert: PathBuf,
    /// PEM private key of `tls_cert`.
    pub tls_key: PathBuf,
    /// QUIC addresses of core nodes to start from (seeds); shard leaders are
    /// discovered from them and followed across failover.
    #[serde(default = "default_core")]
    pub core_addrs: Vec<SocketAddr>,
    /// PEM CA certificate(s) the core's certificate must chain to.
    pub core_ca: PathBuf,
    /// Certificate and key this agent presents to the core (its principal
    /// there); default `tls_cert`/`tls_key`.
    #[serde(default)]
    pub core_cert: Option<PathBuf>,
    #[serde(default)]
    pub core_key: Option<PathBuf>,
    /// `required` (default): producers present a certificate signed by
    /// `client_ca`; `off`: no client certificates and no access control,
    /// for a loopback test setup only (logged as a warning).
    #[serde(default)]
    pub client_auth: strata_runtime::identity::ClientAuthMode,
    /// PEM bundle of the CAs whose client certificates are accepted;
    /// default `core_ca`.
    #[serde(default)]
    pub client_ca: Option<PathBuf>,
    /// PEM certificate revocation lists, re-read when the file changes.
    #[serde(default)]
    pub client_crl: Option<PathBuf>,
    /// Principals that may produce to any stream regardless of the access
    /// rules; `strata dev` makes its `admin` one.
    #[serde(default)]
    pub superusers: Vec<String>,
    /// Connections at once from one IP address (devices behind one NAT
    /// share it).
    #[serde(default = "strata_runtime::server::default_connections_per_address_max")]
    pub connections_per_address_max: usize,
    /// Requests served at once on one client connection (and request
    /// streams a client may have open at once; more wait at the client).
    #[serde(default = "default_requests_per_connection_max")]
    pub requests_per_connection_max: usize,
    /// A request must arrive whole within this, milliseconds; a client
    /// that opens a request stream and sends nothing is cut off.
    #[serde(default = "strata_runtime::server::default_request_read_timeout_ms")]
    pub request_read_timeout_ms: u64,
    /// Largest record (key + value + headers), bytes.
    #[serde(default = "default_record_bytes_max")]
    pub record_bytes_max: usize,
    /// Most records in one produced batch.
    #[serde(default = "default_batch_records_max")]
    pub batch_records_max: usize,
    /// Largest produced batch, bytes.
    #[serde(default = "default_batch_bytes_max")]
    pub batch_bytes_max: usize,
    /// Most not-yet-forwarded bytes kept on disk per stream.
    #[serde(default = "default_buffer_bytes_max")]
    pub buffer_bytes_max: u64,
    /// Size at which a buffer segment file is rolled, bytes.
    #[serde(default = "default_segment_bytes_max")]
    pub segment_bytes_max: u64,
    /// Zero-fill the active buffer segment ahead of small writes, so
    /// their fsyncs need not commit a new file size (faster on ext4 and
    /// XFS; turn off on copy-on-write file systems such as btrfs or ZFS,
    /// where overwriting saves nothing).
    #[serde(default = "default_true")]
    pub segment_prefill: bool,
    /// What to do when a stream's buffer is full: `reject` new batches
    /// (producers get BUFFER_FULL) or `drop_oldest` buffered data (counted, logged).
    #[serde(default = "default_full_policy")]
    pub full_policy: FullPolicy,
    /// Most bytes the forwarder reads from a buffer per round trip to the core.
    #[serde(default = "default_forward_bytes_max")]
    pub forward_bytes_max: usize,
    /// Longest pause between retries while the core is unreachable, ms.
    #[serde(default = "default_retry_backoff_ms_max")]
    pub retry_backoff_ms_max: u64,
    /// File holding the 256-bit key that encrypts the stream buffers at
    /// rest (AES-256-GCM): 64 hex characters, e.g. `openssl rand -hex 32`;
    /// refused when group or others may read it. Unset: plaintext buffers.
    /// See docs/encryption.md.
    #[serde(default)]
    pub encryption_key_file: Option<PathBuf>,
    /// Key files of buffer segments written before a key rotation: read
    /// until those segments are forwarded, never written with.
    #[serde(default)]
    pub encryption_previous_key_files: Vec<PathBuf>,
}

/// A setting `validate` refused; the message names the key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The batch limits (`record_bytes_max`, `batch_records_max`,
    /// `batch_bytes_max`) contradict each other.
    #[error("{0}")]
    Limits(#[from] strata_schema::batch::LimitsError),
    /// The buffer settings contradict each other.
    #[error("{0}")]
    Buffer(#[from] BufferError),
    #[error("segment_bytes_max = {segment_bytes_max} is below 1 MiB")]
    SegmentTooSmall { segment_bytes_max: u64 },
    #[error("core_addrs must list at least one core node")]
    NoCoreAddrs,
    #[error("forward_bytes_max must be positive")]
    ForwardBytesZero,
}

impl EdgeConfig {
    /// Limits of the client port's server loop.
    pub fn serve_limits(&self) -> strata_runtime::server::ServeLimits {
        strata_runtime::server::ServeLimits {
            connections_per_address_max: self.connections_per_address_max.max(1),
            requests_per_connection_max: self.requests_per_connection_max.max(1),
            request_read_timeout: std::time::Duration::from_millis(
                self.request_read_timeout_ms.max(1),
            ),
            ..Default::default()
        }
    }

    /// Client authentication of the ingest port.
    pub fn client_auth(&self) -> strata_runtime::identity::ClientAuth {
        strata_runtime::identity::ClientAuth {
            mode: self.client_auth,
            ca: Some(
                self.client_ca
                    .clone()
                    .unwrap_or_else(|| self.core_ca.clone()),
            ),
            crl: self.client_crl.clone(),
        }
    }

    /// The identity this agent presents to the core.
    pub fn core_identity(&self) -> strata_runtime::identity::Identity {
        strata_runtime::identity::Identity {
            cert: self
                .core_cert
                .clone()
                .unwrap_or_else(|| self.tls_cert.clone()),
            key: self
                .core_key
                .clone()
                .unwrap_or_else(|| self.tls_key.clone()),
        }
    }

    /// Checks values serde cannot; the error names the key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.limits().validate().map_err(ConfigError::Limits)?;
        let buffer = self.buffer_options();
        buffer.validate()?;
        // Refuse an unusable or exposed key file at start, not at the
        // first stream.
        crate::buffer::Keyring::load(
            buffer.encryption_key_file.as_deref(),
            &buffer.encryption_previous_key_files,
        )
        .map_err(BufferError::from)?;
        if self.segment_bytes_max < 1024 * 1024 {
            return Err(ConfigError::SegmentTooSmall {
                segment_bytes_max: self.segment_bytes_max,
            });
        }
        if self.core_addrs.is_empty() {
            return Err(ConfigError::NoCoreAddrs);
        }
        if self.forward_bytes_max == 0 {
            return Err(ConfigError::ForwardBytesZero);
        }
        Ok(())
    }

    /// The per-stream buffer options these settings give.
    pub fn buffer_options(&self) -> crate::buffer::BufferOptions {
        crate::buffer::BufferOptions {
            segment_bytes_max: self.segment_bytes_max,
            buffer_bytes_max: self.buffer_bytes_max,
            full_policy: self.full_policy,
            batch_bytes_max: self.batch_bytes_max,
            encryption_key_file: self.encryption_key_file.clone(),
            encryption_previous_key_files: self.encryption_previous_key_files.clone(),
            prefill: strata_segment_log::prefill::Prefill::enabled(self.segment_prefill),
        }
    }

    pub fn limits(&self) -> strata_schema::batch::Limits {
        strata_schema::batch::Limits {
            record_bytes_max: self.record_bytes_max,
            batch_records_max: self.batch_records_max,
            batch_bytes_max: self.batch_bytes_max,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn example_config_loads_and_validates() {
        let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../deploy/config/edge.example.toml");
        let cfg: EdgeConfig =
            strata_runtime::settings::load(Some(&p), "STRATA_EDGE_EXAMPLE_TEST").unwrap();
        cfg.validate().unwrap();
        assert_eq!(cfg.listen_addr.port(), 7400);
        assert_eq!(cfg.full_policy, FullPolicy::Reject);
    }

    #[test]
    fn a_buffer_too_small_for_its_segments_is_named() {
        let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../deploy/config/edge.example.toml");
        let mut cfg: EdgeConfig =
            strata_runtime::settings::load(Some(&p), "STRATA_EDGE_EXAMPLE_TEST2").unwrap();
        cfg.buffer_bytes_max = cfg.segment_bytes_max;
        let err = cfg.validate().unwrap_err().to_string();
        assert!(err.contains("buffer_bytes_max"), "{err}");
    }

    #[test]
    fn each_refused_setting_is_named() {
        let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../deploy/config/edge.example.toml");
        let good: EdgeConfig =
            strata_runtime::settings::load(Some(&p), "STRATA_EDGE_EXAMPLE_TEST3").unwrap();
        type Spoil = fn(&mut EdgeConfig);
        let cases: [(&str, Spoil); 4] = [
            ("segment_bytes_max", |c| c.segment_bytes_max = 1000),
            ("core_addrs", |c| c.core_addrs.clear()),
            ("forward_bytes_max", |c| c.forward_bytes_max = 0),
            ("record_bytes_max", |c| c.record_bytes_max = 0),
        ];
        for (key, spoil) in cases {
            let mut cfg = good.clone();
            spoil(&mut cfg);
            let err = cfg.validate().unwrap_err().to_string();
            assert!(err.contains(key), "{key}: {err}");
        }
    }
}
