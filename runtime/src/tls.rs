//! TLS for every Strata hop: rustls (TLS 1.3 only) under quinn, a dev CA made
//! with rcgen, and loading of PEM files with errors that name the file.
//!
//! `strata dev` creates `DIR/tls/` on first start: the dev CA (`ca.pem`,
//! `ca-key.pem`) and one certificate per role, each valid for `localhost`,
//! `127.0.0.1` and `::1`: `node.pem` (the core node: client port and peer
//! port, principal `node`), `edge.pem` (the edge agent: its client port, and
//! the identity it forwards to the core with, principal `edge`) and
//! `admin.pem` (the CLI's admin identity, principal `admin`). Missing role
//! files are added to an existing dev CA. Production deployments point the
//! daemons at their own CA and certificates (docs/security.md).
//!
//! A core node of a cluster also gets a peer certificate naming its node id
//! (`peer-ID.pem`, SAN URI `strata:node/ID`, [`issue_node_identity`],
//! [`DevPki::peer`]): the peer port serves Raft only to current members, by
//! that id, and the client and peer roles use different certificates.

use crate::identity::{ClientAuth, ClientAuthMode, Identity, ReloadingClientVerifier};
use crate::server::ServeLimits;
pub use crate::tls_error::TlsError;
use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

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
    /// The core node's certificate (client and peer ports).
    pub cert: PathBuf,
    pub key: PathBuf,
    /// The edge agent's certificate (its client port and its identity
    /// towards the core).
    pub edge: Identity,
    /// The CLI's admin identity.
    pub admin: Identity,
}

/// The dev certificates' host names.
const DEV_HOSTS: [&str; 3] = ["localhost", "127.0.0.1", "::1"];

impl DevPki {
    pub fn paths(tls_dir: &Path) -> Self {
        let id = |name: &str| Identity {
            cert: tls_dir.join(format!("{name}.pem")),
            key: tls_dir.join(format!("{name}-key.pem")),
        };
        Self {
            ca: tls_dir.join("ca.pem"),
            ca_key: tls_dir.join("ca-key.pem"),
            cert: tls_dir.join("node.pem"),
            key: tls_dir.join("node-key.pem"),
            edge: id("edge"),
            admin: id("admin"),
        }
    }

    /// Creates the dev CA and every role's certificate unless they already
    /// exist (a role file missing beside an existing CA is added). Returns
    /// whether anything was created.
    pub fn ensure(tls_dir: &Path) -> Result<(Self, bool)> {
        let p = Self::paths(tls_dir);
        let roles = [
            (&p.cert, &p.key, "node"),
            (&p.edge.cert, &p.edge.key, "edge"),
            (&p.admin.cert, &p.admin.key, "admin"),
        ];
        let missing: Vec<_> = roles
            .iter()
            .filter(|(c, k, _)| !c.exists() || !k.exists())
            .collect();
        let have_ca = p.ca.exists() && p.ca_key.exists();
        if have_ca && missing.is_empty() {
            return Ok((p, false));
        }
        std::fs::create_dir_all(tls_dir).map_err(io("creating", tls_dir))?;
        let (issuer, ca_pem) = if have_ca {
            load_issuer(&p.ca, &p.ca_key)?
        } else {
            let (issuer, ca_pem, ca_key_pem) = new_ca()?;
            write_private(&p.ca_key, &ca_key_pem)?;
            (issuer, ca_pem)
        };
        let issue = |name: &str, cert: &Path, key: &Path| -> Result<()> {
            let (c, k) = issue_cert(&issuer, name, true)?;
            write_private(key, &k)?;
            std::fs::write(cert, c).map_err(io("writing", cert))
        };
        if have_ca {
            for (c, k, name) in missing {
                issue(name, c, k)?;
            }
        } else {
            for (c, k, name) in roles {
                issue(name, c, k)?;
            }
            // The CA last: its presence marks a complete set.
            std::fs::write(&p.ca, ca_pem).map_err(io("writing", &p.ca))?;
        }
        Ok((p, true))
    }
}

impl DevPki {
    /// The peer certificate of node `id` (`peer-ID.pem`, `peer-ID-key.pem`
    /// beside the CA), issued from the dev CA unless both files exist.
    pub fn peer(&self, id: u64) -> Result<Identity> {
        let dir = self.ca.parent().unwrap_or(Path::new("."));
        let have = node_identity_paths(id, dir);
        if have.cert.exists() && have.key.exists() {
            return Ok(have);
        }
        issue_node_identity(id, dir, dir)
    }
}

