//! Record framing and segment-file scanning for [`super::segment`], whose
//! module documentation states the on-disk format. Also the fsync helpers,
//! which count `strata_core_fsyncs_total`. All file I/O goes through the
//! [`Fs`] trait of `strata-segment-log`, so tests can crash a simulated disk.

use std::io::BufReader;
use std::path::{Path, PathBuf};

use strata_segment_log::frame::{encode_header, FrameHeader, FrameScanner, Scanned};
use strata_segment_log::fs::{self as file_layer, File, Fs, Reader};
use strata_segment_log::names;

use super::error::{io_err, LogError};

/// Bytes before the body: `body_len` and `crc` (the frame of
/// `strata_segment_log::frame`).
pub use strata_segment_log::frame::FRAME_HEADER_BYTES;
/// Bytes of the body before the payload: term, node id, index, kind.
pub const BODY_HEADER_BYTES: usize = 25;

const SCAN_BUFFER_BYTES: usize = 1 << 20;
/// Segment files are `<first index, 20 digits>.log`.
const SEGMENT_EXTENSION: &str = "log";

/// In-memory index entry of one record.
#[derive(Debug, Clone, Copy)]
pub(super) struct Slot {
    pub(super) term: u64,
    pub(super) node_id: u64,
    pub(super) pos: u64,
    pub(super) body_len: u32,
}

pub(crate) fn count_fsync() {
    metrics::counter!("strata_core_fsyncs_total").increment(1);
}

pub(super) fn fsync_file(file: &dyn File, path: &Path, data_only: bool) -> Result<(), LogError> {
    let res = if data_only {
        file.sync_data()
    } else {
        file.sync_all()
    };
    res.map_err(io_err("fsync", path))?;
    count_fsync();
    Ok(())
}

pub(super) fn fsync_dir(fs: &dyn Fs, dir: &Path) -> Result<(), LogError> {
    fs.sync_dir(dir).map_err(io_err("fsync directory", dir))?;
    count_fsync();
    Ok(())
}

/// Creates `dir` (and missing parents) if needed, each new directory's entry
/// made durable by an fsync of its parent.
pub(crate) fn create_dir_durably(fs: &dyn Fs, dir: &Path) -> Result<(), LogError> {
    file_layer::create_dir_all_durably(fs, dir).map_err(io_err("create directory", dir))
}

pub(super) fn segment_path(dir: &Path, first_index: u64) -> PathBuf {
    names::segment_path(dir, first_index, SEGMENT_EXTENSION)
}

/// Segment files in `dir`, ascending by first index.
pub(super) fn list_segments(fs: &dyn Fs, dir: &Path) -> Result<Vec<(u64, PathBuf)>, LogError> {
    let listing = names::list_segments(fs, dir, SEGMENT_EXTENSION).map_err(io_err("list", dir))?;
    Ok(listing.segments)
}

fn body_header(term: u64, node_id: u64, index: u64, kind: u8) -> [u8; BODY_HEADER_BYTES] {
    let mut h = [0u8; BODY_HEADER_BYTES];
    h[0..8].copy_from_slice(&term.to_le_bytes());
    h[8..16].copy_from_slice(&node_id.to_le_bytes());
    h[16..24].copy_from_slice(&index.to_le_bytes());
    h[24] = kind;
    h
}

fn le_u64(b: &[u8]) -> u64 {
    u64::from_le_bytes(b[..8].try_into().expect("8 bytes"))
}

/// Frame header and body header of a record.
pub(super) fn frame_head(
    term: u64,
    node_id: u64,
    index: u64,
    kind: u8,
    payload: &[u8],
) -> [u8; FRAME_HEADER_BYTES + BODY_HEADER_BYTES] {
    let body = body_header(term, node_id, index, kind);
    let mut head = [0u8; FRAME_HEADER_BYTES + BODY_HEADER_BYTES];
    head[..FRAME_HEADER_BYTES].copy_from_slice(&encode_header(&[&body, payload]));
    head[FRAME_HEADER_BYTES..].copy_from_slice(&body);
    head
}

/// Records found by scanning one segment file.
pub(super) struct Scan {
    pub(super) slots: Vec<Slot>,
    /// End of the last valid record.
    pub(super) valid_len: u64,
    /// Position and description of the first invalid record.
    pub(super) bad: Option<(u64, String)>,
}

