//! Record framing and segment-file scanning for [`super::segment`], whose
//! module documentation states the on-disk format. Also the fsync helpers,
//! which count `strata_core_fsyncs_total`. All file I/O goes through the
//! [`Fs`] trait of `strata-segment-log`, so tests can crash a simulated disk.

use std::io::{self, BufReader, Read};
use std::path::{Path, PathBuf};

use strata_segment_log::fs::{self as file_layer, File, Fs, Reader};

use super::error::{io_err, LogError};

/// Bytes before the body: `body_len` and `crc`.
pub const FRAME_HEADER_BYTES: usize = 8;
/// Bytes of the body before the payload: term, node id, index, kind.
pub const BODY_HEADER_BYTES: usize = 25;

const SCAN_BUFFER_BYTES: usize = 1 << 20;
const INDEX_DIGITS: usize = 20;
const SEGMENT_SUFFIX: &str = ".log";

/// In-memory index entry of one record.
#[derive(Debug, Clone, Copy)]
pub(super) struct Slot {
    pub(super) term: u64,
    pub(super) node_id: u64,
    pub(super) pos: u64,
    pub(super) body_len: u32,
}

pub(super) fn count_fsync() {
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
pub(super) fn create_dir_durably(fs: &dyn Fs, dir: &Path) -> Result<(), LogError> {
    file_layer::create_dir_all_durably(fs, dir).map_err(io_err("create directory", dir))
}

pub(super) fn segment_path(dir: &Path, first_index: u64) -> PathBuf {
    dir.join(format!("{first_index:0INDEX_DIGITS$}{SEGMENT_SUFFIX}"))
}

fn parse_segment_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(SEGMENT_SUFFIX)?;
    if digits.len() != INDEX_DIGITS || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// Segment files in `dir`, ascending by first index.
pub(super) fn list_segments(fs: &dyn Fs, dir: &Path) -> Result<Vec<(u64, PathBuf)>, LogError> {
    let mut found = Vec::new();
    for name in fs.list_dir(dir).map_err(io_err("list", dir))? {
        if let Some(first_index) = name.to_str().and_then(parse_segment_name) {
            found.push((first_index, dir.join(name)));
        }
    }
    found.sort_unstable_by_key(|(first_index, _)| *first_index);
    Ok(found)
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

fn le_u32(b: &[u8]) -> u32 {
    u32::from_le_bytes(b[..4].try_into().expect("4 bytes"))
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
    let crc = crc32c::crc32c_append(crc32c::crc32c(&body), payload);
    let body_len = (BODY_HEADER_BYTES + payload.len()) as u32;
    let mut head = [0u8; FRAME_HEADER_BYTES + BODY_HEADER_BYTES];
    head[0..4].copy_from_slice(&body_len.to_le_bytes());
    head[4..8].copy_from_slice(&crc.to_le_bytes());
    head[8..].copy_from_slice(&body);
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

/// Reads one record at `pos`: `Ok(Err(reason))` if it is invalid.
fn scan_record(
    reader: &mut impl Read,
    pos: u64,
    file_len: u64,
    expected_index: u64,
    record_bytes_max: usize,
    body: &mut Vec<u8>,
) -> io::Result<Result<Slot, String>> {
    let remaining = file_len - pos;
    if remaining < FRAME_HEADER_BYTES as u64 {
        return Ok(Err(format!("torn frame header ({remaining} bytes left)")));
    }
    let mut head = [0u8; FRAME_HEADER_BYTES];
    reader.read_exact(&mut head)?;
    let body_len = le_u32(&head[0..4]) as usize;
    let crc = le_u32(&head[4..8]);
    if !(BODY_HEADER_BYTES..=record_bytes_max).contains(&body_len) {
        return Ok(Err(format!(
            "body length {body_len} is outside {BODY_HEADER_BYTES}..={record_bytes_max}"
        )));
    }
    let left = remaining - FRAME_HEADER_BYTES as u64;
    if left < body_len as u64 {
        return Ok(Err(format!(
            "torn record: body of {body_len} bytes, {left} bytes left"
        )));
    }
    body.resize(body_len, 0);
    reader.read_exact(body)?;
    if crc32c::crc32c(body) != crc {
        return Ok(Err("checksum mismatch".into()));
    }
    let index = le_u64(&body[16..24]);
    if index != expected_index {
        return Ok(Err(format!(
            "record has index {index}, {expected_index} expected"
        )));
    }
    Ok(Ok(Slot {
        term: le_u64(&body[0..8]),
        node_id: le_u64(&body[8..16]),
        pos,
        body_len: body_len as u32,
    }))
}

pub(super) fn scan_segment(
    file: &dyn File,
    path: &Path,
    first_index: u64,
    file_len: u64,
    record_bytes_max: usize,
) -> Result<Scan, LogError> {
    let mut reader = BufReader::with_capacity(SCAN_BUFFER_BYTES, Reader::new(file, 0));
    let mut scan = Scan {
        slots: Vec::new(),
        valid_len: 0,
        bad: None,
    };
    let mut body = Vec::new();
    let mut expected_index = first_index;
    while scan.valid_len < file_len {
        let pos = scan.valid_len;
        let record = scan_record(
            &mut reader,
            pos,
            file_len,
            expected_index,
            record_bytes_max,
            &mut body,
        )
        .map_err(io_err("read", path))?;
        match record {
            Ok(slot) => {
                scan.valid_len += (FRAME_HEADER_BYTES + slot.body_len as usize) as u64;
                scan.slots.push(slot);
                expected_index += 1;
            }
            Err(reason) => {
                scan.bad = Some((pos, reason));
                break;
            }
        }
    }
    Ok(scan)
}

/// Checks a frame read back against its CRC and expected index.
pub(super) fn verify_frame(frame: &[u8], index: u64) -> Result<(), String> {
    let body = &frame[FRAME_HEADER_BYTES..];
    let body_len = le_u32(&frame[0..4]) as usize;
    if body_len != body.len() {
        return Err(format!(
            "frame claims {body_len} body bytes, index says {}",
            body.len()
        ));
    }
    if crc32c::crc32c(body) != le_u32(&frame[4..8]) {
        return Err("checksum mismatch".into());
    }
    let got = le_u64(&body[16..24]);
    if got != index {
        return Err(format!("record has index {got}, {index} expected"));
    }
    Ok(())
}
