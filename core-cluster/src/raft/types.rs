//! The openraft type configurations of a core node's Raft groups: one per
//! kind of group, so that each group's log, state machine and RPCs carry only
//! its own command type.
//!
//! - [`MetaTypes`]: the metadata group (`D = MetaCommand`, `R = MetaReply`).
//! - [`ShardTypes`]: every shard group (`D = ShardCommand`,
//!   `R = ShardResponse`).
//!
//! Both are a [`GroupConfig`]: the same node id, node, entry and snapshot
//! types, and a command that is a [`GroupCommand`]. The log store, the state
//! machine, the Raft network and the group lifecycle are generic over it.
//! The commands and their log encoding: [`super::command`].

use openraft::{BasicNode, RaftTypeConfig};
use std::io::Cursor;

use super::command::{GroupCommand, MetaReply, ShardCommand, ShardResponse};
use crate::catalog::MetaCommand;

openraft::declare_raft_types!(
    /// Type configuration of the metadata group.
    pub MetaTypes:
        D = MetaCommand,
        R = MetaReply,
        NodeId = u64,
        Node = BasicNode,
        Entry = openraft::Entry<MetaTypes>,
        SnapshotData = Cursor<Vec<u8>>,
        AsyncRuntime = openraft::TokioRuntime,
);

openraft::declare_raft_types!(
    /// Type configuration of a shard group.
    pub ShardTypes:
        D = ShardCommand,
        R = ShardResponse,
        NodeId = u64,
        Node = BasicNode,
        Entry = openraft::Entry<ShardTypes>,
        SnapshotData = Cursor<Vec<u8>>,
        AsyncRuntime = openraft::TokioRuntime,
);

/// What every Strata group's type configuration has in common.
pub trait GroupConfig:
    RaftTypeConfig<
    D: GroupCommand,
    NodeId = NodeId,
    Node = BasicNode,
    Entry = openraft::Entry<Self>,
    SnapshotData = Cursor<Vec<u8>>,
    AsyncRuntime = openraft::TokioRuntime,
>
{
    /// The response to a blank or membership entry (openraft asks for one
    /// response per applied entry).
    fn no_command() -> Self::R;
}

impl GroupConfig for MetaTypes {
    fn no_command() -> MetaReply {
        MetaReply::NoCommand
    }
}

impl GroupConfig for ShardTypes {
    fn no_command() -> ShardResponse {
        ShardResponse::NoCommand
    }
}

pub type NodeId = u64;
pub type LogId = openraft::LogId<NodeId>;
pub type Vote = openraft::Vote<NodeId>;
pub type StorageError = openraft::StorageError<NodeId>;
pub type Entry<C> = openraft::Entry<C>;
pub type Raft<C> = openraft::Raft<C>;
/// The metadata group's Raft handle.
pub type MetaRaft = Raft<MetaTypes>;
/// A shard group's Raft handle.
pub type ShardRaft = Raft<ShardTypes>;
