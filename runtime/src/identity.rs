//! Who is calling: principals read from client certificates, the client
//! identity a program presents, and the server-side verifier that checks
//! client certificates against a CA bundle and a CRL file that is re-read
//! when it changes.
//!
//! **Principal.** The name is taken from the certificate's first SAN URI of
//! the form `strata:principal/NAME`; a certificate without one is known by
//! its subject CN. `strata identity issue NAME` (and the dev PKI) write the
//! SAN URI; an operator's own CA may use either.
//!
//! **Node.** A core node's peer certificate names its node id in a SAN URI
//! `strata:node/ID` (`strata identity issue-node ID`, `DevPki::peer`): the
//! peer port serves Raft only to callers whose certificate names a member.

use rustls::client::danger::HandshakeSignatureValid;
use rustls::pki_types::{CertificateDer, CertificateRevocationListDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, RootCertStore, SignatureScheme};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use crate::tls_error::TlsError;

/// Prefix of the SAN URI that names a principal.
pub const PRINCIPAL_URI_PREFIX: &str = "strata:principal/";

/// Prefix of the SAN URI that names a core node's id (peer certificates).
pub const NODE_URI_PREFIX: &str = "strata:node/";

/// The principal of a client that presented no certificate on a server
/// whose `client_auth` is `off` (a loopback test setup).
pub const ANONYMOUS: &str = "anonymous";

/// The principal named by a DER certificate: its `strata:principal/NAME`
/// SAN URI, else its subject CN. `None` when it has neither (or does not
/// parse, which the TLS layer has already ruled out for a verified chain).
pub fn principal_of(cert: &[u8]) -> Option<String> {
    let (_, c) = x509_parser::parse_x509_certificate(cert).ok()?;
    if let Ok(Some(san)) = c.subject_alternative_name() {
        for n in &san.value.general_names {
            if let x509_parser::extensions::GeneralName::URI(u) = n {
                if let Some(name) = u.strip_prefix(PRINCIPAL_URI_PREFIX) {
                    if !name.is_empty() {
                        return Some(name.to_string());
                    }
                }
            }
        }
    }
    let cn = c
        .subject()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .filter(|s| !s.is_empty())
        .map(str::to_string);
    cn
}

/// The principal of an established QUIC connection: from the first
/// certificate the client presented, if any.
pub fn connection_principal(conn: &quinn::Connection) -> Option<String> {
    let any = conn.peer_identity()?;
    let certs = any.downcast::<Vec<CertificateDer<'static>>>().ok()?;
    certs.first().and_then(|c| principal_of(c))
}

/// The node id named by a DER certificate: its first `strata:node/ID` SAN
/// URI whose ID is a non-zero decimal `u64`. `None` when it names none (a
/// client certificate, a legacy shared node certificate) or does not parse.
pub fn node_id_of(cert: &[u8]) -> Option<u64> {
    let (_, c) = x509_parser::parse_x509_certificate(cert).ok()?;
    let san = c.subject_alternative_name().ok()??;
    san.value.general_names.iter().find_map(|n| match n {
        x509_parser::extensions::GeneralName::URI(u) => {
            u.strip_prefix(NODE_URI_PREFIX).and_then(parse_node_id)
        }
        _ => None,
    })
}

/// A node id in its one spelling: decimal digits, no sign, no leading zero.
fn parse_node_id(s: &str) -> Option<u64> {
    let canonical = !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) && !s.starts_with('0');
    canonical.then(|| s.parse().ok()).flatten()
}

/// The node id of the peer of an established QUIC connection: from the
/// first certificate it presented, if any.
pub fn connection_node_id(conn: &quinn::Connection) -> Option<u64> {
    let any = conn.peer_identity()?;
    let certs = any.downcast::<Vec<CertificateDer<'static>>>().ok()?;
    certs.first().and_then(|c| node_id_of(c))
}

/// A certificate and key a client presents (PEM files).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl Identity {
    /// The dev PKI's admin identity (`admin.pem`, `admin-key.pem`) in the
    /// directory of the CA file `ca`, when both exist: what the CLI and the
    /// SDK use when no identity is given, next to a `strata dev` data
    /// directory. Production CA directories hold no such files.
    pub fn admin_beside(ca: &Path) -> Option<Identity> {
        let dir = ca.parent()?;
        let id = Identity {
            cert: dir.join("admin.pem"),
            key: dir.join("admin-key.pem"),
        };
        (id.cert.exists() && id.key.exists()).then_some(id)
    }

    /// `--cert`/`--cert-key` (or `STRATA_CERT`/`STRATA_KEY`) if given (both or
    /// neither), else the admin identity beside the CA.
    pub fn resolve(
        cert: Option<&Path>,
        key: Option<&Path>,
        ca: &Path,
    ) -> Result<Option<Identity>, TlsError> {
        match (cert, key) {
            (Some(c), Some(k)) => Ok(Some(Identity {
                cert: c.to_path_buf(),
                key: k.to_path_buf(),
            })),
            (None, None) => Ok(Self::admin_beside(ca)),
            _ => Err(TlsError::HalfIdentity),
        }
    }
}

