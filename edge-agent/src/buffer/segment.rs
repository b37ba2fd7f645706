//! One segment file: its in-memory summary (seq range, valid length, sparse
//! index), the recovery scan and positional frame reads.
//!
//! The index holds one `(first_seq, offset)` entry per [`INDEX_INTERVAL_BYTES`]
//! of file, so a read scans at most that many bytes of frame prefixes to find
//! its start, and memory stays at ~16 K entries per GiB buffered.

use super::error::BufferError;
use super::format::{
    check_fields, check_frame, decode_prefix, FramePrefix, BODY_HEADER_BYTES, FRAME_OVERHEAD_BYTES,
};
use bytes::Bytes;
use std::io::BufReader;
use std::path::{Path, PathBuf};
use strata_segment_log::frame::{FrameScanner, Scanned};
use strata_segment_log::fs::{File, FileRef, Fs, OpenMode, Reader};

pub(super) const INDEX_INTERVAL_BYTES: u64 = 64 * 1024;
const SCAN_READ_BUFFER_BYTES: usize = 64 * 1024;

#[derive(Debug, Clone, Copy)]
struct IndexEntry {
    seq: u64,
    offset: u64,
}

#[derive(Debug)]
pub(super) struct Segment {
    /// Seq in the file name; the first batch starts here.
    pub first_seq: u64,
    /// Seq just past the last valid batch (`first_seq` when empty).
    pub end_seq: u64,
    /// Bytes of valid frames; appends go here.
    pub len_bytes: u64,
    pub path: PathBuf,
    /// Shared so a sync can run outside the buffer's lock.
    pub file: FileRef,
    index: Vec<IndexEntry>,
}

/// What the recovery scan of one segment found.
pub(super) struct Scan {
    pub segment: Segment,
    pub batches: u64,
    pub file_len: u64,
    /// Offset and reason of the first invalid frame, if any.
    pub invalid: Option<(u64, String)>,
}

impl Segment {
    /// Creates an empty segment file. A stale file of the same name can only
    /// hold fully acked data (its seqs would otherwise exceed `next_seq`), so it
    /// is truncated.
    pub fn create(fs: &dyn Fs, path: PathBuf, first_seq: u64) -> Result<Self, BufferError> {
        let file = fs
            .open(&path, OpenMode::CreateTruncate)
            .map_err(|e| BufferError::io("create segment", &path, e))?;
        Ok(Self::new(path, file, first_seq))
    }

    fn new(path: PathBuf, file: FileRef, first_seq: u64) -> Self {
        Self {
            first_seq,
            end_seq: first_seq,
            len_bytes: 0,
            path,
            file,
            index: Vec::new(),
        }
    }

    /// Opens an existing segment and validates every frame in order, stopping
    /// at the first invalid one. Never panics on bad bytes.
    pub fn open_and_scan(
        fs: &dyn Fs,
        path: PathBuf,
        first_seq: u64,
        batch_bytes_max: usize,
    ) -> Result<Scan, BufferError> {
        let file = fs
            .open(&path, OpenMode::Existing)
            .map_err(|e| BufferError::io("open segment", &path, e))?;
        let file_len = file
            .size()
            .map_err(|e| BufferError::io("stat segment", &path, e))?;
        let mut segment = Self::new(path, file, first_seq);
        let file = FileRef::clone(&segment.file);
        let reader = BufReader::with_capacity(SCAN_READ_BUFFER_BYTES, Reader::new(&*file, 0));
        let body_len = BODY_HEADER_BYTES..=BODY_HEADER_BYTES + batch_bytes_max;
        let mut frames = FrameScanner::new(reader, file_len, body_len);
        let mut batches = 0;
        let invalid = loop {
            let scanned = frames
                .next_frame()
                .map_err(|e| BufferError::io("read segment", &segment.path, e))?;
            let (pos, header, body) = match scanned {
                Scanned::End => break None,
                Scanned::Invalid { pos, reason } => break Some((pos, reason)),
                Scanned::Frame { pos, header, body } => (pos, header, body),
            };
            let prefix = FramePrefix::new(header, body);
            if let Err(reason) = check_fields(&prefix, Some(segment.end_seq)) {
                break Some((pos, reason.to_string()));
            }
            segment.push_frame(prefix.first_seq, prefix.records, prefix.frame_len());
            batches += 1;
        };
        drop(frames);
        Ok(Scan {
            segment,
            batches,
            file_len,
            invalid,
        })
    }

