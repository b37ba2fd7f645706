//! Checksummed frames, the unit both logs store their records in, and the
//! recovery scan that finds where the valid frames of a file end.
//!
//! # Format
//!
//! ```text
//! offset  size  field
//!  0      4     body_len  u32 LE: bytes of the body
//!  4      4     crc       u32 LE: CRC-32C (Castagnoli) of the body
//!  8      n     body      what the log puts there (its own header, then data)
//! ```
//!
//! Frames follow each other with no padding and no file header. Each log
//! bounds `body_len` (a longer claim read back is corruption, never an
//! allocation) and checks the fields of its own body header.
//!
//! # Recovery scan
//!
//! [`FrameScanner`] reads a file's frames in order and stops at the first
//! invalid one: too few bytes left for a header or for the claimed body (a
//! torn tail), a length outside the log's bounds, or a checksum mismatch. The
//! log decides what an invalid frame means (in its last segment, a torn tail
//! to cut; elsewhere, an error).

use std::io::{self, Read};
use std::ops::RangeInclusive;

/// Bytes before the body: `body_len` and `crc`.
pub const FRAME_HEADER_BYTES: usize = 8;

/// The CRC-32C of a body given as consecutive parts (a log's body header,
/// then its payload), without copying them together.
pub fn body_crc(parts: &[&[u8]]) -> u32 {
    parts
        .iter()
        .fold(0, |crc, part| crc32c::crc32c_append(crc, part))
}

/// The frame header of a body given as consecutive parts. The caller bounds
/// the body length first: a body of 4 GiB or more is a broken invariant.
pub fn encode_header(parts: &[&[u8]]) -> [u8; FRAME_HEADER_BYTES] {
    let body_len: usize = parts.iter().map(|p| p.len()).sum();
    let body_len = u32::try_from(body_len).expect("frame bodies are bounded below 4 GiB");
    FrameHeader {
        body_len,
        crc: body_crc(parts),
    }
    .encode()
}

/// The decoded header of one frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    pub body_len: u32,
    pub crc: u32,
}

impl FrameHeader {
    pub fn decode(bytes: &[u8; FRAME_HEADER_BYTES]) -> Self {
        let [a, b, c, d, e, f, g, h] = *bytes;
        Self {
            body_len: u32::from_le_bytes([a, b, c, d]),
            crc: u32::from_le_bytes([e, f, g, h]),
        }
    }

    pub fn encode(&self) -> [u8; FRAME_HEADER_BYTES] {
        let mut out = [0; FRAME_HEADER_BYTES];
        out[..4].copy_from_slice(&self.body_len.to_le_bytes());
        out[4..].copy_from_slice(&self.crc.to_le_bytes());
        out
    }

    /// Bytes of the whole frame on disk.
    pub fn frame_len(&self) -> u64 {
        FRAME_HEADER_BYTES as u64 + u64::from(self.body_len)
    }

    /// Whether the body (given as consecutive parts) matches the checksum.
    pub fn crc_matches(&self, parts: &[&[u8]]) -> bool {
        body_crc(parts) == self.crc
    }
}

/// One step of a [`FrameScanner`].
#[derive(Debug, PartialEq, Eq)]
pub enum Scanned<'a> {
    /// The file ends exactly after the last valid frame.
    End,
    /// A frame with a valid length and checksum starting at `pos`.
    Frame {
        pos: u64,
        header: FrameHeader,
        body: &'a [u8],
    },
    /// The frame at `pos` is invalid (torn, badly sized or corrupt).
    Invalid { pos: u64, reason: String },
}

/// Reads the frames of a file in order; see the module documentation.
#[derive(Debug)]
pub struct FrameScanner<R> {
    reader: R,
    /// Start of the next frame: the end of the valid ones so far.
    pos: u64,
    file_len: u64,
    body_len: RangeInclusive<usize>,
    body: Vec<u8>,
}

impl<R: Read> FrameScanner<R> {
    /// Scans `file_len` bytes of `reader` (positioned at the first frame),
    /// accepting bodies whose length is in `body_len`.
    pub fn new(reader: R, file_len: u64, body_len: RangeInclusive<usize>) -> Self {
        Self {
            reader,
            pos: 0,
            file_len,
            body_len,
            body: Vec::new(),
        }
    }

    /// End of the valid frames read so far.
    pub fn valid_len(&self) -> u64 {
        self.pos
    }