fn node_identity_paths(id: u64, out: &Path) -> Identity {
    Identity {
        cert: out.join(format!("peer-{id}.pem")),
        key: out.join(format!("peer-{id}-key.pem")),
    }
}

/// Issues the peer certificate of core node `id` from the dev CA in
/// `ca_dir` (`ca.pem`, `ca-key.pem`), written to `out/peer-ID.pem` and
/// `out/peer-ID-key.pem` (0600): SAN URI `strata:node/ID`, CN `node-ID`, the
/// dev host names, server and client auth (a node both serves and dials the
/// peer port). It names no principal. For development and tests;
/// production issues the same SAN URI from its own CA (docs/security.md).
pub fn issue_node_identity(id: u64, ca_dir: &Path, out: &Path) -> Result<Identity> {
    if id == 0 {
        return Err(TlsError::ZeroNodeId);
    }
    let (issuer, _) = load_issuer(&ca_dir.join("ca.pem"), &ca_dir.join("ca-key.pem"))?;
    let mut params = CertificateParams::new(DEV_HOSTS.map(str::to_string).to_vec())?;
    params
        .distinguished_name
        .push(DnType::CommonName, format!("node-{id}"));
    let uri = format!("{}{id}", crate::identity::NODE_URI_PREFIX);
    params.subject_alt_names.push(SanType::URI(
        uri.as_str().try_into().expect("a digit URI is IA5"),
    ));
    params.use_authority_key_identifier_extension = true;
    params.extended_key_usages = vec![
        rcgen::ExtendedKeyUsagePurpose::ServerAuth,
        rcgen::ExtendedKeyUsagePurpose::ClientAuth,
    ];
    let key = KeyPair::generate()?;
    let cert = params.signed_by(&key, &issuer)?;
    std::fs::create_dir_all(out).map_err(io("creating", out))?;
    let id = node_identity_paths(id, out);
    write_private(&id.key, &key.serialize_pem())?;
    std::fs::write(&id.cert, cert.pem()).map_err(io("writing", &id.cert))?;
    Ok(id)
}

/// The node id named by the first certificate in the PEM file `cert`
/// (`None`: it names none, as a shared legacy node certificate).
pub fn node_id_of_file(cert: &Path) -> Result<Option<u64>> {
    let der = load_certs(cert)?.remove(0);
    Ok(crate::identity::node_id_of(&der))
}

/// A new CA: (issuer, certificate PEM, key PEM).
fn new_ca() -> Result<(Issuer<'static, KeyPair>, String, String)> {
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "Strata dev CA");
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_key = KeyPair::generate()?;
    let ca_cert = ca_params.self_signed(&ca_key)?;
    let key_pem = ca_key.serialize_pem();
    Ok((Issuer::new(ca_params, ca_key), ca_cert.pem(), key_pem))
}

/// The dev CA as an issuer, from its PEM files (`ca_key` is written first,
/// so a set whose `ca.pem` exists is complete).
fn load_issuer(ca: &Path, ca_key: &Path) -> Result<(Issuer<'static, KeyPair>, String)> {
    let ca_pem = std::fs::read_to_string(ca).map_err(io("reading", ca))?;
    let key_pem = std::fs::read_to_string(ca_key).map_err(io("reading", ca_key))?;
    let key = KeyPair::from_pem(&key_pem)?;
    Ok((Issuer::from_ca_cert_pem(&ca_pem, key)?, ca_pem))
}

