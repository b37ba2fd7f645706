//! The application commands of the two kinds of Raft group, what applying
//! them produces, and their binary form in the Raft log.
//!
//! The metadata group carries [`MetaCommand`]s and answers [`MetaReply`]; a
//! shard group carries [`ShardCommand`]s and answers [`ShardResponse`]. Each
//! command type is one [`GroupCommand`]: the log store and the peer wire
//! encode and decode a group's entries through it, and nothing else names
//! the command type of a group.
//!
//! A shard's Raft log *is* its data log: an [`AppendCmd`] holds the record
//! batch bytes exactly as the producer encoded them, and the log store writes
//! those bytes once. Offsets are assigned when an entry is applied
//! (committed), so consumers only ever see committed records.
//!
//! # Encoding
//!
//! One tag byte, then the body (integers little-endian). Both kinds share one
//! tag space, so an entry of one kind read as the other is a decode error
//! ([`CodecError::WrongGroup`]), never a misread command. These tags are the
//! on-disk format of every Raft log and never change meaning.
//!
//! | tag | group | command             | body                                   |
//! |-----|-------|---------------------|----------------------------------------|
//! | 1   | shard | `Append`            | producer_id u64, first_seq u64, max_timestamp_ms i64, records u32, n u32 (`u32::MAX`: no deltas, else `n = records` deltas u32), batch bytes |
//! | 2   | meta  | a `MetaCommand`     | serde_json                             |
//! | 3   | shard | `Tier`              | serde_json of a `TieredObject`         |
//! | 4   | shard | `Expire`            | first_offset u64                       |
//! | 5   | shard | `Restore`           | serde_json of `[TieredObject]`         |
//! | 6   | shard | `Seal`              | empty                                  |
//! | 7   | shard | `Appends`           | parts u32 (>= 1), then per part: length u32, an `Append` body (as tag 1, without the tag) |
//! | 8   | shard | `ForgetProducers`   | n u32, then n × (producer_id u64, last_seq u64) |
//!
//! `Appends` is group commit: the runs of one forward request in one Raft
//! entry of up to [`ENTRY_BYTES_MAX`] bytes ([`group_runs`]), so that one
//! fsync and one replication round carry them all. Each part keeps its own
//! producer positions and its batch bytes unchanged; the shard's index
//! names a part by `(log_index, part)`.

use bytes::{Buf, BufMut, Bytes};
use serde::{Deserialize, Serialize};

use crate::catalog::{MetaCommand, MetaResponse};
use crate::tier::manifest::TieredObject;

/// The application command type of one kind of Raft group: how its entries
/// are written to the Raft log and to the peer wire.
pub trait GroupCommand: Sized {
    /// Appends the binary form of the command to `out` (format: module doc).
    fn encode(&self, out: &mut Vec<u8>);

    /// Decodes a command; `buf` is shared so that a batch is not copied.
    /// A command of the other kind of group is [`CodecError::WrongGroup`].
    fn decode(buf: Bytes) -> Result<Self, CodecError>;
}

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

    /// What [`Self::seq`] and the shard's dedup rely on: at least one
    /// record, one delta per record, deltas strictly increasing, and every
    /// position (and the one after the last) within u64. The core checks a
    /// forward with this before proposing it, and the decoder checks every
    /// append it reads back (from the log or a peer), so that no command
    /// that reaches `apply` can overflow.
    pub fn check_seqs(&self) -> Result<(), SeqError> {
        let err = |reason| SeqError {
            first_seq: self.first_seq,
            records: self.records,
            reason,
        };
        if self.records == 0 {
            return Err(err("no records"));
        }
        let span = match &self.seq_deltas {
            None => u64::from(self.records),
            Some(d) => {
                if d.len() != self.records as usize {
                    return Err(err("not one seq delta per record"));
                }
                if d.windows(2).any(|w| w[0] >= w[1]) {
                    return Err(err("seq deltas do not increase strictly"));
                }
                u64::from(d[d.len() - 1]) + 1
            }
        };
        if self.first_seq.checked_add(span).is_none() {
            return Err(err("positions overflow u64"));
        }
        Ok(())
    }
}

