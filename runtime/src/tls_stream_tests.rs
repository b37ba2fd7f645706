//! A client port's QUIC limit on request streams, over a real handshake on
//! loopback: a client opens no more streams at once than the server
//! serves per connection, and gets credit back as requests finish.

use super::*;
use crate::identity::{ClientAuth, ClientAuthMode};
use std::time::Duration;

/// Whether `open_bi` completes at once (credit available) without waiting.
async fn opens_at_once(conn: &quinn::Connection) -> Option<(quinn::SendStream, quinn::RecvStream)> {
    // `timeout` polls the future before its deadline: a zero deadline
    // is one poll, so this never waits on the clock.
    tokio::time::timeout(Duration::ZERO, conn.open_bi())
        .await
        .ok()
        .map(|r| r.expect("connection open"))
}

#[tokio::test]
async fn a_client_opens_only_as_many_request_streams_as_the_server_serves() {
    let dir = tempfile::tempdir().unwrap();
    let (pki, _) = DevPki::ensure(&dir.path().join("tls")).unwrap();
    let off = ClientAuth {
        mode: ClientAuthMode::Off,
        ..ClientAuth::default()
    };
    let limits = ServeLimits {
        requests_per_connection_max: 2,
        ..ServeLimits::default()
    };
    let cfg = server_config(&pki.cert, &pki.key, &off, &limits).unwrap();
    let server = quinn::Endpoint::server(cfg, "127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = server.local_addr().unwrap();
    let mut client = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    client.set_default_client_config(client_config(&pki.ca, None).unwrap());

    let run = async {
        let (conn, accepted) = tokio::join!(
            async { client.connect(addr, "localhost").unwrap().await.unwrap() },
            async { server.accept().await.unwrap().await.unwrap() }
        );
        let mut open = Vec::new();
        for _ in 0..2 {
            open.push(opens_at_once(&conn).await.expect("within the limit"));
        }
        assert!(
            opens_at_once(&conn).await.is_none(),
            "a third stream must wait for credit"
        );
        // The two requests go through: the server reads and drops them,
        // which gives the client credit for more.
        for (send, _) in &mut open {
            send.write_all(b"x").await.unwrap();
            send.finish().unwrap();
        }
        for _ in 0..2 {
            let (_, mut recv) = accepted.accept_bi().await.unwrap();
            assert_eq!(recv.read_to_end(16).await.unwrap(), b"x");
        }
        drop(open);
        let (mut send, _) = conn.open_bi().await.expect("credit came back");
        send.write_all(b"y").await.unwrap();
        send.finish().unwrap();
        let (_, mut recv) = accepted.accept_bi().await.unwrap();
        assert_eq!(recv.read_to_end(16).await.unwrap(), b"y");
    };
    tokio::time::timeout(Duration::from_secs(20), run)
        .await
        .expect("finished within 20 s");
    client.close(0u32.into(), b"done");
}
