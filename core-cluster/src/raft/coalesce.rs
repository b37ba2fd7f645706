//! Coalesced peer messages: heartbeats (and whatever small RPCs of other
//! groups are ready at the same moment) between two nodes travel in one
//! peer request, as CockroachDB coalesces the heartbeats of its ranges.
//!
//! Every group on a node runs its own openraft instance, so each leader's
//! heartbeat would otherwise cost one QUIC stream, two frames and a task on
//! each side. A heartbeat (an AppendEntries without entries) is not urgent:
//! the first one for a peer starts a *forming batch* and waits at most
//! [`COALESCE_WINDOW`]; every small RPC for that peer arriving meanwhile
//! joins it, and a non-heartbeat (a write's append, a vote) sends the batch
//! at once, so nothing on the write path waits for the window. A batch of
//! one is sent as a plain request.
//!
//! # Wire format (kind 8, `raft::peer`)
//!
//! ```text
//! batch request = 8u8 | count u16 | count x (len u32 BE | request body)
//!     each part is a whole peer request frame (any kind but 8)
//! batch reply   = one frame per part, in the order they complete:
//!     8u8 | index u16 | reply body (status u8 | ...)
//!   or one plain error reply (status 1-3) for the whole batch: a refused
//!   caller, or a node that does not know kind 8 (then this node sends
//!   that peer's requests one by one from then on).
//! ```
//!
//! Parts are answered as they complete, so a slow append in a batch does
//! not hold back the heartbeats that travel with it. Integers are
//! little-endian except frame lengths (big-endian, `strata_schema::frame`).

use bytes::{Buf, BufMut, Bytes};
use std::time::Duration;
use strata_schema::frame::{self, FRAME_BYTES_MAX, FRAME_HEADER_BYTES};

/// The peer request kind of a batch.
pub const KIND_BATCH: u8 = 8;
/// How long a heartbeat waits for company before its batch is sent.
pub const COALESCE_WINDOW: Duration = Duration::from_millis(5);
/// Requests at most in one batch.
pub const BATCH_PARTS_MAX: usize = 256;
/// Requests larger than this (frame bytes) are never batched.
pub const PART_BYTES_MAX: usize = 16 * 1024;
/// A batch is sent once its parts reach this many bytes.
pub const BATCH_BYTES_MAX: usize = 256 * 1024;

/// Why batch bytes do not decode.
#[derive(Debug, thiserror::Error)]
pub enum BatchError {
    #[error("batch truncated: {what} needs {need} bytes, {have} left")]
    Truncated {
        what: &'static str,
        need: usize,
        have: usize,
    },
    #[error("not a batch: kind {0}")]
    NotBatch(u8),
    #[error("a batch of {0} requests (1 to 256 allowed)")]
    Count(usize),
    #[error("a batch part of {0} bytes exceeds the frame limit")]
    PartTooLarge(usize),
    #[error("{0} unexpected bytes after the batch")]
    Trailing(usize),
}

/// What a new RPC for a peer does, given the batch forming for that peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Join {
    /// Sent on its own, now.
    Direct,
    /// Starts a batch that waits up to [`COALESCE_WINDOW`].
    Start,
    /// Joins the forming batch; `send_now` when the batch should go at once.
    Add { send_now: bool },
}

/// The decision for an RPC of `bytes` frame bytes that is a heartbeat
/// (`lazy`) or not, when a batch of `forming` parts and `forming_bytes`
/// bytes is waiting for the peer (`None`: none is). `batches` is false
/// once the peer answered that it does not know batches.
pub fn join(forming: Option<(usize, usize)>, lazy: bool, bytes: usize, batches: bool) -> Join {
    if !batches || bytes > PART_BYTES_MAX {
        return Join::Direct;
    }
    match forming {
        None if lazy => Join::Start,
        None => Join::Direct,
        Some((parts, _)) if parts >= BATCH_PARTS_MAX => Join::Direct,
        Some((_, have)) if have + bytes > BATCH_BYTES_MAX => Join::Direct,
        Some((parts, have)) => Join::Add {
            send_now: !lazy || parts + 1 >= BATCH_PARTS_MAX || have + bytes >= BATCH_BYTES_MAX,
        },
    }
}

