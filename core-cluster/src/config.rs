//! `strata-core` configuration: TOML file, then `STRATA_CORE_*` environment.
//! Every key is documented in `deploy/config/core.example.toml`.

use serde::Deserialize;
use std::net::SocketAddr;
use std::path::PathBuf;

fn default_listen() -> SocketAddr {
    "127.0.0.1:7500".parse().expect("valid")
}
fn default_zone() -> String {
    "local".into()
}
fn default_node_id() -> u64 {
    1
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
fn default_true() -> bool {
    true
}
fn default_segment_bytes_max() -> u64 {
    128 * 1024 * 1024
}
fn default_fetch_wait_ms_max() -> u64 {
    30_000
}
fn default_shards_max() -> u32 {
    1024
}
fn default_streams_max() -> usize {
    4096
}
fn default_groups_per_stream_max() -> usize {
    1024
}
fn default_members_per_group_max() -> usize {
    1024
}

fn default_peer() -> SocketAddr {
    "127.0.0.1:7600".parse().expect("valid")
}

/// A member of the initial cluster (bootstrap set of the metadata group).
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct PeerConfig {
    /// Node id (non-zero, unique).
    pub id: u64,
    /// Availability-zone label.
    pub zone: String,
    /// Client API address (QUIC).
    pub addr: SocketAddr,
    /// Inter-node Raft address (QUIC, mutual TLS).
    pub peer_addr: SocketAddr,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CoreConfig {
    /// This node's id (non-zero, unique in the cluster).
    #[serde(default = "default_node_id")]
    pub node_id: u64,
    /// Availability-zone label of this node.
    #[serde(default = "default_zone")]
    pub zone: String,
    /// Directory for Raft logs, votes and state.
    pub data_dir: PathBuf,
    /// UDP address of the QUIC API (edges, CLI, SDK).
    #[serde(default = "default_listen")]
    pub listen_addr: SocketAddr,
    /// UDP address for Raft traffic between nodes (QUIC with mutual TLS).
    /// Only bound when `peers` lists other nodes.
    #[serde(default = "default_peer")]
    pub peer_addr: SocketAddr,
    /// Address other nodes dial to reach `peer_addr`, when it differs (NAT,
    /// a load balancer, a test relay). Default: `peer_addr`.
    #[serde(default)]
    pub peer_advertise_addr: Option<SocketAddr>,
    /// The initial cluster: every voter of the metadata group (3 or 5, in
    /// distinct zones), this node included. Empty: a single-node core. A
    /// node added later lists the initial cluster here without itself.
    #[serde(default)]
    pub peers: Vec<PeerConfig>,
    /// PEM CA certificate that every node's certificate chains to; required
    /// with `peers` (mutual TLS between nodes).
    #[serde(default)]
    pub tls_ca: Option<PathBuf>,
    /// Address of the Prometheus `/metrics` endpoint; unset = disabled.
    #[serde(default)]
    pub metrics_addr: Option<SocketAddr>,
    /// PEM certificate chain of this node.
    pub tls_cert: PathBuf,
    /// PEM private key of this node.
    pub tls_key: PathBuf,
    /// PEM certificate chain of this node's peer port (served to and
    /// presented to the other nodes). It should name this node's id (SAN URI
    /// `strata:node/ID`, `strata identity issue-node ID`): then the peer
    /// port serves only members, by the id of their peer certificate.
    /// Default: `tls_cert` (one certificate for both roles; warned).
    #[serde(default)]
    pub peer_cert: Option<PathBuf>,
    /// PEM private key of `peer_cert`; give both or neither.
    #[serde(default)]
    pub peer_key: Option<PathBuf>,
    /// `required` (default): clients present a certificate signed by
    /// `client_ca`; `off`: no client certificates and no access control,
    /// for a loopback test setup only (logged as a warning).
    #[serde(default)]
    pub client_auth: strata_runtime::identity::ClientAuthMode,
    /// PEM bundle of the CAs whose client certificates are accepted;
    /// default `tls_ca`.
    #[serde(default)]
    pub client_ca: Option<PathBuf>,
    /// PEM certificate revocation lists, re-read when the file changes.
    #[serde(default)]
    pub client_crl: Option<PathBuf>,
    /// Principals that may do everything regardless of the access rules
    /// (like Kafka's `super.users`); `strata dev` makes its `admin` one.
    #[serde(default)]
    pub superusers: Vec<String>,
    /// Connections at once from one IP address (devices behind one NAT
    /// share it).
    #[serde(default = "strata_runtime::server::default_connections_per_address_max")]
    pub connections_per_address_max: usize,
    /// Requests served at once on one client connection (and request
    /// streams a client may have open at once; more wait at the client).
    #[serde(default = "strata_runtime::server::default_requests_per_connection_max")]
    pub requests_per_connection_max: usize,
    /// A request must arrive whole within this, milliseconds; a client
    /// that opens a request stream and sends nothing is cut off.
    #[serde(default = "strata_runtime::server::default_request_read_timeout_ms")]
    pub request_read_timeout_ms: u64,
    /// Largest record (key + value + headers), bytes.
    #[serde(default = "default_record_bytes_max")]
    pub record_bytes_max: usize,
    /// Most records in one batch.
    #[serde(default = "default_batch_records_max")]
    pub batch_records_max: usize,
    /// Largest encoded batch, bytes.
    #[serde(default = "default_batch_bytes_max")]
    pub batch_bytes_max: usize,
    /// Size at which a Raft log segment file is rolled, bytes.
    #[serde(default = "default_segment_bytes_max")]
    pub segment_bytes_max: u64,
    /// Zero-fill the active Raft log segment ahead of small writes, so
    /// their fsyncs need not commit a new file size (faster on ext4 and
    /// XFS; turn off on copy-on-write file systems such as btrfs or ZFS,
    /// where overwriting saves nothing).
    #[serde(default = "default_true")]
    pub segment_prefill: bool,
    /// Longest long-poll a fetch may ask for, milliseconds.
    #[serde(default = "default_fetch_wait_ms_max")]
    pub fetch_wait_ms_max: u64,
    /// Most shards one stream may have.
    #[serde(default = "default_shards_max")]
    pub shards_max: u32,
    /// Most streams the cluster holds.
    #[serde(default = "default_streams_max")]
    pub streams_max: usize,
    /// Most consumer groups one stream has.
    #[serde(default = "default_groups_per_stream_max")]
    pub groups_per_stream_max: usize,
    /// Most members one consumer group has.
    #[serde(default = "default_members_per_group_max")]
    pub members_per_group_max: usize,
    /// Where tiered segments go: `file:///abs/dir` or `s3://bucket/prefix`
    /// (S3 settings from the AWS_* environment, AWS_ENDPOINT_URL included).
    /// Default: `<data_dir>/archive` on the local filesystem.
    #[serde(default)]
    pub object_store: Option<String>,
    /// Server-side encryption S3 applies to the archived objects: `"s3"`
    /// (SSE-S3) or `"kms"` (SSE-KMS). Unset: no header, the bucket's
    /// default encryption applies (and `AWS_SERVER_SIDE_ENCRYPTION`, if set).
    /// For an `s3://` object_store only. See docs/encryption.md.
    #[serde(default)]
    pub object_store_sse: Option<strata_archive::sse::Sse>,
    /// KMS key id, alias or ARN for `object_store_sse = "kms"`; unset: the
    /// account's `aws/s3` key.
    #[serde(default)]
    pub object_store_sse_kms_key_id: Option<String>,
    /// S3 Bucket Keys for SSE-KMS (fewer KMS requests); unset: the
    /// bucket's setting.
    #[serde(default)]
    pub object_store_sse_bucket_key: Option<bool>,
    /// A segment is tiered once its first record is this old (or it reaches
    /// `segment_bytes_max`), milliseconds.
    #[serde(default = "default_segment_age_max_ms")]
    pub segment_age_max_ms: u64,
    /// Tiered records stay on local disk this long, milliseconds.
    #[serde(default = "default_local_retention_ms")]
    pub local_retention_ms: u64,
    /// A shard group whose log has not grown for this long stops its Raft
    /// timers (no ticks, no heartbeats) until a write or a message wakes
    /// it, milliseconds; 0 keeps every group awake. See
    /// docs/architecture.md, "Idle shards".
    #[serde(default = "default_quiesce_after_ms")]
    pub quiesce_after_ms: u64,
    /// A producer id that has appended nothing to a shard for this long
    /// loses its dedup entry there, and the catalog forgets it once no
    /// shard holds one (docs/operations.md, "Producer id expiry"),
    /// milliseconds; 0 keeps them forever.
    #[serde(default = "default_producer_idle_expiry_ms")]
    pub producer_idle_expiry_ms: u64,
    /// How long a heartbeat to a peer node waits for the other groups'
    /// heartbeats and small RPCs to that node, so they travel in one
    /// message (docs/architecture.md, "Idle shards"), milliseconds; 0 sends
    /// each RPC on its own.
    #[serde(default = "default_peer_coalesce_window_ms")]
    pub peer_coalesce_window_ms: u64,
}

fn default_peer_coalesce_window_ms() -> u64 {
    crate::raft::coalesce::COALESCE_WINDOW.as_millis() as u64
}

fn default_quiesce_after_ms() -> u64 {
    2_000
}

fn default_producer_idle_expiry_ms() -> u64 {
    7 * 24 * 60 * 60 * 1000
}

fn default_segment_age_max_ms() -> u64 {
    10 * 60 * 1000
}
fn default_local_retention_ms() -> u64 {
    24 * 60 * 60 * 1000
}

/// A config value serde accepted but the core cannot run with; names the key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("node_id must be non-zero")]
    ZeroNodeId,
    /// From the record and batch limits (names the key).
    #[error("{0}")]
    Limits(#[from] strata_schema::batch::LimitsError),
    #[error("segment_bytes_max = {0} is below 1 MiB")]
    SegmentTooSmall(u64),
    #[error("segment_age_max_ms must be at least 1")]
    ZeroSegmentAge,
    #[error("shards_max must be at least 1")]
    ZeroShardsMax,
    #[error("peers entry for node {0} must match zone, listen_addr and peer_advertise_addr (or peer_addr) of this config")]
    PeerMismatch(u64),
    #[error("peers: node ids must be unique and non-zero")]
    PeerIds,
    #[error("tls_ca is required with peers (mutual TLS between nodes)")]
    NoClusterCa,
    #[error("{key}: {reason}")]
    ObjectStoreSse {
        key: &'static str,
        reason: strata_archive::sse::SseError,
    },
    #[error("object_store_sse applies to an s3:// object_store only")]
    SseNeedsS3,
    #[error("peer_cert and peer_key go together: give both or neither")]
    HalfPeerIdentity,
}

impl CoreConfig {
    /// The caps on the catalog's streams, groups and members.
    pub fn caps(&self) -> crate::catalog::caps::Caps {
        crate::catalog::caps::Caps {
            streams_max: self.streams_max,
            groups_per_stream_max: self.groups_per_stream_max,
            members_per_group_max: self.members_per_group_max,
        }
    }

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

    /// Client authentication of the client port.
    pub fn client_auth(&self) -> strata_runtime::identity::ClientAuth {
        strata_runtime::identity::ClientAuth {
            mode: self.client_auth,
            ca: self.client_ca.clone().or_else(|| self.tls_ca.clone()),
            crl: self.client_crl.clone(),
        }
    }

    /// Checks values serde cannot; the error names the key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.node_id == 0 {
            return Err(ConfigError::ZeroNodeId);
        }
        self.limits().validate().map_err(ConfigError::Limits)?;
        self.validate_sse()?;
        if self.segment_bytes_max < 1024 * 1024 {
            return Err(ConfigError::SegmentTooSmall(self.segment_bytes_max));
        }
        if self.segment_age_max_ms == 0 {
            return Err(ConfigError::ZeroSegmentAge);
        }
        if self.shards_max == 0 {
            return Err(ConfigError::ZeroShardsMax);
        }
        if self.peer_cert.is_some() != self.peer_key.is_some() {
            return Err(ConfigError::HalfPeerIdentity);
        }
        if !self.peers.is_empty() {
            // A node missing from `peers` joins the running cluster: the
            // peers are its seeds, and it waits for `strata cluster add-node`.
            let me = self.peers.iter().find(|p| p.id == self.node_id);
            if let Some(me) = me.filter(|me| {
                me.zone != self.zone
                    || me.addr != self.listen_addr
                    || me.peer_addr != self.advertised_peer_addr()
            }) {
                return Err(ConfigError::PeerMismatch(me.id));
            }
            let mut ids: Vec<u64> = self.peers.iter().map(|p| p.id).collect();
            ids.sort_unstable();
            ids.dedup();
            if ids.len() != self.peers.len() || ids.contains(&0) {
                return Err(ConfigError::PeerIds);
            }
            if self.tls_ca.is_none() {
                return Err(ConfigError::NoClusterCa);
            }
        }
        Ok(())
    }

    /// The object store URL, defaulted to `<data_dir>/archive`.
    /// The server-side encryption the archive's S3 store asks for.
    pub fn object_store_encryption(&self) -> strata_archive::sse::S3Encryption {
        strata_archive::sse::S3Encryption {
            sse: self.object_store_sse,
            kms_key_id: self.object_store_sse_kms_key_id.clone(),
            bucket_key: self.object_store_sse_bucket_key,
        }
    }

    fn validate_sse(&self) -> Result<(), ConfigError> {
        use strata_archive::sse::SseError;
        let sse = self.object_store_encryption();
        sse.validate()
            .map_err(|reason| ConfigError::ObjectStoreSse {
                key: match reason {
                    SseError::BucketKeyWithoutKms => "object_store_sse_bucket_key",
                    SseError::KmsKeyWithoutKms | SseError::EmptyKmsKeyId => {
                        "object_store_sse_kms_key_id"
                    }
                },
                reason,
            })?;
        if sse.is_set() && !self.object_store_url().starts_with("s3://") {
            return Err(ConfigError::SseNeedsS3);
        }
        Ok(())
    }

    pub fn object_store_url(&self) -> String {
        self.object_store.clone().unwrap_or_else(|| {
            let dir = std::path::absolute(self.data_dir.join("archive"))
                .unwrap_or_else(|_| self.data_dir.join("archive"));
            format!("file://{}", dir.display())
        })
    }

    /// The peer port's certificate and key: `peer_cert`/`peer_key`, else
    /// the client port's `tls_cert`/`tls_key`.
    pub fn peer_identity(&self) -> strata_runtime::identity::Identity {
        match (&self.peer_cert, &self.peer_key) {
            (Some(cert), Some(key)) => strata_runtime::identity::Identity {
                cert: cert.clone(),
                key: key.clone(),
            },
            _ => strata_runtime::identity::Identity {
                cert: self.tls_cert.clone(),
                key: self.tls_key.clone(),
            },
        }
    }

    /// The peer address other nodes use for this node.
    pub fn advertised_peer_addr(&self) -> SocketAddr {
        self.peer_advertise_addr.unwrap_or(self.peer_addr)
    }

    /// Whether this node joins a running cluster (it is not one of `peers`)
    /// rather than bootstrapping it.
    pub fn joining(&self) -> bool {
        !self.peers.is_empty() && !self.peers.iter().any(|p| p.id == self.node_id)
    }

    /// The initial cluster, this node alone when `peers` is empty.
    pub fn initial_members(&self) -> Vec<PeerConfig> {
        if self.peers.is_empty() {
            vec![PeerConfig {
                id: self.node_id,
                zone: self.zone.clone(),
                addr: self.listen_addr,
                peer_addr: self.advertised_peer_addr(),
            }]
        } else {
            self.peers.clone()
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
            .join("../deploy/config/core.example.toml");
        let cfg: CoreConfig =
            strata_runtime::settings::load(Some(&p), "STRATA_CORE_EXAMPLE_TEST").unwrap();
        cfg.validate().unwrap();
        assert_eq!(cfg.listen_addr.port(), 7500);
        assert_eq!(cfg.record_bytes_max, 1024 * 1024);
    }

    #[test]
    fn the_peer_port_has_its_own_certificate_or_the_client_ports() {
        let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../deploy/config/core.example.toml");
        let mut cfg: CoreConfig =
            strata_runtime::settings::load(Some(&p), "STRATA_CORE_EXAMPLE_TEST").unwrap();
        cfg.peer_cert = None;
        cfg.peer_key = None;
        assert_eq!(cfg.peer_identity().cert, cfg.tls_cert);
        cfg.peer_cert = Some("peer-1.pem".into());
        assert_eq!(cfg.validate(), Err(ConfigError::HalfPeerIdentity));
        cfg.peer_key = Some("peer-1-key.pem".into());
        cfg.validate().unwrap();
        let id = cfg.peer_identity();
        assert_eq!(
            (id.cert, id.key),
            ("peer-1.pem".into(), "peer-1-key.pem".into())
        );
    }

    #[test]
    fn object_store_sse_maps_to_the_archive_settings_and_names_bad_keys() {
        use strata_archive::sse::Sse;
        let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../deploy/config/core.example.toml");
        let mut cfg: CoreConfig =
            strata_runtime::settings::load(Some(&p), "STRATA_CORE_EXAMPLE_SSE_TEST").unwrap();
        cfg.peers.clear();
        cfg.object_store = Some("s3://bucket/strata".into());
        cfg.object_store_sse = Some(Sse::Kms);
        cfg.object_store_sse_kms_key_id = Some("alias/strata".into());
        cfg.object_store_sse_bucket_key = Some(true);
        cfg.validate().unwrap();
        let enc = cfg.object_store_encryption();
        assert_eq!(enc.sse, Some(Sse::Kms));
        assert_eq!(enc.kms_key_id.as_deref(), Some("alias/strata"));
        cfg.object_store_sse = Some(Sse::S3);
        let err = cfg.validate().unwrap_err().to_string();
        assert!(err.starts_with("object_store_sse_kms_key_id:"), "{err}");
        cfg.object_store_sse_kms_key_id = None;
        let err = cfg.validate().unwrap_err().to_string();
        assert!(err.starts_with("object_store_sse_bucket_key:"), "{err}");
        cfg.object_store_sse_bucket_key = None;
        cfg.validate().unwrap();
        cfg.object_store = None;
        assert_eq!(cfg.validate(), Err(ConfigError::SseNeedsS3));
    }
}
