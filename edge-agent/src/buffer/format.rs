//! Byte layouts of the buffer directory: segment file names, frames and the
//! `acked` file. Pure functions only; the layout itself is documented in the
//! [`buffer`](super) module doc.

use strata_segment_log::frame::{body_crc, encode_header, FrameHeader};
use strata_segment_log::names;

/// `[u32 LE body_len][u32 LE crc32c(body)]`: the frame of
/// `strata_segment_log::frame`.
pub(super) use strata_segment_log::frame::FRAME_HEADER_BYTES;
/// `[u64 LE first_seq][u32 LE records][i64 LE max_timestamp_ms]`.
pub(super) const BODY_HEADER_BYTES: usize = 20;
/// Bytes a frame adds around the batch.
pub(super) const FRAME_OVERHEAD_BYTES: usize = FRAME_HEADER_BYTES + BODY_HEADER_BYTES;

/// Extension of segment files of this format version.
pub(super) const SEGMENT_EXTENSION: &str = "buf";
pub(super) const ACKED_FILE: &str = "acked";
pub(super) const ACKED_TMP_FILE: &str = "acked.tmp";
pub(super) const ACKED_FILE_BYTES: usize = 12;

/// The fixed-size start of every frame: frame header plus body header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct FramePrefix {
    pub body_len: u32,
    pub crc: u32,
    pub first_seq: u64,
    pub records: u32,
    pub max_timestamp_ms: i64,
}

impl FramePrefix {
    /// The prefix of a frame with header `header` whose body starts with
    /// `body` (at least [`BODY_HEADER_BYTES`] long).
    pub fn new(header: FrameHeader, body: &[u8]) -> Self {
        let le_u64 = |at: usize| u64::from_le_bytes(body[at..at + 8].try_into().expect("8 bytes"));
        Self {
            body_len: header.body_len,
            crc: header.crc,
            first_seq: le_u64(0),
            records: u32::from_le_bytes(body[8..12].try_into().expect("4 bytes")),
            max_timestamp_ms: i64::from_le_bytes(body[12..20].try_into().expect("8 bytes")),
        }
    }

    /// Bytes of the batch carried after the prefix.
    pub fn batch_len(&self) -> usize {
        self.body_len as usize - BODY_HEADER_BYTES
    }

    /// Bytes of the whole frame on disk.
    pub fn frame_len(&self) -> u64 {
        FRAME_HEADER_BYTES as u64 + u64::from(self.body_len)
    }

    /// Seq just past the batch; `None` on overflow (only a corrupt frame).
    pub fn end_seq(&self) -> Option<u64> {
        self.first_seq.checked_add(u64::from(self.records))
    }
}

/// Why bytes read back from the buffer directory are not what this buffer
/// writes (the reason of [`BufferError::Corrupt`](super::BufferError::Corrupt)).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(super) enum FormatError {
    #[error("frame body length {body_len} outside {min}..={max} (batch_bytes_max = {batch_bytes_max})", min = BODY_HEADER_BYTES, max = BODY_HEADER_BYTES + .batch_bytes_max)]
    BodyLength {
        body_len: usize,
        batch_bytes_max: usize,
    },
    #[error("checksum mismatch (stored {stored:#010x}, computed {computed:#010x})")]
    Checksum { stored: u32, computed: u32 },
    #[error("frame holds a batch of 0 records")]
    NoRecords,
    #[error("batch at seq {first_seq} with {records} records overflows u64")]
    SeqOverflow { first_seq: u64, records: u32 },
    #[error("batch starts at seq {found}, expected seq {expected}")]
    UnexpectedSeq { found: u64, expected: u64 },
    #[error("acked file is {len} bytes, expected {ACKED_FILE_BYTES}", ACKED_FILE_BYTES = ACKED_FILE_BYTES)]
    AckedLength { len: usize },
    #[error("acked file checksum mismatch")]
    AckedChecksum,
}

