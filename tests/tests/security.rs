//! Identities and access rules against real processes and real
//! certificates: who can connect, what a device may write, what the edge
//! enforces while the core is away, how fast a removed rule bites, and
//! producer ids bound to their principal.

use anyhow::{bail, Context, Result};
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use strata_client::access;
use strata_client::api;
use strata_client::api::{Piece, Reshard};
use strata_client::cluster::Cluster;
use strata_client::identity::Identity;
use strata_client::{Client, ClientError};
use strata_protocol::acl::{parse_operations, Rule};
use strata_schema::batch::{Builder, NewRecord};
use strata_schema::fb::ErrorCode;
use strata_tests::{bounded, wait_for, workload, Pipeline};

/// One record per key, value `{key}/{tag}`.
fn batch(keys: &[&str], tag: &str) -> bytes::Bytes {
    let mut b = Builder::default();
    for (i, k) in keys.iter().enumerate() {
        let v = format!("{k}/{tag}");
        b.push(&NewRecord {
            key: Some(k),
            value: v.as_bytes(),
            timestamp_ms: i as i64,
            headers: &[],
        });
    }
    b.finish()
}

fn code(e: &ClientError) -> Option<ErrorCode> {
    match e {
        ClientError::Remote(r) => Some(r.code),
        _ => None,
    }
}

fn denied<T: std::fmt::Debug>(r: Result<T, ClientError>, what: &str) -> Result<String> {
    match r {
        Err(ClientError::Remote(e)) if e.code == ErrorCode::PermissionDenied => Ok(e.message),
        other => bail!("{what}: expected PERMISSION_DENIED, got {other:?}"),
    }
}

fn device_rule() -> Rule {
    Rule {
        id: 0,
        principal: "sensor-*".into(),
        operations: parse_operations("produce").unwrap(),
        stream: "telemetry".into(),
        key_prefix: Some("${principal}".into()),
    }
}

struct Setup {
    p: Pipeline,
    device: Identity,
    rule_id: u64,
}

async fn setup() -> Result<Setup> {
    let p = Pipeline::start("").await?;
    let tls = p.pki.ca.parent().unwrap().to_path_buf();
    let device = strata_client::tls::issue_identity("sensor-1", &tls, &tls.join("devices"))?;
    let admin = Cluster::new(vec![p.core_addr], &p.pki.ca)?;
    for s in ["telemetry", "billing"] {
        api::create_stream(&p.client(p.core_addr), s, 1, 1).await?;
    }
    let rule_id = access::ensure_rule(&admin, &device_rule()).await?;
    Ok(Setup { p, device, rule_id })
}

fn as_device(s: &Setup, addr: SocketAddr) -> Result<Client> {
    Ok(Client::with_identity(addr, &s.p.pki.ca, Some(&s.device))?)
}