/// A certificate for principal `name` signed by `issuer`: SAN URI
/// `strata:principal/NAME`, CN `NAME`, client auth; with `server`, also
/// the dev host names and server auth. Returns (certificate PEM, key PEM).
fn issue_cert(issuer: &Issuer<'_, KeyPair>, name: &str, server: bool) -> Result<(String, String)> {
    let hosts: Vec<String> = if server {
        DEV_HOSTS.iter().map(|h| h.to_string()).collect()
    } else {
        Vec::new()
    };
    let mut params = CertificateParams::new(hosts)?;
    params.distinguished_name.push(DnType::CommonName, name);
    let uri = format!("{}{name}", crate::identity::PRINCIPAL_URI_PREFIX);
    params.subject_alt_names.push(SanType::URI(
        uri.as_str()
            .try_into()
            .map_err(|_| TlsError::BadPrincipal(name.to_string()))?,
    ));
    params.use_authority_key_identifier_extension = true;
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
    if server {
        params
            .extended_key_usages
            .push(rcgen::ExtendedKeyUsagePurpose::ServerAuth);
    }
    let key = KeyPair::generate()?;
    let cert = params.signed_by(&key, issuer)?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// Issues a client certificate for principal `name` from the dev CA in
/// `ca_dir` (`ca.pem`, `ca-key.pem`), written to `out/NAME.pem` and
/// `out/NAME-key.pem` (0600). For development and tests; production uses
/// the operator's own CA (docs/security.md).
pub fn issue_identity(name: &str, ca_dir: &Path, out: &Path) -> Result<Identity> {
    if strata_schema::validate_name("principal", name).is_err() {
        return Err(TlsError::BadPrincipal(name.to_string()));
    }
    let (issuer, _) = load_issuer(&ca_dir.join("ca.pem"), &ca_dir.join("ca-key.pem"))?;
    let (cert, key) = issue_cert(&issuer, name, false)?;
    std::fs::create_dir_all(out).map_err(io("creating", out))?;
    let id = Identity {
        cert: out.join(format!("{name}.pem")),
        key: out.join(format!("{name}-key.pem")),
    };
    write_private(&id.key, &key)?;
    std::fs::write(&id.cert, cert).map_err(io("writing", &id.cert))?;
    Ok(id)
}

/// Revokes the certificate in `cert`: adds its serial number to the CRL
/// file `crl` (created if missing; earlier revocations are kept), signed by
/// the dev CA in `ca_dir`. The file is replaced atomically, so a server
/// re-reading it never sees half a list. Returns how many certificates the
/// list now revokes.
pub fn revoke_identity(cert: &Path, ca_dir: &Path, crl: &Path) -> Result<usize> {
    use rcgen::{CertificateRevocationListParams, KeyIdMethod, RevokedCertParams, SerialNumber};
    let der = load_certs(cert)?.remove(0);
    let bad = |what: &str| TlsError::BadCertificate {
        path: cert.to_path_buf(),
        detail: what.to_string(),
    };
    let (_, parsed) = x509_parser::parse_x509_certificate(&der).map_err(|e| bad(&e.to_string()))?;
    let mut serials = vec![parsed.raw_serial().to_vec()];
    if crl.exists() {
        for old in crate::identity::load_crls(crl)? {
            let (_, list) =
                x509_parser::parse_x509_crl(&old).map_err(|e| TlsError::BadCertificate {
                    path: crl.to_path_buf(),
                    detail: e.to_string(),
                })?;
            for r in list.iter_revoked_certificates() {
                let s = r.raw_serial().to_vec();
                if !serials.contains(&s) {
                    serials.push(s);
                }
            }
        }
    }
    let (issuer, _) = load_issuer(&ca_dir.join("ca.pem"), &ca_dir.join("ca-key.pem"))?;
    let now = time::OffsetDateTime::now_utc();
    let params = CertificateRevocationListParams {
        this_update: now,
        next_update: now + time::Duration::days(365),
        crl_number: SerialNumber::from(now.unix_timestamp().to_be_bytes().to_vec()),
        issuing_distribution_point: None,
        revoked_certs: serials
            .iter()
            .map(|s| RevokedCertParams {
                serial_number: SerialNumber::from_slice(s),
                revocation_time: now,
                reason_code: None,
                invalidity_date: None,
            })
            .collect(),
        key_identifier_method: KeyIdMethod::Sha256,
    };
    let pem = params.signed_by(&issuer)?.pem()?;
    let tmp = crl.with_extension("tmp");
    std::fs::write(&tmp, pem).map_err(io("writing", &tmp))?;
    std::fs::rename(&tmp, crl).map_err(io("replacing", crl))?;
    Ok(serials.len())
}

/// Writes a key file readable by its owner only (0600; the daemons refuse
/// a key others can read).
pub fn write_private(path: &Path, pem: &str) -> Result<()> {
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

/// Reads a PEM private key. On Unix a key readable by group or others is
/// refused (as ssh does), so a daemon never starts on an exposed key.
pub fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>> {
    check_key_permissions(path)?;
    let pem = std::fs::read(path).map_err(io("reading key file", path))?;
    rustls_pemfile::private_key(&mut pem.as_slice())
        .map_err(io("parsing PEM private key in", path))?
        .ok_or_else(|| TlsError::NoKey(path.to_path_buf()))
}

/// Refuses a secret file (a private key, the edge's buffer encryption key)
/// that group or others may read, on Unix; elsewhere only checks it exists.
pub fn check_key_permissions(path: &Path) -> Result<()> {
    let meta = std::fs::metadata(path).map_err(io("reading key file", path))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = meta.permissions().mode();
        if mode & 0o077 != 0 {
            return Err(TlsError::KeyPermissions {
                path: path.to_path_buf(),
                mode: mode & 0o777,
            });
        }
    }
    #[cfg(not(unix))]
    let _ = meta;
    Ok(())
}

/// `keep_alive` must be well under `idle_timeout`: a peer that stops
/// answering (a killed process sends no close) is then detected within
/// `idle_timeout`, and the next request reconnects. The peer may open
/// `streams_max` request streams at once.
fn transport(
    keep_alive: Duration,
    idle_timeout: Duration,
    streams_max: u32,
) -> Arc<quinn::TransportConfig> {
    let mut t = quinn::TransportConfig::default();
    t.max_concurrent_bidi_streams(streams_max.into())
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

/// Server config of a client port: TLS 1.3, ALPN `strata/1`, certificate
/// chain and key from PEM files; client certificates as `auth` says.
///
/// A client may open as many request streams at once as the server loop
/// (`crate::server::serve`, given the same `limits`) serves per connection
/// (`requests_per_connection_max`): a stream beyond that would only wait
/// inside QUIC with its data buffered, and QUIC keeps the reassembly state
/// of every stream a connection ever had open at once for the connection's
/// life (measured at the edge with 1024 allowed: 7 MiB held by one
/// producer's connection through a backlog drain; docs/benchmarks.md,
/// "Edge footprint").
pub fn server_config(
    cert: &Path,
    key: &Path,
    auth: &ClientAuth,
    limits: &ServeLimits,
) -> Result<quinn::ServerConfig> {
    install_crypto_provider();
    let certs = load_certs(cert)?;
    let key = load_key(key)?;
    let builder = rustls::ServerConfig::builder_with_protocol_versions(&[&rustls::version::TLS13]);
    let builder = match auth.mode {
        ClientAuthMode::Off => builder.with_no_client_auth(),
        ClientAuthMode::Required => {
            let ca = auth.ca.as_deref().ok_or(TlsError::NoClientCa)?;
            let v = ReloadingClientVerifier::new(cluster_roots(ca)?, ca, auth.crl.as_deref())?;
            builder.with_client_cert_verifier(Arc::new(v))
        }
    };
    let mut tls = builder
        .with_single_cert(certs, key)
        .map_err(mismatch(cert))?;
    tls.alpn_protocols = vec![strata_schema::ALPN.to_vec()];
    tls.max_early_data_size = 0;
    let crypto = QuicServerConfig::try_from(tls)?;
    let mut cfg = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    let streams_max = u32::try_from(limits.requests_per_connection_max.max(1)).unwrap_or(u32::MAX);
    cfg.transport_config(transport(
        Duration::from_secs(5),
        Duration::from_secs(30),
        streams_max,
    ));
    Ok(cfg)
}

/// Client config trusting only the CA certificates in `ca` (PEM), and
/// presenting `identity` when given.
pub fn client_config(ca: &Path, identity: Option<&Identity>) -> Result<quinn::ClientConfig> {
    install_crypto_provider();
    let builder = rustls::ClientConfig::builder_with_protocol_versions(&[&rustls::version::TLS13])
        .with_root_certificates(cluster_roots(ca)?);
    let mut tls = match identity {
        None => builder.with_no_client_auth(),
        Some(id) => builder
            .with_client_auth_cert(load_certs(&id.cert)?, load_key(&id.key)?)
            .map_err(mismatch(&id.cert))?,
    };
    tls.alpn_protocols = vec![strata_schema::ALPN.to_vec()];
    let crypto = QuicClientConfig::try_from(tls)?;
    let mut cfg = quinn::ClientConfig::new(Arc::new(crypto));
    // Servers open no streams towards a client.
    cfg.transport_config(transport(Duration::from_secs(1), Duration::from_secs(4), 0));
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

#[cfg(test)]
#[path = "tls_stream_tests.rs"]
mod stream_tests;
