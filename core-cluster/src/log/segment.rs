//! The segment log: the append-only, checksummed log of one Raft group. For a
//! shard group it is both the Raft log and the data log: a record's payload is
//! the encoded Raft entry, which holds the producer's batch bytes unchanged.
//!
//! # Design
//!
//! [`SegmentLog`] is a plain synchronous struct over a file system
//! ([`strata_segment_log::fs::Fs`]: `std::fs` in production, a simulated disk
//! that can lose power in tests): no async, no openraft types (the Raft
//! mapping lives in [`crate::raft::log_store`]). It keeps an
//! in-memory index with one 32-byte slot per record (term, node id, file
//! position, body length); records are whole batches, so this stays small.
//! The segment holding an index is found by binary search over the (few)
//! segments, so slots need not name their segment. Framing, scanning and
//! the fsync helpers live in the private `frame` module, one segment file
//! and its recovery in `segment_file`, the errors in `error`.
//!
//! Appends go to a write buffer and are *not durable* until [`SegmentLog::sync`]
//! (group commit: many appends, one `fdatasync`). Buffered records are readable
//! at once: [`SegmentLog::read`] serves them from the buffer. `sync` can be split
//! into [`SegmentLog::begin_sync`] (hand buffered bytes to the OS, needs `&mut`)
//! and [`PendingSync::complete`] (the `fdatasync`, needs no access to the log),
//! so a caller behind a lock does not block readers during the fsync.
//!
//! # On-disk format
//!
//! A log is a directory of segment files named `<first index, 20 digits>.log`,
//! e.g. `00000000000000000001.log`; other files in the directory are ignored.
//! A segment holds records with consecutive indexes starting at the index in
//! its name, and each segment continues where the previous one ends. A segment
//! is a plain sequence of records (no file header, no padding):
//!
//! ```text
//! offset  size  field
//!  0      4     body_len  u32 LE: 25 + payload length
//!  4      4     crc       u32 LE: CRC-32C (Castagnoli) of the body (bytes 8..)
//!  8      8     term      u64 LE  \
//! 16      8     node_id   u64 LE   |  body. (term, node_id) is the Raft leader
//! 24      8     index     u64 LE   |  id of the entry, index its log index.
//! 32      1     kind      u8       |  kind is opaque to this layer.
//! 33      n     payload           /
//! ```
//!
//! A new segment starts when appending a record would take the active one past
//! `segment_bytes_max` (a segment holds at least one record).
//!
//! # Durability and recovery
//!
//! Only the last (active) segment ever holds bytes that are not durable: before
//! a new segment file is created the previous one is `fdatasync`ed (and the
//! directory too, if its own creation was not yet durable). `sync` writes the
//! buffer, `fdatasync`s the active segment and `fsync`s the directory if a
//! segment file was created since the last sync. Deleting segment files
//! (truncate, purge) `fsync`s the directory after each deletion, so a crash
//! never leaves a hole between segments.
//!
//! After a small group (`SegmentLogOptions::prefill`), `sync` zero-fills the
//! active segment ahead of its last record (as far as it holds, up to 1 MiB), so the next small
//! groups' `fdatasync`s write data into the file without changing its size
//! ([`strata_segment_log::prefill`] says why and by how much). Past the last
//! record there are only zeros: sealing a segment, cutting a torn tail and
//! `truncate_from` cut the file to its records first, and recovery cuts a
//! zero tail quietly (it is not counted as truncated).
//!
//! [`SegmentLog::open`] reads every segment and verifies every CRC. The first
//! invalid record of the *last* segment (torn or too long frame, CRC mismatch,
//! unexpected index) is taken as the torn tail of an interrupted write: the file
//! is cut there and fsynced, and an emptied last segment is deleted. Any invalid
//! record in an earlier segment, an empty earlier segment, or a gap between
//! segments is an error naming the file and position: that data was durable,
//! so it is never silently dropped.
//!
//! Only bytes written after the last completed fsync can be torn, so the
//! last segment's invalid record is damage, not a torn tail, when the log is
//! known to have been durable past it. The log does not record how far it
//! was synced (that would cost a write per sync); its caller may know a lower
//! bound and pass it to [`SegmentLog::open_synced_in`]: an invalid record at
//! or below that index is [`LogError::DurableCorrupt`] (naming the file, the
//! byte offset and the index), nothing is cut, and the log does not open. The
//! Raft log store passes its saved committed and purge points
//! ([`crate::raft::log_store`] says why they are durable). Past that bound an
//! invalid record is cut as a torn tail, even if valid records follow it:
//! unsynced bytes need not reach the disk in order (a page rewritten in
//! place can be lost while a later, newly allocated one is kept), so a valid
//! record after a hole does not prove the hole was ever synced.
//!
//! [`SegmentLog::purge_to`] deletes whole segments only; records of a partly
//! purged segment become unreadable, but reappear after a reopen. The caller
//! persists its purge point and purges again after opening (the
//! [`crate::raft::log_store::LogStore`] does).
//!
//! After an I/O error from a mutating method the in-memory state may no longer
//! match the files: the log refuses further writes ([`LogError::Failed`]) and
//! must be reopened. An error from [`PendingSync::complete`] means durability is
//! unknown (fsync errors are not retryable): the caller must stop and reopen.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use strata_segment_log::fs::{FileRef, Fs, OpenMode, StdFs};
use strata_segment_log::prefill::Prefill;

