//! The QUIC request server every Strata daemon runs: one bidirectional
//! stream per request, one verified frame each way, a cap on connections
//! and on concurrent requests per connection, and graceful shutdown.

use bytes::Bytes;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use strata_schema::fb;
use strata_schema::frame::FRAME_BYTES_MAX;
use strata_schema::wire::{self, RemoteError};
use tokio::sync::{watch, Semaphore};

use crate::frame::{read_frame, write_frame, FrameReadError};

/// Who sent a request: the remote address and the principal of the
/// connection's client certificate (`None` when the server runs with
/// `client_auth = "off"`; see [`crate::identity`]).
#[derive(Debug, Clone)]
pub struct Caller {
    pub addr: SocketAddr,
    pub principal: Option<Arc<str>>,
}

impl Caller {
    /// The principal's name, or `anonymous` without client authentication.
    pub fn name(&self) -> &str {
        self.principal
            .as_deref()
            .unwrap_or(crate::identity::ANONYMOUS)
    }
}

/// Handles verified request frames. The handler decodes the body itself
/// (`strata_schema::wire::decode_request` succeeded once already).
pub trait Handler: Send + Sync + 'static {
    fn handle(&self, request: Bytes, caller: &Caller) -> impl Future<Output = Bytes> + Send;

    /// Serves a `SubscribeRequest`: writes reply frames to `send` (see
    /// [`write_frame`]) until the subscriber stops reading. A server without
    /// subscriptions answers with one error.
    fn subscribe(
        &self,
        request: Bytes,
        caller: &Caller,
        send: quinn::SendStream,
    ) -> impl Future<Output = ()> + Send {
        let _ = (request, caller);
        async move {
            let mut send = send;
            let e = RemoteError::new(
                fb::ErrorCode::InvalidArgument,
                "this server has no subscriptions: subscribe at a core node",
            );
            let _ = write_frame(&mut send, e.encode()).await;
            let _ = send.finish();
        }
    }
}

/// Limits of a server loop.
#[derive(Debug, Clone, Copy)]
pub struct ServeLimits {
    pub connections_max: usize,
    /// Connections from one IP address at once (a device fleet behind one
    /// NAT shares an address: keep this well above one per device).
    pub connections_per_address_max: usize,
    /// Requests served at once on one connection; also how many request
    /// streams a client may open at once (`tls::server_config`).
    pub requests_per_connection_max: usize,
    pub frame_bytes_max: usize,
    /// A request stream must deliver its whole frame within this; a client
    /// that opens a stream and sends nothing is cut off.
    pub request_read_timeout: Duration,
}

/// Default of the daemons' `connections_per_address_max`.
pub fn default_connections_per_address_max() -> usize {
    256
}

/// Default of the core's `requests_per_connection_max` (the edge's is
/// lower: a device keeps less per connection).
pub fn default_requests_per_connection_max() -> usize {
    256
}

/// Default of the daemons' `request_read_timeout_ms`.
pub fn default_request_read_timeout_ms() -> u64 {
    30_000
}

impl Default for ServeLimits {
    fn default() -> Self {
        Self {
            connections_max: 1024,
            connections_per_address_max: default_connections_per_address_max(),
            requests_per_connection_max: default_requests_per_connection_max(),
            frame_bytes_max: FRAME_BYTES_MAX,
            request_read_timeout: Duration::from_millis(default_request_read_timeout_ms()),
        }
    }
}

/// Connections per remote IP address, capped: [`AddressSlots::take`]
/// returns a slot that frees itself when dropped.
#[derive(Debug, Default)]
pub struct AddressSlots {
    max: usize,
    used: std::sync::Mutex<std::collections::HashMap<std::net::IpAddr, usize>>,
}

/// One connection's place in [`AddressSlots`].
#[derive(Debug)]
pub struct AddressSlot {
    slots: Arc<AddressSlots>,
    ip: std::net::IpAddr,
}

impl AddressSlots {
    pub fn new(max: usize) -> Arc<Self> {
        Arc::new(Self {
            max,
            used: Default::default(),
        })
    }

