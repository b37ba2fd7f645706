//! The simulation's in-process network: openraft's RPCs are handed to the
//! target node's Raft handle, each leg (request, reply) suffering the fate
//! [`NetModel::fate`] draws for it. A lost message costs the sender its
//! RPC timeout, as it would over QUIC; a message to a node that is down
//! finds no handle and is unreachable. A duplicate is delivered again later
//! by a task of its own (its reply goes nowhere), so it may overtake or
//! trail newer messages.

use super::model::{Cut, Fate, NetModel};
use super::rng::Rng;
use crate::raft::log_store::{decode_entry_record, encode_entry_record};
use crate::raft::types::{GroupConfig, NodeId, Raft};
use bytes::Bytes;
use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable,
};
use openraft::network::{Backoff, RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::BasicNode;
use std::any::Any;
use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

/// What the network did during a run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NetStats {
    pub messages: u64,
    pub dropped: u64,
    /// Dropped by a partition (included in `dropped`).
    pub cut: u64,
    pub duplicated: u64,
    /// Delivered after 100 ms or more.
    pub slow: u64,
    pub partitions: u64,
}

struct State {
    model: NetModel,
    rng: Rng,
    /// The Raft handle of each node that is up (a `Raft<C>`, typed by the
    /// caller's group configuration).
    rafts: BTreeMap<NodeId, Arc<dyn Any + Send + Sync>>,
    stats: NetStats,
}

/// The network shared by every node and producer of one run.
#[derive(Clone)]
pub struct SimNet(Arc<Mutex<State>>);

/// Why a simulated message did not get through.
#[derive(Debug, thiserror::Error)]
pub enum SimNetError {
    #[error("node {0} is down")]
    Down(NodeId),
    #[error("no reply from node {to} within {ttl:?}")]
    Timeout { to: NodeId, ttl: Duration },
}

impl SimNet {
    pub fn new(model: NetModel, rng: Rng) -> Self {
        SimNet(Arc::new(Mutex::new(State {
            model,
            rng,
            rafts: BTreeMap::new(),
            stats: NetStats::default(),
        })))
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.0.lock().expect("sim net lock")
    }

    /// `node` is up with this Raft handle.
    pub fn register<C: GroupConfig>(&self, node: NodeId, raft: Raft<C>) {
        self.lock().rafts.insert(node, Arc::new(raft));
    }

    /// `node` is down: messages to it are unreachable.
    pub fn unregister(&self, node: NodeId) {
        self.lock().rafts.remove(&node);
    }

    pub fn cut(&self, id: u32, cut: Cut) {
        let mut s = self.lock();
        s.stats.partitions += 1;
        s.model.cut(id, cut);
    }

    pub fn heal(&self, id: u32) {
        self.lock().model.heal(id);
    }

    pub fn heal_all(&self) {
        self.lock().model.heal_all();
    }

    pub fn stats(&self) -> NetStats {
        self.lock().stats
    }

    /// The fate of one message, counted.
    pub fn fate(&self, from: NodeId, to: NodeId) -> Fate {
        let mut s = self.lock();
        let State {
            model, rng, stats, ..
        } = &mut *s;
        let fate = model.fate(rng, from, to);
        stats.messages += 1;
        match &fate {
            Fate::Drop { cut } => {
                stats.dropped += 1;
                stats.cut += u64::from(*cut);
            }
            Fate::Deliver {
                delay_ms,
                duplicate_ms,
            } => {
                stats.slow += u64::from(*delay_ms >= 100);
                stats.duplicated += u64::from(duplicate_ms.is_some());
            }
        }
        fate
    }

    fn raft<C: GroupConfig>(&self, node: NodeId) -> Option<Raft<C>> {
        let s = self.lock();
        s.rafts.get(&node)?.downcast_ref::<Raft<C>>().cloned()
    }

    /// The network of `node`'s group.
    pub fn network(&self, node: NodeId) -> SimNetwork {
        SimNetwork {
            net: self.clone(),
            me: node,
        }
    }

