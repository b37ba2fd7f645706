//! The Raft network between core nodes: the client side of the peer protocol
//! (wire format and server: [`crate::raft::peer`]).
//!
//! One [`PeerPool`] per node holds the QUIC endpoint (mutual TLS, ALPN
//! `strata-peer/1`) and one connection per peer address, shared by every Raft
//! group on the node; each group's openraft instance gets a [`QuicNetwork`]
//! naming its group id. Every RPC is one bidirectional stream on the pooled
//! connection, so a heartbeat costs one stream and two small frames.
//!
//! Heartbeats of the groups on this node to the same peer travel together
//! ([`crate::raft::coalesce`]).
//!
//! Connecting: at most one handshake per peer runs at a time (a spawned task
//! shared by every waiting RPC, so it completes even when the RPC that started
//! it times out). After a failed handshake, RPCs to that peer fail at once for
//! [`RECONNECT_DELAY`], so a dead node costs one handshake per delay, not one
//! per group and heartbeat.
//!
//! Errors map onto openraft's retry rules: a peer that cannot be reached, a
//! lost connection, a group not open on the peer (a new replica) or stopped
//! there, or a peer that refuses this node (its peer certificate does not
//! name a member, [`crate::raft::peer::PeerAccess`]) → `RPCError::Unreachable`
//! (openraft backs off, see [`RaftNetwork::backoff`]); a timeout or a reply that does not decode →
//! `RPCError::Network`; a Raft error from the peer → `RPCError::RemoteError`.

use super::command::MetaReply;
use super::types::{GroupConfig, MetaTypes, NodeId};
use crate::catalog::MetaCommand;
use crate::raft::coalesce::{self, BatchReply, Join};
use crate::raft::peer::{
    decode_reply, encode_request, PeerReply, PeerRequest, META_GROUP, PEER_REPLY_BYTES_MAX,
};
use futures::future::{BoxFuture, FutureExt, Shared};
use openraft::error::{
    ClientWriteError, InstallSnapshotError, NetworkError, PayloadTooLarge, RPCError, RaftError,
    RemoteError, Unreachable,
};
use openraft::network::{Backoff, RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, ClientWriteResponse, InstallSnapshotRequest,
    InstallSnapshotResponse, VoteRequest, VoteResponse,
};
use openraft::BasicNode;
use serde::de::DeserializeOwned;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use strata_runtime::frame::read_frame;
use strata_schema::frame::{FRAME_BYTES_MAX, FRAME_HEADER_BYTES};
use tokio::sync::{oneshot, Notify};

/// Bound on one QUIC handshake to a peer.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// After a failed handshake, RPCs to the peer fail at once for this long.
pub const RECONNECT_DELAY: Duration = Duration::from_millis(250);

/// Why an RPC did not get a reply.
#[derive(Debug, Clone, thiserror::Error)]
pub enum PeerError {
    #[error("peer {addr}: {detail}")]
    Unreachable { addr: String, detail: String },
    #[error("peer {addr}: no reply within {ms} ms")]
    Timeout { addr: SocketAddr, ms: u64 },
    #[error("peer {addr}: bad reply: {detail}")]
    BadReply { addr: SocketAddr, detail: String },
    #[error("peer {addr} could not decode our request: {detail}")]
    Rejected { addr: SocketAddr, detail: String },
    #[error("peer {addr} refused this node: {detail}")]
    Forbidden { addr: SocketAddr, detail: String },
}