use super::error::io_err;
pub use super::error::LogError;
use super::frame::{
    create_dir_durably, frame_head, fsync_dir, fsync_file, list_segments, segment_path,
    verify_frame, Slot,
};
pub use super::frame::{BODY_HEADER_BYTES, FRAME_HEADER_BYTES};
use super::segment_file::{recover_segment, RecoverOptions, Segment};

/// Appends are written to the file once this much is buffered; bigger
/// records bypass the buffer.
const WRITE_BUFFER_BYTES: usize = 256 * 1024;

/// Settings of a [`SegmentLog`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentLogOptions {
    /// A new segment starts once appending a record would take the active
    /// segment past this size. Default 128 MiB.
    pub segment_bytes_max: u64,
    /// Largest record body (25-byte header + payload) accepted by `append`.
    /// On recovery a frame claiming a longer body is treated as corrupt, so
    /// never lower this below a size already written. Default 80 MiB.
    pub record_bytes_max: usize,
    /// Zero-filling the active segment ahead of small group commits
    /// ([`strata_segment_log::prefill`]); [`Prefill::OFF`] turns it off.
    pub prefill: Prefill,
}

impl Default for SegmentLogOptions {
    fn default() -> Self {
        Self {
            segment_bytes_max: 128 << 20,
            record_bytes_max: 80 << 20,
            prefill: Prefill::default(),
        }
    }
}

impl SegmentLogOptions {
    /// Checks the options; [`SegmentLog::open`] calls this.
    pub fn validate(&self) -> Result<(), LogError> {
        if self.segment_bytes_max == 0 {
            return Err(LogError::InvalidOption {
                key: "segment_bytes_max",
                reason: "must be at least 1".into(),
            });
        }
        if self.record_bytes_max < BODY_HEADER_BYTES || self.record_bytes_max > u32::MAX as usize {
            return Err(LogError::InvalidOption {
                key: "record_bytes_max",
                reason: format!(
                    "{} is outside {BODY_HEADER_BYTES}..={}",
                    self.record_bytes_max,
                    u32::MAX
                ),
            });
        }
        Ok(())
    }
}

/// One record read back from the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogRecord {
    pub term: u64,
    pub node_id: u64,
    pub index: u64,
    pub kind: u8,
    pub payload: Bytes,
}

/// The identity of a record, known without reading it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordId {
    pub term: u64,
    pub node_id: u64,
    pub index: u64,
}

