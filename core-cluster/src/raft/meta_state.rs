//! The metadata group's [`GroupState`]: the stream catalog.

use super::command::MetaReply;
use super::sm::{GroupState, Timers};
use super::types::{LogId, MetaTypes};
use crate::catalog::{Catalog, MetaCommand};

/// The metadata log is snapshotted and purged every this many entries
/// (consumer-group heartbeats are entries: without it the log grows
/// forever). The snapshot is the catalog, whose size the caps bound.
pub const META_SNAPSHOT_EVERY: u64 = 10_000;

impl GroupState for Catalog {
    type Config = MetaTypes;

    const SNAPSHOT_EVERY: Option<u64> = Some(META_SNAPSHOT_EVERY);

    const TIMERS: Timers = Timers::META;

    fn apply(&mut self, _log_id: &LogId, cmd: &MetaCommand, _now_ms: i64) -> MetaReply {
        MetaReply::Meta(Catalog::apply(self, cmd))
    }
}
