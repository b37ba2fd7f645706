//! One segment file: its in-memory summary (seq range, valid length, sparse
//! index), the recovery scan and positional frame reads.
//!
//! The index holds one `(first_seq, offset)` entry per [`INDEX_INTERVAL_BYTES`]
//! of file, so a read scans at most that many bytes of frame prefixes to find
//! its start, and memory stays at ~16 K entries per GiB buffered.
//!
//! An encrypted segment (`.ebuf`) starts with a header naming its key
//! ([`Sealing`]); its frames follow, sealed. Frame checksums cover the
//! sealed bytes, so the recovery scan needs no key.

use super::crypto::{random_salt, BufferKey, Fingerprint, Keyring, SegmentCipher};
use super::error::BufferError;
use super::format::{
    body_len_range, check_fields, check_frame, decode_prefix, decode_segment_header,
    encode_sealed_frame, encode_segment_header, FramePrefix, SegmentHeader, FRAME_HEADER_BYTES,
    FRAME_OVERHEAD_BYTES, SEGMENT_HEADER_BYTES,
};
use bytes::Bytes;
use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use strata_segment_log::frame::{FrameScanner, Scanned};
use strata_segment_log::fs::{File, FileRef, Fs, OpenMode, Reader};
use strata_segment_log::prefill::Prefill;

pub(super) const INDEX_INTERVAL_BYTES: u64 = 64 * 1024;
const SCAN_READ_BUFFER_BYTES: usize = 64 * 1024;

#[derive(Debug, Clone, Copy)]
struct IndexEntry {
    seq: u64,
    offset: u64,
}

/// How a segment's batches are stored.
#[derive(Debug, Clone)]
pub(super) enum Sealing {
    /// Plaintext (`.buf`): frames from byte 0, as in format version 1.
    Plain,
    /// Encrypted (`.ebuf`) with a configured key.
    Sealed(Arc<SegmentCipher>),
    /// Encrypted with a key that is not configured (or with an unreadable
    /// header): its frames can be scanned but not read. `open` refuses a
    /// buffer where such a segment holds unacked records.
    Locked(Option<Fingerprint>),
}

impl Sealing {
    pub fn is_plain(&self) -> bool {
        matches!(self, Self::Plain)
    }
}

