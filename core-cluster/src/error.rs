//! Why a control step failed. Its own module so that the node (which starts
//! the control loops) can name it without importing the loops.

use crate::raft::group::GroupError;

/// Why a control step failed; the step is retried at the next round.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error(transparent)]
    Group(#[from] GroupError),
    #[error(transparent)]
    Tiering(#[from] crate::tiering::TieringError),
    /// A Raft call failed; `what` names the step.
    #[error("{what}: {detail}")]
    Raft { what: String, detail: String },
    #[error("node {0} is not in the catalog")]
    UnknownNode(u64),
    #[error("metadata leader {0} is another node, but this core has no peers")]
    NoPeers(u64),
    #[error("peer address {addr}: {source}")]
    PeerAddr {
        addr: String,
        source: std::net::AddrParseError,
    },
    #[error("the metadata group has no leader")]
    NoMetaLeader,
    #[error("unexpected metadata reply {0}")]
    UnexpectedReply(String),
    #[error("shard {0}: some replicas are not registered yet")]
    ReplicasUnregistered(String),
}

/// Maps any Raft error to [`ControlError::Raft`] naming the step.
pub(crate) fn raft_err<E: std::fmt::Display>(what: String) -> impl FnOnce(E) -> ControlError {
    move |e| ControlError::Raft {
        what,
        detail: e.to_string(),
    }
}
