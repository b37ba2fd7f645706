//! Byte layouts of the buffer directory: segment file names, frames and the
//! `acked` file. Pure functions only; the layout itself is documented in the
//! [`buffer`](super) module doc.

use super::crypto::{
    Fingerprint, SegmentCipher, FINGERPRINT_BYTES, SALT_BYTES, SEAL_OVERHEAD_BYTES,
};
use std::ops::RangeInclusive;
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
/// Extension of encrypted segment files (a header, then frames whose
/// batches are sealed).
pub(super) const SEALED_SEGMENT_EXTENSION: &str = "ebuf";
const SEGMENT_MAGIC: [u8; 8] = *b"STRATAEB";
const SEGMENT_HEADER_VERSION: u32 = 1;
/// `[8 magic "STRATAEB"][u32 LE version = 1][8 key fingerprint][16 salt]
/// [u32 LE crc32c of the 36 bytes before]`.
pub(super) const SEGMENT_HEADER_BYTES: usize = 40;
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
    #[error("frame body length {body_len} outside {min}..={max} (batch_bytes_max = {batch_bytes_max})", min = BODY_HEADER_BYTES + .seal_overhead, max = BODY_HEADER_BYTES + .seal_overhead + .batch_bytes_max)]
    BodyLength {
        body_len: usize,
        batch_bytes_max: usize,
        /// Bytes sealing adds to a batch: 0 in a plaintext segment.
        seal_overhead: usize,
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
    #[error("encrypted segment header is {len} bytes, expected {SEGMENT_HEADER_BYTES}")]
    HeaderLength { len: usize },
    #[error("encrypted segment header has no STRATAEB magic")]
    HeaderMagic,
    #[error("encrypted segment header has format version {version}; this build reads version {SEGMENT_HEADER_VERSION}")]
    HeaderVersion { version: u32 },
    #[error("encrypted segment header checksum mismatch")]
    HeaderChecksum,
}

/// What the header of an encrypted segment holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct SegmentHeader {
    /// The buffer key the segment's key is derived from.
    pub fingerprint: Fingerprint,
    /// Random bytes making the segment's key unique.
    pub salt: [u8; SALT_BYTES],
}

pub(super) fn encode_segment_header(header: &SegmentHeader) -> [u8; SEGMENT_HEADER_BYTES] {
    let mut out = [0; SEGMENT_HEADER_BYTES];
    out[..8].copy_from_slice(&SEGMENT_MAGIC);
    out[8..12].copy_from_slice(&SEGMENT_HEADER_VERSION.to_le_bytes());
    out[12..20].copy_from_slice(&header.fingerprint.0);
    out[20..36].copy_from_slice(&header.salt);
    let crc = crc32c::crc32c(&out[..36]);
    out[36..].copy_from_slice(&crc.to_le_bytes());
    out
}

/// Decodes an encrypted segment's header from the first bytes of its file
/// (fewer than [`SEGMENT_HEADER_BYTES`] when the file is that short).
pub(super) fn decode_segment_header(bytes: &[u8]) -> Result<SegmentHeader, FormatError> {
    let bytes: &[u8; SEGMENT_HEADER_BYTES] = bytes
        .try_into()
        .map_err(|_| FormatError::HeaderLength { len: bytes.len() })?;
    if bytes[..8] != SEGMENT_MAGIC {
        return Err(FormatError::HeaderMagic);
    }
    if crc32c::crc32c(&bytes[..36]) != u32::from_le_bytes(bytes[36..].try_into().expect("4 bytes"))
    {
        return Err(FormatError::HeaderChecksum);
    }
    let version = u32::from_le_bytes(bytes[8..12].try_into().expect("4 bytes"));
    if version != SEGMENT_HEADER_VERSION {
        return Err(FormatError::HeaderVersion { version });
    }
    let mut fingerprint = [0; FINGERPRINT_BYTES];
    fingerprint.copy_from_slice(&bytes[12..20]);
    let mut salt = [0; SALT_BYTES];
    salt.copy_from_slice(&bytes[20..36]);
    Ok(SegmentHeader {
        fingerprint: Fingerprint(fingerprint),
        salt,
    })
}

