//! Faults and bad input against real processes: the core going away while
//! producers keep writing, a full edge buffer, malformed frames, wrong ALPN,
//! an untrusted CA, invalid configs.

use anyhow::{bail, Result};
use std::time::Duration;
use strata_client::api;
use strata_client::{Client, ClientError};
use strata_schema::fb::ErrorCode;
use strata_tests::outage::{batch, core_holds_exactly, edge_drained};
use strata_tests::{bin, bounded, wait_for, Pipeline};

/// How long the edge may take to drain what it buffered.
const WAIT: Duration = Duration::from_secs(120);

/// Just the batch of [`batch`], for requests expected to be refused.
fn refused(n: usize, size: usize, tag: &str) -> bytes::Bytes {
    batch(n, size, tag).0
}

fn code(e: &ClientError) -> Option<ErrorCode> {
    e.code()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edge_buffers_while_core_is_down_rejects_when_full_then_drains() -> Result<()> {
    bounded(300, async {
        let metrics = strata_tests::free_udp_addr();
        let mut p = Pipeline::start(&format!(
            "buffer_bytes_max = 4194304\nsegment_bytes_max = 1048576\nbatch_bytes_max = 1048576\nretry_backoff_ms_max = 200\nmetrics_addr = \"{metrics}\"\n"
        ))
        .await?;
        let admin = p.client(p.core_addr);
        api::create_stream(&admin, "outage", 2, 1).await?;
        let edge = p.client(p.edge_addr);
        // Every value the edge acknowledged, each record's unique.
        let mut acked: Vec<Vec<u8>> = Vec::new();
        let (warm, values) = batch(10, 10, "warm");
        assert_eq!(api::produce(&edge, "outage", &warm).await?, 10);
        acked.extend(values);
        p.core.kill9();

        // ~256 KiB batches until the 4 MiB buffer is full.
        let mut sent = 0;
        let full = loop {
            let (b, values) = batch(512, 500, &format!("down{sent}"));
            sent += 1;
            match api::produce(&edge, "outage", &b).await {
                Ok(n) => {
                    assert_eq!(n as usize, values.len(), "the edge acknowledged part of a batch");
                    acked.extend(values);
                }
                Err(e) => break e,
            }
            if acked.len() > 100_000 {
                bail!("the edge never reported a full buffer");
            }
        };
        assert_eq!(code(&full), Some(ErrorCode::BufferFull), "{full}");
        assert!(full.to_string().contains("full"), "{full}");
        assert!(full.is_retryable());
        assert!(acked.len() > 10 + 512, "accepted {} records while the core was down", acked.len());

        p.restart_core().await?;
        // Once the edge has forwarded all it accepted, nothing more can
        // reach the core: it must hold exactly what was acknowledged.
        let accepted = edge_drained(&p, metrics, "outage", acked.len() as u64, WAIT).await?;
        assert_eq!(accepted, acked.len() as u64, "the edge counted other records than it acknowledged");
        core_holds_exactly(&p, "outage", &acked).await?;

        // Accepting again once drained (a full buffer frees space as the
        // forwarded segments go).
        let (after, values) = batch(10, 10, "after");
        wait_for("the edge to accept again", Duration::from_secs(60), || {
            let (edge, after) = (&edge, &after);
            async move {
                match api::produce(edge, "outage", after).await {
                    Ok(n) => Ok(Some(n)),
                    Err(e) if code(&e) == Some(ErrorCode::BufferFull) => Ok(None),
                    Err(e) => bail!("the edge refused a batch after draining: {e}"),
                }
            }
        })
        .await?;
        acked.extend(values);
        edge_drained(&p, metrics, "outage", acked.len() as u64, WAIT).await?;
        core_holds_exactly(&p, "outage", &acked).await?;
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_typed_errors_and_changes_nothing() -> Result<()> {
    bounded(180, async {
        let metrics = strata_tests::free_udp_addr();
        let p = Pipeline::start(&format!(
            "record_bytes_max = 1024\nmetrics_addr = \"{metrics}\"\n"
        ))
        .await?;
        let admin = p.client(p.core_addr);
        api::create_stream(&admin, "s", 1, 1).await?;
        let edge = p.client(p.edge_addr);

        let e = api::produce(&edge, "nope", &refused(1, 10, "k"))
            .await
            .unwrap_err();
        assert_eq!(code(&e), Some(ErrorCode::UnknownStream), "{e}");
        assert!(e.to_string().contains("nope"), "{e}");

        let e = api::produce(&edge, "s", &refused(2, 2000, "k"))
            .await
            .unwrap_err();
        assert_eq!(code(&e), Some(ErrorCode::RecordTooLarge), "{e}");
        assert!(e.to_string().contains("record_bytes_max = 1024"), "{e}");

        let e = api::produce(&edge, "s", b"definitely not a flatbuffer")
            .await
            .unwrap_err();
        assert_eq!(code(&e), Some(ErrorCode::MalformedRequest), "{e}");

        let e = edge
            .call(&bytes::Bytes::from_static(b"\x01\x02garbage frame"))
            .await
            .unwrap_err();
        assert_eq!(code(&e), Some(ErrorCode::MalformedRequest), "{e}");

        let e = api::produce(&admin, "s", &refused(1, 10, "k"))
            .await
            .unwrap_err();
        assert_eq!(code(&e), Some(ErrorCode::InvalidArgument), "{e}");

        let e = api::create_stream(&admin, "bad name", 1, 1)
            .await
            .unwrap_err();
        assert_eq!(code(&e), Some(ErrorCode::InvalidArgument), "{e}");
        let e = api::create_stream(&admin, "s", 1, 1).await.unwrap_err();
        assert_eq!(code(&e), Some(ErrorCode::StreamExists), "{e}");
        let e = api::fetch(&admin, "s", 7, 0, 10, Duration::ZERO)
            .await
            .unwrap_err();
        assert_eq!(code(&e), Some(ErrorCode::UnknownShard), "{e}");
        let e = api::fetch(&admin, "s", 0, 5, 10, Duration::ZERO)
            .await
            .unwrap_err();
        assert_eq!(code(&e), Some(ErrorCode::OffsetOutOfRange), "{e}");

        // A frame longer than the limit is refused before any allocation.
        {
            let cfg = strata_client::tls::client_config(&p.pki.ca, Some(&p.pki.admin))?;
            let mut ep = quinn::Endpoint::client("127.0.0.1:0".parse()?)?;
            ep.set_default_client_config(cfg);
            let conn = ep.connect(p.edge_addr, "127.0.0.1")?.await?;
            let (mut send, mut recv) = conn.open_bi().await?;
            send.write_all(&u32::MAX.to_be_bytes()).await?;
            send.finish()?;
            let reply = strata_runtime::frame::read_frame(&mut recv, 1 << 20).await?;
            let resp = strata_schema::wire::decode_response(&reply)?;
            let err = strata_schema::wire::error_of(&resp).expect("an error reply");
            assert_eq!(err.code, ErrorCode::MalformedRequest);
            assert!(err.message.contains("exceeds the limit"), "{}", err.message);
            conn.close(0u32.into(), b"");
        }

        // The agent still works: a marker batch goes through. Once the
        // edge has forwarded all it accepted and the core holds the marker,
        // anything the bad input had left in the edge would be in the core
        // too: the stream must hold the marker and nothing else.
        let (marker, values) = batch(3, 10, "marker");
        assert_eq!(api::produce(&edge, "s", &marker).await?, 3);
        let accepted = edge_drained(&p, metrics, "s", 3, WAIT).await?;
        assert_eq!(
            accepted, 3,
            "the edge accepted records from refused requests"
        );
        core_holds_exactly(&p, "s", &values).await?;
        let e = api::describe_stream(&admin, "nope").await.unwrap_err();
        assert_eq!(code(&e), Some(ErrorCode::UnknownStream), "{e}");
        let streams: Vec<String> = api::list_streams(&admin)
            .await?
            .into_iter()
            .map(|s| s.name)
            .collect();
        assert_eq!(streams, ["s"]);
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_alpn_and_untrusted_ca_are_refused() -> Result<()> {
    bounded(120, async {
        let p = Pipeline::start("").await?;
        // A CA the servers do not use.
        let other = tempfile::tempdir()?;
        let (other_pki, _) = strata_client::tls::DevPki::ensure(other.path())?;
        let c = Client::new(p.core_addr, &other_pki.ca)?;
        let e = api::list_streams(&c).await.unwrap_err();
        assert!(matches!(e, ClientError::Connect { .. }), "{e}");
        assert!(e.to_string().contains("certificate"), "{e}");
        assert!(!e.is_retryable());

        // The right CA but another application protocol.
        strata_client::tls::install_crypto_provider();
        let mut roots = rustls::RootCertStore::empty();
        for cert in strata_client::tls::load_certs(&p.pki.ca)? {
            roots.add(cert)?;
        }
        let mut tls = rustls::ClientConfig::builder()
            .with_root_certificates(roots)
            .with_no_client_auth();
        tls.alpn_protocols = vec![b"h3".to_vec()];
        let cfg = quinn::ClientConfig::new(std::sync::Arc::new(
            quinn::crypto::rustls::QuicClientConfig::try_from(tls)?,
        ));
        let c = Client::with_config(p.edge_addr, cfg)?;
        let e = api::list_streams(&c).await.unwrap_err();
        assert!(matches!(e, ClientError::Connect { .. }), "{e}");
        Ok(())
    })
    .await
}

/// Runs a daemon with `config`, expecting it to exit non-zero at start.
fn start_fails(name: &str, config: &str) -> Result<String> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("c.toml");
    std::fs::write(&path, config)?;
    let mut child = std::process::Command::new(bin(name)?)
        .arg("--config")
        .arg(&path)
        .stderr(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()?;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = child.try_wait()? {
            let mut err = String::new();
            std::io::Read::read_to_string(child.stderr.as_mut().expect("piped"), &mut err)?;
            assert!(!status.success(), "{name} accepted a bad config");
            return Ok(err);
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            bail!("{name} kept running with a bad config");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn invalid_configs_are_rejected_with_the_key_named() -> Result<()> {
    let err = start_fails(
        "strata-core",
        "data_dir = \"/tmp/x\"\ntls_cert = \"a\"\ntls_key = \"b\"\nlisten_adr = \"127.0.0.1:1\"\n",
    )?;
    assert!(err.contains("listen_adr"), "{err}");
    let err = start_fails(
        "strata-core",
        "data_dir = \"/tmp/x\"\ntls_cert = \"a\"\ntls_key = \"b\"\nnode_id = 0\n",
    )?;
    assert!(err.contains("node_id"), "{err}");
    let err = start_fails(
        "strata-edge",
        "data_dir = \"/tmp/x\"\ntls_cert = \"a\"\ntls_key = \"b\"\ncore_ca = \"c\"\nfull_policy = \"maybe\"\n",
    )?;
    assert!(
        err.contains("maybe") || err.contains("full_policy"),
        "{err}"
    );
    let err = start_fails("strata-edge", "data_dir = \"/tmp/x\"\ntls_cert = \"/nonexistent.pem\"\ntls_key = \"b\"\ncore_ca = \"c\"\n")?;
    assert!(err.contains("/nonexistent.pem"), "{err}");
    Ok(())
}