pub(super) fn scan_segment(
    file: &dyn File,
    path: &Path,
    first_index: u64,
    file_len: u64,
    record_bytes_max: usize,
) -> Result<Scan, LogError> {
    let reader = BufReader::with_capacity(SCAN_BUFFER_BYTES, Reader::new(file, 0));
    let mut frames = FrameScanner::new(reader, file_len, BODY_HEADER_BYTES..=record_bytes_max);
    let mut scan = Scan {
        slots: Vec::new(),
        valid_len: 0,
        bad: None,
    };
    let mut expected_index = first_index;
    loop {
        match frames.next_frame().map_err(io_err("read", path))? {
            Scanned::End => break,
            Scanned::Invalid { pos, reason } => {
                scan.bad = Some((pos, reason));
                break;
            }
            Scanned::Frame { pos, body, .. } => {
                let index = le_u64(&body[16..24]);
                if index != expected_index {
                    let reason = FrameError::Index {
                        found: index,
                        expected: expected_index,
                    };
                    scan.bad = Some((pos, reason.to_string()));
                    break;
                }
                scan.slots.push(Slot {
                    term: le_u64(&body[0..8]),
                    node_id: le_u64(&body[8..16]),
                    pos,
                    body_len: body.len() as u32,
                });
                scan.valid_len = frames.valid_len();
                expected_index += 1;
            }
        }
    }
    Ok(scan)
}

/// Why a record read back is not the one the in-memory index describes
/// (the reason of [`LogError::Corrupt`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(super) enum FrameError {
    #[error("frame claims {claimed} body bytes, index says {indexed}")]
    BodyLength { claimed: usize, indexed: usize },
    #[error("checksum mismatch")]
    Checksum,
    #[error("record has index {found}, {expected} expected")]
    Index { found: u64, expected: u64 },
}

/// Checks a frame read back against its CRC and expected index.
pub(super) fn verify_frame(frame: &[u8], index: u64) -> Result<(), FrameError> {
    let (head, body) = frame.split_at(FRAME_HEADER_BYTES);
    let header = FrameHeader::decode(head.try_into().expect("a frame header"));
    let body_len = header.body_len as usize;
    if body_len != body.len() {
        return Err(FrameError::BodyLength {
            claimed: body_len,
            indexed: body.len(),
        });
    }
    if !header.crc_matches(&[body]) {
        return Err(FrameError::Checksum);
    }
    let found = le_u64(&body[16..24]);
    if found != index {
        return Err(FrameError::Index {
            found,
            expected: index,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The layout of the `segment` module doc, spelled out byte by byte: the
    /// frame written through `strata_segment_log::frame` is unchanged.
    #[test]
    fn record_bytes_are_the_documented_layout() {
        let mut frame = frame_head(3, 7, 42, 1, b"payload").to_vec();
        frame.extend_from_slice(b"payload");
        let mut body = Vec::new();
        body.extend_from_slice(&3u64.to_le_bytes());
        body.extend_from_slice(&7u64.to_le_bytes());
        body.extend_from_slice(&42u64.to_le_bytes());
        body.push(1);
        body.extend_from_slice(b"payload");
        let mut expected = (body.len() as u32).to_le_bytes().to_vec();
        expected.extend_from_slice(&crc32c::crc32c(&body).to_le_bytes());
        expected.extend_from_slice(&body);
        assert_eq!(frame, expected);
        verify_frame(&frame, 42).unwrap();
        let err = verify_frame(&frame, 43).unwrap_err();
        assert_eq!(
            err,
            FrameError::Index {
                found: 42,
                expected: 43
            }
        );
        assert_eq!(err.to_string(), "record has index 42, 43 expected");
        let mut flipped = frame.clone();
        *flipped.last_mut().unwrap() ^= 1;
        assert_eq!(verify_frame(&flipped, 42), Err(FrameError::Checksum));
        assert_eq!(
            verify_frame(&frame[..frame.len() - 1], 42),
            Err(FrameError::BodyLength {
                claimed: frame.len() - FRAME_HEADER_BYTES,
                indexed: frame.len() - FRAME_HEADER_BYTES - 1
            })
        );
    }
}
