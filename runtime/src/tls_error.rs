//! The error of TLS set-up, shared by `tls` (configs, the dev PKI) and
//! `identity` (client identities, the CRL-reloading verifier).

use std::path::PathBuf;

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
    #[error("give both --cert and --cert-key (STRATA_CERT and STRATA_KEY), or neither")]
    HalfIdentity,
    #[error("client_auth = \"required\" needs a client CA bundle: set client_ca (or tls_ca), or client_auth = \"off\" for a loopback test setup")]
    NoClientCa,
    #[error("private key {} is readable by group or others (mode {mode:o}); run: chmod 600 {}", path.display(), path.display())]
    KeyPermissions { path: PathBuf, mode: u32 },
    #[error("cannot read certificate {}: {detail}", path.display())]
    BadCertificate { path: PathBuf, detail: String },
    #[error("principal name {0:?} must be 1 to 128 characters of A-Z a-z 0-9 _ - . starting with a letter or digit")]
    BadPrincipal(String),
    #[error("node id must be non-zero")]
    ZeroNodeId,
}