/// File name of the segment whose first batch starts at `first_seq`.
pub(super) fn segment_file_name(first_seq: u64) -> String {
    names::segment_file_name(first_seq, SEGMENT_EXTENSION)
}

/// Encodes one frame into `out` (cleared first) so it is written with one call.
pub(super) fn encode_frame(
    out: &mut Vec<u8>,
    first_seq: u64,
    records: u32,
    max_timestamp_ms: i64,
    batch: &[u8],
) {
    assert!(
        u32::try_from(BODY_HEADER_BYTES + batch.len()).is_ok(),
        "batch length is bounded by batch_bytes_max, validated to fit a u32 frame"
    );
    out.clear();
    out.reserve(FRAME_OVERHEAD_BYTES + batch.len());
    out.extend_from_slice(&[0; FRAME_HEADER_BYTES]);
    out.extend_from_slice(&first_seq.to_le_bytes());
    out.extend_from_slice(&records.to_le_bytes());
    out.extend_from_slice(&max_timestamp_ms.to_le_bytes());
    out.extend_from_slice(batch);
    let head = encode_header(&[&out[FRAME_HEADER_BYTES..]]);
    out[..FRAME_HEADER_BYTES].copy_from_slice(&head);
}

/// Decodes a frame prefix and bounds its length before anything is allocated.
pub(super) fn decode_prefix(
    bytes: &[u8; FRAME_OVERHEAD_BYTES],
    batch_bytes_max: usize,
) -> Result<FramePrefix, FormatError> {
    let (head, body_head) = bytes.split_at(FRAME_HEADER_BYTES);
    let prefix = FramePrefix::new(
        FrameHeader::decode(head.try_into().expect("a frame header")),
        body_head,
    );
    let body_len = prefix.body_len as usize;
    if body_len < BODY_HEADER_BYTES || body_len - BODY_HEADER_BYTES > batch_bytes_max {
        return Err(FormatError::BodyLength {
            body_len,
            batch_bytes_max,
        });
    }
    Ok(prefix)
}

/// Checks a decoded frame's checksum and header fields. `expected_first_seq`
/// is the seq the frame must start at (`None` when unknown).
pub(super) fn check_frame(
    prefix: &FramePrefix,
    prefix_bytes: &[u8; FRAME_OVERHEAD_BYTES],
    batch: &[u8],
    expected_first_seq: Option<u64>,
) -> Result<(), FormatError> {
    let body_head = &prefix_bytes[FRAME_HEADER_BYTES..];
    let crc = body_crc(&[body_head, batch]);
    if crc != prefix.crc {
        return Err(FormatError::Checksum {
            stored: prefix.crc,
            computed: crc,
        });
    }
    check_fields(prefix, expected_first_seq)
}

/// Checks the body header fields of a frame whose checksum is verified.
/// `expected_first_seq` is the seq the frame must start at (`None` when
/// unknown).
pub(super) fn check_fields(
    prefix: &FramePrefix,
    expected_first_seq: Option<u64>,
) -> Result<(), FormatError> {
    if prefix.records == 0 {
        return Err(FormatError::NoRecords);
    }
    if prefix.end_seq().is_none() {
        return Err(FormatError::SeqOverflow {
            first_seq: prefix.first_seq,
            records: prefix.records,
        });
    }
    match expected_first_seq {
        Some(expected) if expected != prefix.first_seq => Err(FormatError::UnexpectedSeq {
            found: prefix.first_seq,
            expected,
        }),
        _ => Ok(()),
    }
}

/// `[u64 LE acked_seq][u32 LE crc32c of those 8 bytes]`.
pub(super) fn encode_acked(acked_seq: u64) -> [u8; ACKED_FILE_BYTES] {
    let mut out = [0; ACKED_FILE_BYTES];
    out[..8].copy_from_slice(&acked_seq.to_le_bytes());
    let crc = crc32c::crc32c(&out[..8]);
    out[8..].copy_from_slice(&crc.to_le_bytes());
    out
}

