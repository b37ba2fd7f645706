//! The openraft type configuration shared by every Raft group in a core node
//! (the metadata group and one group per shard), and the binary encoding of
//! the application commands stored in the Raft log.
//!
//! A shard's Raft log *is* its data log: an [`AppendCmd`] holds the record
//! batch bytes exactly as the producer encoded them, and the log store writes
//! those bytes once. Offsets are assigned when an entry is applied (committed),
//! so consumers only ever see committed records.

use bytes::{Buf, BufMut, Bytes};
use serde::{Deserialize, Serialize};
use std::io::Cursor;

use crate::catalog::{MetaCommand, MetaResponse};

openraft::declare_raft_types!(
    /// Type configuration of every Strata Raft group.
    pub TypeConfig:
        D = Command,
        R = CommandResponse,
        NodeId = u64,
        Node = openraft::BasicNode,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = Cursor<Vec<u8>>,
        AsyncRuntime = openraft::TokioRuntime,
);

pub type NodeId = u64;
pub type LogId = openraft::LogId<NodeId>;
pub type Entry = openraft::Entry<TypeConfig>;
pub type Vote = openraft::Vote<NodeId>;
pub type StorageError = openraft::StorageError<NodeId>;
pub type Raft = openraft::Raft<TypeConfig>;

/// One forwarded run of records for a shard, with the producer identity used
/// for exactly-once: record `i` has buffer position `seq(i)`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppendCmd {
    pub producer_id: u64,
    pub first_seq: u64,
    /// `None`: positions are `first_seq + i`. `Some(d)`: `first_seq + d[i]`.
    pub seq_deltas: Option<Vec<u32>>,
    pub max_timestamp_ms: i64,
    /// Number of records in `batch` (verified at the edge and at the core).
    pub records: u32,
    /// A `RecordBatch` flatbuffer, unchanged.
    pub batch: Bytes,
}

impl AppendCmd {
    /// Buffer position of record `i`.
    pub fn seq(&self, i: usize) -> u64 {
        match &self.seq_deltas {
            None => self.first_seq + i as u64,
            Some(d) => self.first_seq + u64::from(d[i]),
        }
    }

    pub fn last_seq(&self) -> u64 {
        self.seq(self.records as usize - 1)
    }
}

/// The application command of a Raft entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    /// Shard groups: append records.
    Append(AppendCmd),
    /// Metadata group: change streams and shard maps.
    Meta(MetaCommand),
    /// Shard groups: offsets `[first, next)` now also live in this object
    /// (the shard leader uploaded it); the manifest grows by one entry.
    Tier(crate::tier::manifest::TieredObject),
    /// Shard groups: total retention: offsets below `first_offset` leave the
    /// shard (their objects are then deleted from the store).
    Expire { first_offset: u64 },
    /// Shard groups: `stream restore`: an empty shard takes over the
    /// archived objects of its manifest as its history.
    Restore(Vec<crate::tier::manifest::TieredObject>),
    /// Shard groups: the shard was split or merged: close it. Appends
    /// ordered after this entry are refused (except pure duplicates), so the
    /// shard's final offset is fixed inside its own log.
    Seal,
}

/// What applying a [`Command`] produced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum CommandResponse {
    Appended {
        /// Offset of the first new record (meaningless when `appended` is 0).
        base_offset: u64,
        appended: u64,
        duplicates: u64,
        next_offset: u64,
    },
    Meta(MetaResponse),
    Tiered {
        tiered_to: u64,
    },
    Expired {
        first_offset: u64,
    },
    /// The shard is sealed; its records end before `end_offset`.
    Sealed {
        end_offset: u64,
    },
    /// An append to a sealed shard with records it does not have. The
    /// producer's records in the shard end before `producer_next_seq`.
    Closed {
        producer_next_seq: u64,
    },
    /// The command does not belong to this group (a bug in the caller).
    Rejected(String),
}

