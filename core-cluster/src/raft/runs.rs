//! Reading the record runs the shard index points at. An index entry names
//! a run by `(log_index, part)`; an `Appends` entry holds many runs, so a
//! reader walking the index in order decodes each Raft entry once and hands
//! out its parts from that (the fetch path, time seeks and tiering all read
//! this way).

use super::command::AppendCmd;
use super::log_store::{LogStore, StoreError};
use super::shard::IndexEntry;
use super::types::ShardTypes;

/// Why a run the index names cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("reading log entry {log_index}: {source}")]
    Store {
        log_index: u64,
        source: Box<StoreError>,
    },
    #[error("log entry {log_index} is missing (purged)")]
    Missing { log_index: u64 },
    #[error("log entry {log_index} has no run {part}: it holds {found}")]
    NoRun {
        log_index: u64,
        part: u32,
        found: String,
    },
}

/// Reads runs through a one-entry cache (index order reads each Raft entry
/// once).
pub struct RunReader<'a> {
    log: &'a LogStore<ShardTypes>,
    last: Option<(u64, Vec<AppendCmd>)>,
}

impl<'a> RunReader<'a> {
    pub fn new(log: &'a LogStore<ShardTypes>) -> Self {
        Self { log, last: None }
    }

    /// The run `e` names.
    pub fn run(&mut self, e: &IndexEntry) -> Result<AppendCmd, RunError> {
        let log_index = e.log_index;
        if self.last.as_ref().is_none_or(|(i, _)| *i != log_index) {
            let cmd = self
                .log
                .read_command(log_index)
                .map_err(|source| RunError::Store {
                    log_index,
                    source: Box::new(source),
                })?
                .ok_or(RunError::Missing { log_index })?;
            if cmd.runs().is_empty() {
                return Err(RunError::NoRun {
                    log_index,
                    part: e.part,
                    found: format!("{cmd:?}"),
                });
            }
            self.last = Some((log_index, cmd.into_runs()));
        }
        let (_, runs) = self.last.as_ref().expect("cached above");
        runs.get(e.part as usize)
            .cloned()
            .ok_or_else(|| RunError::NoRun {
                log_index,
                part: e.part,
                found: format!("{} runs", runs.len()),
            })
    }
}