/// What [`SegmentLog::open`] found.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Recovery {
    /// Segments in the log after recovery.
    pub segments: usize,
    /// Records in the log after recovery.
    pub records: u64,
    /// Bytes cut from the torn tail of the last segment.
    pub truncated_bytes: u64,
}

/// See the module documentation.
#[derive(Debug)]
pub struct SegmentLog {
    fs: Arc<dyn Fs>,
    dir: PathBuf,
    opts: SegmentLogOptions,
    /// Ascending by first index; the last one is the active segment.
    segments: Vec<Segment>,
    /// `slots[i]` describes index `base + i`.
    slots: VecDeque<Slot>,
    base: u64,
    /// First readable index (`>= base`): the purge point plus one.
    first: u64,
    /// Records of the active segment not yet handed to the OS.
    pending: Vec<u8>,
    /// The active segment has records that were not fdatasynced.
    unsynced: bool,
    /// Bytes appended since the last sync began: the size of the group the
    /// next sync commits, which decides whether to fill ahead.
    group_bytes: u64,
    /// A segment file was created and the directory not fsynced since.
    dir_dirty: bool,
    /// Start a new segment at the next append (see [`Self::roll_next`]).
    roll_requested: bool,
    failed: bool,
}

/// An fsync prepared by [`SegmentLog::begin_sync`].
#[must_use = "nothing is durable until complete() returns Ok"]
#[derive(Debug)]
pub struct PendingSync {
    file: Option<(FileRef, PathBuf)>,
    dir: Option<(Arc<dyn Fs>, PathBuf)>,
}

impl PendingSync {
    /// Makes everything appended before `begin_sync` durable.
    pub fn complete(self) -> Result<(), LogError> {
        if let Some((file, path)) = &self.file {
            fsync_file(&**file, path, true)?;
        }
        if let Some((fs, dir)) = &self.dir {
            fsync_dir(&**fs, dir)?;
        }
        Ok(())
    }
}

impl SegmentLog {
    /// Opens (creating if needed) the log in `dir` on the real file system
    /// and recovers it; see the module documentation.
    pub fn open(dir: &Path, opts: SegmentLogOptions) -> Result<(Self, Recovery), LogError> {
        Self::open_in(StdFs::shared(), dir, opts)
    }

    /// [`Self::open`] on the file system `fs` (tests pass a simulated one).
    pub fn open_in(
        fs: Arc<dyn Fs>,
        dir: &Path,
        opts: SegmentLogOptions,
    ) -> Result<(Self, Recovery), LogError> {
        Self::open_synced_in(fs, dir, opts, None)
    }

    /// [`Self::open_in`] knowing that the records up to index `synced` were
    /// made durable: an invalid one of them is [`LogError::DurableCorrupt`],
    /// not a torn tail (see the module documentation). `synced` must never
    /// name a record whose fsync had not returned.
    pub fn open_synced_in(
        fs: Arc<dyn Fs>,
        dir: &Path,
        opts: SegmentLogOptions,
        synced: Option<u64>,
    ) -> Result<(Self, Recovery), LogError> {
        opts.validate()?;
        create_dir_durably(&*fs, dir)?;
        let mut log = SegmentLog {
            fs,
            dir: dir.to_path_buf(),
            opts,
            segments: Vec::new(),
            slots: VecDeque::new(),
            base: 0,
            first: 0,
            pending: Vec::new(),
            unsynced: false,
            group_bytes: 0,
            dir_dirty: false,
            roll_requested: false,
            failed: false,
        };
        let mut recovery = Recovery::default();
        let found = list_segments(&*log.fs, dir)?;
        let count = found.len();
        for (i, (first_index, path)) in found.into_iter().enumerate() {
            if let (Some(prev), Some(last)) = (log.segments.last(), log.last_index()) {
                if last.checked_add(1) != Some(first_index) {
                    return Err(LogError::Gap {
                        prev: prev.path.clone(),
                        prev_last: last,
                        next: path,
                    });
                }
            }
            log.load_segment(first_index, path, i + 1 == count, synced, &mut recovery)?;
        }
        recovery.segments = log.segments.len();
        recovery.records = log.slots.len() as u64;
        log.check_invariants();
        tracing::info!(
            dir = %dir.display(),
            segments = recovery.segments,
            records = recovery.records,
            truncated_bytes = recovery.truncated_bytes,
            "segment log opened"
        );
        Ok((log, recovery))
    }

