//! Encoding and verified decoding of `Request` / `Response` envelopes, and the
//! typed error reply every request can get.

use crate::fb;
use bytes::Bytes;
use flatbuffers::{FlatBufferBuilder, UnionWIPOffset, VerifierOptions, WIPOffset};

fn options(len: usize) -> VerifierOptions {
    VerifierOptions {
        max_depth: 16,
        max_tables: len / 4 + 16,
        max_apparent_size: len.saturating_mul(2).max(1 << 16),
        ..Default::default()
    }
}

/// A frame that failed verification.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("malformed {what} frame: {detail}")]
pub struct MalformedFrame {
    pub what: &'static str,
    pub detail: String,
}

/// Verifies and opens a request frame.
pub fn decode_request(bytes: &[u8]) -> Result<fb::Request<'_>, MalformedFrame> {
    flatbuffers::root_with_opts::<fb::Request>(&options(bytes.len()), bytes).map_err(|e| {
        MalformedFrame {
            what: "request",
            detail: e.to_string(),
        }
    })
}

/// Verifies and opens a response frame.
pub fn decode_response(bytes: &[u8]) -> Result<fb::Response<'_>, MalformedFrame> {
    flatbuffers::root_with_opts::<fb::Response>(&options(bytes.len()), bytes).map_err(|e| {
        MalformedFrame {
            what: "response",
            detail: e.to_string(),
        }
    })
}

