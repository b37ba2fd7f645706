//! Pure planning over one shard's replicated state: which records to read
//! from where (`read_plan`), what tiering should do next (`tier_plan`), and
//! when a leader hands leadership back to the preferred replica
//! (`hand_over`).
//!
//! Nothing here reads a clock, a log or the object store: callers pass the
//! state they read and `now_ms`, and get a decision back. The drivers that
//! act on the decisions are `api::server` (fetch) and `tiering` (upload,
//! purge, expiry). The shard state machine itself is `raft::shard`.

pub mod hand_over;
pub mod read_plan;
pub mod tier_plan;