/// Why a control call to a peer (`MetaWrite`, `Elect`, `ReadIndex`) failed.
#[derive(Debug, thiserror::Error)]
pub enum PeerCallError {
    #[error(transparent)]
    Peer(#[from] PeerError),
    #[error("peer wire: {0}")]
    Wire(#[from] crate::raft::peer::WireError),
    /// The peer answered with a refusal (not the leader, unknown group…).
    #[error("{0}")]
    Refused(String),
}

type ConnectResult = Result<quinn::Connection, Arc<str>>;

enum Slot {
    Ready(quinn::Connection),
    Connecting(Shared<BoxFuture<'static, ConnectResult>>),
    Failed { at: Instant, error: Arc<str> },
}

type Slots = Arc<Mutex<HashMap<SocketAddr, Slot>>>;

/// An RPC waiting in a forming batch (`raft::coalesce`).
struct Queued {
    frame: Vec<u8>,
    ttl: Duration,
    reply: oneshot::Sender<Result<bytes::Bytes, PeerError>>,
}

/// The batch forming for one peer: its parts and what wakes its sender early.
struct Forming {
    parts: Vec<Queued>,
    bytes: usize,
    send_now: Arc<Notify>,
}

/// How long a peer that refused a batch gets its requests one by one
/// before batches are tried again (it may have been upgraded).
const UNBATCHED_FOR: Duration = Duration::from_secs(60);

/// A node's QUIC endpoint for Raft RPCs and its connections to the other
/// nodes, shared by all of the node's groups.
pub struct PeerPool {
    endpoint: quinn::Endpoint,
    client_cfg: quinn::ClientConfig,
    slots: Slots,
    forming: Mutex<HashMap<SocketAddr, Forming>>,
    /// Peers that refused a batch, until when they get single requests.
    unbatched: Mutex<HashMap<SocketAddr, Instant>>,
    /// How long a heartbeat waits for company; zero: no batches.
    coalesce_window: Duration,
    /// Batches sent (of two requests or more).
    batches_sent: std::sync::atomic::AtomicU64,
}

impl PeerPool {
    /// A pool connecting from `endpoint` with `client_cfg`
    /// (`strata_runtime::tls::peer_client_config`). `endpoint` may be the
    /// node's peer server endpoint, so one UDP socket carries both directions.
    pub fn new(endpoint: quinn::Endpoint, client_cfg: quinn::ClientConfig) -> Arc<Self> {
        Self::with_coalescing(endpoint, client_cfg, coalesce::COALESCE_WINDOW)
    }

    /// [`Self::new`] with heartbeats waiting up to `window` for other RPCs
    /// to the same peer (`raft::coalesce`); a zero window sends every RPC
    /// on its own.
    pub fn with_coalescing(
        endpoint: quinn::Endpoint,
        client_cfg: quinn::ClientConfig,
        window: Duration,
    ) -> Arc<Self> {
        Arc::new(Self {
            endpoint,
            client_cfg,
            slots: Arc::default(),
            forming: Mutex::default(),
            unbatched: Mutex::default(),
            coalesce_window: window,
            batches_sent: Default::default(),
        })
    }

    /// How many batches of requests this pool has sent.
    pub fn batches_sent(&self) -> u64 {
        self.batches_sent.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Closes every pooled connection (the endpoint stays open).
    pub fn close(&self) {
        let slots = std::mem::take(&mut *self.slots.lock().expect("peer slots lock"));
        for slot in slots.into_values() {
            if let Slot::Ready(c) = slot {
                c.close(0u32.into(), b"closing");
            }
        }
    }

    /// The pooled connection to `addr`, connecting if needed; waits at most
    /// `wait` for a handshake in progress.
    async fn connection(
        &self,
        addr: SocketAddr,
        wait: Duration,
    ) -> Result<quinn::Connection, PeerError> {
        let unreachable = |detail: String| PeerError::Unreachable {
            addr: addr.to_string(),
            detail,
        };
        let connecting = {
            let mut slots = self.slots.lock().expect("peer slots lock");
            match slots.get(&addr) {
                Some(Slot::Ready(c)) if c.close_reason().is_none() => return Ok(c.clone()),
                Some(Slot::Connecting(f)) => f.clone(),
                Some(Slot::Failed { at, error }) if at.elapsed() < RECONNECT_DELAY => {
                    return Err(unreachable(error.to_string()));
                }
                _ => {
                    let f = self.start_connect(addr);
                    slots.insert(addr, Slot::Connecting(f.clone()));
                    f
                }
            }
        };
        match tokio::time::timeout(wait, connecting).await {
            Ok(Ok(c)) => Ok(c),
            Ok(Err(e)) => Err(unreachable(e.to_string())),
            Err(_) => Err(unreachable(format!(
                "not connected within {} ms",
                wait.as_millis()
            ))),
        }
    }

    /// Spawns the handshake; the task records its outcome in the slot.
    fn start_connect(&self, addr: SocketAddr) -> Shared<BoxFuture<'static, ConnectResult>> {
        // Node certificates name their IP address (as the dev certificate
        // names 127.0.0.1), so the address is the TLS server name.
        let connecting =
            self.endpoint
                .connect_with(self.client_cfg.clone(), addr, &addr.ip().to_string());
        let slots = self.slots.clone();
        let task = tokio::spawn(async move {
            let res: ConnectResult = match connecting {
                Err(e) => Err(e.to_string().into()),
                Ok(c) => match tokio::time::timeout(CONNECT_TIMEOUT, c).await {
                    Ok(Ok(conn)) => Ok(conn),
                    Ok(Err(e)) => Err(e.to_string().into()),
                    Err(_) => Err(format!(
                        "handshake timed out after {} ms",
                        CONNECT_TIMEOUT.as_millis()
                    )
                    .into()),
                },
            };
            let slot = match &res {
                Ok(c) => Slot::Ready(c.clone()),
                Err(error) => {
                    tracing::debug!(%addr, %error, "peer connection failed");
                    Slot::Failed {
                        at: Instant::now(),
                        error: error.clone(),
                    }
                }
            };
            slots.lock().expect("peer slots lock").insert(addr, slot);
            res
        });
        task.map(|r| r.unwrap_or_else(|e| Err(format!("connect task: {e}").into())))
            .boxed()
            .shared()
    }

    /// Proposes `cmd` on the metadata group through the node at `addr` (its
    /// leader, else the reply is a forward-to-leader error): how a node that
    /// is not the metadata leader changes the catalog.
    pub async fn meta_write(
        &self,
        addr: SocketAddr,
        cmd: MetaCommand,
        ttl: Duration,
    ) -> Result<MetaReply, PeerCallError> {
        let frame = encode_request(META_GROUP, &PeerRequest::<MetaTypes>::MetaWrite(cmd))?;
        let body = self.call(addr, &frame, ttl).await?;
        type Reply = Result<
            ClientWriteResponse<MetaTypes>,
            RaftError<NodeId, ClientWriteError<NodeId, BasicNode>>,
        >;
        match decode_reply::<Reply>(&body)? {
            PeerReply::Ok(Ok(r)) => Ok(r.data),
            PeerReply::Ok(Err(e)) => Err(PeerCallError::Refused(e.to_string())),
            PeerReply::UnknownGroup(d) | PeerReply::BadRequest(d) | PeerReply::Forbidden(d) => {
                Err(PeerCallError::Refused(d))
            }
        }
    }

    /// Asks the node at `addr` to campaign for leadership of `group`.
    pub async fn elect(
        &self,
        addr: SocketAddr,
        group: &str,
        ttl: Duration,
    ) -> Result<(), PeerCallError> {
        // Elect is encoded alike for every kind of group.
        let frame = encode_request(group, &PeerRequest::<MetaTypes>::Elect)?;
        // The reply body is `Result<(), String>` on the wire (raft/peer.rs).
        self.control_call::<Result<(), String>>(addr, &frame, ttl)
            .await?
            .map_err(PeerCallError::Refused)
    }

    /// Asks the node at `addr` to quiesce its replica of `group`
    /// (`raft::quiesce`); whether it did.
    pub async fn quiesce(
        &self,
        addr: SocketAddr,
        group: &str,
        req: crate::raft::peer::QuiesceRequest,
        ttl: Duration,
    ) -> Result<bool, PeerCallError> {
        let frame = encode_request(group, &PeerRequest::<MetaTypes>::Quiesce(req))?;
        self.control_call(addr, &frame, ttl).await
    }

    /// Asks the node at `addr` (the metadata leader, else the reply is a
    /// refusal) for the index the catalog must have applied for a read to
    /// be current.
    pub async fn read_index(
        &self,
        addr: SocketAddr,
        ttl: Duration,
    ) -> Result<Option<u64>, PeerCallError> {
        let frame = encode_request(META_GROUP, &PeerRequest::<MetaTypes>::ReadIndex)?;
        type Reply = Result<
            Option<u64>,
            RaftError<NodeId, openraft::error::CheckIsLeaderError<NodeId, BasicNode>>,
        >;
        self.control_call::<Reply>(addr, &frame, ttl)
            .await?
            .map_err(|e| PeerCallError::Refused(e.to_string()))
    }

    /// The node-level liveness exchange: Ok once the node at `addr` answered.
    pub async fn ping(&self, addr: SocketAddr, ttl: Duration) -> Result<(), PeerCallError> {
        let frame = encode_request(META_GROUP, &PeerRequest::<MetaTypes>::Ping)?;
        self.control_call::<Result<(), String>>(addr, &frame, ttl)
            .await?
            .map_err(PeerCallError::Refused)
    }

    /// One control request whose OK reply body is JSON of `T`.
    async fn control_call<T: serde::de::DeserializeOwned>(
        &self,
        addr: SocketAddr,
        frame: &[u8],
        ttl: Duration,
    ) -> Result<T, PeerCallError> {
        let body = self.call(addr, frame, ttl).await?;
        match decode_reply::<T>(&body)? {
            PeerReply::Ok(r) => Ok(r),
            PeerReply::UnknownGroup(d) | PeerReply::BadRequest(d) | PeerReply::Forbidden(d) => {
                Err(PeerCallError::Refused(d))
            }
        }
    }

    /// Sends one request frame and returns the reply frame's body, all
    /// within `ttl`.
    async fn call(
        &self,
        addr: SocketAddr,
        request: &[u8],
        ttl: Duration,
    ) -> Result<bytes::Bytes, PeerError> {
        let deadline = tokio::time::Instant::now() + ttl;
        // Leave part of the budget to the exchange, and answer "unreachable"
        // (not openraft's own timeout) while the peer is still connecting.
        let conn = self.connection(addr, ttl * 3 / 4).await?;
        let lost = |e: &dyn std::fmt::Display| PeerError::Unreachable {
            addr: addr.to_string(),
            detail: format!("connection lost: {e}"),
        };
        let exchange = async {
            let (mut send, mut recv) = conn.open_bi().await.map_err(|e| lost(&e))?;
            send.write_all(request).await.map_err(|e| lost(&e))?;
            let _ = send.finish();
            read_frame(&mut recv, PEER_REPLY_BYTES_MAX)
                .await
                .map_err(|e| match e {
                    strata_runtime::frame::FrameReadError::Io(d) => lost(&d),
                    other => PeerError::BadReply {
                        addr,
                        detail: other.to_string(),
                    },
                })
        };
        within(deadline, addr, ttl, exchange).await
    }

    /// [`Self::call`] through a batch (`raft::coalesce`): a heartbeat
    /// (`lazy`) waits up to the coalescing window for other small RPCs to
    /// the same peer; any other RPC joins a forming batch and sends it, or
    /// goes alone when none is forming.
    async fn call_coalesced(
        self: &Arc<Self>,
        addr: SocketAddr,
        frame: Vec<u8>,
        ttl: Duration,
        lazy: bool,
    ) -> Result<bytes::Bytes, PeerError> {
        let batches = !self.coalesce_window.is_zero()
            && self
                .unbatched
                .lock()
                .expect("unbatched lock")
                .get(&addr)
                .is_none_or(|until| Instant::now() >= *until);
        let (tx, rx) = oneshot::channel();
        let queued = Queued {
            frame,
            ttl,
            reply: tx,
        };
        let queued = {
            let mut forming = self.forming.lock().expect("forming lock");
            let now = forming.get(&addr).map(|f| (f.parts.len(), f.bytes));
            match coalesce::join(now, lazy, queued.frame.len(), batches) {
                Join::Direct => Some(queued),
                Join::Start => {
                    let send_now = Arc::new(Notify::new());
                    forming.insert(
                        addr,
                        Forming {
                            bytes: queued.frame.len(),
                            parts: vec![queued],
                            send_now: send_now.clone(),
                        },
                    );
                    tokio::spawn(self.clone().send_after_window(addr, send_now));
                    None
                }
                Join::Add { send_now } => {
                    let f = forming.get_mut(&addr).expect("a batch is forming");
                    f.bytes += queued.frame.len();
                    f.parts.push(queued);
                    if send_now {
                        f.send_now.notify_one();
                    }
                    None
                }
            }
        };
        if let Some(q) = queued {
            return self.call(addr, &q.frame, ttl).await;
        }
        match tokio::time::timeout(ttl, rx).await {
            Ok(Ok(reply)) => reply,
            Ok(Err(_)) => Err(PeerError::Unreachable {
                addr: addr.to_string(),
                detail: "the batch carrying the request was dropped".into(),
            }),
            Err(_) => Err(PeerError::Timeout {
                addr,
                ms: ttl.as_millis() as u64,
            }),
        }
    }

    /// Sends the batch forming for `addr` after the coalescing window, or
    /// earlier when `send_now` is notified.
    async fn send_after_window(self: Arc<Self>, addr: SocketAddr, send_now: Arc<Notify>) {
        let _ = tokio::time::timeout(self.coalesce_window, send_now.notified()).await;
        let forming = self.forming.lock().expect("forming lock").remove(&addr);
        let Some(Forming { mut parts, .. }) = forming else {
            return;
        };
        if parts.len() == 1 {
            let q = parts.pop().expect("one part");
            let reply = self.call(addr, &q.frame, q.ttl).await;
            let _ = q.reply.send(reply);
            return;
        }
        self.batches_sent
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        metrics::counter!("strata_core_peer_batches_total").increment(1);
        metrics::counter!("strata_core_peer_batched_requests_total").increment(parts.len() as u64);
        let ttl = parts.iter().map(|q| q.ttl).max().unwrap_or_default();
        let batch = {
            let frames: Vec<&[u8]> = parts.iter().map(|q| q.frame.as_slice()).collect();
            coalesce::encode_batch(&frames)
        };
        let mut waiting: Vec<Option<Queued>> = parts.into_iter().map(Some).collect();
        let outcome = self.exchange_batch(addr, &batch, ttl, &mut waiting).await;
        match outcome {
            Ok(None) => {}
            Ok(Some(whole)) if refuses_batches(&whole) => {
                tracing::info!(%addr, "peer does not take batched requests: sending them one by one");
                self.unbatched
                    .lock()
                    .expect("unbatched lock")
                    .insert(addr, Instant::now() + UNBATCHED_FOR);
                for q in waiting.into_iter().flatten() {
                    let pool = self.clone();
                    tokio::spawn(async move {
                        let reply = pool.call(addr, &q.frame, q.ttl).await;
                        let _ = q.reply.send(reply);
                    });
                }
            }
            Ok(Some(whole)) => {
                for q in waiting.into_iter().flatten() {
                    let _ = q.reply.send(Ok(whole.clone()));
                }
            }
            Err(e) => {
                for q in waiting.into_iter().flatten() {
                    let _ = q.reply.send(Err(e.clone()));
                }
            }
        }
    }

    /// Sends `batch` and hands each part's reply to its waiter as it comes.
    /// `Ok(Some(reply))`: the peer answered the whole batch with one plain
    /// reply; `Err`: the exchange failed (the waiters still in `waiting`
    /// got no reply).
    async fn exchange_batch(
        &self,
        addr: SocketAddr,
        batch: &[u8],
        ttl: Duration,
        waiting: &mut [Option<Queued>],
    ) -> Result<Option<bytes::Bytes>, PeerError> {
        let deadline = tokio::time::Instant::now() + ttl;
        let conn = self.connection(addr, ttl * 3 / 4).await?;
        let lost = |e: &dyn std::fmt::Display| PeerError::Unreachable {
            addr: addr.to_string(),
            detail: format!("connection lost: {e}"),
        };
        let bad = |detail: String| PeerError::BadReply { addr, detail };
        let exchange = async {
            let (mut send, mut recv) = conn.open_bi().await.map_err(|e| lost(&e))?;
            send.write_all(batch).await.map_err(|e| lost(&e))?;
            let _ = send.finish();
            let mut left = waiting.len();
            while left > 0 {
                let body =
                    read_frame(&mut recv, PEER_REPLY_BYTES_MAX)
                        .await
                        .map_err(|e| match e {
                            strata_runtime::frame::FrameReadError::Io(d) => lost(&d),
                            other => bad(other.to_string()),
                        })?;
                match coalesce::decode_batch_reply(body).map_err(|e| bad(e.to_string()))? {
                    BatchReply::Whole(reply) => return Ok(Some(reply)),
                    BatchReply::Part(i, reply) => {
                        let q = waiting
                            .get_mut(usize::from(i))
                            .and_then(Option::take)
                            .ok_or_else(|| {
                                bad(format!("a reply to part {i}, unknown or answered"))
                            })?;
                        let _ = q.reply.send(Ok(reply));
                        left -= 1;
                    }
                }
            }
            Ok(None)
        };
        within(deadline, addr, ttl, exchange).await
    }
}

/// Whether a whole-batch reply says the peer does not take batches: a node
/// of an older version answers BAD_REQUEST (its decoder reads the batch
/// header as some other request's); a node that takes batches never
/// refuses one it could decode as a whole.
fn refuses_batches(reply: &[u8]) -> bool {
    reply.first() == Some(&crate::raft::peer::STATUS_BAD_REQUEST)
}

/// `exchange`, or [`PeerError::Timeout`] at `deadline` (`ttl` after the
/// call started).
async fn within<T>(
    deadline: tokio::time::Instant,
    addr: SocketAddr,
    ttl: Duration,
    exchange: impl std::future::Future<Output = Result<T, PeerError>>,
) -> Result<T, PeerError> {
    tokio::time::timeout_at(deadline, exchange)
        .await
        .map_err(|_| PeerError::Timeout {
            addr,
            ms: ttl.as_millis() as u64,
        })?
}

/// The openraft network factory of one group on a node.
#[derive(Clone)]
pub struct QuicNetwork {
    group: Arc<str>,
    pool: Arc<PeerPool>,
}

impl QuicNetwork {
    /// The network of group `group` (`"meta"` or `"<stream>/<shard>"`).
    pub fn new(group: impl Into<String>, pool: Arc<PeerPool>) -> Self {
        Self {
            group: group.into().into(),
            pool,
        }
    }
}

impl<C: GroupConfig> RaftNetworkFactory<C> for QuicNetwork {
    type Network = PeerClient;

    async fn new_client(&mut self, target: NodeId, node: &BasicNode) -> PeerClient {
        PeerClient {
            group: self.group.clone(),
            pool: self.pool.clone(),
            target,
            node: node.clone(),
            addr: node.addr.parse(),
            commit_sent: None,
        }
    }
}

/// One group's link to one peer (openraft's `RaftNetwork`).
pub struct PeerClient {
    group: Arc<str>,
    pool: Arc<PeerPool>,
    target: NodeId,
    node: BasicNode,
    addr: Result<SocketAddr, std::net::AddrParseError>,
    /// The highest commit index the peer acknowledged receiving from this
    /// group's leader (see [`coalesce::append_is_lazy`]).
    commit_sent: Option<openraft::LogId<NodeId>>,
}

type RpcErr<E = openraft::error::Infallible> = RPCError<NodeId, BasicNode, RaftError<NodeId, E>>;

impl PeerClient {
    /// Sends `req`; a `lazy` one may wait in the coalescing window.
    async fn rpc<C, T, E>(
        &self,
        req: &PeerRequest<C>,
        option: &RPCOption,
        lazy: bool,
    ) -> Result<T, RpcErr<E>>
    where
        C: GroupConfig,
        T: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let addr = self.addr.as_ref().map_err(|e| {
            unreachable_err(&PeerError::Unreachable {
                addr: self.node.addr.clone(),
                detail: format!("the address of node {} is not ip:port: {e}", self.target),
            })
        })?;
        let frame = encode_request(&self.group, req)
            .map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        if frame.len() - FRAME_HEADER_BYTES > FRAME_BYTES_MAX {
            if let PeerRequest::Append(r) = req {
                if r.entries.len() > 1 {
                    let hint = r.entries.len() as u64 / 2;
                    return Err(RPCError::PayloadTooLarge(
                        PayloadTooLarge::new_entries_hint(hint),
                    ));
                }
            }
        }
        let body = self
            .pool
            .call_coalesced(*addr, frame, option.hard_ttl(), lazy)
            .await
            .map_err(|e| match e {
                PeerError::Unreachable { .. } => unreachable_err(&e),
                _ => RPCError::Network(NetworkError::new(&e)),
            })?;
        let bad = |detail: String| {
            RPCError::Network(NetworkError::new(&PeerError::BadReply {
                addr: *addr,
                detail,
            }))
        };
        match decode_reply::<Result<T, RaftError<NodeId, E>>>(&body)
            .map_err(|e| bad(e.to_string()))?
        {
            PeerReply::Ok(Ok(resp)) => Ok(resp),
            // The group is stopped on the peer: as good as unreachable.
            PeerReply::Ok(Err(RaftError::Fatal(f))) => Err(unreachable_err(&f)),
            PeerReply::Ok(Err(e)) => Err(RPCError::RemoteError(RemoteError::new_with_node(
                self.target,
                self.node.clone(),
                e,
            ))),
            PeerReply::UnknownGroup(detail) => Err(unreachable_err(&PeerError::Unreachable {
                addr: addr.to_string(),
                detail,
            })),
            PeerReply::BadRequest(detail) => {
                Err(RPCError::Network(NetworkError::new(&PeerError::Rejected {
                    addr: *addr,
                    detail,
                })))
            }
            // Refused until membership or certificates change: back off.
            PeerReply::Forbidden(detail) => Err(unreachable_err(&PeerError::Forbidden {
                addr: *addr,
                detail,
            })),
        }
    }
}

pub(super) fn unreachable_err<E: std::error::Error + 'static, F: std::error::Error>(
    e: &E,
) -> RPCError<NodeId, BasicNode, F> {
    RPCError::Unreachable(Unreachable::new(e))
}

impl<C: GroupConfig> RaftNetwork<C> for PeerClient {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<C>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RpcErr> {
        // A heartbeat may wait a moment for other groups' RPCs to the peer;
        // a commit notice may not.
        let lazy =
            coalesce::append_is_lazy(!rpc.entries.is_empty(), rpc.leader_commit, self.commit_sent);
        let commit = rpc.leader_commit;
        let reply = self.rpc(&PeerRequest::Append(rpc), &option, lazy).await;
        if reply.is_ok() {
            self.commit_sent = self.commit_sent.max(commit);
        }
        reply
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<C>,
        option: RPCOption,
    ) -> Result<InstallSnapshotResponse<NodeId>, RpcErr<InstallSnapshotError>> {
        self.rpc(&PeerRequest::Snapshot(rpc), &option, false).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RpcErr> {
        self.rpc(&PeerRequest::<C>::Vote(rpc), &option, false).await
    }

    fn backoff(&self) -> Backoff {
        replication_backoff()
    }
}

/// Replication to an unreachable peer pauses 100, 200, 400 ms, then
/// 500 ms (openraft's default) between tries, so a restarted or newly
/// opened replica is picked up quickly.
pub fn replication_backoff() -> Backoff {
    Backoff::new(
        [100, 200, 400]
            .into_iter()
            .chain(std::iter::repeat(500))
            .map(Duration::from_millis),
    )
}

#[cfg(test)]
#[path = "network_tests.rs"]
mod tests;