/// Builds a `Request` whose body is produced by `body`.
pub fn request<F>(kind: fb::RequestBody, body: F) -> Bytes
where
    F: FnOnce(&mut FlatBufferBuilder<'static>) -> WIPOffset<UnionWIPOffset>,
{
    request_with(1024, kind, body)
}

/// As [`request`], with a builder of `capacity` bytes: a caller that knows
/// about how large its request is (a forward of many batches) spares the
/// builder its doublings, each a zero-filled buffer twice the last and a
/// copy of what it held.
pub fn request_with<F>(capacity: usize, kind: fb::RequestBody, body: F) -> Bytes
where
    F: FnOnce(&mut FlatBufferBuilder<'static>) -> WIPOffset<UnionWIPOffset>,
{
    let mut fbb = FlatBufferBuilder::with_capacity(capacity);
    let b = body(&mut fbb);
    let req = fb::Request::create(
        &mut fbb,
        &fb::RequestArgs {
            body_type: kind,
            body: Some(b),
        },
    );
    fbb.finish(req, None);
    finished(fbb)
}

/// Builds a `Response` whose body is produced by `body`.
pub fn response<F>(kind: fb::ResponseBody, body: F) -> Bytes
where
    F: FnOnce(&mut FlatBufferBuilder<'static>) -> WIPOffset<UnionWIPOffset>,
{
    response_with(FlatBufferBuilder::with_capacity(1024), kind, body)
}

/// As [`response`], reusing a builder sized by the caller (large fetches).
pub fn response_with<F>(
    mut fbb: FlatBufferBuilder<'static>,
    kind: fb::ResponseBody,
    body: F,
) -> Bytes
where
    F: FnOnce(&mut FlatBufferBuilder<'static>) -> WIPOffset<UnionWIPOffset>,
{
    let b = body(&mut fbb);
    let resp = fb::Response::create(
        &mut fbb,
        &fb::ResponseArgs {
            body_type: kind,
            body: Some(b),
        },
    );
    fbb.finish(resp, None);
    finished(fbb)
}

/// A finished builder's message as `Bytes`, without copying it out (the
/// builder writes from the end of its buffer; the message is its tail).
fn finished(fbb: FlatBufferBuilder<'static>) -> Bytes {
    let (buf, head) = fbb.collapse();
    Bytes::from(buf).slice(head..)
}

/// An error reply with a stable code.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[error("{message} ({})", code_name(*.code))]
pub struct RemoteError {
    pub code: fb::ErrorCode,
    pub message: String,
    /// With `NotLeader`: the client address of the node to retry at.
    pub leader_hint: Option<String>,
    /// With `ShardClosed` (a forward): the position after the producer's
    /// last record in the closed shard, 0 if it has none there.
    pub producer_next_seq: u64,
}

impl RemoteError {
    pub fn new(code: fb::ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            leader_hint: None,
            producer_next_seq: 0,
        }
    }

    /// A `ShardClosed` reply to a forward from a producer whose records in
    /// the shard end before `producer_next_seq`.
    pub fn shard_closed(message: impl Into<String>, producer_next_seq: u64) -> Self {
        Self {
            producer_next_seq,
            ..Self::new(fb::ErrorCode::ShardClosed, message)
        }
    }

    /// A `NotLeader` reply pointing at `leader` (a client address), if known.
    pub fn not_leader(message: impl Into<String>, leader: Option<String>) -> Self {
        Self {
            leader_hint: leader,
            ..Self::new(fb::ErrorCode::NotLeader, message)
        }
    }

    /// Whether the same request may succeed if retried later.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self.code,
            fb::ErrorCode::Unavailable | fb::ErrorCode::NotLeader | fb::ErrorCode::BufferFull
        )
    }

    /// Encodes this error as a `Response` frame.
    pub fn encode(&self) -> Bytes {
        response(fb::ResponseBody::Error, |fbb| {
            let message = Some(fbb.create_string(&self.message));
            let leader_hint = self.leader_hint.as_deref().map(|h| fbb.create_string(h));
            fb::Error::create(
                fbb,
                &fb::ErrorArgs {
                    code: self.code,
                    message,
                    leader_hint,
                    producer_next_seq: self.producer_next_seq,
                },
            )
            .as_union_value()
        })
    }
}

/// Stable, human-readable name of an error code (e.g. `UNKNOWN_STREAM`).
pub fn code_name(code: fb::ErrorCode) -> String {
    let name = code.variant_name().unwrap_or("UNKNOWN_CODE");
    let mut out = String::new();
    for (i, c) in name.chars().enumerate() {
        if c.is_uppercase() && i > 0 {
            out.push('_');
        }
        out.push(c.to_ascii_uppercase());
    }
    format!("{out}/{}", code.0)
}

/// If `resp` is an error reply, returns it.
pub fn error_of(resp: &fb::Response<'_>) -> Option<RemoteError> {
    resp.body_as_error().map(|e| RemoteError {
        code: e.code(),
        message: e.message().unwrap_or("").to_string(),
        leader_hint: e.leader_hint().map(str::to_string),
        producer_next_seq: e.producer_next_seq(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_round_trip() {
        let e = RemoteError::new(fb::ErrorCode::UnknownStream, "no stream named x");
        let bytes = e.encode();
        let resp = decode_response(&bytes).unwrap();
        assert_eq!(error_of(&resp), Some(e.clone()));
        assert_eq!(e.to_string(), "no stream named x (UNKNOWN_STREAM/2)");
    }

    /// A request is the same bytes whatever the builder's first size, and
    /// a builder sized for it hands over its buffer as it is.
    #[test]
    fn a_sized_request_is_the_same_request_in_its_own_buffer() {
        let batch = vec![7u8; 100_000];
        let build = |capacity: usize| {
            request_with(capacity, fb::RequestBody::ProduceRequest, |fbb| {
                let stream = Some(fbb.create_string("s"));
                let batch = Some(fbb.create_vector(&batch));
                fb::ProduceRequest::create(fbb, &fb::ProduceRequestArgs { stream, batch })
                    .as_union_value()
            })
        };
        let grown = build(1024);
        let sized = build(100_000 + 256);
        assert_eq!(grown, sized);
        let r = decode_request(&sized).unwrap();
        let p = r.body_as_produce_request().unwrap();
        assert_eq!(p.batch().len(), 100_000);
        assert_eq!(p.stream(), "s");
    }

    #[test]
    fn garbage_is_rejected() {
        assert!(decode_request(&[1, 2, 3]).is_err());
        assert!(decode_request(&[0u8; 64]).is_err());
    }
}