    fn load_segment(
        &mut self,
        first_index: u64,
        path: PathBuf,
        is_last: bool,
        synced: Option<u64>,
        recovery: &mut Recovery,
    ) -> Result<(), LogError> {
        let opts = RecoverOptions {
            record_bytes_max: self.opts.record_bytes_max,
            synced,
        };
        let Some((segment, slots)) = recover_segment(
            &*self.fs,
            &self.dir,
            first_index,
            path,
            is_last,
            &opts,
            &mut recovery.truncated_bytes,
        )?
        else {
            return Ok(());
        };
        if self.slots.is_empty() {
            self.base = first_index;
            self.first = first_index;
        }
        self.slots.extend(slots);
        self.segments.push(segment);
        Ok(())
    }

    /// Appends a record to the write buffer: readable at once, durable after
    /// the next [`Self::sync`]. `index` must be `last_index() + 1`, or anything
    /// when the log is empty.
    pub fn append(
        &mut self,
        term: u64,
        node_id: u64,
        index: u64,
        kind: u8,
        payload: &[u8],
    ) -> Result<(), LogError> {
        self.guarded(|log| log.append_inner(term, node_id, index, kind, payload))
    }

    fn append_inner(
        &mut self,
        term: u64,
        node_id: u64,
        index: u64,
        kind: u8,
        payload: &[u8],
    ) -> Result<(), LogError> {
        let body_len = BODY_HEADER_BYTES + payload.len();
        if body_len > self.opts.record_bytes_max {
            return Err(LogError::TooLarge {
                bytes: body_len,
                max: self.opts.record_bytes_max,
            });
        }
        if let Some(last) = self.last_index() {
            if last.checked_add(1) != Some(index) {
                return Err(LogError::NotNext {
                    index,
                    expected: last.saturating_add(1),
                });
            }
        }
        let frame_len = (FRAME_HEADER_BYTES + body_len) as u64;
        let roll = match self.segments.last() {
            None => true,
            Some(active) => {
                active.len > 0
                    && (self.roll_requested || active.len + frame_len > self.opts.segment_bytes_max)
            }
        };
        if roll {
            self.start_segment(index)?;
            self.roll_requested = false;
        }
        if self.slots.is_empty() {
            self.base = index;
            self.first = index;
        }
        let head = frame_head(term, node_id, index, kind, payload);
        // Big records skip the buffer rather than being copied into it; the
        // buffer goes first so the file stays in record order.
        let direct = frame_len as usize >= WRITE_BUFFER_BYTES;
        if direct {
            self.flush_pending()?;
        }
        let active = self.segments.last_mut().expect("an active segment");
        let pos = active.len;
        active.len += frame_len;
        self.slots.push_back(Slot {
            term,
            node_id,
            pos,
            body_len: body_len as u32,
        });
        self.unsynced = true;
        self.group_bytes += frame_len;
        if direct {
            let active = self.segments.last().expect("an active segment");
            let write = |buf: &[u8], at: u64| active.file.write_all_at(buf, at);
            write(&head, pos)
                .and_then(|()| write(payload, pos + head.len() as u64))
                .map_err(io_err("write", &active.path))?;
        } else {
            self.pending.extend_from_slice(&head);
            self.pending.extend_from_slice(payload);
            if self.pending.len() >= WRITE_BUFFER_BYTES {
                self.flush_pending()?;
            }
        }
        Ok(())
    }

