//! The metadata group's [`GroupState`]: the stream catalog.

use super::command::MetaReply;
use super::sm::GroupState;
use super::types::{LogId, MetaTypes};
use crate::catalog::{Catalog, MetaCommand};

impl GroupState for Catalog {
    type Config = MetaTypes;

    fn apply(&mut self, _log_id: &LogId, cmd: &MetaCommand, _now_ms: i64) -> MetaReply {
        MetaReply::Meta(Catalog::apply(self, cmd))
    }
}