/// Errors decoding a stored command.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error("command is truncated ({0} bytes)")]
    Truncated(usize),
    #[error("unknown command tag {0}")]
    UnknownTag(u8),
    #[error("metadata command is not valid JSON: {0}")]
    Json(#[from] serde_json::Error),
}

const TAG_APPEND: u8 = 1;
const TAG_META: u8 = 2;
const TAG_TIER: u8 = 3;
const TAG_EXPIRE: u8 = 4;
const TAG_RESTORE: u8 = 5;
const TAG_SEAL: u8 = 6;

impl Command {
    /// Appends the binary form of the command to `out`. The batch bytes are
    /// written last and unchanged.
    pub fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Command::Append(a) => {
                out.put_u8(TAG_APPEND);
                out.put_u64_le(a.producer_id);
                out.put_u64_le(a.first_seq);
                out.put_i64_le(a.max_timestamp_ms);
                out.put_u32_le(a.records);
                match &a.seq_deltas {
                    None => out.put_u32_le(u32::MAX),
                    Some(d) => {
                        out.put_u32_le(d.len() as u32);
                        for x in d {
                            out.put_u32_le(*x);
                        }
                    }
                }
                out.extend_from_slice(&a.batch);
            }
            Command::Meta(m) => {
                out.put_u8(TAG_META);
                serde_json::to_writer(out, m).expect("metadata commands serialize");
            }
            Command::Tier(t) => {
                out.put_u8(TAG_TIER);
                serde_json::to_writer(out, t).expect("tiered objects serialize");
            }
            Command::Expire { first_offset } => {
                out.put_u8(TAG_EXPIRE);
                out.put_u64_le(*first_offset);
            }
            Command::Restore(objects) => {
                out.put_u8(TAG_RESTORE);
                serde_json::to_writer(out, objects).expect("tiered objects serialize");
            }
            Command::Seal => out.put_u8(TAG_SEAL),
        }
    }

    /// Decodes a command; `buf` is shared so the batch is not copied.
    pub fn decode(buf: Bytes) -> Result<Command, CodecError> {
        let total = buf.len();
        let mut b = buf;
        if b.remaining() < 1 {
            return Err(CodecError::Truncated(total));
        }
        match b.get_u8() {
            TAG_APPEND => {
                if b.remaining() < 8 + 8 + 8 + 4 + 4 {
                    return Err(CodecError::Truncated(total));
                }
                let producer_id = b.get_u64_le();
                let first_seq = b.get_u64_le();
                let max_timestamp_ms = b.get_i64_le();
                let records = b.get_u32_le();
                let n = b.get_u32_le();
                let seq_deltas = if n == u32::MAX {
                    None
                } else {
                    if b.remaining() < n as usize * 4 || n != records {
                        return Err(CodecError::Truncated(total));
                    }
                    Some((0..n).map(|_| b.get_u32_le()).collect())
                };
                if records == 0 {
                    return Err(CodecError::Truncated(total));
                }
                Ok(Command::Append(AppendCmd {
                    producer_id,
                    first_seq,
                    seq_deltas,
                    max_timestamp_ms,
                    records,
                    batch: b,
                }))
            }
            TAG_META => Ok(Command::Meta(serde_json::from_slice(&b)?)),
            TAG_TIER => Ok(Command::Tier(serde_json::from_slice(&b)?)),
            TAG_EXPIRE if b.remaining() == 8 => Ok(Command::Expire {
                first_offset: b.get_u64_le(),
            }),
            TAG_EXPIRE => Err(CodecError::Truncated(total)),
            TAG_RESTORE => Ok(Command::Restore(serde_json::from_slice(&b)?)),
            TAG_SEAL if !b.has_remaining() => Ok(Command::Seal),
            TAG_SEAL => Err(CodecError::Truncated(total)),
            t => Err(CodecError::UnknownTag(t)),
        }
    }
}