    /// Seals the active segment (durably) and creates a new one.
    fn start_segment(&mut self, first_index: u64) -> Result<(), LogError> {
        if !self.segments.is_empty() {
            self.flush_pending()?;
            let sealed = self.segments.last_mut().expect("a segment");
            // The fsync makes the cut durable before the next segment is.
            sealed.cut_zero_tail()?;
            fsync_file(&*sealed.file, &sealed.path, true)?;
            if self.dir_dirty {
                fsync_dir(&*self.fs, &self.dir)?;
                self.dir_dirty = false;
            }
            self.unsynced = false;
        }
        let path = segment_path(&self.dir, first_index);
        let file = self
            .fs
            .open(&path, OpenMode::CreateNew)
            .map_err(io_err("create", &path))?;
        self.dir_dirty = true;
        self.segments.push(Segment {
            first_index,
            path,
            file,
            len: 0,
            file_len: 0,
        });
        Ok(())
    }

    /// Hands the write buffer to the OS (no fsync).
    fn flush_pending(&mut self) -> Result<(), LogError> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let active = self.segments.last().expect("buffered bytes have a segment");
        let at = active.len - self.pending.len() as u64;
        active
            .file
            .write_all_at(&self.pending, at)
            .map_err(io_err("write", &active.path))?;
        self.pending.clear();
        if self.pending.capacity() > 4 * WRITE_BUFFER_BYTES {
            self.pending = Vec::with_capacity(WRITE_BUFFER_BYTES);
        }
        Ok(())
    }

    /// Makes everything appended so far durable.
    pub fn sync(&mut self) -> Result<(), LogError> {
        self.begin_sync()?.complete()
    }

    /// First half of [`Self::sync`]: hands buffered records to the OS and
    /// returns the fsync still to be done, which needs no access to the log.
    pub fn begin_sync(&mut self) -> Result<PendingSync, LogError> {
        self.guarded(Self::begin_sync_inner)
    }

    fn begin_sync_inner(&mut self) -> Result<PendingSync, LogError> {
        let mut pending = PendingSync {
            file: None,
            dir: None,
        };
        if self.unsynced {
            self.flush_pending()?;
            let group_bytes = std::mem::take(&mut self.group_bytes);
            let (prefill, limit) = (self.opts.prefill, self.opts.segment_bytes_max);
            let active = self
                .segments
                .last_mut()
                .expect("unsynced records have a segment");
            active.fill_ahead(&prefill, group_bytes, limit)?;
            pending.file = Some((Arc::clone(&active.file), active.path.clone()));
            self.unsynced = false;
        }
        if self.dir_dirty {
            pending.dir = Some((Arc::clone(&self.fs), self.dir.clone()));
            self.dir_dirty = false;
        }
        Ok(pending)
    }

    /// Makes the next append start a new segment, so that what is in the
    /// log now can be deleted by a purge as a whole segment (tiering calls
    /// this once a range is uploaded, instead of waiting for the size).
    pub fn roll_next(&mut self) {
        self.roll_requested = true;
    }

    /// Reads the record at `index`; `None` if it is not in the log (or purged).
    pub fn read(&self, index: u64) -> Result<Option<LogRecord>, LogError> {
        let Some(slot) = self.slot(index) else {
            return Ok(None);
        };
        let seg_at = self.segment_of(index);
        let seg = &self.segments[seg_at];
        let frame_len = FRAME_HEADER_BYTES + slot.body_len as usize;
        let buffered = if seg_at + 1 == self.segments.len() {
            self.pending.len() as u64
        } else {
            0
        };
        let flushed = seg.len - buffered;
        let mut frame = vec![0u8; frame_len];
        if slot.pos >= flushed {
            let from = (slot.pos - flushed) as usize;
            frame.copy_from_slice(&self.pending[from..from + frame_len]);
        } else {
            seg.file
                .read_exact_at(&mut frame, slot.pos)
                .map_err(io_err("read", &seg.path))?;
        }
        if let Err(reason) = verify_frame(&frame, index) {
            return Err(LogError::Corrupt {
                path: seg.path.clone(),
                pos: slot.pos,
                reason: reason.to_string(),
            });
        }
        let kind = frame[FRAME_HEADER_BYTES + BODY_HEADER_BYTES - 1];
        Ok(Some(LogRecord {
            term: slot.term,
            node_id: slot.node_id,
            index,
            kind,
            payload: Bytes::from(frame).slice(FRAME_HEADER_BYTES + BODY_HEADER_BYTES..),
        }))
    }

    /// First readable index.
    pub fn first_index(&self) -> Option<u64> {
        (!self.slots.is_empty()).then_some(self.first)
    }

    pub fn last_index(&self) -> Option<u64> {
        (!self.slots.is_empty()).then(|| self.base + self.slots.len() as u64 - 1)
    }

    /// Term of the record at `last_index()`.
    pub fn last_term(&self) -> Option<u64> {
        self.slots.back().map(|s| s.term)
    }

    pub fn term_of(&self, index: u64) -> Option<u64> {
        self.slot(index).map(|s| s.term)
    }

    /// Term, node id and index of a readable record, from memory.
    pub fn record_id(&self, index: u64) -> Option<RecordId> {
        self.slot(index).map(|s| RecordId {
            term: s.term,
            node_id: s.node_id,
            index,
        })
    }

    pub fn last_record_id(&self) -> Option<RecordId> {
        self.record_id(self.last_index()?)
    }

    /// Bytes of all segments, including appended records not yet written.
    pub fn bytes(&self) -> u64 {
        self.segments.iter().map(|s| s.len).sum()
    }

    pub fn segment_count(&self) -> usize {
        self.segments.len()
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn slot(&self, index: u64) -> Option<Slot> {
        let last = self.last_index()?;
        if index < self.first || index > last {
            return None;
        }
        Some(self.slots[(index - self.base) as usize])
    }

    /// Position in `segments` of the segment holding `index` (which is in the log).
    fn segment_of(&self, index: u64) -> usize {
        self.segments.partition_point(|s| s.first_index <= index) - 1
    }

    /// Deletes the records at `index` and after (a Raft conflict). Durable on
    /// return: removed records never come back, and the remaining ones are
    /// synced.
    pub fn truncate_from(&mut self, index: u64) -> Result<(), LogError> {
        self.guarded(|log| log.truncate_inner(index))?;
        self.check_invariants();
        Ok(())
    }

    fn truncate_inner(&mut self, index: u64) -> Result<(), LogError> {
        let Some(last) = self.last_index() else {
            return Ok(());
        };
        if index > last {
            return Ok(());
        }
        self.flush_pending()?;
        if index <= self.first {
            // Records before `first` are purged: nothing is left.
            self.remove_segments_from_back(0)?;
            self.clear();
            return Ok(());
        }
        let at = self.segment_of(index);
        let cut_inside = self.segments[at].first_index < index;
        self.remove_segments_from_back(if cut_inside { at + 1 } else { at })?;
        if cut_inside {
            let pos = self.slots[(index - self.base) as usize].pos;
            let seg = &mut self.segments[at];
            seg.file
                .set_len(pos)
                .map_err(io_err("truncate", &seg.path))?;
            fsync_file(&*seg.file, &seg.path, false)?;
            seg.len = pos;
            seg.file_len = pos;
        }
        // Sealed segments were synced when sealed; a cut active one just was.
        self.slots.truncate((index - self.base) as usize);
        self.unsynced = false;
        self.group_bytes = 0;
        if self.dir_dirty {
            fsync_dir(&*self.fs, &self.dir)?;
            self.dir_dirty = false;
        }
        Ok(())
    }

    /// Drops records up to and including `index` (a Raft purge). Whole
    /// segments whose records are all `<= index` are deleted; the rest become
    /// unreadable now but reappear after a reopen (see the module docs).
    pub fn purge_to(&mut self, index: u64) -> Result<(), LogError> {
        self.guarded(|log| log.purge_inner(index))?;
        self.check_invariants();
        Ok(())
    }

    fn purge_inner(&mut self, index: u64) -> Result<(), LogError> {
        let Some(last) = self.last_index() else {
            return Ok(());
        };
        if index < self.first {
            return Ok(());
        }
        if index >= last {
            self.pending.clear();
            self.remove_segments_from_front(self.segments.len())?;
            self.clear();
            return Ok(());
        }
        self.first = index + 1;
        // Segment i is fully purged when segment i + 1 starts at or before index + 1.
        let purged = self.segment_of(index + 1);
        self.remove_segments_from_front(purged)?;
        let new_base = self.segments[0].first_index;
        self.slots.drain(..(new_base - self.base) as usize);
        self.base = new_base;
        Ok(())
    }

    /// Deletes `segments[keep..]`, newest first, each deletion durable before
    /// the next so a crash leaves no hole.
    fn remove_segments_from_back(&mut self, keep: usize) -> Result<(), LogError> {
        while self.segments.len() > keep {
            let seg = self.segments.pop().expect("a segment");
            self.fs
                .remove_file(&seg.path)
                .map_err(io_err("remove", &seg.path))?;
            fsync_dir(&*self.fs, &self.dir)?;
            self.dir_dirty = false;
        }
        Ok(())
    }

    /// Deletes the oldest `count` segments, oldest first.
    fn remove_segments_from_front(&mut self, count: usize) -> Result<(), LogError> {
        for seg in self.segments.drain(..count) {
            self.fs
                .remove_file(&seg.path)
                .map_err(io_err("remove", &seg.path))?;
            fsync_dir(&*self.fs, &self.dir)?;
            self.dir_dirty = false;
        }
        Ok(())
    }

    fn clear(&mut self) {
        assert!(self.segments.is_empty());
        self.slots.clear();
        self.pending.clear();
        self.base = 0;
        self.first = 0;
        self.unsynced = false;
        self.group_bytes = 0;
    }

    fn check_usable(&self) -> Result<(), LogError> {
        if self.failed {
            return Err(LogError::Failed {
                dir: self.dir.clone(),
            });
        }
        Ok(())
    }

    /// Runs a mutation of a usable log; an I/O failure leaves the log
    /// unusable until reopened (see the module documentation).
    fn guarded<T>(
        &mut self,
        op: impl FnOnce(&mut Self) -> Result<T, LogError>,
    ) -> Result<T, LogError> {
        self.check_usable()?;
        let res = op(self);
        if let Err(LogError::Io { .. }) = &res {
            self.failed = true;
        }
        res
    }

    /// Asserts the structural invariants (cost: O(segments)).
    pub fn check_invariants(&self) {
        assert_eq!(self.segments.is_empty(), self.slots.is_empty());
        let Some(last) = self.last_index() else {
            assert!(self.pending.is_empty() && !self.unsynced);
            return;
        };
        assert_eq!(self.segments[0].first_index, self.base);
        assert!(self.base <= self.first && self.first <= last);
        for pair in self.segments.windows(2) {
            assert!(pair[0].first_index < pair[1].first_index);
        }
        for seg in &self.segments {
            assert!(seg.first_index <= last);
            assert_eq!(self.slots[(seg.first_index - self.base) as usize].pos, 0);
        }
        let active = self.segments.last().expect("a segment");
        let tail = self.slots.back().expect("a slot");
        assert_eq!(
            tail.pos + (FRAME_HEADER_BYTES + tail.body_len as usize) as u64,
            active.len
        );
        assert!(self.pending.len() as u64 <= active.len);
        for seg in &self.segments[..self.segments.len() - 1] {
            assert_eq!(seg.file_len, seg.len, "a sealed segment holds only records");
        }
    }
}

#[cfg(test)]
#[path = "segment_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "prefill_tests.rs"]
mod prefill_tests;