/// Bytes sealing adds to each batch of a segment.
pub(super) fn seal_overhead(sealed: bool) -> usize {
    if sealed {
        SEAL_OVERHEAD_BYTES
    } else {
        0
    }
}

/// The body lengths a frame of a (sealed or plaintext) segment may have.
pub(super) fn body_len_range(batch_bytes_max: usize, sealed: bool) -> RangeInclusive<usize> {
    let min = BODY_HEADER_BYTES + seal_overhead(sealed);
    min..=min + batch_bytes_max
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
    out.extend_from_slice(&body_head(first_seq, records, max_timestamp_ms));
    out.extend_from_slice(batch);
    let head = encode_header(&[&out[FRAME_HEADER_BYTES..]]);
    out[..FRAME_HEADER_BYTES].copy_from_slice(&head);
}

/// [`encode_frame`] for an encrypted segment: the batch is sealed with
/// `cipher` under nonce counter `counter`, the body header as associated
/// data. The checksum covers the sealed bytes, so a torn tail is found
/// without the key.
#[allow(clippy::too_many_arguments)]
pub(super) fn encode_sealed_frame(
    out: &mut Vec<u8>,
    first_seq: u64,
    records: u32,
    max_timestamp_ms: i64,
    batch: &[u8],
    cipher: &SegmentCipher,
    counter: u64,
) {
    assert!(
        u32::try_from(BODY_HEADER_BYTES + SEAL_OVERHEAD_BYTES + batch.len()).is_ok(),
        "batch length is bounded by batch_bytes_max, validated to fit a u32 frame"
    );
    let head = body_head(first_seq, records, max_timestamp_ms);
    out.clear();
    out.reserve(FRAME_OVERHEAD_BYTES + SEAL_OVERHEAD_BYTES + batch.len());
    out.extend_from_slice(&[0; FRAME_HEADER_BYTES]);
    out.extend_from_slice(&head);
    cipher.seal(counter, &head, batch, out);
    let frame_head = encode_header(&[&out[FRAME_HEADER_BYTES..]]);
    out[..FRAME_HEADER_BYTES].copy_from_slice(&frame_head);
}

/// `[u64 LE first_seq][u32 LE records][i64 LE max_timestamp_ms]`.
fn body_head(first_seq: u64, records: u32, max_timestamp_ms: i64) -> [u8; BODY_HEADER_BYTES] {
    let mut head = [0; BODY_HEADER_BYTES];
    head[..8].copy_from_slice(&first_seq.to_le_bytes());
    head[8..12].copy_from_slice(&records.to_le_bytes());
    head[12..].copy_from_slice(&max_timestamp_ms.to_le_bytes());
    head
}