pub(super) fn decode_acked(bytes: &[u8]) -> Result<u64, FormatError> {
    if bytes.len() != ACKED_FILE_BYTES {
        return Err(FormatError::AckedLength { len: bytes.len() });
    }
    let crc = u32::from_le_bytes(bytes[8..].try_into().expect("4 bytes"));
    if crc != crc32c::crc32c(&bytes[..8]) {
        return Err(FormatError::AckedChecksum);
    }
    Ok(u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_segment_file_name(name: &str) -> Option<u64> {
        names::parse_segment_file_name(name, SEGMENT_EXTENSION)
    }

    #[test]
    fn segment_names_round_trip_and_sort_numerically() {
        assert_eq!(segment_file_name(42), "00000000000000000042.buf");
        assert_eq!(segment_file_name(u64::MAX), "18446744073709551615.buf");
        for seq in [0, 1, 999, u64::MAX] {
            assert_eq!(parse_segment_file_name(&segment_file_name(seq)), Some(seq));
        }
        for name in [
            "acked",
            "1.buf",
            "0000000000000000004x.buf",
            "99999999999999999999.buf",
        ] {
            assert_eq!(parse_segment_file_name(name), None, "{name}");
        }
    }

    #[test]
    fn frame_round_trips_and_detects_flips() {
        let mut frame = Vec::new();
        encode_frame(&mut frame, 7, 3, -5, b"hello");
        assert_eq!(frame.len(), FRAME_OVERHEAD_BYTES + 5);
        let prefix_bytes: [u8; FRAME_OVERHEAD_BYTES] =
            frame[..FRAME_OVERHEAD_BYTES].try_into().unwrap();
        let prefix = decode_prefix(&prefix_bytes, 16).unwrap();
        assert_eq!(
            (prefix.first_seq, prefix.records, prefix.max_timestamp_ms),
            (7, 3, -5)
        );
        assert_eq!(prefix.batch_len(), 5);
        check_frame(&prefix, &prefix_bytes, b"hello", Some(7)).unwrap();
        assert!(matches!(
            check_frame(&prefix, &prefix_bytes, b"hellp", Some(7)),
            Err(FormatError::Checksum { stored, .. }) if stored == prefix.crc
        ));
        assert_eq!(
            check_frame(&prefix, &prefix_bytes, b"hello", Some(8)),
            Err(FormatError::UnexpectedSeq {
                found: 7,
                expected: 8
            })
        );
        let err = decode_prefix(&prefix_bytes, 4).unwrap_err();
        assert_eq!(
            err.to_string(),
            "frame body length 25 outside 20..=24 (batch_bytes_max = 4)"
        );
    }

    /// The layout of the module doc, spelled out byte by byte: the frame
    /// written through `strata_segment_log::frame` is the one of version 1.
    #[test]
    fn frame_bytes_are_format_version_1() {
        let mut frame = Vec::new();
        encode_frame(&mut frame, 7, 3, -5, b"hello");
        let mut body = Vec::new();
        body.extend_from_slice(&7u64.to_le_bytes());
        body.extend_from_slice(&3u32.to_le_bytes());
        body.extend_from_slice(&(-5i64).to_le_bytes());
        body.extend_from_slice(b"hello");
        let mut expected = (body.len() as u32).to_le_bytes().to_vec();
        expected.extend_from_slice(&crc32c::crc32c(&body).to_le_bytes());
        expected.extend_from_slice(&body);
        assert_eq!(frame, expected);
    }

    #[test]
    fn acked_file_round_trips() {
        let bytes = encode_acked(123_456);
        assert_eq!(decode_acked(&bytes), Ok(123_456));
        let mut bad = bytes;
        bad[0] ^= 1;
        assert_eq!(decode_acked(&bad), Err(FormatError::AckedChecksum));
        let err = decode_acked(&bytes[..11]).unwrap_err();
        assert_eq!(err.to_string(), "acked file is 11 bytes, expected 12");
    }
}