/// Whether an AppendEntries may wait in the coalescing window: only a pure
/// heartbeat, one with no entries and no commit index beyond what the peer
/// acknowledged receiving (`commit_sent`). An empty append that carries a
/// newer commit index is the write path's commit notice: openraft sends one
/// request at a time to each peer, so while it waited the group's next
/// entries would wait behind it (measured: RF=3 delivery p50 at 10k
/// records/s 9.5 ms with every empty append lazy, 5.6 ms with none).
pub fn append_is_lazy<T: PartialOrd>(
    has_entries: bool,
    leader_commit: Option<T>,
    commit_sent: Option<T>,
) -> bool {
    !has_entries && leader_commit <= commit_sent
}

/// Encodes a batch of whole request frames (length prefixes included) as
/// one request frame.
pub fn encode_batch(parts: &[&[u8]]) -> Vec<u8> {
    debug_assert!(parts.len() <= BATCH_PARTS_MAX);
    let body_len = 3 + parts.iter().map(|p| p.len()).sum::<usize>();
    let mut out = Vec::with_capacity(FRAME_HEADER_BYTES + body_len);
    out.extend_from_slice(&frame::header(body_len));
    out.put_u8(KIND_BATCH);
    out.put_u16_le(parts.len() as u16);
    for p in parts {
        out.extend_from_slice(p);
    }
    out
}

/// Whether a request frame body is a batch.
pub fn is_batch(body: &[u8]) -> bool {
    body.first() == Some(&KIND_BATCH)
}

/// The request bodies of a batch request body (as [`encode_batch`] wrote).
pub fn decode_batch(mut body: Bytes) -> Result<Vec<Bytes>, BatchError> {
    let need = |b: &Bytes, n: usize, what: &'static str| {
        if b.remaining() < n {
            Err(BatchError::Truncated {
                what,
                need: n,
                have: b.remaining(),
            })
        } else {
            Ok(())
        }
    };
    need(&body, 3, "batch header")?;
    let kind = body.get_u8();
    if kind != KIND_BATCH {
        return Err(BatchError::NotBatch(kind));
    }
    let count = usize::from(body.get_u16_le());
    if count == 0 || count > BATCH_PARTS_MAX {
        return Err(BatchError::Count(count));
    }
    let mut parts = Vec::with_capacity(count);
    for _ in 0..count {
        need(&body, FRAME_HEADER_BYTES, "batch part length")?;
        let len = body.get_u32() as usize;
        if len > FRAME_BYTES_MAX {
            return Err(BatchError::PartTooLarge(len));
        }
        need(&body, len, "batch part")?;
        parts.push(body.split_to(len));
    }
    if body.has_remaining() {
        return Err(BatchError::Trailing(body.remaining()));
    }
    Ok(parts)
}

/// The reply frame to part `index` of a batch, from its plain reply frame
/// (length prefix included, as `peer::encode_reply` makes it).
pub fn encode_part_reply(index: u16, reply_frame: &[u8]) -> Vec<u8> {
    let reply = &reply_frame[FRAME_HEADER_BYTES.min(reply_frame.len())..];
    let body_len = 3 + reply.len();
    let mut out = Vec::with_capacity(FRAME_HEADER_BYTES + body_len);
    out.extend_from_slice(&frame::header(body_len));
    out.put_u8(KIND_BATCH);
    out.put_u16_le(index);
    out.extend_from_slice(reply);
    out
}

/// One reply frame body read from a batch's stream.
#[derive(Debug, PartialEq, Eq)]
pub enum BatchReply {
    /// Part `index`'s reply body (status u8 | ...).
    Part(u16, Bytes),
    /// A plain reply (status | message) for the whole batch.
    Whole(Bytes),
}

