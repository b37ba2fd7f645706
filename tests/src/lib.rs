//! Harness for cross-process tests: starts real `strata-core` and
//! `strata-edge` binaries on free loopback ports with a fresh dev PKI, waits
//! for readiness with a deadline, and kills every process it started when
//! dropped. Nothing here sleeps to synchronise: waits poll a condition.

pub mod cluster;
pub mod netns;
pub mod outage;
pub mod relay;
pub mod s3;
pub mod tmpfs;
pub mod workload;

use anyhow::{bail, Context, Result};
use std::future::Future;
use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use strata_client::tls::DevPki;
use strata_client::{api, Client, ClientError};

/// Directory holding the workspace's built binaries (`target/<profile>`).
pub fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    // A test is target/<profile>/deps/<test>; a binary using this harness
    // (strata-bench) is target/<profile>/<bin>. Both -> target/<profile>.
    let dir = exe.parent().expect("executable has a parent directory");
    if dir.file_name().is_some_and(|n| n == "deps") {
        dir.parent().expect("target dir").to_path_buf()
    } else {
        dir.to_path_buf()
    }
}

/// The built binary `name`. `STRATA_TEST_EDGE_BIN` names another strata-edge
/// (e.g. one built with `--profile edge`, for `strata-bench footprint`; not
/// `STRATA_EDGE_…`, which the edge reads as its own settings).
pub fn bin(name: &str) -> Result<PathBuf> {
    let p = match std::env::var_os("STRATA_TEST_EDGE_BIN").filter(|_| name == "strata-edge") {
        Some(p) => PathBuf::from(p),
        None => bin_dir().join(name),
    };
    if !p.exists() {
        bail!("{} is missing: run `cargo build --bins` before the tests (the README's test command does)", p.display());
    }
    Ok(p)
}

/// Runs `f`, failing with "test exceeded N s" when it takes longer.
pub async fn bounded<F: std::future::Future<Output = Result<()>>>(secs: u64, f: F) -> Result<()> {
    match tokio::time::timeout(Duration::from_secs(secs), f).await {
        Ok(r) => r,
        Err(_) => bail!("test exceeded {secs} s"),
    }
}