/// Whether a server requires client certificates.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ClientAuthMode {
    /// Every client presents a certificate signed by the client CA.
    #[default]
    Required,
    /// No client certificates and no access control: for a loopback test
    /// setup only (logged as a warning at start).
    Off,
}

/// Client authentication of a server endpoint.
#[derive(Debug, Clone, Default)]
pub struct ClientAuth {
    pub mode: ClientAuthMode,
    /// PEM bundle of the CAs whose client certificates are accepted.
    pub ca: Option<PathBuf>,
    /// PEM file of certificate revocation lists, re-read when it changes.
    pub crl: Option<PathBuf>,
}

/// Checks client certificates against a CA bundle and, if configured, a CRL
/// file. The file's modification time and length are looked at on every
/// handshake; when they change the CRLs are read again. A CRL file that
/// cannot be read or parsed is an error at start; later, the previous
/// lists stay in force and the failure is logged (an operator's half-written
/// file must not open the door nor lock everyone out).
#[derive(Debug)]
pub struct ReloadingClientVerifier {
    roots: Arc<RootCertStore>,
    hints: Vec<DistinguishedName>,
    crl: Option<PathBuf>,
    current: Mutex<(Option<FileStamp>, Arc<dyn ClientCertVerifier>)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileStamp {
    modified: Option<SystemTime>,
    len: u64,
}

fn stamp(path: &Path) -> Option<FileStamp> {
    let md = std::fs::metadata(path).ok()?;
    Some(FileStamp {
        modified: md.modified().ok(),
        len: md.len(),
    })
}

/// Reads the CRLs in a PEM file.
pub fn load_crls(path: &Path) -> Result<Vec<CertificateRevocationListDer<'static>>, TlsError> {
    let pem = std::fs::read(path).map_err(|source| TlsError::Io {
        what: "reading CRL file",
        path: path.to_path_buf(),
        source,
    })?;
    rustls_pemfile::crls(&mut pem.as_slice())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| TlsError::Io {
            what: "parsing PEM CRLs in",
            path: path.to_path_buf(),
            source,
        })
}

impl ReloadingClientVerifier {
    pub fn new(roots: RootCertStore, ca: &Path, crl: Option<&Path>) -> Result<Self, TlsError> {
        let roots = Arc::new(roots);
        let hints = roots.subjects();
        let st = crl.and_then(stamp);
        let inner = Self::build(&roots, ca, crl)?;
        Ok(Self {
            roots,
            hints,
            crl: crl.map(Path::to_path_buf),
            current: Mutex::new((st, inner)),
        })
    }

    fn build(
        roots: &Arc<RootCertStore>,
        ca: &Path,
        crl: Option<&Path>,
    ) -> Result<Arc<dyn ClientCertVerifier>, TlsError> {
        let mut b = rustls::server::WebPkiClientVerifier::builder(roots.clone());
        if let Some(crl) = crl {
            b = b
                .with_crls(load_crls(crl)?)
                .only_check_end_entity_revocation()
                .allow_unknown_revocation_status();
        }
        b.build().map_err(|source| TlsError::Verifier {
            ca: ca.to_path_buf(),
            source,
        })
    }

    fn verifier(&self) -> Arc<dyn ClientCertVerifier> {
        let mut cur = self.current.lock().expect("verifier lock");
        if let Some(crl) = &self.crl {
            let now = stamp(crl);
            if now != cur.0 {
                match Self::build(&self.roots, crl, Some(crl)) {
                    Ok(v) => {
                        tracing::info!(crl = %crl.display(), "certificate revocation list re-read");
                        *cur = (now, v);
                    }
                    Err(e) => {
                        tracing::error!(crl = %crl.display(), error = %e, "cannot re-read the certificate revocation list; the previous one stays in force");
                        cur.0 = now;
                    }
                }
            }
        }
        cur.1.clone()
    }
}

impl ClientCertVerifier for ReloadingClientVerifier {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &self.hints
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.verifier()
            .verify_client_cert(end_entity, intermediates, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.verifier().verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.verifier().verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.verifier().supported_verify_schemes()
    }
}

#[cfg(test)]
#[path = "identity_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "identity_node_tests.rs"]
mod node_tests;