    /// One RPC from `from` to `to`, answered by `call` on the target's Raft
    /// handle, bounded by `ttl`.
    async fn rpc<C, Q, R, E, F, Fut>(
        &self,
        from: NodeId,
        to: NodeId,
        req: Q,
        ttl: Duration,
        call: F,
    ) -> Result<R, RPCError<NodeId, BasicNode, RaftError<NodeId, E>>>
    where
        C: GroupConfig,
        Q: Clone + Send + 'static,
        R: Send,
        E: std::error::Error + Send + 'static,
        F: Fn(Raft<C>, Q) -> Fut + Clone + Send + 'static,
        Fut: Future<Output = Result<R, RaftError<NodeId, E>>> + Send,
    {
        let exchange = async {
            let Fate::Deliver {
                delay_ms,
                duplicate_ms,
            } = self.fate(from, to)
            else {
                return std::future::pending().await;
            };
            if let Some(after) = duplicate_ms {
                let (net, req, call) = (self.clone(), req.clone(), call.clone());
                tokio::spawn(async move {
                    tokio::time::sleep(Duration::from_millis(delay_ms + after)).await;
                    if let Some(raft) = net.raft::<C>(to) {
                        let _ = call(raft, req).await;
                    }
                });
            }
            tokio::time::sleep(Duration::from_millis(delay_ms)).await;
            let raft = self
                .raft::<C>(to)
                .ok_or_else(|| RPCError::Unreachable(Unreachable::new(&SimNetError::Down(to))))?;
            let res = call(raft, req).await;
            match self.fate(to, from) {
                Fate::Drop { .. } => std::future::pending().await,
                Fate::Deliver { delay_ms, .. } => {
                    tokio::time::sleep(Duration::from_millis(delay_ms)).await;
                }
            }
            res.map_err(|e| match e {
                // The group stopped on the target: as good as down.
                RaftError::Fatal(f) => RPCError::Unreachable(Unreachable::new(&f)),
                e => RPCError::RemoteError(RemoteError::new(to, e)),
            })
        };
        match tokio::time::timeout(ttl, exchange).await {
            Ok(res) => res,
            Err(_) => Err(RPCError::Network(NetworkError::new(
                &SimNetError::Timeout { to, ttl },
            ))),
        }
    }
}

/// One node's group network.
pub struct SimNetwork {
    net: SimNet,
    me: NodeId,
}

/// A node's link to one peer.
pub struct SimConn {
    net: SimNet,
    me: NodeId,
    target: NodeId,
}

impl<C: GroupConfig> RaftNetworkFactory<C> for SimNetwork {
    type Network = SimConn;

    async fn new_client(&mut self, target: NodeId, _node: &BasicNode) -> SimConn {
        SimConn {
            net: self.net.clone(),
            me: self.me,
            target,
        }
    }
}

/// An AppendEntries on the wire.
#[derive(Clone)]
struct WireAppend {
    vote: crate::raft::types::Vote,
    prev_log_id: Option<crate::raft::types::LogId>,
    leader_commit: Option<crate::raft::types::LogId>,
    entries: Vec<Bytes>,
}

type RpcErr<E = openraft::error::Infallible> = RPCError<NodeId, BasicNode, RaftError<NodeId, E>>;

impl<C: GroupConfig> RaftNetwork<C> for SimConn {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<C>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RpcErr> {
        // Entries cross in their log record form, as over QUIC, and are
        // decoded again at each delivery.
        let mut entries = Vec::with_capacity(rpc.entries.len());
        for e in &rpc.entries {
            let mut b = Vec::new();
            encode_entry_record(e, &mut b).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
            entries.push(Bytes::from(b));
        }
        let wire = WireAppend {
            vote: rpc.vote,
            prev_log_id: rpc.prev_log_id,
            leader_commit: rpc.leader_commit,
            entries,
        };
        self.net
            .rpc(
                self.me,
                self.target,
                wire,
                option.hard_ttl(),
                |r: Raft<C>, w: WireAppend| async move {
                    let entries = w
                        .entries
                        .into_iter()
                        .map(|b| decode_entry_record::<C>(b).expect("an entry decodes as encoded"))
                        .collect();
                    let req = AppendEntriesRequest {
                        vote: w.vote,
                        prev_log_id: w.prev_log_id,
                        leader_commit: w.leader_commit,
                        entries,
                    };
                    r.append_entries(req).await
                },
            )
            .await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<C>,
        option: RPCOption,
    ) -> Result<InstallSnapshotResponse<NodeId>, RpcErr<InstallSnapshotError>> {
        self.net
            .rpc(
                self.me,
                self.target,
                rpc,
                option.hard_ttl(),
                |r: Raft<C>, q| async move { r.install_snapshot(q).await },
            )
            .await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RpcErr> {
        self.net
            .rpc(
                self.me,
                self.target,
                rpc,
                option.hard_ttl(),
                |r: Raft<C>, q| async move { r.vote(q).await },
            )
            .await
    }

    /// As over QUIC (`PeerClient::backoff`).
    fn backoff(&self) -> Backoff {
        crate::raft::network::replication_backoff()
    }
}
