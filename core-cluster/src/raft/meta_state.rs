//! The metadata group's [`GroupState`]: the stream catalog.

use super::sm::GroupState;
use super::types::{Command, CommandResponse, LogId};
use crate::catalog::Catalog;

impl GroupState for Catalog {
    fn apply(&mut self, _log_id: &LogId, cmd: &Command, _now_ms: i64) -> CommandResponse {
        match cmd {
            Command::Meta(m) => CommandResponse::Meta(Catalog::apply(self, m)),
            Command::Append(_)
            | Command::Tier(_)
            | Command::Expire { .. }
            | Command::Restore(_)
            | Command::Seal => {
                CommandResponse::Rejected("append sent to the metadata group".into())
            }
        }
    }
}
