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
use strata_protocol::acl::{parse_operations, Rule};
use strata_protocol::aws_key::AwsKey;
use strata_tests::{s3::tools_dir, wait_for, Pipeline};

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn boto3_aws_cli_and_kpl_against_the_edge() -> Result<()> {
    let py = python()?;
    let port = free_tcp_port()?;
    let mut p = Pipeline::start(&format!("kinesis_addr = \"127.0.0.1:{port}\"")).await?;
    let core = Cluster::new(vec![p.core_addr], &p.pki.ca)?;
    // The edge reads and changes streams for its Kinesis callers (their own
    // rights are checked at the edge first).
    access::ensure_rule(
        &core,
        &Rule {
            id: 0,
            principal: "edge".into(),
            operations: parse_operations("all")?,
            stream: "*".into(),
            key_prefix: None,
        },
    )
    .await?;
    let edge_dir = p.dir.path().join("edge");
    let admin = key_for(&core, &edge_dir, "admin").await?;
    let viewer = key_for(&core, &edge_dir, "viewer").await?;
    let records = std::env::var("KINESIS_RECORDS").unwrap_or_else(|_| "100000".into());
    let aws = tools_dir().join("venv/bin/aws");
    let env = Env {
        py,
        vars: vec![
            (
                "KINESIS_ENDPOINT".into(),
                format!("https://127.0.0.1:{port}"),
            ),
            ("KINESIS_CA".into(), p.pki.ca.display().to_string()),
            ("KINESIS_ADMIN_KEY".into(), admin.access_key_id),
            ("KINESIS_ADMIN_SECRET".into(), admin.secret_access_key),
            ("KINESIS_VIEWER_KEY".into(), viewer.access_key_id),
            ("KINESIS_VIEWER_SECRET".into(), viewer.secret_access_key),
            ("RECORDS".into(), records),
            ("AWS_CLI".into(), aws.display().to_string()),
            ("AWS_CONFIG_FILE".into(), "/dev/null".into()),
            ("AWS_SHARED_CREDENTIALS_FILE".into(), "/dev/null".into()),
        ],
    };
    let t = Instant::now();
    let out = env
        .phase("main", Duration::from_secs(240))
        .with_context(|| format!("edge log:\n{}", p.edge.log_tail()))?;
    println!("main phase in {:.1} s: {out}", t.elapsed().as_secs_f64());
    core.close().await;
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
