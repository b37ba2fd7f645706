//! Strata's request and reply types, defined once: the views of streams,
//! shards, nodes and consumer groups that the core builds and clients read,
//! their flatbuffers tables (`build_*` and `from_fb`), and the arguments
//! and results of requests shared by the SDK, the edge agent and the core.
//!
//! The core's replicated catalog stores some of these types (`Retention`,
//! `Checkpoint`), so their serde form is part of the catalog's snapshot
//! format: change it only compatibly. No I/O here: the SDK sends requests,
//! the core answers them.
#![forbid(unsafe_code)]

pub mod acl;
pub mod aws_key;
pub mod cluster;
pub mod group;
pub mod request;
pub mod stream;

pub use cluster::{MembershipChange, NodeView, ReplicaLag, ShardLeadership};
pub use group::{
    build_group_description, shard_lag, Assignment, Checkpoint, GroupInfo, GroupShardInfo, ShardLag,
};
pub use request::{Forwarded, Piece, Reshard, Start};
pub use stream::{
    build_node_description, build_stream_description, NodeInfo, Retention, ShardInfo, StreamInfo,
};
