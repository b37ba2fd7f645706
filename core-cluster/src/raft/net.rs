//! Which Raft network a node's groups use: none for a single-node core, QUIC
//! with mutual TLS between the nodes of a cluster.

use super::network::{NoPeer, PeerClient, PeerPool, QuicNetwork, SingleNodeNetwork};
use super::types::{GroupConfig, NodeId};
use openraft::error::{InstallSnapshotError, RPCError, RaftError};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
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
}
