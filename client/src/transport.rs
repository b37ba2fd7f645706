//! Request/response over QUIC: one bidirectional stream per request, one
//! length-prefixed flatbuffer frame each way (see `strata_schema::frame`).
//!
//! [`Client`] keeps one connection to a server and reconnects on demand.
//! Frames and the server loop are in `strata_runtime`.

use bytes::Bytes;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;
use strata_runtime::frame::{read_frame, write_frame, FrameReadError};
use strata_schema::fb;

use strata_schema::frame::FRAME_BYTES_MAX;
use strata_schema::wire::{self, RemoteError};
use tokio::sync::Mutex;

/// Errors of a request to a Strata server.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot connect to {addr}: {detail}")]
    Connect { addr: SocketAddr, detail: String },
    #[error("connection to {addr} lost: {detail}")]
    Connection { addr: SocketAddr, detail: String },
    #[error(transparent)]
    Remote(#[from] RemoteError),
    #[error("server {addr} sent a bad reply: {detail}")]
    BadReply { addr: SocketAddr, detail: String },
    #[error("request to {addr} timed out after {ms} ms")]
    Timeout { addr: SocketAddr, ms: u64 },
    #[error("TLS setup: {0}")]
    Tls(String),
}

impl ClientError {
    /// Whether retrying the same request later may succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            ClientError::Connect { detail, .. } => !is_tls_rejection(detail),
            ClientError::Connection { .. } | ClientError::Timeout { .. } => true,
            ClientError::Remote(e) => e.is_retryable(),
            ClientError::BadReply { .. } | ClientError::Tls(_) => false,
        }
    }

    pub fn code(&self) -> Option<fb::ErrorCode> {
        match self {
            ClientError::Remote(e) => Some(e.code),
            _ => None,
        }
    }
}

fn is_tls_rejection(detail: &str) -> bool {
    detail.contains("certificate") || detail.contains("ALPN") || detail.contains("protocol")
}

fn explain_connect(e: &dyn std::fmt::Display) -> String {
    let s = e.to_string();
    if s.contains("UnknownIssuer") || s.contains("invalid peer certificate") {
        format!(
            "{s} (the server's certificate is not signed by the CA given with --ca / STRATA_CA)"
        )
    } else if s.contains("no application protocol") || s.contains("ALPN") {
        format!(
            "{s} (the server does not speak {})",
            String::from_utf8_lossy(strata_schema::ALPN)
        )
    } else if s.contains("timed out") {
        format!("{s} (is a Strata server listening there?)")
    } else {
        s
    }
}

/// A connection to one Strata server, re-established on demand.
pub struct Client {
    endpoint: quinn::Endpoint,
    addr: SocketAddr,
    server_name: String,
    conn: Mutex<Option<quinn::Connection>>,
    timeout: Duration,
}

impl Client {
    /// A client trusting the CA in `ca` (PEM), presenting the dev admin
    /// identity when `admin.pem` lies beside the CA. Does not connect yet.
    pub fn new(addr: SocketAddr, ca: &Path) -> Result<Self, ClientError> {
        let id = strata_runtime::identity::Identity::admin_beside(ca);
        Self::with_identity(addr, ca, id.as_ref())
    }

    /// A client trusting the CA in `ca` and presenting `identity`.
    pub fn with_identity(
        addr: SocketAddr,
        ca: &Path,
        identity: Option<&strata_runtime::identity::Identity>,
    ) -> Result<Self, ClientError> {
        let cfg = crate::tls::client_config(ca, identity)
            .map_err(|e| ClientError::Tls(format!("{e:#}")))?;
        Self::with_config(addr, cfg)
    }

    pub fn with_config(addr: SocketAddr, cfg: quinn::ClientConfig) -> Result<Self, ClientError> {
        let bind: SocketAddr = if addr.is_ipv6() {
            "[::]:0".parse().expect("valid")
        } else {
            "0.0.0.0:0".parse().expect("valid")
        };
        let mut endpoint = quinn::Endpoint::client(bind).map_err(|e| ClientError::Connect {
            addr,
            detail: format!("binding a UDP socket: {e}"),
        })?;
        endpoint.set_default_client_config(cfg);
        Ok(Self {
            endpoint,
            addr,
            // The dev certificate covers localhost and loopback IPs; IP
            // addresses are matched as IP SANs by rustls.
            server_name: addr.ip().to_string(),
            conn: Mutex::new(None),
            timeout: Duration::from_secs(30),
        })
    }

    /// Sets the per-request timeout (default 30 s; long-polls add their wait).
    pub fn set_timeout(&mut self, timeout: Duration) {
        self.timeout = timeout;
    }

