//! The edge's Kinesis API driven by real clients: boto3, the AWS CLI and
//! aws-kinesis-agg from the tools venv (deploy/scripts/setup.sh installs
//! them), running `tests/kinesis/kinesis_test.py` phase by phase against a
//! core and an edge agent; between phases the test stops and restarts the
//! core (a put while it is down succeeds and arrives after).
//!
//! `KINESIS_RECORDS` sets how many records the main phase puts (default
//! 100,000, the issue's figure).

use anyhow::{bail, Context, Result};
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};
use strata_client::access;
use strata_client::cluster::Cluster;
use strata_protocol::aws_key::AwsKey;
use strata_schema::batch::{Builder, NewRecord};
use strata_schema::hashkey::hash_key;
use strata_tests::cluster::TestCluster;
use strata_tests::{s3::tools_dir, wait_for, Pipeline, Proc};

/// The venv's Python, with boto3 importable, or an error naming the setup script.
fn python() -> Result<PathBuf> {
    let py = tools_dir().join("venv/bin/python");
    let ok = Command::new(&py)
        .args(["-c", "import boto3, aws_kinesis_agg"])
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        bail!(
            "{} cannot import boto3 and aws_kinesis_agg: run deploy/scripts/setup.sh",
            py.display()
        );
    }
    Ok(py)
}

fn free_tcp_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

struct Env {
    py: PathBuf,
    vars: Vec<(String, String)>,
}