/// An append whose positions break [`AppendCmd::check_seqs`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("append of {records} records at seq {first_seq}: {reason}")]
pub struct SeqError {
    pub first_seq: u64,
    pub records: u32,
    pub reason: &'static str,
}

/// The application command of a shard group's entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ShardCommand {
    /// Append records.
    Append(AppendCmd),
    /// Append several runs in order, in one entry (group commit). Never
    /// empty.
    Appends(Vec<AppendCmd>),
    /// Offsets `[first, next)` now also live in this object (the shard
    /// leader uploaded it); the manifest grows by one entry.
    Tier(TieredObject),
    /// Total retention: offsets below `first_offset` leave the shard (their
    /// objects are then deleted from the store).
    Expire { first_offset: u64 },
    /// `stream restore`: an empty shard takes over the archived objects of
    /// its manifest as its history.
    Restore(Vec<TieredObject>),
    /// The shard was split or merged: close it. Appends ordered after this
    /// entry are refused (except pure duplicates), so the shard's final
    /// offset is fixed inside its own log.
    Seal,
    /// Producer-id expiry (the leader found them idle): forget the dedup
    /// entry of each `(producer_id, last_seq)` whose last position is still
    /// `last_seq` when the entry applies.
    ForgetProducers(Vec<(u64, u64)>),
}

/// What applying a shard group's entry produced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ShardResponse {
    Appended {
        /// Offset of the first new record (meaningless when `appended` is 0).
        base_offset: u64,
        appended: u64,
        duplicates: u64,
        next_offset: u64,
    },
    Tiered {
        tiered_to: u64,
    },
    Expired {
        first_offset: u64,
    },
    /// How many dedup entries a `ForgetProducers` removed.
    Forgot {
        producers: u64,
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
    /// A tier, expire or restore that does not fit the shard's state (the
    /// reason). Every replica refuses it alike and the state is unchanged.
    Refused(String),
    /// A blank or membership entry: it carries no command.
    NoCommand,
}

/// What applying a metadata group's entry produced. `Meta` serializes as it
/// did when both kinds of group shared one response type (`{"Meta": …}`),
/// so the MetaWrite reply on the peer wire is unchanged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum MetaReply {
    /// The catalog's answer to the command.
    Meta(MetaResponse),
    /// A blank or membership entry: it carries no command.
    NoCommand,
}

/// Errors decoding a stored command.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error("command is truncated ({0} bytes)")]
    Truncated(usize),
    #[error("unknown command tag {0}")]
    UnknownTag(u8),
    #[error("command tag {tag} is a {found} command, not one of a {expected} group")]
    WrongGroup {
        tag: u8,
        found: &'static str,
        expected: &'static str,
    },
    #[error("metadata command is not valid JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error(transparent)]
    Seqs(#[from] SeqError),
}

const TAG_APPEND: u8 = 1;
const TAG_META: u8 = 2;
const TAG_TIER: u8 = 3;
const TAG_EXPIRE: u8 = 4;
const TAG_RESTORE: u8 = 5;
const TAG_SEAL: u8 = 6;
const TAG_APPENDS: u8 = 7;
const TAG_FORGET_PRODUCERS: u8 = 8;

const SHARD_TAGS: [u8; 7] = [
    TAG_APPEND,
    TAG_TIER,
    TAG_EXPIRE,
    TAG_RESTORE,
    TAG_SEAL,
    TAG_APPENDS,
    TAG_FORGET_PRODUCERS,
];

/// Bytes of an `Append` body before its deltas and batch.
const APPEND_HEAD_BYTES: usize = 8 + 8 + 8 + 4 + 4;

/// Splits off the tag byte.
fn split_tag(buf: Bytes) -> Result<(u8, Bytes), CodecError> {
    let mut b = buf;
    if !b.has_remaining() {
        return Err(CodecError::Truncated(0));
    }
    let tag = b.get_u8();
    Ok((tag, b))
}

impl GroupCommand for MetaCommand {
    fn encode(&self, out: &mut Vec<u8>) {
        out.put_u8(TAG_META);
        serde_json::to_writer(out, self).expect("metadata commands serialize");
    }