    /// The next frame. After [`Scanned::End`] or [`Scanned::Invalid`] the
    /// scan is over. The outer error is an I/O failure of the reader.
    pub fn next_frame(&mut self) -> io::Result<Scanned<'_>> {
        let pos = self.pos;
        let remaining = self.file_len - pos;
        if remaining == 0 {
            return Ok(Scanned::End);
        }
        let invalid = |reason: String| Ok(Scanned::Invalid { pos, reason });
        if remaining < FRAME_HEADER_BYTES as u64 {
            return invalid(format!("torn frame header ({remaining} bytes left)"));
        }
        let mut head = [0; FRAME_HEADER_BYTES];
        self.reader.read_exact(&mut head)?;
        let header = FrameHeader::decode(&head);
        let body_len = header.body_len as usize;
        if !self.body_len.contains(&body_len) {
            return invalid(format!(
                "body length {body_len} is outside {}..={}",
                self.body_len.start(),
                self.body_len.end()
            ));
        }
        let left = remaining - FRAME_HEADER_BYTES as u64;
        if left < body_len as u64 {
            return invalid(format!(
                "torn record: body of {body_len} bytes, {left} bytes left"
            ));
        }
        self.body.resize(body_len, 0);
        self.reader.read_exact(&mut self.body)?;
        if !header.crc_matches(&[&self.body]) {
            return invalid(format!(
                "checksum mismatch (stored {:#010x}, computed {:#010x})",
                header.crc,
                body_crc(&[&self.body])
            ));
        }
        self.pos += header.frame_len();
        Ok(Scanned::Frame {
            pos,
            header,
            body: &self.body,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(body: &[u8]) -> Vec<u8> {
        let mut out = encode_header(&[body]).to_vec();
        out.extend_from_slice(body);
        out
    }

    #[test]
    fn header_layout_is_len_then_crc32c_little_endian() {
        // CRC-32C of "123456789" is the standard check value 0xe3069283.
        let head = encode_header(&[b"1234", b"56789"]);
        assert_eq!(head, [9, 0, 0, 0, 0x83, 0x92, 0x06, 0xe3]);
        let header = FrameHeader::decode(&head);
        assert_eq!(header.body_len, 9);
        assert_eq!(header.frame_len(), 17);
        assert!(header.crc_matches(&[b"123456789"]));
        assert!(!header.crc_matches(&[b"123456780"]));
        assert_eq!(header.encode(), head);
    }

    #[test]
    fn scan_stops_at_the_first_invalid_frame() {
        let mut file = frame(b"first");
        file.extend(frame(b"second"));
        let valid = file.len() as u64;
        let scan_of = |bytes: &[u8], bounds: RangeInclusive<usize>| {
            let mut scanner = FrameScanner::new(bytes, bytes.len() as u64, bounds);
            let mut bodies = Vec::new();
            let end = loop {
                match scanner.next_frame().unwrap() {
                    Scanned::Frame { pos, body, .. } => bodies.push((pos, body.to_vec())),
                    other => break format!("{other:?}"),
                }
            };
            (bodies, end, scanner.valid_len())
        };
        let (bodies, end, len) = scan_of(&file, 1..=16);
        assert_eq!(
            bodies,
            vec![(0, b"first".to_vec()), (13, b"second".to_vec())]
        );
        assert_eq!((end.as_str(), len), ("End", valid));

        let mut torn = file.clone();
        torn.extend(&frame(b"third")[..10]);
        let (bodies, end, len) = scan_of(&torn, 1..=16);
        assert_eq!(bodies.len(), 2);
        assert!(
            end.contains("torn record") && end.contains("pos: 27"),
            "{end}"
        );
        assert_eq!(len, valid);

        let (_, end, _) = scan_of(&torn[..30], 1..=16);
        assert!(end.contains("torn frame header"), "{end}");

        let (bodies, end, len) = scan_of(&file, 1..=5);
        assert_eq!(bodies.len(), 1);
        assert!(end.contains("body length 6 is outside 1..=5"), "{end}");
        assert_eq!(len, 13);

        let mut flipped = file.clone();
        flipped[20] ^= 1;
        let (bodies, end, _) = scan_of(&flipped, 1..=16);
        assert_eq!(bodies.len(), 1);
        assert!(end.contains("checksum mismatch"), "{end}");
    }
}
