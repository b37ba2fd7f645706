//! Which Raft network a node's groups use: none for a single-node core, QUIC
//! with mutual TLS between the nodes of a cluster.

use super::network::{unreachable_err, PeerClient, PeerError, PeerPool, QuicNetwork};
use super::types::{GroupConfig, NodeId};
use openraft::error::{InstallSnapshotError, RPCError, RaftError};
use openraft::network::{Backoff, RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::BasicNode;
use std::sync::Arc;

/// Makes the network of each Raft group on this node.
#[derive(Clone)]
pub enum NetworkFactory {
    SingleNode,
    /// QUIC with mutual TLS; one connection per peer shared by all groups.
    Quic(Arc<PeerPool>),
}

impl NetworkFactory {
    pub fn network(&self, group: &str) -> Network {
        match self {
            NetworkFactory::SingleNode => Network::Single(SingleNodeNetwork),
            NetworkFactory::Quic(pool) => Network::Quic(QuicNetwork::new(group, pool.clone())),
        }
    }
}

/// One group's network.
pub enum Network {
    Single(SingleNodeNetwork),
    Quic(QuicNetwork),
    /// The seed-driven simulation's in-process network ([`crate::sim`]).
    #[cfg(test)]
    Sim(crate::sim::net::SimNetwork),
}

pub enum Conn {
    Single(NoPeer),
    Quic(PeerClient),
    #[cfg(test)]
    Sim(crate::sim::net::SimConn),
}

impl<C: GroupConfig> RaftNetworkFactory<C> for Network {
    type Network = Conn;

    async fn new_client(&mut self, target: NodeId, node: &BasicNode) -> Conn {
        match self {
            Network::Single(n) => {
                Conn::Single(RaftNetworkFactory::<C>::new_client(n, target, node).await)
            }
            Network::Quic(n) => {
                Conn::Quic(RaftNetworkFactory::<C>::new_client(n, target, node).await)
            }
            #[cfg(test)]
            Network::Sim(n) => {
                Conn::Sim(RaftNetworkFactory::<C>::new_client(n, target, node).await)
            }
        }
    }
}

type RpcErr<E = openraft::error::Infallible> = RPCError<NodeId, BasicNode, RaftError<NodeId, E>>;

impl<C: GroupConfig> RaftNetwork<C> for Conn {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<C>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RpcErr> {
        match self {
            Conn::Single(c) => c.append_entries(rpc, option).await,
            Conn::Quic(c) => c.append_entries(rpc, option).await,
            #[cfg(test)]
            Conn::Sim(c) => c.append_entries(rpc, option).await,
        }
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<C>,
        option: RPCOption,
    ) -> Result<InstallSnapshotResponse<NodeId>, RpcErr<InstallSnapshotError>> {
        match self {
            Conn::Single(c) => c.install_snapshot(rpc, option).await,
            Conn::Quic(c) => c.install_snapshot(rpc, option).await,
            #[cfg(test)]
            Conn::Sim(c) => c.install_snapshot(rpc, option).await,
        }
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RpcErr> {
        match self {
            Conn::Single(c) => RaftNetwork::<C>::vote(c, rpc, option).await,
            Conn::Quic(c) => RaftNetwork::<C>::vote(c, rpc, option).await,
            #[cfg(test)]
            Conn::Sim(c) => RaftNetwork::<C>::vote(c, rpc, option).await,
        }
    }

    /// Each link paces its retries after a failure as it says (the QUIC
    /// client's pacing is quicker than openraft's default 500 ms).
    fn backoff(&self) -> Backoff {
        match self {
            Conn::Single(c) => RaftNetwork::<C>::backoff(c),
            Conn::Quic(c) => RaftNetwork::<C>::backoff(c),
            #[cfg(test)]
            Conn::Sim(c) => RaftNetwork::<C>::backoff(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::raft::types::ShardTypes;
    use std::time::Duration;
    use strata_client::tls::{peer_client_config, DevPki};

    /// Regression: `Conn` did not forward `backoff`, so replication to an
    /// unreachable peer always paused openraft's default 500 ms instead of
    /// the QUIC client's 100, 200, 400 ms.
    #[tokio::test]
    async fn a_quic_link_paces_retries_as_the_peer_client_does() {
        let tmp = tempfile::tempdir().unwrap();
        let (pki, _) = DevPki::ensure(&tmp.path().join("tls")).unwrap();
        let me = pki.peer(1).unwrap();
        let cfg = peer_client_config(&me.cert, &me.key, &pki.ca).unwrap();
        let endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
        let mut net = NetworkFactory::Quic(PeerPool::new(endpoint, cfg)).network("s/0");
        let conn = RaftNetworkFactory::<ShardTypes>::new_client(
            &mut net,
            2,
            &BasicNode::new("127.0.0.1:9"),
        )
        .await;
        let first: Vec<Duration> = RaftNetwork::<ShardTypes>::backoff(&conn).take(4).collect();
        let ms = Duration::from_millis;
        assert_eq!(first, [ms(100), ms(200), ms(400), ms(500)]);
    }
}

/// The network of a core that runs alone: every group has one member, so no
/// RPC is ever sent and every peer is reported unreachable.
#[derive(Debug, Clone, Default)]
pub struct SingleNodeNetwork;

/// [`SingleNodeNetwork`]'s client for a peer it can never reach.
pub struct NoPeer(NodeId);

impl NoPeer {
    fn unreachable<E: std::error::Error>(&self) -> RPCError<NodeId, BasicNode, E> {
        unreachable_err(&PeerError::Unreachable {
            addr: format!("node {}", self.0),
            detail: "this core runs as a single node".into(),
        })
    }
}

impl<C: GroupConfig> RaftNetworkFactory<C> for SingleNodeNetwork {
    type Network = NoPeer;

    async fn new_client(&mut self, target: NodeId, _node: &BasicNode) -> Self::Network {
        NoPeer(target)
    }
}

impl<C: GroupConfig> RaftNetwork<C> for NoPeer {
    async fn append_entries(
        &mut self,
        _rpc: AppendEntriesRequest<C>,
        _option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RpcErr> {
        Err(self.unreachable())
    }

    async fn install_snapshot(
        &mut self,
        _rpc: InstallSnapshotRequest<C>,
        _option: RPCOption,
    ) -> Result<InstallSnapshotResponse<NodeId>, RpcErr<InstallSnapshotError>> {
        Err(self.unreachable())
    }

    async fn vote(
        &mut self,
        _rpc: VoteRequest<NodeId>,
        _option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RpcErr> {
        Err(self.unreachable())
    }
}