/// Decodes a frame prefix and bounds its length before anything is
/// allocated. `sealed`: the frame is in an encrypted segment.
pub(super) fn decode_prefix(
    bytes: &[u8; FRAME_OVERHEAD_BYTES],
    batch_bytes_max: usize,
    sealed: bool,
) -> Result<FramePrefix, FormatError> {
    let (head, body_head) = bytes.split_at(FRAME_HEADER_BYTES);
    let prefix = FramePrefix::new(
        FrameHeader::decode(head.try_into().expect("a frame header")),
        body_head,
    );
    let body_len = prefix.body_len as usize;
    if !body_len_range(batch_bytes_max, sealed).contains(&body_len) {
        return Err(FormatError::BodyLength {
            body_len,
            batch_bytes_max,
            seal_overhead: seal_overhead(sealed),
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
        let prefix = decode_prefix(&prefix_bytes, 16, false).unwrap();
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
        let err = decode_prefix(&prefix_bytes, 4, false).unwrap_err();
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

    fn cipher() -> SegmentCipher {
        use super::super::crypto::BufferKey;
        BufferKey::from_bytes(&[5; 32], "k".into()).segment_cipher(&[1; SALT_BYTES])
    }

    #[test]
    fn a_sealed_frame_keeps_its_header_and_checksum_in_clear() {
        let cipher = cipher();
        let mut frame = Vec::new();
        encode_sealed_frame(&mut frame, 7, 3, -5, b"hello", &cipher, 11);
        assert_eq!(frame.len(), FRAME_OVERHEAD_BYTES + SEAL_OVERHEAD_BYTES + 5);
        let prefix_bytes: [u8; FRAME_OVERHEAD_BYTES] =
            frame[..FRAME_OVERHEAD_BYTES].try_into().unwrap();
        // A plaintext reader bounds it like any frame; a sealed one too.
        let prefix = decode_prefix(&prefix_bytes, 5, true).unwrap();
        assert_eq!(
            (prefix.first_seq, prefix.records, prefix.max_timestamp_ms),
            (7, 3, -5)
        );
        assert_eq!(prefix.batch_len(), 5 + SEAL_OVERHEAD_BYTES);
        let mut sealed = frame[FRAME_OVERHEAD_BYTES..].to_vec();
        check_frame(&prefix, &prefix_bytes, &sealed, Some(7)).unwrap();
        assert!(!frame.windows(5).any(|w| w == b"hello"));
        let range = cipher
            .open(&prefix_bytes[FRAME_HEADER_BYTES..], &mut sealed)
            .unwrap();
        assert_eq!(&sealed[range], b"hello");
        let err = decode_prefix(&prefix_bytes, 4, true).unwrap_err();
        assert_eq!(
            err.to_string(),
            "frame body length 49 outside 44..=48 (batch_bytes_max = 4)"
        );
        // Too short to hold a nonce counter and a tag.
        let mut short = Vec::new();
        encode_frame(&mut short, 7, 3, -5, b"hello");
        let short_prefix: [u8; FRAME_OVERHEAD_BYTES] =
            short[..FRAME_OVERHEAD_BYTES].try_into().unwrap();
        assert!(decode_prefix(&short_prefix, 16, true).is_err());
    }

    #[test]
    fn a_sealed_frame_moved_to_another_seq_does_not_open() {
        let cipher = cipher();
        let mut frame = Vec::new();
        encode_sealed_frame(&mut frame, 7, 3, -5, b"hello", &cipher, 0);
        let mut moved = frame.clone();
        moved[FRAME_HEADER_BYTES..FRAME_HEADER_BYTES + 8].copy_from_slice(&8u64.to_le_bytes());
        let aad = moved[FRAME_HEADER_BYTES..FRAME_OVERHEAD_BYTES].to_vec();
        assert!(cipher
            .open(&aad, &mut moved[FRAME_OVERHEAD_BYTES..])
            .is_err());
    }

    #[test]
    fn segment_headers_round_trip_and_detect_damage() {
        let header = SegmentHeader {
            fingerprint: Fingerprint([1, 2, 3, 4, 5, 6, 7, 8]),
            salt: [9; SALT_BYTES],
        };
        let bytes = encode_segment_header(&header);
        assert_eq!(&bytes[..8], b"STRATAEB");
        assert_eq!(decode_segment_header(&bytes), Ok(header));
        assert_eq!(
            decode_segment_header(&bytes[..39]),
            Err(FormatError::HeaderLength { len: 39 })
        );
        let mut bad = bytes;
        bad[25] ^= 1;
        assert_eq!(
            decode_segment_header(&bad),
            Err(FormatError::HeaderChecksum)
        );
        let mut bad = bytes;
        bad[0] = b'X';
        assert_eq!(decode_segment_header(&bad), Err(FormatError::HeaderMagic));
        let mut v2 = bytes;
        v2[8] = 2;
        let crc = crc32c::crc32c(&v2[..36]);
        v2[36..].copy_from_slice(&crc.to_le_bytes());
        assert_eq!(
            decode_segment_header(&v2),
            Err(FormatError::HeaderVersion { version: 2 })
        );
    }
}