    fn decode(buf: Bytes) -> Result<Self, CodecError> {
        match split_tag(buf)? {
            (TAG_META, b) => Ok(serde_json::from_slice(&b)?),
            (tag, _) if SHARD_TAGS.contains(&tag) => Err(CodecError::WrongGroup {
                tag,
                found: "shard",
                expected: "metadata",
            }),
            (tag, _) => Err(CodecError::UnknownTag(tag)),
        }
    }
}

impl GroupCommand for ShardCommand {
    /// The batch bytes of an append are written last and unchanged.
    fn encode(&self, out: &mut Vec<u8>) {
        match self {
            ShardCommand::Append(a) => {
                out.put_u8(TAG_APPEND);
                encode_append(a, out);
            }
            ShardCommand::Appends(parts) => {
                out.put_u8(TAG_APPENDS);
                out.put_u32_le(parts.len() as u32);
                for a in parts {
                    let len_at = out.len();
                    out.put_u32_le(0);
                    encode_append(a, out);
                    let len = (out.len() - len_at - 4) as u32;
                    out[len_at..len_at + 4].copy_from_slice(&len.to_le_bytes());
                }
            }
            ShardCommand::Tier(t) => {
                out.put_u8(TAG_TIER);
                serde_json::to_writer(out, t).expect("tiered objects serialize");
            }
            ShardCommand::Expire { first_offset } => {
                out.put_u8(TAG_EXPIRE);
                out.put_u64_le(*first_offset);
            }
            ShardCommand::Restore(objects) => {
                out.put_u8(TAG_RESTORE);
                serde_json::to_writer(out, objects).expect("tiered objects serialize");
            }
            ShardCommand::Seal => out.put_u8(TAG_SEAL),
            ShardCommand::ForgetProducers(producers) => {
                out.put_u8(TAG_FORGET_PRODUCERS);
                out.put_u32_le(producers.len() as u32);
                for (id, last) in producers {
                    out.put_u64_le(*id);
                    out.put_u64_le(*last);
                }
            }
        }
    }

    fn decode(buf: Bytes) -> Result<Self, CodecError> {
        let total = buf.len();
        let (tag, mut b) = split_tag(buf)?;
        match tag {
            TAG_APPEND => decode_append(b, total).map(ShardCommand::Append),
            TAG_APPENDS => decode_appends(b, total).map(ShardCommand::Appends),
            TAG_TIER => Ok(ShardCommand::Tier(serde_json::from_slice(&b)?)),
            TAG_EXPIRE if b.remaining() == 8 => Ok(ShardCommand::Expire {
                first_offset: b.get_u64_le(),
            }),
            TAG_EXPIRE => Err(CodecError::Truncated(total)),
            TAG_RESTORE => Ok(ShardCommand::Restore(serde_json::from_slice(&b)?)),
            TAG_SEAL if !b.has_remaining() => Ok(ShardCommand::Seal),
            TAG_SEAL => Err(CodecError::Truncated(total)),
            TAG_FORGET_PRODUCERS => decode_forget(b, total).map(ShardCommand::ForgetProducers),
            TAG_META => Err(CodecError::WrongGroup {
                tag,
                found: "metadata",
                expected: "shard",
            }),
            t => Err(CodecError::UnknownTag(t)),
        }
    }
}

impl ShardCommand {
    /// The runs of records an append entry carries, in order (none for
    /// other commands).
    pub fn runs(&self) -> &[AppendCmd] {
        match self {
            ShardCommand::Append(a) => std::slice::from_ref(a),
            ShardCommand::Appends(parts) => parts,
            _ => &[],
        }
    }

    /// The runs of an append entry, owned (none for other commands).
    pub fn into_runs(self) -> Vec<AppendCmd> {
        match self {
            ShardCommand::Append(a) => vec![a],
            ShardCommand::Appends(parts) => parts,
            _ => Vec::new(),
        }
    }

    /// One entry for `runs` (at least one): `Append` for a single run, as
    /// before group commit, else `Appends`.
    pub fn appending(mut runs: Vec<AppendCmd>) -> Self {
        if runs.len() == 1 {
            ShardCommand::Append(runs.pop().expect("one run"))
        } else {
            ShardCommand::Appends(runs)
        }
    }
}

