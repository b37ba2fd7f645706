//! Faults and bad input against real processes: the core going away while
//! producers keep writing, a full edge buffer, malformed frames, wrong ALPN,
//! an untrusted CA, invalid configs.

use anyhow::{bail, Result};
use std::time::Duration;
use strata_client::api;
use strata_client::cluster::Cluster;
use strata_client::{Client, ClientError};
use strata_schema::batch::{Builder, NewRecord};
use strata_schema::fb::ErrorCode;
use strata_tests::{bin, wait_for, workload, Pipeline};

async fn bounded<F: std::future::Future<Output = Result<()>>>(secs: u64, f: F) -> Result<()> {
    match tokio::time::timeout(Duration::from_secs(secs), f).await {
        Ok(r) => r,
        Err(_) => bail!("test exceeded {secs} s"),
    }
}

fn batch(n: usize, size: usize, tag: &str) -> bytes::Bytes {
    let mut b = Builder::default();
    let v = vec![b'v'; size];
    for i in 0..n {
        let key = format!("{tag}-{}", i % 10);
        b.push(&NewRecord {
            key: Some(&key),
            value: &v,
            timestamp_ms: i as i64,
            headers: &[],
        });
    }
    b.finish()
}

fn code(e: &ClientError) -> Option<ErrorCode> {
    e.code()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edge_buffers_while_core_is_down_rejects_when_full_then_drains() -> Result<()> {
    bounded(300, async {
        let mut p = Pipeline::start(
            "buffer_bytes_max = 4194304\nsegment_bytes_max = 1048576\nbatch_bytes_max = 1048576\nretry_backoff_ms_max = 200\n",
        )
        .await?;
        let admin = p.client(p.core_addr);
        api::create_stream(&admin, "outage", 2, 1).await?;
        let edge = p.client(p.edge_addr);
        api::produce(&edge, "outage", &batch(10, 10, "warm")).await?;
        p.core.kill9();

        // ~256 KiB batches until the 4 MiB buffer is full.
        let mut acked = 10u64;
        let full = loop {
            match api::produce(&edge, "outage", &batch(512, 500, "down")).await {
                Ok(n) => acked += u64::from(n),
                Err(e) => break e,
            }
            if acked > 100_000 {
                bail!("the edge never reported a full buffer");
            }
        };
        assert_eq!(code(&full), Some(ErrorCode::BufferFull), "{full}");
        assert!(full.to_string().contains("full"), "{full}");
        assert!(full.is_retryable());
        assert!(acked > 10 + 512, "accepted {acked} records while the core was down");

        p.restart_core().await?;
        let admin = p.client(p.core_addr);
        let total = wait_for("the edge to drain into the core", Duration::from_secs(120), || {
            let admin = &admin;
            async move {
                let info = api::describe_stream(admin, "outage").await?;
                let n: u64 = info.shards.iter().map(|s| s.next_offset).sum();
                Ok((n >= acked).then_some(n))
            }
        })
        .await?;
        assert_eq!(total, acked, "the core holds exactly what the edge acknowledged");
        let all = workload::read_all(&Cluster::new(vec![p.core_addr], &p.pki.ca)?, "outage").await?;
        assert_eq!(all.len() as u64, acked);
        // Accepting again once drained.
        wait_for("the edge to accept again", Duration::from_secs(60), || {
            let edge = &edge;
            async move { Ok(api::produce(edge, "outage", &batch(5, 10, "after")).await.ok().map(|_| ())) }
        })
        .await?;
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_typed_errors_and_changes_nothing() -> Result<()> {
    bounded(180, async {
        let p = Pipeline::start("record_bytes_max = 1024\n").await?;
        let admin = p.client(p.core_addr);
        api::create_stream(&admin, "s", 1, 1).await?;
        let edge = p.client(p.edge_addr);

        let e = api::produce(&edge, "nope", &batch(1, 10, "k"))
            .await
            .unwrap_err();
        assert_eq!(code(&e), Some(ErrorCode::UnknownStream), "{e}");
        assert!(e.to_string().contains("nope"), "{e}");

        let e = api::produce(&edge, "s", &batch(2, 2000, "k"))
            .await
            .unwrap_err();
        assert_eq!(code(&e), Some(ErrorCode::RecordTooLarge), "{e}");
        assert!(e.to_string().contains("record_bytes_max = 1024"), "{e}");

        let e = api::produce(&edge, "s", b"definitely not a flatbuffer")
            .await
            .unwrap_err();
        assert_eq!(code(&e), Some(ErrorCode::MalformedRequest), "{e}");

        let e = edge.call(b"\x01\x02garbage frame").await.unwrap_err();
        assert_eq!(code(&e), Some(ErrorCode::MalformedRequest), "{e}");

        let e = api::produce(&admin, "s", &batch(1, 10, "k"))
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
            let cfg = strata_client::tls::client_config(&p.pki.ca)?;
            let mut ep = quinn::Endpoint::client("127.0.0.1:0".parse()?)?;
            ep.set_default_client_config(cfg);
            let conn = ep.connect(p.edge_addr, "127.0.0.1")?.await?;
            let (mut send, mut recv) = conn.open_bi().await?;
            send.write_all(&u32::MAX.to_be_bytes()).await?;
            send.finish()?;
            let reply = strata_client::transport::read_frame(&mut recv, 1 << 20).await?;
            let resp = strata_schema::wire::decode_response(&reply)?;
            let err = strata_schema::wire::error_of(&resp).expect("an error reply");
            assert_eq!(err.code, ErrorCode::MalformedRequest);
            assert!(err.message.contains("exceeds the limit"), "{}", err.message);
            conn.close(0u32.into(), b"");
        }

        // Nothing above reached the stream.
        let info = api::describe_stream(&admin, "s").await?;
        assert_eq!(info.shards[0].next_offset, 0);
        // And the agent still works.
        assert_eq!(api::produce(&edge, "s", &batch(3, 10, "ok")).await?, 3);
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
