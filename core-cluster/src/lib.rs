//! `strata-core`: the core cluster node.

pub mod log;
pub mod meta;
pub mod raft;
