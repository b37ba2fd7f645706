//! `strata dev`: a local pipeline in the foreground. It creates a dev CA and
//! certificates on first start, writes configs for a single-node core and an
//! edge agent under the data directory, starts `strata-core` and `strata-edge`
//! (found beside this executable) as child processes, waits until both answer,
//! and stops them cleanly on Ctrl-C. Data and offsets survive restarts.
//!
//! The edge also serves the Kinesis API (`--kinesis-addr`); an AWS access
//! key of the `admin` principal is written to `DATA_DIR/aws/credentials`
//! (profile `strata`, mode 0600) on the first start and reused afterwards
//! as long as the cluster still knows it.

use anyhow::{bail, Context, Result};
use clap::Args;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};
use strata_client::{api, Client, ClientError};
use strata_runtime::tls::DevPki;
use tokio::process::{Child, Command};

#[derive(Args, Debug)]
pub struct DevArgs {
    /// Directory for all data, configs, logs and the dev CA.
    #[arg(long, default_value = "./strata-data")]
    pub data_dir: PathBuf,
    /// Edge agent QUIC address.
    #[arg(long, default_value = super::DEFAULT_EDGE)]
    pub edge_addr: SocketAddr,
    /// Core node QUIC address.
    #[arg(long, default_value = super::DEFAULT_CORE)]
    pub core_addr: SocketAddr,
    /// Edge Kinesis API address (HTTPS, AWS JSON 1.1 with SigV4).
    #[arg(long, default_value = "127.0.0.1:7443")]
    pub kinesis_addr: SocketAddr,
    /// Edge metrics address (Prometheus).
    #[arg(long, default_value = "127.0.0.1:9400")]
    pub edge_metrics_addr: SocketAddr,
    /// Core metrics address (Prometheus).
    #[arg(long, default_value = "127.0.0.1:9500")]
    pub core_metrics_addr: SocketAddr,
    /// Only create the dev CA and certificates under DATA_DIR/tls, then exit
    /// (used by deploy/local/cluster.sh).
    #[arg(long)]
    pub pki_only: bool,
    /// Where tiered segments go as Parquet: `file:///abs/dir` or
    /// `s3://bucket/prefix` (endpoint and credentials from AWS_* variables,
    /// AWS_ENDPOINT_URL included; plain http only for a loopback endpoint).
    /// Default: DATA_DIR/core/archive.
    #[arg(long, value_name = "URL")]
    pub object_store: Option<String>,
    /// Tier a segment once its first record is this old, milliseconds.
    #[arg(long, value_name = "MS")]
    pub segment_age_max_ms: Option<u64>,
    /// Tier (and roll) a segment at this size, bytes (at least 1 MiB).
    #[arg(long, value_name = "BYTES")]
    pub segment_bytes_max: Option<u64>,
    /// Keep tiered records on local disk this long, milliseconds.
    #[arg(long, value_name = "MS")]
    pub local_retention_ms: Option<u64>,
}

fn toml_path(p: &Path) -> String {
    toml_str(&p.display().to_string())
}

