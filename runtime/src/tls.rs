//! TLS for every Strata hop: rustls (TLS 1.3 only) under quinn, a dev CA made
//! with rcgen, and loading of PEM files with errors that name the file.
//!
//! `strata dev` creates `DIR/tls/{ca.pem, ca-key.pem, node.pem, node-key.pem}` on
//! first start; the node certificate is valid for `localhost`, `127.0.0.1` and
//! `::1`, and serves both the edge and the core. Production deployments point
//! the daemons at their own CA and certificates.

use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// Errors of TLS set-up; each names the file or step that failed.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{what} {}: {source}", path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("no certificate found in {}", .0.display())]
    NoCertificate(PathBuf),
    #[error("no private key found in {}", .0.display())]
    NoKey(PathBuf),
    #[error("certificate {} does not match its key: {source}", cert.display())]
    KeyMismatch {
        cert: PathBuf,
        source: rustls::Error,
    },
    #[error("adding CA certificate from {}: {source}", ca.display())]
    BadCa { ca: PathBuf, source: rustls::Error },
    #[error("building the client verifier for CA {}: {source}", ca.display())]
    Verifier {
        ca: PathBuf,
        source: rustls::server::VerifierBuilderError,
    },
    #[error("building the QUIC TLS config: {0}")]
    Quic(#[from] quinn::crypto::rustls::NoInitialCipherSuite),
    #[error("generating the dev certificates: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("no CA certificate: pass --ca FILE or set STRATA_CA (looked for {}; `strata dev` creates it)", .0.display())]
    NoCa(PathBuf),
}

type Result<T, E = TlsError> = std::result::Result<T, E>;

fn io<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> TlsError + 'a {
    move |source| TlsError::Io {
        what,
        path: path.to_path_buf(),
        source,
    }
}

fn mismatch(cert: &Path) -> impl FnOnce(rustls::Error) -> TlsError + '_ {
    move |source| TlsError::KeyMismatch {
        cert: cert.to_path_buf(),
        source,
    }
}

/// Files of the development PKI under `DIR/tls`.
#[derive(Debug, Clone)]
pub struct DevPki {
    pub ca: PathBuf,
    pub ca_key: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl DevPki {
    pub fn paths(tls_dir: &Path) -> Self {
        Self {
            ca: tls_dir.join("ca.pem"),
            ca_key: tls_dir.join("ca-key.pem"),
            cert: tls_dir.join("node.pem"),
            key: tls_dir.join("node-key.pem"),
        }
    }

    /// Creates the dev CA and node certificate unless they already exist.
    /// Returns whether anything was created.
    pub fn ensure(tls_dir: &Path) -> Result<(Self, bool)> {
        let p = Self::paths(tls_dir);
        if p.ca.exists() && p.cert.exists() && p.key.exists() {
            return Ok((p, false));
        }
        std::fs::create_dir_all(tls_dir).map_err(io("creating", tls_dir))?;
        let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "Strata dev CA");
        ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca_key = KeyPair::generate()?;
        let ca_cert = ca_params.self_signed(&ca_key)?;
        let ca_key_pem = ca_key.serialize_pem();
        let issuer = Issuer::new(ca_params, ca_key);

        let mut node = CertificateParams::new(vec![
            "localhost".to_string(),
            "127.0.0.1".to_string(),
            "::1".to_string(),
        ])?;
        node.distinguished_name
            .push(DnType::CommonName, "strata dev node");
        node.use_authority_key_identifier_extension = true;
        node.extended_key_usages = vec![
            rcgen::ExtendedKeyUsagePurpose::ServerAuth,
            rcgen::ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let node_key = KeyPair::generate()?;
        let node_cert = node.signed_by(&node_key, &issuer)?;

        write_private(&p.ca_key, &ca_key_pem)?;
        write_private(&p.key, &node_key.serialize_pem())?;
        std::fs::write(&p.cert, node_cert.pem()).map_err(io("writing", &p.cert))?;
        // The CA last: its presence marks a complete set.
        std::fs::write(&p.ca, ca_cert.pem()).map_err(io("writing", &p.ca))?;
        Ok((p, true))
    }
}

fn write_private(path: &Path, pem: &str) -> Result<()> {
    use std::io::Write;
    #[cfg(unix)]
    use std::os::unix::fs::OpenOptionsExt;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    opts.mode(0o600);
    let mut f = opts.open(path).map_err(io("writing", path))?;
    f.write_all(pem.as_bytes()).map_err(io("writing", path))?;
    Ok(())
}

/// Installs ring as rustls's process-wide provider (idempotent).
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>> {
    let pem = std::fs::read(path).map_err(io("reading certificate file", path))?;
    let certs = rustls_pemfile::certs(&mut pem.as_slice())
        .collect::<Result<Vec<_>, _>>()
        .map_err(io("parsing PEM certificates in", path))?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate(path.to_path_buf()));
    }
    Ok(certs)
}

