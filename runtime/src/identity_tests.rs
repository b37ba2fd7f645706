//! Client authentication over real QUIC handshakes on loopback: who gets
//! in, under which principal, and what a CRL change does.

use super::*;
use crate::server::ServeLimits;
use crate::tls::{client_config, issue_identity, revoke_identity, server_config, DevPki};
use std::net::SocketAddr;
use std::time::Duration;

fn required(pki: &DevPki, crl: Option<PathBuf>) -> ClientAuth {
    ClientAuth {
        mode: ClientAuthMode::Required,
        ca: Some(pki.ca.clone()),
        crl,
    }
}

/// Server side of one handshake: `Ok(principal)` or the handshake error.
async fn handshake(
    server: &quinn::Endpoint,
    ca: &Path,
    id: Option<&Identity>,
) -> Result<Option<String>, String> {
    let addr: SocketAddr = server.local_addr().unwrap();
    let mut client = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    client.set_default_client_config(client_config(ca, id).unwrap());
    let connecting = client.connect(addr, "localhost").unwrap();
    let accept = async {
        let incoming = server.accept().await.expect("endpoint open");
        incoming
            .await
            .map(|c| connection_principal(&c))
            .map_err(|e| e.to_string())
    };
    let (_, got) = tokio::time::timeout(Duration::from_secs(10), async {
        tokio::join!(connecting, accept)
    })
    .await
    .expect("handshake finished within 10 s");
    client.close(0u32.into(), b"done");
    got
}

#[tokio::test]
async fn only_certificates_of_the_client_ca_get_in_and_name_their_principal() {
    let dir = tempfile::tempdir().unwrap();
    let (pki, created) = DevPki::ensure(&dir.path().join("tls")).unwrap();
    assert!(created);
    let (other, _) = DevPki::ensure(&dir.path().join("other")).unwrap();
    let cfg = server_config(
        &pki.cert,
        &pki.key,
        &required(&pki, None),
        &ServeLimits::default(),
    )
    .unwrap();
    let server = quinn::Endpoint::server(cfg, "127.0.0.1:0".parse().unwrap()).unwrap();

    assert_eq!(
        handshake(&server, &pki.ca, Some(&pki.admin)).await,
        Ok(Some("admin".into()))
    );
    assert_eq!(
        handshake(&server, &pki.ca, Some(&pki.edge)).await,
        Ok(Some("edge".into()))
    );
    let none = handshake(&server, &pki.ca, None).await;
    assert!(
        none.is_err(),
        "a client without a certificate got in: {none:?}"
    );
    let foreign = handshake(&server, &pki.ca, Some(&other.admin)).await;
    assert!(
        foreign.is_err(),
        "a certificate of another CA got in: {foreign:?}"
    );
}

#[tokio::test]
async fn a_revoked_certificate_is_refused_once_the_crl_file_changes() {
    let dir = tempfile::tempdir().unwrap();
    let tls = dir.path().join("tls");
    let (pki, _) = DevPki::ensure(&tls).unwrap();
    let sensor = issue_identity("sensor-7", &tls, &dir.path().join("ids")).unwrap();
    let crl = dir.path().join("revoked.pem");
    // Start with a CRL that revokes somebody else.
    let spare = issue_identity("spare", &tls, &dir.path().join("ids")).unwrap();
    assert_eq!(revoke_identity(&spare.cert, &tls, &crl).unwrap(), 1);
    let cfg = server_config(
        &pki.cert,
        &pki.key,
        &required(&pki, Some(crl.clone())),
        &ServeLimits::default(),
    )
    .unwrap();
    let server = quinn::Endpoint::server(cfg, "127.0.0.1:0".parse().unwrap()).unwrap();

    assert_eq!(
        handshake(&server, &pki.ca, Some(&sensor)).await,
        Ok(Some("sensor-7".into()))
    );
    assert!(handshake(&server, &pki.ca, Some(&spare)).await.is_err());
    // Revoking rewrites the file; the next handshake reads it again.
    assert_eq!(revoke_identity(&sensor.cert, &tls, &crl).unwrap(), 2);
    let after = handshake(&server, &pki.ca, Some(&sensor)).await;
    assert!(after.is_err(), "a revoked certificate got in: {after:?}");
    assert_eq!(
        handshake(&server, &pki.ca, Some(&pki.admin)).await,
        Ok(Some("admin".into()))
    );
}

