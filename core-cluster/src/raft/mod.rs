//! Raft groups: type configuration, state machines, network.

pub mod types;
