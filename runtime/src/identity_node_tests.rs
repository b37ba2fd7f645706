//! Node identities: the `strata:node/ID` SAN URI of peer certificates, as
//! read from files and from a real QUIC handshake on the peer port.

use super::*;
use crate::tls::{issue_node_identity, load_certs, peer_client_config, peer_server_config, DevPki};
use std::net::SocketAddr;
use std::time::Duration;

fn der(p: &Path) -> Vec<u8> {
    load_certs(p).unwrap().remove(0).to_vec()
}

#[test]
fn node_ids_come_from_the_node_san_uri_only() {
    let dir = tempfile::tempdir().unwrap();
    let (pki, _) = DevPki::ensure(&dir.path().join("tls")).unwrap();
    let peer = pki.peer(3).unwrap();
    assert_eq!(node_id_of(&der(&peer.cert)), Some(3));
    // Client and legacy shared certificates name no node.
    for p in [&pki.admin.cert, &pki.edge.cert, &pki.cert, &pki.ca] {
        assert_eq!(node_id_of(&der(p)), None, "{}", p.display());
    }
    assert_eq!(node_id_of(b"not a certificate"), None);
    // A peer certificate names no principal URI: its CN is all it has.
    assert_eq!(principal_of(&der(&peer.cert)).as_deref(), Some("node-3"));
    assert_eq!(crate::tls::node_id_of_file(&peer.cert).unwrap(), Some(3));
}

#[test]
fn a_node_id_has_one_spelling() {
    assert_eq!(parse_node_id("7"), Some(7));
    assert_eq!(parse_node_id("18446744073709551615"), Some(u64::MAX));
    for bad in [
        "",
        "0",
        "07",
        "+7",
        "-7",
        " 7",
        "7a",
        "18446744073709551616",
    ] {
        assert_eq!(parse_node_id(bad), None, "{bad:?}");
    }
}

#[test]
fn peer_certificates_are_issued_once_with_private_keys() {
    let dir = tempfile::tempdir().unwrap();
    let tls = dir.path().join("tls");
    let (pki, _) = DevPki::ensure(&tls).unwrap();
    let first = pki.peer(2).unwrap();
    assert_eq!(first.cert, tls.join("peer-2.pem"));
    assert_eq!(first.key, tls.join("peer-2-key.pem"));
    let bytes = std::fs::read(&first.cert).unwrap();
    let again = pki.peer(2).unwrap();
    assert_eq!(again, first);
    assert_eq!(std::fs::read(&again.cert).unwrap(), bytes, "re-issued");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&first.key).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let out = dir.path().join("out");
    let other = issue_node_identity(5, &tls, &out).unwrap();
    assert_eq!(other.cert, out.join("peer-5.pem"));
    assert_eq!(node_id_of(&der(&other.cert)), Some(5));
    assert!(matches!(
        issue_node_identity(0, &tls, &out),
        Err(TlsError::ZeroNodeId)
    ));
}

/// The node id the peer server reads from a client of `id`'s handshake.
async fn node_id_seen(server: &quinn::Endpoint, pki: &DevPki, id: &Identity) -> Option<u64> {
    let addr: SocketAddr = server.local_addr().unwrap();
    let mut client = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    client.set_default_client_config(peer_client_config(&id.cert, &id.key, &pki.ca).unwrap());
    let connecting = client.connect(addr, "127.0.0.1").unwrap();
    let accept = async {
        let incoming = server.accept().await.expect("endpoint open");
        incoming.await.map(|c| connection_node_id(&c))
    };
    let (dialed, got) = tokio::time::timeout(Duration::from_secs(10), async {
        tokio::join!(connecting, accept)
    })
    .await
    .expect("handshake finished within 10 s");
    dialed.expect("client handshake");
    client.close(0u32.into(), b"done");
    got.expect("server handshake")
}

#[tokio::test]
async fn the_peer_port_reads_the_callers_node_id() {
    let dir = tempfile::tempdir().unwrap();
    let (pki, _) = DevPki::ensure(&dir.path().join("tls")).unwrap();
    let me = pki.peer(1).unwrap();
    let cfg = peer_server_config(&me.cert, &me.key, &pki.ca).unwrap();
    let server = quinn::Endpoint::server(cfg, "127.0.0.1:0".parse().unwrap()).unwrap();
    assert_eq!(
        node_id_seen(&server, &pki, &pki.peer(2).unwrap()).await,
        Some(2)
    );
    assert_eq!(node_id_seen(&server, &pki, &pki.admin).await, None);
}