impl Env {
    /// Runs one phase of the script (bounded), returning its output.
    fn phase(&self, name: &str, timeout: Duration) -> Result<String> {
        let script =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("kinesis/kinesis_test.py");
        let mut child = Command::new(&self.py)
            .arg(&script)
            .arg(name)
            .envs(self.vars.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .context("starting the Python client")?;
        let deadline = Instant::now() + timeout;
        while child.try_wait()?.is_none() {
            if Instant::now() > deadline {
                let _ = child.kill();
                let out = child.wait_with_output()?;
                bail!(
                    "phase {name} exceeded {timeout:?}:\n{}{}",
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let out = child.wait_with_output()?;
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        if !out.status.success() {
            bail!(
                "phase {name} failed:\n{stdout}{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(stdout)
    }
}

/// Issues a key for `principal` and waits until the edge's copy holds it.
async fn key_for(core: &Cluster, edge_dir: &std::path::Path, principal: &str) -> Result<AwsKey> {
    let key = core
        .any(|c| async move { access::aws_key_issue(&c, principal).await })
        .await?;
    let (file, id) = (edge_dir.join("aws_keys.json"), key.access_key_id.clone());
    wait_for(
        "the edge's copy of the AWS keys",
        Duration::from_secs(30),
        || {
            let (file, id) = (file.clone(), id.clone());
            async move {
                Ok(std::fs::read_to_string(&file)
                    .is_ok_and(|s| s.contains(&id))
                    .then_some(()))
            }
        },
    )
    .await?;
    Ok(key)
}

/// A core and an edge with the Kinesis API on (see [`prepare`]).
async fn setup(records: &str) -> Result<(Pipeline, Env)> {
    setup_with(records, "").await
}

/// [`setup`] with `edge_extra` in the edge's config.
async fn setup_with(records: &str, edge_extra: &str) -> Result<(Pipeline, Env)> {
    let port = free_tcp_port()?;
    let p = Pipeline::start(&format!(
        "kinesis_addr = \"127.0.0.1:{port}\"\n{edge_extra}"
    ))
    .await?;
    let core = Cluster::new(vec![p.core_addr], &p.pki.ca)?;
    let env = prepare(&core, &p.pki.ca, &p.dir.path().join("edge"), port, records).await?;
    core.close().await;
    Ok((p, env))
}

/// Lets the edge read and change streams for its Kinesis callers (their
/// own rights are checked at the edge first), issues keys for `admin` and
/// `viewer` (no rights) and waits for the edge's copy, and returns the
/// environment of the Python phases.
async fn prepare(
    core: &Cluster,
    ca: &std::path::Path,
    edge_dir: &std::path::Path,
    port: u16,
    records: &str,
) -> Result<Env> {
    let py = python()?;
    access::ensure_rule(core, &access::kinesis_edge_rule("edge")).await?;
    let admin = key_for(core, edge_dir, "admin").await?;
    let viewer = key_for(core, edge_dir, "viewer").await?;
    let aws = tools_dir().join("venv/bin/aws");
    Ok(Env {
        py,
        vars: vec![
            (
                "KINESIS_ENDPOINT".into(),
                format!("https://127.0.0.1:{port}"),
            ),
            ("KINESIS_CA".into(), ca.display().to_string()),
            ("KINESIS_ADMIN_KEY".into(), admin.access_key_id),
            ("KINESIS_ADMIN_SECRET".into(), admin.secret_access_key),
            ("KINESIS_VIEWER_KEY".into(), viewer.access_key_id),
            ("KINESIS_VIEWER_SECRET".into(), viewer.secret_access_key),
            ("RECORDS".into(), records.to_string()),
            ("AWS_CLI".into(), aws.display().to_string()),
            ("AWS_CONFIG_FILE".into(), "/dev/null".into()),
            ("AWS_SHARED_CREDENTIALS_FILE".into(), "/dev/null".into()),
        ],
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn boto3_aws_cli_and_kpl_against_the_edge() -> Result<()> {
    let records = std::env::var("KINESIS_RECORDS").unwrap_or_else(|_| "100000".into());
    let (mut p, env) = setup(&records).await?;
    let t = Instant::now();
    let out = env
        .phase("main", Duration::from_secs(240))
        .with_context(|| format!("edge log:\n{}", p.edge.log_tail()))?;
    println!("main phase in {:.1} s: {out}", t.elapsed().as_secs_f64());
    p.core.stop();
    env.phase("put_down", Duration::from_secs(60))
        .with_context(|| format!("edge log:\n{}", p.edge.log_tail()))?;
    p.restart_core().await?;
    env.phase("read_up", Duration::from_secs(120))
        .with_context(|| format!("edge log:\n{}", p.edge.log_tail()))?;
    p.edge.stop();
    p.core.stop();
    Ok(())
}

/// The endpoint's limits: connections per address, the read deadline, the
/// body bound (see the `limits` phase).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_endpoint_caps_connections_reads_and_bodies() -> Result<()> {
    let (mut p, mut env) = setup_with(
        "0",
        "request_read_timeout_ms = 2000\nconnections_per_address_max = 4",
    )
    .await?;
    env.vars.push(("READ_TIMEOUT_MS".into(), "2000".into()));
    env.phase("limits", Duration::from_secs(120))
        .with_context(|| format!("edge log:\n{}", p.edge.log_tail()))?;
    p.edge.stop();
    p.core.stop();
    Ok(())
}

/// The figure in docs/kinesis.md: one client putting the same records
/// (200 keys, batches of 500, one request at a time) through boto3 and the
/// Kinesis API, then through the Strata SDK's produce, to one edge.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "throughput figure: cargo test --release -p strata-tests --test kinesis -- --ignored --nocapture"]
async fn put_records_throughput_next_to_the_sdk() -> Result<()> {
    let n: usize = std::env::var("KINESIS_RECORDS")
        .unwrap_or_else(|_| "100000".into())
        .parse()?;
    let (mut p, env) = setup(&n.to_string()).await?;
    let core = Cluster::new(vec![p.core_addr], &p.pki.ca)?;
    for s in ["bench", "bench-sdk"] {
        core.any(|c| async move { strata_client::api::create_stream(&c, s, 4, 0).await })
            .await?;
    }
    let out = env.phase("bench", Duration::from_secs(600))?;
    println!("boto3 → Kinesis API: {out}");
    let edge = p.client(p.edge_addr);
    let mut counters = [0usize; 200];
    let t = Instant::now();
    for first in (0..n).step_by(500) {
        let mut b = Builder::default();
        for j in first..(first + 500).min(n) {
            let k = j % 200;
            let key = format!("key-{k:03}");
            // The size of the Python payload: "key|i|" and 16 bytes.
            let mut value = format!("{key}|{}|", counters[k]).into_bytes();
            value.extend_from_slice(&hash_key(&value).to_be_bytes());
            counters[k] += 1;
            b.push(&NewRecord {
                key: Some(&key),
                value: &value,
                timestamp_ms: 0,
                headers: &[],
            });
        }
        strata_client::api::produce(&edge, "bench-sdk", &b.finish()).await?;
    }
    let rate = n as f64 / t.elapsed().as_secs_f64();
    println!("Strata SDK produce: {{\"records\": {n}, \"records_per_s\": {rate:.0}}}");
    edge.close().await;
    core.close().await;
    p.edge.stop();
    p.core.stop();
    Ok(())
}

/// The main phase against the edge of a three-zone cluster (replication 3):
/// `KINESIS_CLUSTER_RECORDS` records (default 100,000).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn boto3_against_the_edge_of_a_three_zone_cluster() -> Result<()> {
    let records = std::env::var("KINESIS_CLUSTER_RECORDS").unwrap_or_else(|_| "100000".into());
    let mut c = TestCluster::start(3, false).await?;
    // The harness's edge has no Kinesis port: restart it with one.
    let port = free_tcp_port()?;
    c.edge.stop();
    let toml = c.dir.path().join("edge.toml");
    let mut cfg = std::fs::read_to_string(&toml)?;
    cfg += &format!("kinesis_addr = \"127.0.0.1:{port}\"\n");
    std::fs::write(&toml, cfg)?;
    c.edge = Proc::spawn("strata-edge", &toml, &c.dir.path().join("edge.log"))?;
    let core = c.cluster();
    let env = prepare(&core, &c.pki.ca, &c.dir.path().join("edge"), port, &records).await?;
    let t = Instant::now();
    let out = env
        .phase("main", Duration::from_secs(240))
        .with_context(|| format!("logs:\n{}", c.logs()))?;
    println!(
        "main phase (3 zones) in {:.1} s: {out}",
        t.elapsed().as_secs_f64()
    );
    core.close().await;
    Ok(())
}