/// Runs the `strata` CLI with `stdin`, bounded to 60 s; its output, whatever
/// the exit status.
pub fn strata_output(args: &[&str], stdin: &str) -> Result<std::process::Output> {
    use std::io::Write as _;
    let mut child = Command::new(bin("strata")?)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    child
        .stdin
        .take()
        .expect("piped")
        .write_all(stdin.as_bytes())?;
    let deadline = Instant::now() + Duration::from_secs(60);
    while child.try_wait()?.is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            bail!("strata {args:?} did not finish within 60 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(child.wait_with_output()?)
}

/// Runs the `strata` CLI (bounded, empty stdin); its stdout, or an error
/// with its stderr unless it succeeded.
pub fn strata_ok(args: &[&str]) -> Result<String> {
    let out = strata_output(args, "")?;
    if !out.status.success() {
        bail!(
            "strata {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8(out.stdout)?)
}

/// Every file below `dir` (none if it does not exist).
pub fn files_under(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    if !dir.exists() {
        return Ok(out);
    }
    for e in std::fs::read_dir(dir)? {
        let path = e?.path();
        if path.is_dir() {
            out.extend(files_under(&path)?);
        } else {
            out.push(path);
        }
    }
    Ok(out)
}

/// Bytes of the files below `dir`.
/// Copies the directory tree `from` to `to` (created), as a backup would.
pub fn copy_dir(from: &Path, to: &Path) -> Result<()> {
    std::fs::create_dir_all(to)?;
    for e in std::fs::read_dir(from).with_context(|| format!("reading {}", from.display()))? {
        let e = e?;
        if e.file_type()?.is_dir() {
            copy_dir(&e.path(), &to.join(e.file_name()))?;
        } else {
            std::fs::copy(e.path(), to.join(e.file_name()))?;
        }
    }
    Ok(())
}

pub fn dir_bytes(dir: &Path) -> Result<u64> {
    let mut total = 0;
    for f in files_under(dir)? {
        total += std::fs::metadata(&f)?.len();
    }
    Ok(total)
}

/// A free UDP port on 127.0.0.1 (bound and released; QUIC listens on UDP).
pub fn free_udp_addr() -> SocketAddr {
    use std::sync::atomic::{AtomicU32, Ordering};
    // Ports below the kernel's ephemeral range (32768 and up by default): a
    // socket bound to port 0 (every QUIC client) cannot take one between this
    // check and the child process binding it. Each test process starts at
    // its own place in the range and never hands out a port twice.
    const LOW: u32 = 10_000;
    const SPAN: u32 = 22_000;
    static NEXT: AtomicU32 = AtomicU32::new(u32::MAX);
    let _ = NEXT.compare_exchange(
        u32::MAX,
        std::process::id().wrapping_mul(7_919) % SPAN,
        Ordering::SeqCst,
        Ordering::SeqCst,
    );
    for _ in 0..SPAN {
        let port = LOW + NEXT.fetch_add(1, Ordering::SeqCst) % SPAN;
        if let Ok(s) = UdpSocket::bind(("127.0.0.1", port as u16)) {
            return s.local_addr().expect("local addr");
        }
    }
    panic!(
        "no free UDP port on 127.0.0.1 between {LOW} and {}",
        LOW + SPAN
    )
}

/// A child process killed (SIGKILL) when dropped.
pub struct Proc {
    pub name: String,
    child: Option<Child>,
    pub log: PathBuf,
}

/// `path` opened for appending (created if missing).
fn append_to(path: &Path) -> std::io::Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
}

impl Proc {
    pub fn spawn(name: &str, config: &Path, log: &Path) -> Result<Self> {
        Self::spawn_env(name, config, log, &[])
    }

    /// [`Proc::spawn`] with extra environment variables.
    pub fn spawn_env(
        name: &str,
        config: &Path,
        log: &Path,
        env: &[(&str, String)],
    ) -> Result<Self> {
        let out = append_to(log)?;
        let config = config.to_string_lossy();
        let mut env = env.to_vec();
        env.insert(0, ("RUST_LOG", "info,openraft=warn".into()));
        Self::start(
            None,
            name,
            &["--config", &config],
            &env,
            out.try_clone()?,
            out,
            log,
        )
    }

    /// [`Proc::spawn`] inside network namespace `netns` (`ip netns exec`,
    /// which execs the binary: the child is the daemon itself).
    pub fn spawn_in(netns: &str, name: &str, config: &Path, log: &Path) -> Result<Self> {
        let out = append_to(log)?;
        let config = config.to_string_lossy();
        let env = [("RUST_LOG", "info,openraft=warn".to_string())];
        let args = ["--config", &config];
        Self::start(Some(netns), name, &args, &env, out.try_clone()?, out, log)
    }

    /// Starts binary `name` with `args`; its stdout goes to `out`, its
    /// stderr to `log`.
    pub fn spawn_args(name: &str, args: &[&str], out: &Path, log: &Path) -> Result<Self> {
        let stdout = std::fs::File::create(out)?;
        let env = [("RUST_LOG", "info".to_string())];
        Self::start(None, name, args, &env, stdout, append_to(log)?, log)
    }

    fn start(
        netns: Option<&str>,
        name: &str,
        args: &[&str],
        env: &[(&str, String)],
        stdout: std::fs::File,
        stderr: std::fs::File,
        log: &Path,
    ) -> Result<Self> {
        let mut cmd = match netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns]).arg(bin(name)?);
                c
            }
            None => Command::new(bin(name)?),
        };
        let child = cmd
            .args(args)
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .spawn()
            .with_context(|| format!("starting {name}"))?;
        Ok(Self {
            name: name.to_string(),
            child: Some(child),
            log: log.to_path_buf(),
        })
    }

    /// SIGKILL and reap.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM and wait (bounded) for a clean exit; returns whether it exited 0.
    pub fn stop(&mut self) -> bool {
        let Some(mut c) = self.child.take() else {
            return true;
        };
        // SAFETY: kill(2) on our own child.
        unsafe {
            libc::kill(c.id() as i32, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = c.try_wait() {
                return status.success();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = c.kill();
        let _ = c.wait();
        false
    }

    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    pub fn log_tail(&self) -> String {
        let bytes = std::fs::read(&self.log).unwrap_or_default();
        let s = String::from_utf8_lossy(&bytes);
        let lines: Vec<&str> = s.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Polls `f` until it returns `Ok(Some(T))` or the deadline passes.
pub async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, mut f: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Option<T>>>,
{
    let deadline = Instant::now() + timeout;
    let mut last_err = None;
    loop {
        match f().await {
            Ok(Some(v)) => return Ok(v),
            Ok(None) => {}
            Err(e) => last_err = Some(e),
        }
        if Instant::now() > deadline {
            bail!("timed out after {timeout:?} waiting for {what} (last error: {last_err:?})");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Where [`Pipeline::start_in`] puts the daemons' data (None: in the
/// pipeline's temporary directory).
#[derive(Debug, Clone, Default)]
pub struct DataDirs {
    pub core: Option<PathBuf>,
    pub edge: Option<PathBuf>,
}

/// A core node and an edge agent in a temporary directory.
pub struct Pipeline {
    pub dir: tempfile::TempDir,
    pub pki: DevPki,
    pub core_addr: SocketAddr,
    pub edge_addr: SocketAddr,
    pub core: Proc,
    pub edge: Proc,
    pub edge_extra: String,
}

impl Pipeline {
    /// Starts both daemons; `edge_extra` is appended to the edge's TOML.
    pub async fn start(edge_extra: &str) -> Result<Self> {
        Self::start_with(edge_extra, "").await
    }

    /// [`Pipeline::start`] with `core_extra` appended to the core's TOML.
    pub async fn start_with(edge_extra: &str, core_extra: &str) -> Result<Self> {
        Self::start_env(edge_extra, core_extra, &[]).await
    }

    /// [`Pipeline::start_with`] with extra environment for the core (e.g.
    /// the AWS_* variables of a test S3 server).
    pub async fn start_env(
        edge_extra: &str,
        core_extra: &str,
        core_env: &[(&str, String)],
    ) -> Result<Self> {
        Self::start_in(edge_extra, core_extra, core_env, &DataDirs::default()).await
    }

    /// [`Pipeline::start_env`] with the daemons' `data_dir`s where `dirs`
    /// says (e.g. on a small disk), else in the temporary directory.
    pub async fn start_in(
        edge_extra: &str,
        core_extra: &str,
        core_env: &[(&str, String)],
        dirs: &DataDirs,
    ) -> Result<Self> {
        let dir = tempfile::tempdir()?;
        let (pki, _) = DevPki::ensure(&dir.path().join("tls"))?;
        let core_addr = free_udp_addr();
        let edge_addr = free_udp_addr();
        let p = dir.path();
        std::fs::write(
            p.join("core.toml"),
            format!(
                "data_dir = {:?}\nlisten_addr = \"{core_addr}\"\ntls_cert = {:?}\ntls_key = {:?}\ntls_ca = {:?}\nsuperusers = [\"admin\"]\n{core_extra}\n",
                dirs.core.clone().unwrap_or_else(|| p.join("core")),
                pki.cert,
                pki.key,
                pki.ca
            ),
        )?;
        std::fs::write(
            p.join("edge.toml"),
            format!(
                "data_dir = {:?}\nlisten_addr = \"{edge_addr}\"\ntls_cert = {:?}\ntls_key = {:?}\ncore_addrs = [\"{core_addr}\"]\ncore_ca = {:?}\nsuperusers = [\"admin\"]\n{edge_extra}\n",
                dirs.edge.clone().unwrap_or_else(|| p.join("edge")),
                pki.edge.cert,
                pki.edge.key,
                pki.ca
            ),
        )?;
        let core = Proc::spawn_env(
            "strata-core",
            &p.join("core.toml"),
            &p.join("core.log"),
            core_env,
        )?;
        let edge = Proc::spawn("strata-edge", &p.join("edge.toml"), &p.join("edge.log"))?;
        let mut me = Self {
            dir,
            pki,
            core_addr,
            edge_addr,
            core,
            edge,
            edge_extra: edge_extra.to_string(),
        };
        me.wait_core().await?;
        let core = strata_client::cluster::Cluster::new(vec![me.core_addr], &me.pki.ca)?;
        strata_client::access::ensure_rule(&core, &strata_client::access::edge_agent_rule("edge"))
            .await?;
        me.wait_edge().await?;
        Ok(me)
    }

    pub fn client(&self, addr: SocketAddr) -> Client {
        Client::new(addr, &self.pki.ca).expect("client")
    }

    pub async fn wait_core(&mut self) -> Result<()> {
        let addr = self.core_addr;
        let ca = self.pki.ca.clone();
        let r = wait_for("core to answer", Duration::from_secs(60), || {
            let ca = ca.clone();
            async move {
                let c = Client::new(addr, &ca)?;
                let ok = api::list_streams(&c).await.is_ok();
                c.close().await;
                Ok(ok.then_some(()))
            }
        })
        .await;
        r.with_context(|| format!("core log:\n{}", self.core.log_tail()))
    }

    pub async fn wait_edge(&mut self) -> Result<()> {
        let addr = self.edge_addr;
        let ca = self.pki.ca.clone();
        let r = wait_for("edge to answer", Duration::from_secs(60), || {
            let ca = ca.clone();
            async move {
                let c = Client::new(addr, &ca)?;
                let ok = matches!(
                    api::produce(&c, "?", b"").await,
                    Err(ClientError::Remote(_)) | Ok(_)
                );
                c.close().await;
                Ok(ok.then_some(()))
            }
        })
        .await;
        r.with_context(|| format!("edge log:\n{}", self.edge.log_tail()))
    }

    pub async fn restart_edge(&mut self) -> Result<()> {
        let p = self.dir.path();
        self.edge = Proc::spawn("strata-edge", &p.join("edge.toml"), &p.join("edge.log"))?;
        self.wait_edge().await
    }

    pub async fn restart_core(&mut self) -> Result<()> {
        let p = self.dir.path();
        self.core = Proc::spawn("strata-core", &p.join("core.toml"), &p.join("core.log"))?;
        self.wait_core().await
    }
}
