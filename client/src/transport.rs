//! Request/response over QUIC: one bidirectional stream per request, one
//! length-prefixed flatbuffer frame each way (see `strata_schema::frame`).
//!
//! [`Client`] keeps one connection to a server and reconnects on demand;
//! [`serve`] runs a server accept loop with a cap on connections and on
//! concurrent requests per connection, and graceful shutdown.

use bytes::Bytes;
use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use strata_schema::fb;
use strata_schema::frame::{self, FRAME_BYTES_MAX, FRAME_HEADER_BYTES};
use strata_schema::wire::{self, RemoteError};
use tokio::sync::{watch, Mutex, Semaphore};

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
    /// A client trusting the CA in `ca` (PEM). Does not connect yet.
    pub fn new(addr: SocketAddr, ca: &Path) -> Result<Self, ClientError> {
        let cfg = crate::tls::client_config(ca).map_err(|e| ClientError::Tls(format!("{e:#}")))?;
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
    pub async fn call(&self, request: &[u8]) -> Result<Bytes, ClientError> {
        self.call_with_timeout(request, self.timeout).await
    }

    pub async fn call_with_timeout(
        &self,
        request: &[u8],
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
        request: &[u8],
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
    request: &[u8],
) -> Result<(quinn::SendStream, quinn::RecvStream), ClientError> {
    let lost = |e: &dyn std::fmt::Display| ClientError::Connection {
        addr,
        detail: e.to_string(),
    };
    let (mut send, recv) = conn.open_bi().await.map_err(|e| lost(&e))?;
    write_frame(&mut send, request)
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

/// Errors reading one frame.
#[derive(Debug, thiserror::Error)]
pub enum FrameReadError {
    #[error("{0}")]
    Frame(#[from] frame::FrameError),
    #[error("stream ended after {got} of {want} bytes")]
    Short { got: usize, want: usize },
    #[error("i/o: {0}")]
    Io(String),
}

/// Reads one length-prefixed frame; the length is checked before allocating.
pub async fn read_frame(recv: &mut quinn::RecvStream, max: usize) -> Result<Bytes, FrameReadError> {
    let mut prefix = [0u8; FRAME_HEADER_BYTES];
    read_exact(recv, &mut prefix).await?;
    let len = frame::parse_header(prefix, max)?;
    let mut body = vec![0u8; len];
    read_exact(recv, &mut body).await?;
    Ok(Bytes::from(body))
}

async fn read_exact(recv: &mut quinn::RecvStream, buf: &mut [u8]) -> Result<(), FrameReadError> {
    use quinn::ReadExactError;
    recv.read_exact(buf).await.map_err(|e| match e {
        ReadExactError::FinishedEarly(got) => FrameReadError::Short {
            got,
            want: buf.len(),
        },
        ReadExactError::ReadError(e) => FrameReadError::Io(e.to_string()),
    })
}

/// Handles verified request frames. The handler decodes the body itself
/// (`strata_schema::wire::decode_request` succeeded once already).
pub trait Handler: Send + Sync + 'static {
    fn handle(&self, request: Bytes, peer: SocketAddr) -> impl Future<Output = Bytes> + Send;

    /// Serves a `SubscribeRequest`: writes reply frames to `send` (see
    /// [`write_frame`]) until the subscriber stops reading. A server without
    /// subscriptions answers with one error.
    fn subscribe(
        &self,
        request: Bytes,
        peer: SocketAddr,
        send: quinn::SendStream,
    ) -> impl Future<Output = ()> + Send {
        let _ = (request, peer);
        async move {
            let mut send = send;
            let e = RemoteError::new(
                fb::ErrorCode::InvalidArgument,
                "this server has no subscriptions: subscribe at a core node",
            );
            let _ = write_frame(&mut send, &e.encode()).await;
            let _ = send.finish();
        }
    }
}

/// Writes one frame: a request, or one reply.
pub async fn write_frame(
    send: &mut quinn::SendStream,
    reply: &[u8],
) -> Result<(), quinn::WriteError> {
    send.write_all(&frame::header(reply.len())).await?;
    send.write_all(reply).await
}

/// Limits of a server loop.
#[derive(Debug, Clone, Copy)]
pub struct ServeLimits {
    pub connections_max: usize,
    pub requests_per_connection_max: usize,
    pub frame_bytes_max: usize,
}

impl Default for ServeLimits {
    fn default() -> Self {
        Self {
            connections_max: 1024,
            requests_per_connection_max: 256,
            frame_bytes_max: FRAME_BYTES_MAX,
        }
    }
}

/// Accepts connections until `shutdown` turns true, then stops accepting and
/// waits (bounded) for in-flight requests.
pub async fn serve<H: Handler>(
    endpoint: quinn::Endpoint,
    handler: Arc<H>,
    limits: ServeLimits,
    mut shutdown: watch::Receiver<bool>,
) {
    let conns = Arc::new(Semaphore::new(limits.connections_max));
    loop {
        let incoming = tokio::select! {
            i = endpoint.accept() => match i { Some(i) => i, None => break },
            _ = shutdown.wait_for(|s| *s) => break,
        };
        let Ok(permit) = conns.clone().try_acquire_owned() else {
            incoming.refuse();
            continue;
        };
        let handler = handler.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let peer = incoming.remote_address();
            let conn = match incoming.await {
                Ok(c) => c,
                Err(e) => {
                    tracing::info!(%peer, error = %e, "QUIC handshake failed");
                    return;
                }
            };
            serve_connection(conn, handler, limits).await;
        });
    }
    endpoint.close(0u32.into(), b"shutting down");
    let _ = tokio::time::timeout(Duration::from_secs(5), endpoint.wait_idle()).await;
}

async fn serve_connection<H: Handler>(
    conn: quinn::Connection,
    handler: Arc<H>,
    limits: ServeLimits,
) {
    let peer = conn.remote_address();
    let inflight = Arc::new(Semaphore::new(limits.requests_per_connection_max));
    loop {
        let permit = inflight
            .clone()
            .acquire_owned()
            .await
            .expect("never closed");
        let (mut send, mut recv) = match conn.accept_bi().await {
            Ok(s) => s,
            Err(e) => {
                tracing::debug!(%peer, error = %e, "connection closed");
                return;
            }
        };
        let handler = handler.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let reply = match read_frame(&mut recv, limits.frame_bytes_max).await {
                Ok(req) => match wire::decode_request(&req) {
                    Ok(r) if r.body_type() == fb::RequestBody::SubscribeRequest => {
                        handler.subscribe(req, peer, send).await;
                        return;
                    }
                    Ok(_) => handler.handle(req, peer).await,
                    Err(e) => {
                        RemoteError::new(fb::ErrorCode::MalformedRequest, e.to_string()).encode()
                    }
                },
                Err(FrameReadError::Io(e)) => {
                    tracing::debug!(%peer, error = %e, "request stream failed");
                    return;
                }
                Err(e) => RemoteError::new(fb::ErrorCode::MalformedRequest, e.to_string()).encode(),
            };
            let _ = write_frame(&mut send, &reply).await;
            let _ = send.finish();
            // Let the peer read the reply before the stream is dropped.
            let _ = send.stopped().await;
        });
    }
}

/// Binds a QUIC server endpoint with a clear error naming the address.
pub fn bind_server(addr: SocketAddr, cfg: quinn::ServerConfig) -> anyhow::Result<quinn::Endpoint> {
    quinn::Endpoint::server(cfg, addr)
        .map_err(|e| anyhow::anyhow!("cannot listen on {addr} (UDP): {e}"))
}