    /// The per-request timeout.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    async fn connection(&self, timeout: Duration) -> Result<quinn::Connection, ClientError> {
        let mut guard = self.conn.lock().await;
        if let Some(c) = guard.as_ref() {
            if c.close_reason().is_none() {
                return Ok(c.clone());
            }
        }
        let connecting = self
            .endpoint
            .connect(self.addr, &self.server_name)
            .map_err(|e| ClientError::Connect {
                addr: self.addr,
                detail: e.to_string(),
            })?;
        let limit = timeout.min(Duration::from_secs(10));
        let conn = tokio::time::timeout(limit, connecting)
            .await
            .map_err(|_| ClientError::Connect {
                addr: self.addr,
                detail: format!(
                    "handshake timed out after {} ms (is a Strata server listening there?)",
                    limit.as_millis()
                ),
            })?
            .map_err(|e| ClientError::Connect {
                addr: self.addr,
                detail: explain_connect(&e),
            })?;
        *guard = Some(conn.clone());
        Ok(conn)
    }

    /// Sends one request frame and returns the verified reply frame. An
    /// error reply becomes `ClientError::Remote`.
    pub async fn call(&self, request: &Bytes) -> Result<Bytes, ClientError> {
        self.call_with_timeout(request, self.timeout).await
    }

    pub async fn call_with_timeout(
        &self,
        request: &Bytes,
        timeout: Duration,
    ) -> Result<Bytes, ClientError> {
        let conn = self.connection(timeout).await?;
        let addr = self.addr;
        let exchange = async {
            let (mut send, mut recv) = start_request(&conn, addr, request).await?;
            let _ = send.finish();
            read_reply_frame(&mut recv, addr).await
        };
        let reply = match tokio::time::timeout(timeout, exchange).await {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => {
                self.forget(&conn).await;
                return Err(e);
            }
            Err(_) => {
                // The peer may be gone (a killed process sends no close):
                // the next call opens a fresh connection instead of waiting
                // for this one's idle timeout.
                self.forget(&conn).await;
                return Err(ClientError::Timeout {
                    addr,
                    ms: timeout.as_millis() as u64,
                });
            }
        };
        check_reply(addr, reply)
    }

    /// Sends `request` on a new QUIC stream and returns the stream's receive
    /// side, for requests answered by several frames (subscriptions). The
    /// send side stays open until the returned stream is dropped.
    pub async fn open_stream(
        &self,
        request: &Bytes,
    ) -> Result<(quinn::SendStream, quinn::RecvStream), ClientError> {
        let conn = self.connection(self.timeout).await?;
        start_request(&conn, self.addr, request).await
    }

    /// Drops `conn` if it is still the cached connection.
    async fn forget(&self, conn: &quinn::Connection) {
        let mut guard = self.conn.lock().await;
        if guard
            .as_ref()
            .is_some_and(|c| c.stable_id() == conn.stable_id())
        {
            conn.close(0u32.into(), b"unresponsive");
            *guard = None;
        }
    }

    /// Closes the connection politely.
    pub async fn close(&self) {
        if let Some(c) = self.conn.lock().await.take() {
            c.close(0u32.into(), b"bye");
        }
        self.endpoint.wait_idle().await;
    }
}

/// Opens a stream on `conn` (to `addr`) and writes `request` as one frame.
async fn start_request(
    conn: &quinn::Connection,
    addr: SocketAddr,
    request: &Bytes,
) -> Result<(quinn::SendStream, quinn::RecvStream), ClientError> {
    let lost = |e: &dyn std::fmt::Display| ClientError::Connection {
        addr,
        detail: e.to_string(),
    };
    let (mut send, recv) = conn.open_bi().await.map_err(|e| lost(&e))?;
    write_frame(&mut send, request.clone())
        .await
        .map_err(|e| lost(&e))?;
    Ok((send, recv))
}

/// Reads one reply frame from `addr` (not yet checked: see [`check_reply`]).
async fn read_reply_frame(
    recv: &mut quinn::RecvStream,
    addr: SocketAddr,
) -> Result<Bytes, ClientError> {
    read_frame(recv, FRAME_BYTES_MAX)
        .await
        .map_err(|e| match e {
            FrameReadError::Io(d) => ClientError::Connection { addr, detail: d },
            other => ClientError::BadReply {
                addr,
                detail: other.to_string(),
            },
        })
}

/// A verified reply from `addr`; an error reply becomes `ClientError::Remote`.
fn check_reply(addr: SocketAddr, reply: Bytes) -> Result<Bytes, ClientError> {
    let resp = wire::decode_response(&reply).map_err(|e| ClientError::BadReply {
        addr,
        detail: e.to_string(),
    })?;
    if let Some(err) = wire::error_of(&resp) {
        return Err(ClientError::Remote(err));
    }
    Ok(reply)
}

/// Reads and checks the next reply frame of a stream answered by several
/// frames (a subscription).
pub(crate) async fn read_reply(
    recv: &mut quinn::RecvStream,
    addr: SocketAddr,
) -> Result<Bytes, ClientError> {
    let reply = read_reply_frame(recv, addr).await?;
    check_reply(addr, reply)
}