pub fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>> {
    let pem = std::fs::read(path).map_err(io("reading key file", path))?;
    rustls_pemfile::private_key(&mut pem.as_slice())
        .map_err(io("parsing PEM private key in", path))?
        .ok_or_else(|| TlsError::NoKey(path.to_path_buf()))
}

/// `keep_alive` must be well under `idle_timeout`: a peer that stops
/// answering (a killed process sends no close) is then detected within
/// `idle_timeout`, and the next request reconnects.
fn transport(keep_alive: Duration, idle_timeout: Duration) -> Arc<quinn::TransportConfig> {
    let mut t = quinn::TransportConfig::default();
    t.max_concurrent_bidi_streams(1024u32.into())
        .max_concurrent_uni_streams(0u32.into())
        .stream_receive_window((16u32 * 1024 * 1024).into())
        .receive_window((64u32 * 1024 * 1024).into())
        .send_window(64 * 1024 * 1024)
        .keep_alive_interval(Some(keep_alive))
        .max_idle_timeout(Some(
            idle_timeout
                .try_into()
                .expect("idle timeout fits a QUIC varint"),
        ));
    Arc::new(t)
}

/// Server config: TLS 1.3, ALPN `strata/1`, certificate chain and key from PEM files.
pub fn server_config(cert: &Path, key: &Path) -> Result<quinn::ServerConfig> {
    install_crypto_provider();
    let certs = load_certs(cert)?;
    let key = load_key(key)?;
    let mut tls = rustls::ServerConfig::builder_with_protocol_versions(&[&rustls::version::TLS13])
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(mismatch(cert))?;
    tls.alpn_protocols = vec![strata_schema::ALPN.to_vec()];
    tls.max_early_data_size = 0;
    let crypto = QuicServerConfig::try_from(tls)?;
    let mut cfg = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    cfg.transport_config(transport(Duration::from_secs(5), Duration::from_secs(30)));
    Ok(cfg)
}

/// Client config trusting only the CA certificates in `ca` (PEM).
pub fn client_config(ca: &Path) -> Result<quinn::ClientConfig> {
    install_crypto_provider();
    let mut roots = rustls::RootCertStore::empty();
    for c in load_certs(ca)? {
        roots.add(c).map_err(|source| TlsError::BadCa {
            ca: ca.to_path_buf(),
            source,
        })?;
    }
    let mut tls = rustls::ClientConfig::builder_with_protocol_versions(&[&rustls::version::TLS13])
        .with_root_certificates(roots)
        .with_no_client_auth();
    tls.alpn_protocols = vec![strata_schema::ALPN.to_vec()];
    let crypto = QuicClientConfig::try_from(tls)?;
    let mut cfg = quinn::ClientConfig::new(Arc::new(crypto));
    cfg.transport_config(transport(Duration::from_secs(1), Duration::from_secs(4)));
    Ok(cfg)
}

