//! AWS access keys of principals, against real processes: the CLI issues,
//! lists and revokes keys; a principal without `admin` cannot issue them
//! nor read secrets; the edge's copy follows the core within its sync
//! interval and survives an edge restart while the core is down.

use anyhow::{bail, Context, Result};
use std::time::{Duration, Instant};
use strata_client::cluster::Cluster;
use strata_client::{access, Client, ClientError};
use strata_edge::registry::aws_keys::AwsKeyStore;
use strata_protocol::acl::{parse_operations, Rule};
use strata_schema::fb::ErrorCode;
use strata_tests::{bounded, strata_ok, wait_for, Pipeline};

fn value_of(out: &str, key: &str) -> Result<String> {
    out.lines()
        .find_map(|l| l.strip_prefix(&format!("{key} = ")))
        .map(str::to_string)
        .with_context(|| format!("no {key} in {out:?}"))
}

fn edge_copy(p: &Pipeline) -> Result<std::sync::Arc<AwsKeyStore>> {
    Ok(AwsKeyStore::open(&p.dir.path().join("edge"))?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aws_keys_are_issued_by_admins_and_reach_the_edge() -> Result<()> {
    bounded(120, async {
        let mut p = Pipeline::start("").await?;
        let ca = p.pki.ca.display().to_string();
        let core = p.core_addr.to_string();
        let creds = p.dir.path().join("aws").join("credentials");
        let out = strata_ok(&[
            "identity",
            "issue",
            "sensor-1",
            "--aws-key",
            "--credentials-file",
            creds.to_str().unwrap(),
            "--profile",
            "dev",
            "--ca",
            &ca,
            "--core",
            &core,
        ])?;
        let id = value_of(&out, "aws_access_key_id")?;
        let secret = value_of(&out, "aws_secret_access_key")?;
        strata_protocol::aws_key::check_access_key_id(&id)?;
        assert_eq!(secret.len(), 40);
        let text = std::fs::read_to_string(&creds)?;
        assert!(text.contains("[dev]") && text.contains(&secret), "{text}");
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&creds)?.permissions().mode() & 0o777,
            0o600
        );
        let listed = strata_ok(&["identity", "aws-keys", "--ca", &ca, "--core", &core])?;
        assert!(
            listed.contains(&id) && listed.contains("sensor-1") && !listed.contains(&secret),
            "{listed}"
        );

        // A principal with `describe` but not `admin` or `verify`.
        let tls = p.pki.ca.parent().unwrap().to_path_buf();
        let who = strata_client::tls::issue_identity("sensor-1", &tls, &tls.join("devices"))?;
        let admin = Cluster::new(vec![p.core_addr], &p.pki.ca)?;
        let describe = Rule {
            id: 0,
            principal: "sensor-*".into(),
            operations: parse_operations("describe")?,
            stream: "*".into(),
            key_prefix: None,
        };
        access::ensure_rule(&admin, &describe).await?;
        let device = Client::with_identity(p.core_addr, &p.pki.ca, Some(&who))?;
        let denied = |r: Result<_, ClientError>, what: &str| match r {
            Err(ClientError::Remote(e)) if e.code == ErrorCode::PermissionDenied => Ok(()),
            other => bail!("{what}: expected PERMISSION_DENIED, got {other:?}"),
        };
        denied(
            access::aws_key_issue(&device, "sensor-1").await.map(|_| ()),
            "issue",
        )?;
        denied(
            access::aws_key_list(&device, true).await.map(|_| ()),
            "secrets",
        )?;
        denied(
            access::aws_key_revoke(&device, &id).await.map(|_| ()),
            "revoke",
        )?;
        let redacted = access::aws_key_list(&device, false).await?;
        let k = redacted.find(&id).context("listed to describe")?;
        assert!(k.secret_access_key.is_empty(), "{k:?}");

        // The edge's copy follows the core: an issued key arrives, a
        // revoked one goes (sync every 2 s).
        let second = access::aws_key_issue(&p.client(p.core_addr), "sensor-2").await?;
        let t0 = Instant::now();
        wait_for(
            "the edge's copy of both keys",
            Duration::from_secs(15),
            || {
                let store = edge_copy(&p);
                let (id, second) = (id.clone(), second.access_key_id.clone());
                async move {
                    let store = store?;
                    Ok(
                        (store.lookup(&id).is_some() && store.lookup(&second).is_some())
                            .then_some(()),
                    )
                }
            },
        )
        .await?;
        println!("edge copy updated within {:?}", t0.elapsed());
        assert_eq!(
            edge_copy(&p)?.lookup(&id).unwrap().secret_access_key,
            secret
        );
        strata_ok(&[
            "identity",
            "revoke-aws-key",
            &second.access_key_id,
            "--ca",
            &ca,
            "--core",
            &core,
        ])?;
        wait_for(
            "the edge to forget the revoked key",
            Duration::from_secs(15),
            || {
                let store = edge_copy(&p);
                let second = second.access_key_id.clone();
                async move { Ok(store?.lookup(&second).is_none().then_some(())) }
            },
        )
        .await?;

        // Core down, edge restarted: the copy is still there.
        assert!(p.core.stop(), "core stops cleanly");
        p.edge.stop();
        p.restart_edge().await?;
        let store = edge_copy(&p)?;
        assert_eq!(
            store.lookup(&id).map(|k| k.principal),
            Some("sensor-1".into())
        );
        let mode = std::fs::metadata(p.dir.path().join("edge/aws_keys.json"))?
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        Ok(())
    })
    .await
}