#[derive(Debug)]
pub(super) struct Segment {
    /// Seq in the file name; the first batch starts here.
    pub first_seq: u64,
    /// Seq just past the last valid batch (`first_seq` when empty).
    pub end_seq: u64,
    /// Bytes of valid frames; appends go here.
    pub len_bytes: u64,
    /// Bytes in the file as last written: past `len_bytes` only zeros,
    /// filled ahead of small group commits (`strata_segment_log::prefill`);
    /// cut when the segment is sealed.
    pub file_len: u64,
    pub path: PathBuf,
    /// Shared so a sync can run outside the buffer's lock.
    pub file: FileRef,
    pub sealing: Sealing,
    /// Offset of the first frame: after the header of an encrypted segment.
    data_start: u64,
    /// Nonce counter of the next sealing (encrypted segments this process
    /// created only: others are never appended to).
    next_counter: u64,
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
        Ok(Self::new(path, file, first_seq, Sealing::Plain, 0))
    }

    /// Creates an empty encrypted segment file: its header, with a fresh
    /// salt, so its key is new. Durable with the segment's first sync.
    pub fn create_sealed(
        fs: &dyn Fs,
        path: PathBuf,
        first_seq: u64,
        key: &BufferKey,
    ) -> Result<Self, BufferError> {
        let salt = random_salt().ok_or(BufferError::NoEntropy)?;
        let header = encode_segment_header(&SegmentHeader {
            fingerprint: key.fingerprint(),
            salt,
        });
        let file = fs
            .open(&path, OpenMode::CreateTruncate)
            .map_err(|e| BufferError::io("create segment", &path, e))?;
        file.write_all_at(&header, 0)
            .map_err(|e| BufferError::io("write segment header", &path, e))?;
        let sealing = Sealing::Sealed(Arc::new(key.segment_cipher(&salt)));
        Ok(Self::new(
            path,
            file,
            first_seq,
            sealing,
            SEGMENT_HEADER_BYTES as u64,
        ))
    }

    fn new(
        path: PathBuf,
        file: FileRef,
        first_seq: u64,
        sealing: Sealing,
        data_start: u64,
    ) -> Self {
        Self {
            first_seq,
            end_seq: first_seq,
            len_bytes: data_start,
            file_len: data_start,
            path,
            file,
            sealing,
            data_start,
            next_counter: 0,
            index: Vec::new(),
        }
    }

    /// Opens an existing segment and validates every frame in order, stopping
    /// at the first invalid one. `encrypted`: an `.ebuf` file, whose key is
    /// looked up in `keys` by the fingerprint in its header. Never panics on
    /// bad bytes.
    pub fn open_and_scan(
        fs: &dyn Fs,
        path: PathBuf,
        first_seq: u64,
        batch_bytes_max: usize,
        encrypted: bool,
        keys: Option<&Keyring>,
    ) -> Result<Scan, BufferError> {
        let file = fs
            .open(&path, OpenMode::Existing)
            .map_err(|e| BufferError::io("open segment", &path, e))?;
        let file_len = file
            .size()
            .map_err(|e| BufferError::io("stat segment", &path, e))?;
        let (sealing, data_start) = if encrypted {
            match read_header(&*file, &path, file_len)? {
                Ok(header) => (sealing_for(&header, keys), SEGMENT_HEADER_BYTES as u64),
                Err(reason) => {
                    // Torn (never synced) or damaged: the recovery rules cut
                    // it whole in the last segment, refuse it in others.
                    let segment = Self::new(path, file, first_seq, Sealing::Locked(None), 0);
                    return Ok(Scan {
                        segment,
                        batches: 0,
                        file_len,
                        invalid: Some((0, reason.to_string())),
                    });
                }
            }
        } else {
            (Sealing::Plain, 0)
        };
        let sealed = !sealing.is_plain();
        let mut segment = Self::new(path, file, first_seq, sealing, data_start);
        segment.file_len = file_len;
        let file = FileRef::clone(&segment.file);
        let reader =
            BufReader::with_capacity(SCAN_READ_BUFFER_BYTES, Reader::new(&*file, data_start));
        let body_len = body_len_range(batch_bytes_max, sealed);
        let mut frames = FrameScanner::new(reader, file_len - data_start, body_len);
        let mut batches = 0;
        let invalid = loop {
            let scanned = frames
                .next_frame()
                .map_err(|e| BufferError::io("read segment", &segment.path, e))?;
            let (pos, header, body) = match scanned {
                Scanned::End => break None,
                Scanned::Invalid { pos, reason } => break Some((pos + data_start, reason)),
                Scanned::Frame { pos, header, body } => (pos + data_start, header, body),
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

    /// No frames (an encrypted segment still has its header).
    pub fn is_empty(&self) -> bool {
        self.end_seq == self.first_seq
    }

    /// Bytes of the batch of a frame once opened.
    pub fn plain_len(&self, prefix: &FramePrefix) -> usize {
        prefix.batch_len() - super::format::seal_overhead(!self.sealing.is_plain())
    }

    /// Encodes the frame of one batch for the end of this segment into
    /// `out`, sealing it in an encrypted segment. Each call uses a new nonce
    /// counter, whether or not the frame is then written.
    pub fn encode_frame(
        &mut self,
        out: &mut Vec<u8>,
        first_seq: u64,
        records: u32,
        max_timestamp_ms: i64,
        batch: &[u8],
    ) {
        match &self.sealing {
            Sealing::Plain => {
                super::format::encode_frame(out, first_seq, records, max_timestamp_ms, batch);
            }
            Sealing::Sealed(cipher) => {
                let counter = self.next_counter;
                self.next_counter += 1;
                encode_sealed_frame(
                    out,
                    first_seq,
                    records,
                    max_timestamp_ms,
                    batch,
                    cipher,
                    counter,
                );
            }
            Sealing::Locked(_) => {
                unreachable!("only segments this process created are appended to")
            }
        }
    }

    /// `(seq, offset)` of an indexed frame at or before the one holding `seq`.
    pub fn locate(&self, seq: u64) -> (u64, u64) {
        let i = self
            .index
            .partition_point(|e| e.seq <= seq)
            .saturating_sub(1);
        self.index
            .get(i)
            .map_or((self.first_seq, self.data_start), |e| (e.seq, e.offset))
    }

    /// Byte offset of the frame starting at `seq`, which must be a batch
    /// boundary in `first_seq..=end_seq` (`len_bytes` for `end_seq`).
    pub fn offset_of(&self, seq: u64, batch_bytes_max: usize) -> Result<u64, BufferError> {
        let (mut at, mut offset) = self.locate(seq);
        while at < seq && offset < self.len_bytes {
            let (prefix, _) = self.read_prefix_at(offset, batch_bytes_max)?;
            if prefix.first_seq != at {
                let reason = format!("batch starts at seq {}, expected {at}", prefix.first_seq);
                return Err(self.corrupt(offset, reason));
            }
            at = prefix.end_seq().unwrap_or(u64::MAX);
            offset += prefix.frame_len();
        }
        if at != seq {
            return Err(self.corrupt(offset, format!("no batch starts at seq {seq}")));
        }
        Ok(offset)
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
        let prefix = decode_prefix(&bytes, batch_bytes_max, !self.sealing.is_plain())
            .map_err(|reason| self.corrupt(offset, reason.to_string()))?;
        Ok((prefix, bytes))
    }

    /// Reads the batch of a frame whose prefix was read at `offset` and
    /// verifies the checksum (and in an encrypted segment authenticates and
    /// decrypts it), so garbage is never handed out.
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
        match &self.sealing {
            Sealing::Plain => Ok(Bytes::from(batch)),
            Sealing::Sealed(cipher) => {
                let range = cipher
                    .open(&prefix_bytes[FRAME_HEADER_BYTES..], &mut batch)
                    .map_err(|reason| self.corrupt(offset, reason.to_string()))?;
                Ok(Bytes::from(batch).slice(range))
            }
            Sealing::Locked(fingerprint) => Err(self.corrupt(
                offset,
                format!(
                    "encrypted with a key that is not configured (fingerprint {})",
                    fingerprint.map_or_else(|| "unreadable".to_owned(), |f| f.to_string())
                ),
            )),
        }
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
    pub fn truncate_to_valid(&mut self) -> Result<(), BufferError> {
        self.cut_zero_tail()?;
        self.sync_data()
    }

    /// Zero-fills the file ahead of its frames if `prefill` asks for it
    /// after a group of `group_bytes`, never past `limit` (not synced: the
    /// group's fdatasync covers it). `Err`: the fill failed and so did
    /// cutting it back, and the file's tail is unknown.
    pub fn fill_ahead(
        &mut self,
        prefill: &Prefill,
        group_bytes: u64,
        limit: u64,
    ) -> Result<(), BufferError> {
        self.file_len = prefill
            .fill_after_group(
                &*self.file,
                self.len_bytes,
                group_bytes,
                self.file_len,
                limit,
            )
            .map_err(|e| BufferError::io("cut a failed zero-fill of segment", &self.path, e))?;
        Ok(())
    }

    /// Cuts the file at the end of its valid frames (not synced): the zeros
    /// filled ahead, before a segment is sealed, so that sealed segments
    /// hold only frames (and at recovery a torn tail). Whether anything
    /// was cut.
    pub fn cut_zero_tail(&mut self) -> Result<bool, BufferError> {
        let cut = self.file_len > self.len_bytes;
        if cut {
            self.file
                .set_len(self.len_bytes)
                .map_err(|e| BufferError::io("truncate segment", &self.path, e))?;
        }
        self.file_len = self.len_bytes;
        Ok(cut)
    }

    pub fn sync_data(&self) -> Result<(), BufferError> {
        sync_segment(&*self.file, &self.path)
    }
}

/// Bytes a frame of a `batch_len` batch takes in a (`sealed` or plaintext)
/// segment.
pub(super) fn frame_bytes(batch_len: usize, sealed: bool) -> u64 {
    (FRAME_OVERHEAD_BYTES + super::format::seal_overhead(sealed) + batch_len) as u64
}

/// Reads and decodes an encrypted segment's header: the outer `Err` is an
/// I/O failure, the inner one bytes that are not a header.
fn read_header(
    file: &dyn File,
    path: &Path,
    file_len: u64,
) -> Result<Result<SegmentHeader, super::format::FormatError>, BufferError> {
    let len = file_len.min(SEGMENT_HEADER_BYTES as u64) as usize;
    let mut bytes = [0; SEGMENT_HEADER_BYTES];
    file.read_exact_at(&mut bytes[..len], 0)
        .map_err(|e| BufferError::io("read segment header", path, e))?;
    Ok(decode_segment_header(&bytes[..len]))
}

/// The header of the encrypted segment at `path`, if it has a valid one
/// (read only: the check before recovery changes anything).
pub(super) fn peek_header(fs: &dyn Fs, path: &Path) -> Result<Option<SegmentHeader>, BufferError> {
    let file = fs
        .open(path, OpenMode::Existing)
        .map_err(|e| BufferError::io("open segment", path, e))?;
    let file_len = file
        .size()
        .map_err(|e| BufferError::io("stat segment", path, e))?;
    Ok(read_header(&*file, path, file_len)?.ok())
}

fn sealing_for(header: &SegmentHeader, keys: Option<&Keyring>) -> Sealing {
    match keys.and_then(|k| k.find(header.fingerprint)) {
        Some(key) => Sealing::Sealed(Arc::new(key.segment_cipher(&header.salt))),
        None => Sealing::Locked(Some(header.fingerprint)),
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

/// Path of the (`sealed` or plaintext) segment starting at `first_seq`
/// inside `dir`.
pub(super) fn segment_path(dir: &Path, first_seq: u64, sealed: bool) -> PathBuf {
    if sealed {
        strata_segment_log::names::segment_path(
            dir,
            first_seq,
            super::format::SEALED_SEGMENT_EXTENSION,
        )
    } else {
        dir.join(super::format::segment_file_name(first_seq))
    }
}