/// Most batch bytes group commit puts in one Raft entry: a follower must
/// take an AppendEntries of `max_payload_entries` such entries, fsync
/// included, within one heartbeat interval (openraft 0.9's deadline), also
/// while catching up on a busy machine. A single run bigger than this is
/// an entry of its own.
pub const ENTRY_BYTES_MAX: usize = 256 * 1024;

/// Cuts the runs of one forward into entries, in order, each of at most
/// `bytes_max` batch bytes (or one run, when that run alone is bigger).
pub fn group_runs(runs: Vec<AppendCmd>, bytes_max: usize) -> Vec<Vec<AppendCmd>> {
    let mut entries: Vec<Vec<AppendCmd>> = Vec::new();
    let mut bytes = 0;
    for run in runs {
        let len = run.batch.len();
        match entries.last_mut() {
            Some(last) if bytes + len <= bytes_max => last.push(run),
            _ => {
                entries.push(vec![run]);
                bytes = 0;
            }
        }
        bytes += len;
    }
    entries
}

/// An `Append` body (format: module doc), batch bytes last.
fn encode_append(a: &AppendCmd, out: &mut Vec<u8>) {
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

/// The body of an `Appends` after its tag: every part decodes as an
/// `Append` body, the parts fill the body exactly, and there is at least one.
fn decode_appends(mut b: Bytes, total: usize) -> Result<Vec<AppendCmd>, CodecError> {
    if b.remaining() < 4 {
        return Err(CodecError::Truncated(total));
    }
    let n = b.get_u32_le() as usize;
    // Every part takes at least its length and head: a count that cannot
    // fit is refused before anything is allocated for it.
    if n == 0 || n > b.remaining() / (4 + APPEND_HEAD_BYTES) {
        return Err(CodecError::Truncated(total));
    }
    let mut parts = Vec::with_capacity(n);
    for _ in 0..n {
        if b.remaining() < 4 {
            return Err(CodecError::Truncated(total));
        }
        let len = b.get_u32_le() as usize;
        if b.remaining() < len {
            return Err(CodecError::Truncated(total));
        }
        parts.push(decode_append(b.split_to(len), total)?);
    }
    if b.has_remaining() {
        return Err(CodecError::Truncated(total));
    }
    Ok(parts)
}

/// The body of a `ForgetProducers` after its tag: a count, then exactly
/// that many pairs.
fn decode_forget(mut b: Bytes, total: usize) -> Result<Vec<(u64, u64)>, CodecError> {
    if b.remaining() < 4 {
        return Err(CodecError::Truncated(total));
    }
    let n = b.get_u32_le() as usize;
    if b.remaining() != n.saturating_mul(16) {
        return Err(CodecError::Truncated(total));
    }
    Ok((0..n).map(|_| (b.get_u64_le(), b.get_u64_le())).collect())
}

/// The body of an append after its tag; `total` is the command's length.
fn decode_append(mut b: Bytes, total: usize) -> Result<AppendCmd, CodecError> {
    if b.remaining() < APPEND_HEAD_BYTES {
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
    let cmd = AppendCmd {
        producer_id,
        first_seq,
        seq_deltas,
        max_timestamp_ms,
        records,
        batch: b,
    };
    cmd.check_seqs()?;
    Ok(cmd)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The MetaWrite reply carries a `MetaReply` as JSON: it must read as the
    /// former shared response type's `Meta` variant did.
    #[test]
    fn a_meta_reply_serializes_as_before() {
        let done = serde_json::to_string(&MetaReply::Meta(MetaResponse::Done)).unwrap();
        assert_eq!(done, r#"{"Meta":"Done"}"#);
        let refused = MetaReply::Meta(MetaResponse::Refused("no".into()));
        let json = serde_json::to_string(&refused).unwrap();
        assert_eq!(json, r#"{"Meta":{"Refused":"no"}}"#);
        assert_eq!(serde_json::from_str::<MetaReply>(&json).unwrap(), refused);
    }

    /// An append as the log stores it (format: module doc).
    fn raw_append(first_seq: u64, records: u32, deltas: Option<&[u32]>) -> Bytes {
        let mut b = vec![TAG_APPEND];
        b.extend_from_slice(&7u64.to_le_bytes());
        b.extend_from_slice(&first_seq.to_le_bytes());
        b.extend_from_slice(&0i64.to_le_bytes());
        b.extend_from_slice(&records.to_le_bytes());
        match deltas {
            None => b.extend_from_slice(&u32::MAX.to_le_bytes()),
            Some(d) => {
                b.extend_from_slice(&(d.len() as u32).to_le_bytes());
                for x in d {
                    b.extend_from_slice(&x.to_le_bytes());
                }
            }
        }
        b.extend_from_slice(b"batch");
        b.into()
    }

    /// Found while writing the raft_command fuzz harness (issue 13): an
    /// append whose positions overflow u64 (or whose deltas do not
    /// increase) decoded from the log or a peer, and `seq`/`last_seq` then
    /// overflowed when the shard applied it (a panic with overflow checks,
    /// silently wrong dedup without).
    #[test]
    fn an_append_whose_positions_overflow_is_a_decode_error() {
        let bad = [
            (raw_append(u64::MAX, 2, None), "positions overflow u64"),
            (raw_append(u64::MAX, 1, None), "positions overflow u64"),
            (
                raw_append(u64::MAX - u64::from(u32::MAX), 1, Some(&[u32::MAX])),
                "positions overflow u64",
            ),
            (
                raw_append(0, 2, Some(&[3, 3])),
                "seq deltas do not increase strictly",
            ),
            (
                raw_append(0, 2, Some(&[3, 1])),
                "seq deltas do not increase strictly",
            ),
        ];
        for (bytes, reason) in bad {
            match ShardCommand::decode(bytes) {
                Err(CodecError::Seqs(e)) => assert_eq!(e.reason, reason),
                other => panic!("expected a seq error ({reason}), got {other:?}"),
            }
        }
        // The largest positions that fit still decode, and seq() is exact.
        let edge = [
            raw_append(u64::MAX - 2, 2, None),
            raw_append(u64::MAX - u64::from(u32::MAX) - 1, 2, Some(&[0, u32::MAX])),
        ];
        for bytes in edge {
            let Ok(ShardCommand::Append(a)) = ShardCommand::decode(bytes) else {
                panic!("an append at the edge of u64 decodes");
            };
            assert_eq!(a.last_seq(), u64::MAX - 1);
        }
    }

    fn run(first_seq: u64, records: u32, batch: &'static [u8]) -> AppendCmd {
        AppendCmd {
            producer_id: 3,
            first_seq,
            seq_deltas: (records > 1).then(|| (0..records).map(|i| i * 2).collect()),
            max_timestamp_ms: 5,
            records,
            batch: Bytes::from_static(batch),
        }
    }

    #[test]
    fn appends_round_trip_and_malformed_ones_are_decode_errors() {
        let cmd = ShardCommand::appending(vec![run(0, 1, b"one"), run(10, 3, b"three")]);
        let b = encoded(&cmd);
        assert_eq!(b[0], TAG_APPENDS);
        assert_eq!(ShardCommand::decode(b.clone()).unwrap(), cmd);
        assert_eq!(cmd.runs().len(), 2);
        // A single run stays a plain Append (the format before group commit).
        let single = ShardCommand::appending(vec![run(0, 1, b"one")]);
        assert_eq!(encoded(&single)[0], TAG_APPEND);
        let truncated = |bytes: Vec<u8>| {
            matches!(
                ShardCommand::decode(bytes.into()),
                Err(CodecError::Truncated(_))
            )
        };
        assert!(truncated(b[..b.len() - 1].to_vec()), "a part cut short");
        let mut extra = b.to_vec();
        extra.push(0);
        assert!(truncated(extra), "bytes after the last part");
        assert!(truncated(vec![TAG_APPENDS, 0, 0, 0, 0]), "no parts");
        let mut huge = vec![TAG_APPENDS];
        huge.extend_from_slice(&u32::MAX.to_le_bytes());
        huge.extend_from_slice(&[0; 64]);
        assert!(truncated(huge), "a count that cannot fit");
        // A bad part is the part's own error.
        let mut bad = vec![TAG_APPENDS, 1, 0, 0, 0];
        let body = raw_append(u64::MAX, 2, None);
        bad.extend_from_slice(&((body.len() - 1) as u32).to_le_bytes());
        bad.extend_from_slice(&body[1..]);
        assert!(matches!(
            ShardCommand::decode(bad.into()),
            Err(CodecError::Seqs(_))
        ));
    }

    #[test]
    fn runs_are_grouped_in_order_under_the_entry_size() {
        let sized = |n: usize| AppendCmd {
            batch: Bytes::from(vec![0u8; n]),
            ..run(0, 1, b"x")
        };
        let sizes = |g: &[Vec<AppendCmd>]| -> Vec<Vec<usize>> {
            g.iter()
                .map(|e| e.iter().map(|r| r.batch.len()).collect())
                .collect()
        };
        let g = group_runs(vec![sized(4), sized(4), sized(3), sized(10), sized(1)], 10);
        assert_eq!(sizes(&g), [vec![4, 4], vec![3], vec![10], vec![1]]);
        assert!(group_runs(Vec::new(), 10).is_empty());
    }

    fn encoded(c: &impl GroupCommand) -> Bytes {
        let mut out = Vec::new();
        c.encode(&mut out);
        out.into()
    }

    #[test]
    fn a_command_of_the_other_kind_of_group_is_a_decode_error() {
        let meta = encoded(&MetaCommand::ForgetNode(3));
        assert_eq!(meta[0], TAG_META, "a metadata command keeps tag 2");
        assert_eq!(
            MetaCommand::decode(meta.clone()).unwrap(),
            MetaCommand::ForgetNode(3)
        );
        assert!(matches!(
            ShardCommand::decode(meta),
            Err(CodecError::WrongGroup { tag: TAG_META, .. })
        ));
        let shard_cmds = [
            ShardCommand::Append(AppendCmd {
                producer_id: 1,
                first_seq: 0,
                seq_deltas: None,
                max_timestamp_ms: 0,
                records: 1,
                batch: Bytes::from_static(b"b"),
            }),
            ShardCommand::Expire { first_offset: 1 },
            ShardCommand::Restore(Vec::new()),
            ShardCommand::Seal,
            ShardCommand::ForgetProducers(vec![(7, 41), (u64::MAX, 0)]),
            ShardCommand::ForgetProducers(Vec::new()),
        ];
        let tags = [
            TAG_APPEND,
            TAG_EXPIRE,
            TAG_RESTORE,
            TAG_SEAL,
            TAG_FORGET_PRODUCERS,
            TAG_FORGET_PRODUCERS,
        ];
        for (cmd, tag) in shard_cmds.iter().zip(tags) {
            let b = encoded(cmd);
            assert_eq!(b[0], tag, "{cmd:?} keeps its tag");
            assert_eq!(&ShardCommand::decode(b.clone()).unwrap(), cmd);
            assert!(matches!(
                MetaCommand::decode(b),
                Err(CodecError::WrongGroup { tag: t, .. }) if t == tag
            ));
        }
        // A tier entry (its JSON body is not even read).
        assert!(matches!(
            MetaCommand::decode(Bytes::from_static(b"\x03{}")),
            Err(CodecError::WrongGroup { tag: TAG_TIER, .. })
        ));
        let empty = [
            MetaCommand::decode(Bytes::new()).err(),
            ShardCommand::decode(Bytes::new()).err(),
        ];
        for err in empty {
            assert!(matches!(err, Some(CodecError::Truncated(0))));
        }
        assert!(matches!(
            ShardCommand::decode(Bytes::from_static(&[9])),
            Err(CodecError::UnknownTag(9))
        ));
        // A forget whose count does not match its pairs.
        let mut forget = encoded(&ShardCommand::ForgetProducers(vec![(1, 2)])).to_vec();
        forget.pop();
        for bad in [
            forget,
            vec![TAG_FORGET_PRODUCERS, 2, 0, 0, 0],
            vec![TAG_FORGET_PRODUCERS],
        ] {
            assert!(matches!(
                ShardCommand::decode(bad.into()),
                Err(CodecError::Truncated(_))
            ));
        }
        assert!(matches!(
            MetaCommand::decode(Bytes::from_static(&[9])),
            Err(CodecError::UnknownTag(9))
        ));
    }
}