    /// Records a frame just written (or scanned) at the end of the file.
    pub fn push_frame(&mut self, first_seq: u64, records: u32, frame_len: u64) {
        assert_eq!(
            first_seq, self.end_seq,
            "frames in a segment are contiguous"
        );
        let offset = self.len_bytes;
        let due = self
            .index
            .last()
            .is_none_or(|last| offset - last.offset >= INDEX_INTERVAL_BYTES);
        if due {
            self.index.push(IndexEntry {
                seq: first_seq,
                offset,
            });
        }
        self.end_seq = first_seq + u64::from(records);
        self.len_bytes += frame_len;
    }

    /// Records in this segment (they are dense within a segment).
    pub fn records(&self) -> u64 {
        self.end_seq - self.first_seq
    }

    /// `(seq, offset)` of an indexed frame at or before the one holding `seq`.
    pub fn locate(&self, seq: u64) -> (u64, u64) {
        let i = self
            .index
            .partition_point(|e| e.seq <= seq)
            .saturating_sub(1);
        self.index
            .get(i)
            .map_or((self.first_seq, 0), |e| (e.seq, e.offset))
    }

    /// Reads and bounds the fixed prefix of the frame at `offset`.
    pub fn read_prefix_at(
        &self,
        offset: u64,
        batch_bytes_max: usize,
    ) -> Result<(FramePrefix, [u8; FRAME_OVERHEAD_BYTES]), BufferError> {
        let mut bytes = [0; FRAME_OVERHEAD_BYTES];
        self.file
            .read_exact_at(&mut bytes, offset)
            .map_err(|e| BufferError::io("read segment", &self.path, e))?;
        let prefix = decode_prefix(&bytes, batch_bytes_max)
            .map_err(|reason| self.corrupt(offset, reason.to_string()))?;
        Ok((prefix, bytes))
    }

    /// Reads the batch of a frame whose prefix was read at `offset` and
    /// verifies the checksum, so garbage is never handed out.
    pub fn read_batch_at(
        &self,
        offset: u64,
        prefix: &FramePrefix,
        prefix_bytes: &[u8; FRAME_OVERHEAD_BYTES],
        expected_first_seq: u64,
    ) -> Result<Bytes, BufferError> {
        let mut batch = vec![0; prefix.batch_len()];
        self.file
            .read_exact_at(&mut batch, offset + FRAME_OVERHEAD_BYTES as u64)
            .map_err(|e| BufferError::io("read segment", &self.path, e))?;
        check_frame(prefix, prefix_bytes, &batch, Some(expected_first_seq))
            .map_err(|reason| self.corrupt(offset, reason.to_string()))?;
        Ok(Bytes::from(batch))
    }

    pub fn corrupt(&self, offset: u64, reason: String) -> BufferError {
        BufferError::Corrupt {
            path: self.path.clone(),
            offset,
            reason,
        }
    }

    /// Cuts the file at the end of its valid frames and makes that durable.
    /// The fdatasync is belt and braces: `open` fdatasyncs the last segment
    /// (the only one ever cut) right after, and if a crash undid the cut, the
    /// torn tail would come back only to be cut again (any later frame is
    /// written over it and fdatasynced, size included, before it is
    /// acknowledged).
    pub fn truncate_to_valid(&self) -> Result<(), BufferError> {
        self.file
            .set_len(self.len_bytes)
            .map_err(|e| BufferError::io("truncate segment", &self.path, e))?;
        self.sync_data()
    }

    pub fn sync_data(&self) -> Result<(), BufferError> {
        sync_segment(&*self.file, &self.path)
    }
}

/// fdatasync of a segment file: the one way the buffer makes frames
/// durable (a sealed segment, a sync ticket, the segment recovered at open).
pub(super) fn sync_segment(file: &dyn File, path: &Path) -> Result<(), BufferError> {
    file.sync_data()
        .map_err(|e| BufferError::io("fsync segment", path, e))
}

/// fsync of the buffer directory, making created and removed segment files
/// durable.
pub(super) fn sync_dir(fs: &dyn Fs, dir: &Path) -> Result<(), BufferError> {
    fs.sync_dir(dir)
        .map_err(|e| BufferError::io("fsync directory", dir, e))
}

/// Path of the segment starting at `first_seq` inside `dir`.
pub(super) fn segment_path(dir: &Path, first_seq: u64) -> PathBuf {
    dir.join(super::format::segment_file_name(first_seq))
}
