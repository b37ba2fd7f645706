//! Pure planning over one shard's replicated state: which records to read
//! from where (`read_plan`) and what tiering should do next (`tier_plan`).
//!
//! Nothing here reads a clock, a log or the object store: callers pass the
//! state they read and `now_ms`, and get a decision back. The drivers that
//! act on the decisions are `api::server` (fetch) and `tiering` (upload,
//! purge, expiry). The shard state machine itself is `raft::shard`.

pub mod read_plan;
pub mod tier_plan;
