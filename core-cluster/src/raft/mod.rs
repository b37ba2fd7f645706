//! Raft groups: the metadata group and the shard groups, with their
//! commands, type configurations, state machines and network.

pub mod append;
pub mod coalesce;
pub mod command;
pub mod group;
pub mod log_store;
pub mod meta_state;
pub mod net;
pub mod network;
pub mod peer;
pub mod quiesce;
pub mod runs;
pub mod shard;
pub mod sm;
pub mod types;