fn toml_str(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

fn sibling(name: &str) -> Result<PathBuf> {
    let exe = std::env::current_exe().context("locating the strata executable")?;
    let p = exe
        .parent()
        .map(|d| d.join(name))
        .context("executable has no directory")?;
    if !p.exists() {
        bail!(
            "{} not found next to {} (build all binaries: cargo build --release --bins)",
            name,
            exe.display()
        );
    }
    Ok(p)
}

pub async fn run(a: DevArgs) -> Result<()> {
    std::fs::create_dir_all(&a.data_dir)
        .with_context(|| format!("creating {}", a.data_dir.display()))?;
    let dir = std::fs::canonicalize(&a.data_dir)?;
    let (pki, created) = DevPki::ensure(&dir.join("tls"))?;
    if created {
        println!(
            "created the dev CA and certificates (node, edge, admin) in {}",
            dir.join("tls").display()
        );
    }
    if a.pki_only {
        return Ok(());
    }
    let logs = dir.join("logs");
    std::fs::create_dir_all(&logs)?;
    let core_toml = dir.join("core.toml");
    let mut tiering = String::new();
    if let Some(url) = &a.object_store {
        tiering += &format!("object_store = {}\n", toml_str(url));
    }
    for (key, v) in [
        ("segment_age_max_ms", a.segment_age_max_ms),
        ("segment_bytes_max", a.segment_bytes_max),
        ("local_retention_ms", a.local_retention_ms),
    ] {
        if let Some(v) = v {
            tiering += &format!("{key} = {v}\n");
        }
    }
    std::fs::write(
        &core_toml,
        format!(
            "# Written by `strata dev` at every start; see deploy/config/core.example.toml.\n\
             node_id = 1\nzone = \"local\"\ndata_dir = {}\nlisten_addr = \"{}\"\nmetrics_addr = \"{}\"\n\
             tls_cert = {}\ntls_key = {}\ntls_ca = {}\nsuperusers = [\"admin\"]\n{tiering}",
            toml_path(&dir.join("core")),
            a.core_addr,
            a.core_metrics_addr,
            toml_path(&pki.cert),
            toml_path(&pki.key),
            toml_path(&pki.ca),
        ),
    )?;
    let edge_toml = dir.join("edge.toml");
    std::fs::write(
        &edge_toml,
        format!(
            "# Written by `strata dev` at every start; see deploy/config/edge.example.toml.\n\
             data_dir = {}\nlisten_addr = \"{}\"\nkinesis_addr = \"{}\"\nmetrics_addr = \"{}\"\n\
             tls_cert = {}\ntls_key = {}\ncore_addrs = [\"{}\"]\ncore_ca = {}\nsuperusers = [\"admin\"]\n",
            toml_path(&dir.join("edge")),
            a.edge_addr,
            a.kinesis_addr,
            a.edge_metrics_addr,
            toml_path(&pki.edge.cert),
            toml_path(&pki.edge.key),
            a.core_addr,
            toml_path(&pki.ca),
        ),
    )?;

    let mut core = spawn("strata-core", &core_toml, &logs.join("core.log"))?;
    let ready = wait_ready(&mut core, "strata-core", &logs.join("core.log"), || async {
        let c = Client::new(a.core_addr, &pki.ca)?;
        let r = api::list_streams(&c).await.map(|_| ());
        c.close().await;
        r
    })
    .await;
    if let Err(e) = ready {
        stop(&mut core, "strata-core").await;
        return Err(e);
    }
    // The edge agent forwards as principal `edge`, and performs its Kinesis
    // callers' requests (checked at the edge against their own rules) as
    // `edge` too: allow it (once).
    let granted = async {
        let cluster = strata_client::cluster::Cluster::new(vec![a.core_addr], &pki.ca)?;
        let rule = strata_client::access::kinesis_edge_rule("edge");
        strata_client::access::ensure_rule(&cluster, &rule).await
    }
    .await;
    if let Err(e) = granted {
        stop(&mut core, "strata-core").await;
        return Err(anyhow::anyhow!("granting the edge agent access: {e}"));
    }
    let mut edge = spawn("strata-edge", &edge_toml, &logs.join("edge.log"))?;
    let ready = wait_ready(&mut edge, "strata-edge", &logs.join("edge.log"), || async {
        let c = Client::new(a.edge_addr, &pki.ca)?;
        // An invalid stream name gets a typed reply once the agent is serving.
        let r = match api::produce(&c, "?", b"").await {
            Err(ClientError::Remote(_)) | Ok(_) => Ok(()),
            Err(e) => Err(e),
        };
        c.close().await;
        r
    })
    .await;
    if let Err(e) = ready {
        stop(&mut edge, "strata-edge").await;
        stop(&mut core, "strata-core").await;
        return Err(e);
    }

    let credentials = dir.join("aws").join("credentials");
    if let Err(e) = ensure_aws_key(a.core_addr, &pki.ca, &credentials).await {
        stop(&mut edge, "strata-edge").await;
        stop(&mut core, "strata-core").await;
        return Err(e.context("writing the dev AWS access key"));
    }

    let ca = pki.ca.display();
    println!(
        "\nStrata is running (data in {dir}).\n\
         \x20 edge agent  quic://{edge}   metrics http://{em}/metrics\n\
         \x20 core node   quic://{core}   metrics http://{cm}/metrics\n\
         \x20 dev CA      {ca}\n\
         \x20 logs        {logs}\n\n\
         Try, from the directory that holds strata-data (or pass --ca {ca}):\n\
         \x20 strata stream create sensors --shards 4\n\
         \x20 strata produce sensors --key device-1 '{{\"temp\": 21.5}}'\n\
         \x20 strata produce sensors --generate 100000 --size 100\n\
         \x20 strata consume sensors --from oldest --limit 5 --json\n\
         \x20 strata stream describe sensors\n\n\
         Kinesis API (admin's AWS key in {creds}, profile strata):\n\
         \x20 AWS_SHARED_CREDENTIALS_FILE={creds} AWS_PROFILE=strata AWS_DEFAULT_REGION=us-east-1 \\\n\
         \x20   aws --endpoint-url https://{kinesis} --ca-bundle {ca} kinesis list-streams\n\n\
         Ctrl-C stops both; starting again keeps all data and offsets.",
        creds = credentials.display(),
        kinesis = a.kinesis_addr,
        dir = dir.display(),
        edge = a.edge_addr,
        core = a.core_addr,
        em = a.edge_metrics_addr,
        cm = a.core_metrics_addr,
        logs = logs.display(),
    );

    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    let outcome = tokio::select! {
        _ = tokio::signal::ctrl_c() => Ok(()),
        _ = term.recv() => Ok(()),
        s = core.wait() => Err(anyhow::anyhow!("strata-core exited unexpectedly ({}); see {}", s?, logs.join("core.log").display())),
        s = edge.wait() => Err(anyhow::anyhow!("strata-edge exited unexpectedly ({}); see {}", s?, logs.join("edge.log").display())),
    };
    println!("\nstopping…");
    stop(&mut edge, "strata-edge").await;
    stop(&mut core, "strata-core").await;
    println!("stopped; data kept in {}", dir.display());
    outcome
}

/// Makes `credentials` hold an AWS key of `admin` that the cluster knows:
/// the one already there, or a new one (profile `strata`, 0600).
async fn ensure_aws_key(core: SocketAddr, ca: &Path, credentials: &Path) -> Result<()> {
    const PROFILE: &str = "strata";
    let cluster = strata_client::cluster::Cluster::new(vec![core], ca)?;
    let known = cluster
        .any(|c| async move { strata_client::access::aws_key_list(&c, false).await })
        .await?;
    let held = std::fs::read_to_string(credentials)
        .ok()
        .and_then(|t| super::aws_credentials::read_profile(&t, PROFILE));
    let still_known = held.as_ref().is_some_and(|(id, _)| {
        known
            .keys
            .iter()
            .any(|k| &k.access_key_id == id && k.principal == "admin")
    });
    if !still_known {
        let key = cluster
            .any(|c| async move { strata_client::access::aws_key_issue(&c, "admin").await })
            .await?;
        super::aws_credentials::write_profile(
            credentials,
            PROFILE,
            &key.access_key_id,
            &key.secret_access_key,
        )?;
        println!(
            "issued an AWS access key for admin ({}) into {}",
            key.access_key_id,
            credentials.display()
        );
    }
    cluster.close().await;
    Ok(())
}

fn spawn(name: &str, config: &Path, log: &Path) -> Result<Child> {
    let bin = sibling(name)?;
    let out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)?;
    let err = out.try_clone()?;
    Command::new(&bin)
        .arg("--config")
        .arg(config)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        // Its own process group: Ctrl-C reaches only `strata dev`, which then
        // stops the children in order (edge first, so it stops forwarding).
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting {}", bin.display()))
}

async fn wait_ready<F, Fut>(child: &mut Child, name: &str, log: &Path, probe: F) -> Result<()>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<(), ClientError>>,
{
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(status) = child.try_wait()? {
            let tail = std::fs::read_to_string(log).unwrap_or_default();
            let tail: Vec<&str> = tail.lines().rev().take(15).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            bail!(
                "{name} exited ({status}) during start-up; last lines of {}:\n{}",
                log.display(),
                tail.join("\n")
            );
        }
        match probe().await {
            Ok(()) => return Ok(()),
            Err(e) if Instant::now() > deadline => bail!(
                "{name} did not answer within 60 s: {e}; see {}",
                log.display()
            ),
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

async fn stop(child: &mut Child, name: &str) {
    if let Some(pid) = child.id() {
        // SAFETY: plain kill(2) on our own child's pid.
        unsafe {
            libc::kill(pid as i32, libc::SIGTERM);
        }
    }
    match tokio::time::timeout(Duration::from_secs(15), child.wait()).await {
        Ok(_) => {}
        Err(_) => {
            eprintln!("{name} did not stop within 15 s; killing it");
            let _ = child.kill().await;
        }
    }
}
