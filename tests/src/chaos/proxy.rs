//! TCP forwarders that bring the S3 server to the core nodes. It listens on
//! the root namespace's loopback, which the zones cannot reach, so the
//! runner listens on the zone network's root address and forwards there;
//! and the core takes plain http only to a loopback endpoint, so each zone
//! runs a forwarder of its own (this binary, `strata-chaos forward LISTEN
//! UPSTREAM`, started in the zone's namespace) on its loopback, to the
//! root address. While S3 is down a connection is accepted and closed at
//! once (as a dead server's port would refuse it); while a zone is cut
//! off, its forwarder cannot reach the root address either.

use anyhow::{Context, Result};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use tokio::net::{TcpListener, TcpStream};

/// Forwards connections to `listen` (port 0: any free one) to `upstream`
/// until the runtime ends; returns the address it listens on.
pub async fn start(listen: SocketAddr, upstream: SocketAddr) -> Result<SocketAddr> {
    let l = TcpListener::bind(listen).await?;
    let addr = l.local_addr()?;
    tokio::spawn(async move {
        while let Ok((mut down, _)) = l.accept().await {
            tokio::spawn(async move {
                if let Ok(mut up) = TcpStream::connect(upstream).await {
                    let _ = tokio::io::copy_bidirectional(&mut down, &mut up).await;
                }
            });
        }
    });
    Ok(addr)
}

/// Runs `forward LISTEN UPSTREAM` (the zone forwarders) until killed.
pub fn forward_main(args: &[String]) -> Result<()> {
    let [listen, upstream] = args else {
        anyhow::bail!("usage: strata-chaos forward LISTEN_ADDR UPSTREAM_ADDR");
    };
    let listen: SocketAddr = listen
        .parse()
        .with_context(|| format!("listen address {listen:?}"))?;
    let upstream: SocketAddr = upstream
        .parse()
        .with_context(|| format!("upstream address {upstream:?}"))?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        start(listen, upstream).await?;
        std::future::pending::<()>().await;
        anyhow::Ok(())
    })
}

/// A zone forwarder process, killed when dropped.
pub struct ZoneForwarder(Child);

impl ZoneForwarder {
    /// Starts this binary as a forwarder from `listen` to `upstream` in
    /// network namespace `netns`.
    pub fn spawn(netns: &str, listen: SocketAddr, upstream: SocketAddr) -> Result<Self> {
        let exe = std::env::current_exe()?;
        let child = Command::new("ip")
            .args(["netns", "exec", netns])
            .arg(exe)
            .args(["forward", &listen.to_string(), &upstream.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .with_context(|| format!("starting a forwarder in {netns}"))?;
        Ok(Self(child))
    }
}

impl Drop for ZoneForwarder {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