    /// A slot for `ip`, or `None` when it holds `max` already.
    pub fn take(self: &Arc<Self>, ip: std::net::IpAddr) -> Option<AddressSlot> {
        let mut used = self.used.lock().expect("slots lock");
        let n = used.entry(ip).or_default();
        if *n >= self.max {
            return None;
        }
        *n += 1;
        Some(AddressSlot {
            slots: self.clone(),
            ip,
        })
    }

    /// Connections of `ip` now.
    pub fn used(&self, ip: std::net::IpAddr) -> usize {
        self.used
            .lock()
            .expect("slots lock")
            .get(&ip)
            .copied()
            .unwrap_or(0)
    }
}

impl Drop for AddressSlot {
    fn drop(&mut self) {
        let mut used = self.slots.used.lock().expect("slots lock");
        if let Some(n) = used.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                used.remove(&self.ip);
            }
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
    let per_address = AddressSlots::new(limits.connections_per_address_max);
    loop {
        let incoming = tokio::select! {
            i = endpoint.accept() => match i { Some(i) => i, None => break },
            _ = shutdown.wait_for(|s| *s) => break,
        };
        // Address validation (a QUIC Retry round trip) for anyone not on
        // loopback, so a spoofed source address cannot make this server
        // send handshake data to a victim or hold connection slots.
        let ip = incoming.remote_address().ip();
        if !incoming.remote_address_validated() && !ip.is_loopback() && incoming.may_retry() {
            let _ = incoming.retry();
            continue;
        }
        let Ok(permit) = conns.clone().try_acquire_owned() else {
            incoming.refuse();
            continue;
        };
        let Some(slot) = per_address.take(ip) else {
            tracing::debug!(%ip, "refusing a connection: too many from this address");
            incoming.refuse();
            continue;
        };
        let handler = handler.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let _slot = slot;
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
    let caller = Arc::new(Caller {
        addr: peer,
        principal: crate::identity::connection_principal(&conn).map(Arc::from),
    });
    tracing::debug!(%peer, principal = caller.name(), "connection accepted");
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
        let caller = caller.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let read = tokio::time::timeout(
                limits.request_read_timeout,
                read_frame(&mut recv, limits.frame_bytes_max),
            );
            let Ok(read) = read.await else {
                tracing::debug!(%peer, "request not received in time; stream reset");
                let _ = recv.stop(0u32.into());
                let _ = send.reset(0u32.into());
                return;
            };
            let reply = match read {
                Ok(req) => match wire::decode_request(&req) {
                    Ok(r) if r.body_type() == fb::RequestBody::SubscribeRequest => {
                        handler.subscribe(req, &caller, send).await;
                        return;
                    }
                    Ok(_) => handler.handle(req, &caller).await,
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
            let _ = write_frame(&mut send, reply).await;
            let _ = send.finish();
            // Let the peer read the reply before the stream is dropped.
            let _ = send.stopped().await;
        });
    }
}

/// A server endpoint could not be bound.
#[derive(Debug, thiserror::Error)]
#[error("cannot listen on {addr} (UDP): {source}")]
pub struct BindError {
    pub addr: SocketAddr,
    pub source: std::io::Error,
}

/// Binds a QUIC server endpoint with a clear error naming the address.
pub fn bind_server(
    addr: SocketAddr,
    cfg: quinn::ServerConfig,
) -> Result<quinn::Endpoint, BindError> {
    quinn::Endpoint::server(cfg, addr).map_err(|source| BindError { addr, source })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_address_gets_its_share_and_slots_free_themselves() {
        let slots = AddressSlots::new(2);
        let a: std::net::IpAddr = "10.0.0.1".parse().unwrap();
        let b: std::net::IpAddr = "10.0.0.2".parse().unwrap();
        let s1 = slots.take(a).unwrap();
        let s2 = slots.take(a).unwrap();
        assert!(slots.take(a).is_none(), "a third from the same address");
        let other = slots.take(b);
        assert!(other.is_some(), "another address is not held back");
        drop(s1);
        assert_eq!(slots.used(a), 1);
        let s3 = slots.take(a);
        assert!(s3.is_some());
        drop((s2, s3, other));
        assert_eq!((slots.used(a), slots.used(b)), (0, 0));
    }
}