pub fn decode_batch_reply(mut body: Bytes) -> Result<BatchReply, BatchError> {
    if !is_batch(&body) {
        return Ok(BatchReply::Whole(body));
    }
    if body.remaining() < 4 {
        return Err(BatchError::Truncated {
            what: "batch reply header",
            need: 4,
            have: body.remaining(),
        });
    }
    body.advance(1);
    let index = body.get_u16_le();
    Ok(BatchReply::Part(index, body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_an_append_that_tells_the_peer_nothing_new_waits() {
        // A heartbeat: no entries, the commit index the peer already has.
        assert!(append_is_lazy(false, Some(7), Some(7)));
        assert!(append_is_lazy(false, None::<u64>, None));
        assert!(append_is_lazy(false, None, Some(7)));
        // A commit notice: the peer has not been told index 8 is committed.
        assert!(!append_is_lazy(false, Some(8), Some(7)));
        assert!(!append_is_lazy(false, Some(1), None));
        // Entries never wait.
        assert!(!append_is_lazy(true, Some(7), Some(7)));
    }

    #[test]
    fn heartbeats_start_and_join_batches_and_other_rpcs_send_them() {
        assert_eq!(join(None, true, 100, true), Join::Start);
        assert_eq!(join(None, false, 100, true), Join::Direct);
        assert_eq!(
            join(Some((1, 100)), true, 100, true),
            Join::Add { send_now: false }
        );
        assert_eq!(
            join(Some((1, 100)), false, 100, true),
            Join::Add { send_now: true }
        );
        // Large requests, peers without batches, full batches: alone.
        assert_eq!(join(None, true, PART_BYTES_MAX + 1, true), Join::Direct);
        assert_eq!(join(None, true, 100, false), Join::Direct);
        assert_eq!(
            join(Some((BATCH_PARTS_MAX, 100)), true, 100, true),
            Join::Direct
        );
        assert_eq!(
            join(Some((BATCH_PARTS_MAX - 1, 100)), true, 100, true),
            Join::Add { send_now: true }
        );
        assert_eq!(
            join(Some((2, BATCH_BYTES_MAX - 10)), true, 100, true),
            Join::Direct
        );
        assert_eq!(
            join(Some((2, BATCH_BYTES_MAX - 100)), true, 100, true),
            Join::Add { send_now: true }
        );
    }

    fn request(tag: u8) -> Vec<u8> {
        let body = [7u8, 4, 0, b'm', b'e', b't', b'a', tag];
        let mut f = frame::header(body.len()).to_vec();
        f.extend_from_slice(&body);
        f
    }

    #[test]
    fn a_batch_round_trips() {
        let a = request(1);
        let b = request(2);
        let batch = encode_batch(&[&a, &b]);
        let body = Bytes::copy_from_slice(&batch[FRAME_HEADER_BYTES..]);
        assert!(is_batch(&body));
        let parts = decode_batch(body).unwrap();
        assert_eq!(parts, vec![&a[4..], &b[4..]]);
    }

    #[test]
    fn bad_batches_are_errors_not_panics() {
        let a = request(1);
        let whole = encode_batch(&[&a]);
        let body = &whole[FRAME_HEADER_BYTES..];
        for cut in 0..body.len() {
            assert!(decode_batch(Bytes::copy_from_slice(&body[..cut])).is_err());
        }
        let mut trailing = body.to_vec();
        trailing.push(0);
        assert!(matches!(
            decode_batch(Bytes::from(trailing)),
            Err(BatchError::Trailing(1))
        ));
        let empty = [KIND_BATCH, 0, 0];
        assert!(matches!(
            decode_batch(Bytes::copy_from_slice(&empty)),
            Err(BatchError::Count(0))
        ));
        let huge = [KIND_BATCH, 1, 0, 0xff, 0xff, 0xff, 0xff];
        assert!(matches!(
            decode_batch(Bytes::copy_from_slice(&huge)),
            Err(BatchError::PartTooLarge(_))
        ));
    }

    #[test]
    fn part_replies_carry_their_index_and_plain_replies_apply_to_all() {
        let plain = {
            let mut f = frame::header(3).to_vec();
            f.extend_from_slice(&[0, b'4', b'2']);
            f
        };
        let part = encode_part_reply(7, &plain);
        let got = decode_batch_reply(Bytes::copy_from_slice(&part[FRAME_HEADER_BYTES..])).unwrap();
        assert_eq!(
            got,
            BatchReply::Part(7, Bytes::from_static(&[0, b'4', b'2']))
        );
        let whole = Bytes::from_static(&[3, b'n', b'o']);
        assert_eq!(
            decode_batch_reply(whole.clone()).unwrap(),
            BatchReply::Whole(whole)
        );
        assert!(decode_batch_reply(Bytes::from_static(&[KIND_BATCH, 1])).is_err());
    }
}
