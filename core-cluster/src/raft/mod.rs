//! Raft groups: type configuration, state machines, network.

pub mod group;
pub mod meta_state;
pub mod net;
pub mod network;
pub mod shard;
pub mod sm;
pub mod types;