/// Produces until the edge accepts (it learns rules within 2 s).
async fn first_accepted(c: &Client, stream: &str, keys: &[&str], tag: &str) -> Result<()> {
    wait_for(
        "the edge to accept the device",
        Duration::from_secs(15),
        || async {
            match api::produce(c, stream, &batch(keys, tag)).await {
                Ok(_) => Ok(Some(())),
                Err(e) if code(&e) == Some(ErrorCode::PermissionDenied) => Ok(None),
                Err(e) => Err(e.into()),
            }
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_certificate_of_the_client_ca_nobody_gets_in() -> Result<()> {
    bounded(120, async {
        let p = Pipeline::start("").await?;
        let other = tempfile::tempdir()?;
        let (foreign, _) = strata_client::tls::DevPki::ensure(other.path())?;
        for addr in [p.edge_addr, p.core_addr] {
            let mut none = Client::with_identity(addr, &p.pki.ca, None)?;
            none.set_timeout(Duration::from_secs(5));
            let e = api::list_streams(&none).await.unwrap_err();
            assert!(code(&e).is_none(), "no certificate at {addr}: {e}");
            let mut alien = Client::with_identity(addr, &p.pki.ca, Some(&foreign.admin))?;
            alien.set_timeout(Duration::from_secs(5));
            let e = api::list_streams(&alien).await.unwrap_err();
            assert!(code(&e).is_none(), "foreign CA at {addr}: {e}");
        }
        // The admin identity beside the dev CA is picked up by default.
        let me = access::whoami(&p.client(p.core_addr)).await?;
        assert_eq!((me.principal.as_str(), me.superuser), ("admin", true));
        let e = api::create_stream(&p.client(p.core_addr), "..", 1, 1)
            .await
            .unwrap_err();
        assert_eq!(code(&e), Some(ErrorCode::InvalidArgument), "{e}");
        let e = api::create_stream(&p.client(p.core_addr), ".", 1, 1)
            .await
            .unwrap_err();
        assert_eq!(code(&e), Some(ErrorCode::InvalidArgument), "{e}");
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_writes_only_its_own_keys_and_the_edge_enforces_while_the_core_is_away(
) -> Result<()> {
    bounded(240, async {
        let mut s = setup().await?;
        let edge = as_device(&s, s.p.edge_addr)?;
        let core = as_device(&s, s.p.core_addr)?;
        assert_eq!(access::whoami(&core).await?.principal, "sensor-1");
        first_accepted(&edge, "telemetry", &["sensor-1/t"], "0").await?;

        // Another key prefix, another stream: refused at the edge.
        let m = denied(
            api::produce(
                &edge,
                "telemetry",
                &batch(&["sensor-1/a", "sensor-2/b"], "x"),
            )
            .await,
            "another device's key",
        )?;
        assert!(m.contains("sensor-2/b") && m.contains("sensor-1"), "{m}");
        denied(
            api::produce(&edge, "billing", &batch(&["sensor-1/a"], "x")).await,
            "another stream",
        )?;
        // Nothing else at the core either.
        denied(
            api::fetch(&core, "telemetry", 0, 0, 10, Duration::ZERO).await,
            "consume",
        )?;
        denied(api::create_stream(&core, "mine", 1, 1).await, "create")?;
        denied(
            api::reshard(&core, "telemetry", &Reshard::Scale { count: 2 }).await,
            "reshard",
        )?;
        denied(api::cluster_status(&core).await, "cluster status")?;
        denied(
            access::acl_change(&core, Some(&device_rule()), 0).await,
            "acl add",
        )?;
        let listed = api::list_streams(&core).await?;
        assert!(listed.is_empty(), "a device sees no streams: {listed:?}");

        // The core goes away: the edge keeps deciding from its copy.
        s.p.core.stop();
        api::produce(
            &edge,
            "telemetry",
            &batch(&["sensor-1/u", "sensor-1/v"], "down"),
        )
        .await?;
        denied(
            api::produce(&edge, "telemetry", &batch(&["sensor-9/u"], "down")).await,
            "another device's key with the core down",
        )?;
        s.p.restart_core().await?;

        // Everything accepted arrives exactly once; nothing refused does.
        let admin = Cluster::new(vec![s.p.core_addr], &s.p.pki.ca)?;
        let recs = wait_for("the accepted records", Duration::from_secs(60), || async {
            let r = workload::read_all(&admin, "telemetry").await?;
            Ok((r.len() >= 3).then_some(r))
        })
        .await?;
        let mut values: Vec<String> = recs
            .iter()
            .map(|r| String::from_utf8_lossy(&r.data).into_owned())
            .collect();
        values.sort();
        assert_eq!(
            values,
            ["sensor-1/t/0", "sensor-1/u/down", "sensor-1/v/down"]
        );
        assert!(workload::read_all(&admin, "billing").await?.is_empty());
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_rule_stops_writes_at_the_edge_within_5_s() -> Result<()> {
    bounded(120, async {
        let s = setup().await?;
        let edge = as_device(&s, s.p.edge_addr)?;
        first_accepted(&edge, "telemetry", &["sensor-1/t"], "0").await?;
        let admin = Cluster::new(vec![s.p.core_addr], &s.p.pki.ca)?;
        let removed_at = Instant::now();
        let rule_id = s.rule_id;
        admin
            .any(|c| async move { access::acl_change(&c, None, rule_id).await })
            .await?;
        let took = wait_for("the edge to refuse", Duration::from_secs(10), || async {
            match api::produce(&edge, "telemetry", &batch(&["sensor-1/t"], "late")).await {
                Ok(_) => Ok(None),
                Err(e) if code(&e) == Some(ErrorCode::PermissionDenied) => {
                    Ok(Some(removed_at.elapsed()))
                }
                Err(e) => Err(e.into()),
            }
        })
        .await?;
        assert!(took < Duration::from_secs(5), "took {took:?}");
        eprintln!("rule removal reached the edge in {} ms", took.as_millis());
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nobody_forwards_under_another_principals_producer_id() -> Result<()> {
    bounded(120, async {
        let s = setup().await?;
        let edge = as_device(&s, s.p.edge_addr)?;
        first_accepted(&edge, "telemetry", &["sensor-1/t"], "0").await?;
        let edge_id: u64 = std::fs::read_to_string(s.p.dir.path().join("edge/producer_id"))?
            .trim()
            .parse()
            .context("the edge's producer id")?;
        let admin = Cluster::new(vec![s.p.core_addr], &s.p.pki.ca)?;
        // The edge registered its id under its own principal by now (its
        // first record was forwarded).
        wait_for(
            "the first record at the core",
            Duration::from_secs(30),
            || async {
                Ok((!workload::read_all(&admin, "telemetry").await?.is_empty()).then_some(()))
            },
        )
        .await?;
        let piece = Piece {
            first_seq: u64::MAX - 10,
            seq_deltas: None,
            max_timestamp_ms: 0,
            batch: batch(&["sensor-1/evil"], "evil"),
        };
        let core = as_device(&s, s.p.core_addr)?;
        let m = denied(
            api::forward(&core, "telemetry", 0, edge_id, std::slice::from_ref(&piece)).await,
            "a forward under the edge's id",
        )?;
        assert!(m.contains("registered to principal \"edge\""), "{m}");
        // Not even the admin may borrow it.
        let root = s.p.client(s.p.core_addr);
        denied(
            api::forward(&root, "telemetry", 0, edge_id, std::slice::from_ref(&piece)).await,
            "admin under the edge's id",
        )?;
        // The edge's later records still arrive.
        api::produce(&edge, "telemetry", &batch(&["sensor-1/after"], "1")).await?;
        wait_for("the later record", Duration::from_secs(30), || async {
            let r = workload::read_all(&admin, "telemetry").await?;
            Ok(r.iter()
                .any(|r| &r.data[..] == b"sensor-1/after/1")
                .then_some(()))
        })
        .await?;
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_requests_are_cut_off_and_one_address_gets_a_bounded_share() -> Result<()> {
    bounded(120, async {
        let p = Pipeline::start("request_read_timeout_ms = 500\nconnections_per_address_max = 2\n")
            .await?;
        let cfg = strata_client::tls::client_config(&p.pki.ca, Some(&p.pki.admin))?;
        let connect = || async {
            let mut ep = quinn::Endpoint::client("127.0.0.1:0".parse()?)?;
            ep.set_default_client_config(cfg.clone());
            let conn = ep.connect(p.edge_addr, "127.0.0.1")?.await?;
            anyhow::Ok((ep, conn))
        };
        // A stream that sends nothing is reset after the read deadline.
        let (_ep, conn) = connect().await?;
        let (mut send, mut recv) = conn.open_bi().await?;
        send.write_all(&[0u8; 2]).await?; // half a length prefix, then silence
        let started = Instant::now();
        let end = tokio::time::timeout(Duration::from_secs(10), recv.read_to_end(1 << 20)).await;
        assert!(
            matches!(end, Ok(Err(_))),
            "expected the stream to be reset, got {end:?}"
        );
        assert!(started.elapsed() < Duration::from_secs(5));
        // Two connections from 127.0.0.1 are served; a third is refused
        // while they stay open.
        let second = connect().await?;
        let third = tokio::time::timeout(Duration::from_secs(10), connect()).await?;
        assert!(third.is_err(), "a third connection from one address got in");
        drop((second, conn));
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn caps_on_streams_groups_and_members_are_clear_errors() -> Result<()> {
    use strata_client::group::{heartbeat, Heartbeat};
    bounded(120, async {
        let p = Pipeline::start_with(
            "",
            "streams_max = 1\ngroups_per_stream_max = 1\nmembers_per_group_max = 2\n",
        )
        .await?;
        let c = p.client(p.core_addr);
        api::create_stream(&c, "a", 1, 1).await?;
        let e = api::create_stream(&c, "b", 1, 1)
            .await
            .expect_err("a second stream beyond streams_max = 1");
        assert!(e.to_string().contains("streams_max"), "{e}");
        // The existing name is not a cap error.
        let e = api::create_stream(&c, "a", 1, 1).await.expect_err("exists");
        assert_eq!(code(&e), Some(ErrorCode::StreamExists), "{e}");
        let hb = |group: &'static str, member: &'static str| Heartbeat {
            stream: "a",
            group,
            member,
            session: Duration::from_secs(30),
            ..Default::default()
        };
        heartbeat(&c, &hb("g1", "m1")).await?;
        heartbeat(&c, &hb("g1", "m2")).await?;
        heartbeat(&c, &hb("g1", "m1")).await?; // a member may stay
        let e = heartbeat(&c, &hb("g1", "m3"))
            .await
            .expect_err("a third member");
        assert!(e.to_string().contains("members_per_group_max"), "{e}");
        let e = heartbeat(&c, &hb("g2", "m1"))
            .await
            .expect_err("a second group");
        assert!(e.to_string().contains("groups_per_stream_max"), "{e}");
        let streams = api::list_streams(&c).await?;
        assert_eq!(streams.len(), 1, "{streams:?}");
        Ok(())
    })
    .await
}
