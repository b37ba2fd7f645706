//! A data directory written by Strata 0.1 (`tests/fixtures/dev-data-v0.1`,
//! made by its `generate.sh` with the 0.1 binaries, before the crates were
//! reorganised) starts with today's `strata-core` and `strata-edge`:
//!
//! - the core's catalog, its metadata log and both shard logs open and hold
//!   the stream `fixture` with `v-0`..`v-99`;
//! - the edge's buffer opens, and its 100 records acknowledged while the
//!   core was down (`v-100`..`v-199`) are forwarded now, exactly once;
//! - new records are accepted and arrive after them.
//!
//! The fixture's catalog names the node by its address, so this test uses
//! the addresses the fixture was written with (127.0.0.1:32500 and :32400,
//! outside the range the other tests take ports from).

use anyhow::{bail, Context, Result};
use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;
use strata_client::api;
use strata_client::cluster::Cluster;
use strata_client::{Client, ClientError};
use strata_tests::{copy_dir, wait_for, workload, Proc};

const CORE: &str = "127.0.0.1:32500";
const EDGE: &str = "127.0.0.1:32400";

/// (key, value) of every record of the stream, per shard in offset order.
async fn read(cluster: &Cluster) -> Result<Vec<(String, String)>> {
    let records = workload::read_all(cluster, "fixture").await?;
    Ok(records
        .into_iter()
        .map(|r| {
            (
                r.key.unwrap_or_default(),
                String::from_utf8_lossy(&r.data).into_owned(),
            )
        })
        .collect())
}

/// Every value `v-0`..`v-{n-1}` exactly once, each key's in increasing order.
fn check(records: &[(String, String)], n: u32) -> Result<()> {
    let mut seen = HashMap::new();
    let mut last: HashMap<&str, u32> = HashMap::new();
    for (key, value) in records {
        let i: u32 = value
            .strip_prefix("v-")
            .and_then(|v| v.parse().ok())
            .with_context(|| format!("unexpected value {value:?}"))?;
        if key != &format!("k{}", i % 10) {
            bail!("{value} under key {key}");
        }
        *seen.entry(i).or_insert(0) += 1;
        if let Some(prev) = last.insert(key, i) {
            if prev >= i {
                bail!("key {key}: {value} after v-{prev}");
            }
        }
    }
    let missing: Vec<u32> = (0..n).filter(|i| !seen.contains_key(i)).collect();
    let twice: Vec<u32> = seen
        .iter()
        .filter(|(_, &c)| c > 1)
        .map(|(&i, _)| i)
        .collect();
    let extra: Vec<u32> = seen.keys().copied().filter(|&i| i >= n).collect();
    if !missing.is_empty() || !twice.is_empty() || !extra.is_empty() {
        bail!("missing {missing:?}, twice {twice:?}, unexpected {extra:?}");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_v0_1_data_directory_starts_with_the_new_binaries() -> Result<()> {
    match tokio::time::timeout(Duration::from_secs(180), run()).await {
        Ok(r) => r,
        Err(_) => bail!("test exceeded 180 s"),
    }
}

async fn run() -> Result<()> {
    let fixture = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/dev-data-v0.1");
    let tmp = tempfile::tempdir()?;
    let d = tmp.path();
    for sub in ["core", "edge", "tls"] {
        copy_dir(&fixture.join(sub), &d.join(sub))?;
    }
    let tls = d.join("tls");
    // What `strata dev` does to a v0.1 data directory: key files become
    // private, and the role certificates v0.1 did not have are added.
    for k in ["ca-key.pem", "node-key.pem"] {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(tls.join(k), std::fs::Permissions::from_mode(0o600))?;
    }
    let (pki, created) = strata_client::tls::DevPki::ensure(&tls)?;
    assert!(created, "the edge and admin certificates were added");
    let (cert, key, ca) = (pki.cert.clone(), pki.key.clone(), pki.ca.clone());
    let (edge_cert, edge_key) = (pki.edge.cert.clone(), pki.edge.key.clone());
    std::fs::write(
        d.join("core.toml"),
        format!(
            "data_dir = {:?}\nlisten_addr = \"{CORE}\"\ntls_cert = {cert:?}\ntls_key = {key:?}\ntls_ca = {ca:?}\nsuperusers = [\"admin\"]\n",
            d.join("core")
        ),
    )?;
    std::fs::write(
        d.join("edge.toml"),
        format!(
            "data_dir = {:?}\nlisten_addr = \"{EDGE}\"\ntls_cert = {edge_cert:?}\ntls_key = {edge_key:?}\ncore_addrs = [\"{CORE}\"]\ncore_ca = {ca:?}\nsuperusers = [\"admin\"]\n",
            d.join("edge")
        ),
    )?;
    let mut core = Proc::spawn("strata-core", &d.join("core.toml"), &d.join("core.log"))?;
    let mut edge = Proc::spawn("strata-edge", &d.join("edge.toml"), &d.join("edge.log"))?;
    let cluster = Cluster::new(vec![CORE.parse()?], &ca)?;
    // v0.1 had no access rules: the operator grants the edge agent once.
    wait_for("the edge agent's rule", Duration::from_secs(60), || async {
        let rule = strata_client::access::edge_agent_rule("edge");
        Ok(strata_client::access::ensure_rule(&cluster, &rule)
            .await
            .ok())
    })
    .await?;

    // Everything: the core's 100 and the 100 the edge held for it.
    let all = wait_for(
        "all 200 records of the fixture",
        Duration::from_secs(90),
        || async {
            Ok(match read(&cluster).await {
                Ok(r) if r.len() >= 200 => Some(r),
                _ => None,
            })
        },
    )
    .await
    .with_context(|| {
        format!(
            "core log:\n{}\nedge log:\n{}",
            core.log_tail(),
            edge.log_tail()
        )
    })?;
    check(&all, 200)?;

    // New records go after them.
    let edge_client = Client::new(EDGE.parse()?, &ca)?;
    let mut b = strata_schema::batch::Builder::with_capacity(1024);
    for i in 200..210u32 {
        let (key, value) = (format!("k{}", i % 10), format!("v-{i}"));
        b.push(&strata_schema::batch::NewRecord {
            key: Some(&key),
            value: value.as_bytes(),
            timestamp_ms: 1_780_000_000_000,
            headers: &[],
        });
    }
    match api::produce(&edge_client, "fixture", &b.finish()).await {
        Ok(10) => {}
        Ok(n) => bail!("the edge acknowledged {n} of 10 records"),
        Err(ClientError::Remote(e)) => bail!("the edge refused new records: {e}"),
        Err(e) => return Err(e.into()),
    }
    let all = wait_for("the 10 new records", Duration::from_secs(60), || async {
        Ok(match read(&cluster).await {
            Ok(r) if r.len() >= 210 => Some(r),
            _ => None,
        })
    })
    .await?;
    check(&all, 210)?;
    assert!(edge.stop(), "edge did not stop cleanly");
    assert!(core.stop(), "core did not stop cleanly");
    Ok(())
}