#[tokio::test]
async fn with_client_auth_off_anyone_connects_without_a_principal() {
    let dir = tempfile::tempdir().unwrap();
    let (pki, _) = DevPki::ensure(&dir.path().join("tls")).unwrap();
    let off = ClientAuth {
        mode: ClientAuthMode::Off,
        ..ClientAuth::default()
    };
    let cfg = server_config(&pki.cert, &pki.key, &off, &ServeLimits::default()).unwrap();
    let server = quinn::Endpoint::server(cfg, "127.0.0.1:0".parse().unwrap()).unwrap();
    assert_eq!(handshake(&server, &pki.ca, None).await, Ok(None));
}

#[test]
fn required_client_auth_without_a_ca_and_exposed_keys_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (pki, _) = DevPki::ensure(&dir.path().join("tls")).unwrap();
    let no_ca = ClientAuth::default();
    assert!(matches!(
        server_config(&pki.cert, &pki.key, &no_ca, &ServeLimits::default()),
        Err(TlsError::NoClientCa)
    ));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&pki.key, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = server_config(
            &pki.cert,
            &pki.key,
            &required(&pki, None),
            &ServeLimits::default(),
        )
        .unwrap_err();
        assert!(
            matches!(e, TlsError::KeyPermissions { mode: 0o644, .. }),
            "{e}"
        );
        assert!(e.to_string().contains("chmod 600"), "{e}");
    }
}

#[test]
fn identities_resolve_from_flags_or_beside_the_dev_ca() {
    let dir = tempfile::tempdir().unwrap();
    let (pki, _) = DevPki::ensure(&dir.path().join("tls")).unwrap();
    assert_eq!(
        Identity::resolve(None, None, &pki.ca).unwrap(),
        Some(pki.admin.clone())
    );
    let given = Identity::resolve(Some(&pki.edge.cert), Some(&pki.edge.key), &pki.ca).unwrap();
    assert_eq!(given, Some(pki.edge.clone()));
    assert!(matches!(
        Identity::resolve(Some(&pki.edge.cert), None, &pki.ca),
        Err(TlsError::HalfIdentity)
    ));
    // No admin files beside a CA elsewhere: no identity.
    let lone = dir.path().join("lone");
    std::fs::create_dir_all(&lone).unwrap();
    std::fs::copy(&pki.ca, lone.join("ca.pem")).unwrap();
    assert_eq!(
        Identity::resolve(None, None, &lone.join("ca.pem")).unwrap(),
        None
    );
}

#[test]
fn principals_come_from_the_san_uri_else_the_common_name() {
    let dir = tempfile::tempdir().unwrap();
    let (pki, _) = DevPki::ensure(&dir.path().join("tls")).unwrap();
    let der = |p: &Path| crate::tls::load_certs(p).unwrap().remove(0);
    assert_eq!(
        principal_of(&der(&pki.admin.cert)).as_deref(),
        Some("admin")
    );
    // The CA has no SAN URI: its CN names it.
    assert_eq!(
        principal_of(&der(&pki.ca)).as_deref(),
        Some("Strata dev CA")
    );
    assert_eq!(principal_of(b"not a certificate"), None);
    assert!(issue_identity("../x", dir.path(), dir.path()).is_err());
}

#[test]
fn a_dev_pki_of_the_old_layout_gets_its_missing_role_files() {
    let dir = tempfile::tempdir().unwrap();
    let tls = dir.path().join("tls");
    let (pki, _) = DevPki::ensure(&tls).unwrap();
    let ca_before = std::fs::read(&pki.ca).unwrap();
    let node_before = std::fs::read(&pki.cert).unwrap();
    std::fs::remove_file(&pki.admin.cert).unwrap();
    std::fs::remove_file(&pki.edge.key).unwrap();
    let (again, created) = DevPki::ensure(&tls).unwrap();
    assert!(created);
    assert!(again.admin.cert.exists() && again.edge.key.exists());
    assert_eq!(std::fs::read(&again.ca).unwrap(), ca_before);
    assert_eq!(std::fs::read(&again.cert).unwrap(), node_before);
    let (_, created) = DevPki::ensure(&tls).unwrap();
    assert!(!created);
}
