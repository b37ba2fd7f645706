//! Appending forwarded runs to a shard group: the one path both the client
//! API (`Node::append`, `api/ops.rs`) and the simulation (`sim`) take.
//!
//! Runs the applied state certainly holds are not proposed (apply still
//! decides: a run only partly applied is proposed and its duplicate prefix
//! skipped at apply time, the same on every replica). The rest is proposed
//! in entries of up to [`ENTRY_BYTES_MAX`], in order and without waiting in
//! between, so they queue up in openraft behind one another; the answer
//! comes once every entry applied.

use crate::raft::command::{group_runs, AppendCmd, ShardCommand, ShardResponse, ENTRY_BYTES_MAX};
use crate::raft::group::ShardGroup;
use crate::raft::types::NodeId;
use openraft::error::{ClientWriteError, Fatal};
use openraft::BasicNode;

/// What an append did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    pub appended: u64,
    /// Records dropped as already stored (before proposing or at apply).
    pub duplicates: u64,
    /// The shard's next offset after the append.
    pub next_offset: u64,
}

/// Why an append stored nothing more.
#[derive(Debug, thiserror::Error)]
pub enum AppendError {
    /// The shard is sealed (split or merged); the producer's next position
    /// it holds.
    #[error("the shard is closed; the producer's next position here is {0}")]
    Closed(u64),
    #[error("proposing to the shard's Raft group: {0}")]
    Propose(#[from] Fatal<NodeId>),
    #[error("the shard's Raft group stopped before the entry applied")]
    Stopped,
    /// Not the leader (with its hint), or another refusal of the write.
    #[error("the shard's Raft group refused the write: {0}")]
    Write(ClientWriteError<NodeId, BasicNode>),
    #[error("unexpected reply to an append: {0}")]
    Unexpected(String),
}

/// Appends `cmds` (runs of one forward, in position order) to shard group
/// `g`, on its leader.
pub async fn append(g: &ShardGroup, cmds: Vec<AppendCmd>) -> Result<Appended, AppendError> {
    let mut runs = Vec::with_capacity(cmds.len());
    let mut duplicates = 0u64;
    for cmd in cmds {
        let (dup, sealed, next_seq) = g.sm.read(|s| {
            (
                s.duplicate_prefix(&cmd),
                s.sealed,
                s.producer_next_seq(cmd.producer_id),
            )
        });
        if dup == cmd.records as usize {
            duplicates += u64::from(cmd.records);
            continue;
        }
        if sealed {
            return Err(AppendError::Closed(next_seq));
        }
        runs.push(cmd);
    }
    let mut receivers = Vec::new();
    for entry in group_runs(runs, ENTRY_BYTES_MAX) {
        receivers.push(
            g.raft
                .client_write_ff(ShardCommand::appending(entry))
                .await?,
        );
    }
    let mut appended = 0u64;
    for rx in receivers {
        let reply = rx.await.map_err(|_| AppendError::Stopped)?;
        match reply.map_err(AppendError::Write)?.data {
            ShardResponse::Appended {
                appended: a,
                duplicates: d,
                ..
            } => {
                appended += a;
                duplicates += d;
            }
            ShardResponse::Closed { producer_next_seq } => {
                return Err(AppendError::Closed(producer_next_seq))
            }
            other => return Err(AppendError::Unexpected(format!("{other:?}"))),
        }
    }
    Ok(Appended {
        appended,
        duplicates,
        next_offset: g.sm.read(|s| s.next_offset),
    })
}
