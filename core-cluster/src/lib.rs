//! `strata-core`: the core cluster node.

pub mod api;
pub mod clock;
pub mod config;
pub mod control;
pub mod groups;
pub mod log;
pub mod meta;
pub mod node;
pub mod peer;
pub mod raft;
pub mod reshard;
pub mod tier;
pub mod tiering;