/// ALPN protocol id of the Raft transport between core nodes.
pub const PEER_ALPN: &[u8] = b"strata-peer/1";

/// Peers notice a dead node within seconds, not the 30 s of client links:
/// RPCs to it fail fast and the connection is re-established once it is back.
fn peer_transport() -> Arc<quinn::TransportConfig> {
    let mut t = quinn::TransportConfig::default();
    // Every Raft group on a node shares one connection per peer.
    t.max_concurrent_bidi_streams(4096u32.into())
        .max_concurrent_uni_streams(0u32.into())
        .stream_receive_window((16u32 * 1024 * 1024).into())
        .receive_window((64u32 * 1024 * 1024).into())
        .send_window(64 * 1024 * 1024)
        .keep_alive_interval(Some(Duration::from_secs(1)))
        .max_idle_timeout(Some(
            Duration::from_secs(5)
                .try_into()
                .expect("idle timeout fits a QUIC varint"),
        ));
    Arc::new(t)
}

fn cluster_roots(ca: &Path) -> Result<rustls::RootCertStore> {
    let mut roots = rustls::RootCertStore::empty();
    for c in load_certs(ca)? {
        roots.add(c).map_err(|source| TlsError::BadCa {
            ca: ca.to_path_buf(),
            source,
        })?;
    }
    Ok(roots)
}

/// Server config of a core node's peer endpoint: mutual TLS 1.3, ALPN
/// `strata-peer/1`; a client must present a certificate signed by the
/// cluster CA in `ca`.
pub fn peer_server_config(cert: &Path, key: &Path, ca: &Path) -> Result<quinn::ServerConfig> {
    install_crypto_provider();
    let certs = load_certs(cert)?;
    let key = load_key(key)?;
    let verifier = rustls::server::WebPkiClientVerifier::builder(Arc::new(cluster_roots(ca)?))
        .build()
        .map_err(|source| TlsError::Verifier {
            ca: ca.to_path_buf(),
            source,
        })?;
    let mut tls = rustls::ServerConfig::builder_with_protocol_versions(&[&rustls::version::TLS13])
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs, key)
        .map_err(mismatch(cert))?;
    tls.alpn_protocols = vec![PEER_ALPN.to_vec()];
    tls.max_early_data_size = 0;
    let crypto = QuicServerConfig::try_from(tls)?;
    let mut cfg = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    cfg.transport_config(peer_transport());
    Ok(cfg)
}

/// Client config for Raft RPCs to other core nodes: mutual TLS 1.3, ALPN
/// `strata-peer/1`, presenting `cert`/`key` and trusting only the cluster CA.
pub fn peer_client_config(cert: &Path, key: &Path, ca: &Path) -> Result<quinn::ClientConfig> {
    install_crypto_provider();
    let certs = load_certs(cert)?;
    let key = load_key(key)?;
    let mut tls = rustls::ClientConfig::builder_with_protocol_versions(&[&rustls::version::TLS13])
        .with_root_certificates(cluster_roots(ca)?)
        .with_client_auth_cert(certs, key)
        .map_err(mismatch(cert))?;
    tls.alpn_protocols = vec![PEER_ALPN.to_vec()];
    let crypto = QuicClientConfig::try_from(tls)?;
    let mut cfg = quinn::ClientConfig::new(Arc::new(crypto));
    cfg.transport_config(peer_transport());
    Ok(cfg)
}

/// Where a CLI finds its CA: `--ca`/`STRATA_CA` if given, else `./strata-data/tls/ca.pem`.
pub fn resolve_ca(explicit: Option<&Path>) -> Result<PathBuf> {
    if let Some(p) = explicit {
        return Ok(p.to_path_buf());
    }
    let default = PathBuf::from("strata-data/tls/ca.pem");
    if default.exists() {
        return Ok(default);
    }
    Err(TlsError::NoCa(default))
}
