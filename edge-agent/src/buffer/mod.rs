//! The edge agent's durable, segmented, checksummed buffer: one per stream.
//!
//! Producers' record batches (opaque, already verified bytes) are appended
//! here and acknowledged once fsynced; the forwarder reads durable batches in
//! order, sends them to the core and calls [`StreamBuffer::ack`] when the core
//! has them. [`StreamBuffer`] is a plain synchronous struct doing its file
//! I/O through the file layer of `strata-segment-log` (`std::fs` in
//! production, a simulated file system that can crash in the model tests);
//! [`BufferHandle`] (in `driver.rs`) wraps it with an async group-commit
//! writer.
//!
//! # Sequence numbers
//!
//! Every record gets a dense `u64` seq (its "buffer position"): a batch of `n`
//! records appended when `next_seq == s` occupies `[s, s + n)`. The core
//! deduplicates by (producer id, seq), so a seq is never reused: not across
//! restarts, not after every segment was deleted. `next_seq` after a reopen is
//! `max(acked_seq, end of the last valid batch, first seq of any segment file
//! seen)`. The forwarder never sees a batch before it is durable, so seqs that
//! a crash takes back (the torn, never-synced tail) were never forwarded.
//! Seqs may have gaps (an operator removed a corrupt segment); they are
//! strictly increasing.
//!
//! # On-disk format (version 1)
//!
//! One directory per stream (its parent directory fsynced at every open,
//! not only when it is created, so that its name survives a crash even if
//! an earlier open stopped between the two) holding:
//!
//! * Segment files `<first seq, 20 decimal digits>.buf`, e.g.
//!   `00000000000000004096.buf`; the name sorts like the seq. A segment is a
//!   sequence of frames, nothing else (no file header; a future format uses a
//!   new extension):
//!
//!   ```text
//!   frame = [u32 LE body_len][u32 LE crc32c(body)][body]
//!   body  = [u64 LE first_seq][u32 LE records][i64 LE max_timestamp_ms][batch bytes]
//!   ```
//!
//!   Frames in a segment are contiguous in seq: the first starts at the seq in
//!   the file name, each next one at the previous `first_seq + records`.
//!   `records >= 1`; `body_len - 20 <= batch_bytes_max`, so a bigger length
//!   read back is corruption, not an allocation. Only the last segment is
//!   appended to; it is sealed (fdatasynced) before the next one is created.
//! * `acked`: 12 bytes, `[u64 LE acked_seq][u32 LE crc32c of those 8 bytes]`,
//!   replaced atomically (write `acked.tmp`, fsync, rename, fsync the
//!   directory) before any segment is deleted. Missing means 0.
//!
//! # Encrypted segments (`encryption_key_file`)
//!
//! With a key configured, new segments are `<first seq>.ebuf` files (see
//! `crypto.rs` for keys, key derivation and nonces):
//!
//! ```text
//! file   = header frame*
//! header = [8 "STRATAEB"][u32 LE version = 1][8 key fingerprint][16 salt]
//!          [u32 LE crc32c of the 36 bytes before]
//! frame  = [u32 LE body_len][u32 LE crc32c(body)][body]
//! body   = [u64 LE first_seq][u32 LE records][i64 LE max_timestamp_ms]
//!          [u64 LE nonce counter][AES-256-GCM ciphertext of the batch][16-byte tag]
//! ```
//!
//! The body header stays in clear (it is the associated data), and the
//! checksum covers the sealed bytes, so the recovery rules below apply
//! unchanged and need no key; a batch is authenticated and decrypted when
//! read. Plaintext `.buf` segments are written exactly as without
//! encryption. One directory may hold both: turning encryption on keeps
//! reading the plaintext segments and writes new ones encrypted (the last
//! plaintext segment is not appended to again); turning it off (or rotating
//! the key) keeps reading encrypted segments whose key is still configured
//! (as `encryption_previous_key_files`). An encrypted segment is appended to
//! only by the process that created it: a reopened buffer starts a new one.
//!
//! Before anything is changed, `open` checks that every encrypted segment
//! still holding unacked records has its key configured (by the fingerprint
//! in its header) and otherwise fails naming the file and the fingerprints.
//! Fully acked encrypted segments need no key: they are deleted as usual.
//!
//! # Durability
//!
//! [`StreamBuffer::sync`] fdatasyncs the active segment and, when a segment
//! file was created since the last sync, fsyncs the directory; only then does
//! `durable_seq` move to `next_seq`. Sealed segments were fdatasynced when
//! sealed. To fsync without holding the caller's lock, split `sync` into
//! [`StreamBuffer::begin_sync`] (under the lock: snapshot the target seq and
//! the file handles), [`SyncTicket::run`] (outside the lock: the fsyncs) and
//! [`StreamBuffer::finish_sync`] (under the lock: advance `durable_seq`). At
//! most one ticket is in flight.
//!
//! A failed fsync leaves the disk's state unknown past `durable_seq` (the
//! kernel may have dropped the dirty pages): the records appended since are
//! refused to their producers with a retryable error, and the buffer takes
//! nothing more until it has cut them and reopened itself from disk
//! ([`StreamBuffer::recover`], paced; see `reopen.rs`). Nothing is ever
//! acknowledged on an unknown state.
//!
//! # Recovery ([`StreamBuffer::open`])
//!
//! * Every frame of every segment not already fully acked is validated
//!   (length bound, checksum, seq continuity).
//! * The last segment is cut (truncate + fdatasync) at its first invalid
//!   frame: a crash tears only unsynced tails, and data after a bad frame in
//!   the last segment cannot be told apart from such a tail.
//! * An invalid frame in any other segment is an error naming the file and
//!   byte offset. Sealed segments are never written after their fsync, so this
//!   is media corruption and an operator decides: truncating the file at that
//!   offset, or moving it out of the directory, makes the buffer open again
//!   with a gap in seqs (no seq is reused) and only that segment's tail lost.
//!   Silently dropping it could lose data a device will never be able to send.
//! * Segments entirely below `acked_seq` (a crash between persisting the ack
//!   and deleting) and an empty last segment are deleted.
//! * The forwarder acks lazily ([`StreamBuffer::ack_lazily`]): the `acked`
//!   file is written at most every [`ACK_PERSIST_INTERVAL`], while segments
//!   below the ack go at once. After a crash the buffer resumes from the
//!   persisted position or the first segment left, whichever is later, and
//!   forwards again what the core already has (dropped there by producer id
//!   and position).
//! * The surviving last segment and the directory are fsynced, so everything
//!   recovered is durable and `durable_seq == next_seq`.
//!
//! # Space
//!
//! `buffered_bytes` is what the segment files occupy on disk, which is what
//! `buffer_bytes_max` bounds; acked data counts until its segment is deleted
//! (the active segment is deleted only once sealed, to avoid creating a file
//! per catch-up). When an append would exceed the bound, `reject` refuses it
//! with nothing changed; `drop_oldest` deletes the oldest whole durable sealed
//! segments, advancing `acked_seq` past them and counting their unacked records
//! as dropped.

mod ack;
mod crypto;
mod driver;
mod error;
mod format;
mod options;
mod recovery;
mod reopen;
mod segment;

#[cfg(test)]
mod driver_tests;
#[cfg(test)]
mod durable_dir_tests;
#[cfg(test)]
mod encryption_tests;
#[cfg(test)]
mod fixture_tests;
#[cfg(test)]
mod model_tests;
#[cfg(test)]
mod prefill_tests;
#[cfg(test)]
mod reopen_tests;
#[cfg(test)]
mod tests;

pub use ack::ACK_PERSIST_INTERVAL;
pub use crypto::{BufferKey, Fingerprint, KeyError, KeyFormatError, Keyring};
pub use driver::{BufferHandle, DriverOptions};
pub use error::BufferError;
pub use options::{BufferOptions, FullPolicy};
pub use reopen::{REOPEN_BACKOFF_MAX, REOPEN_BACKOFF_MIN};

use format::{ACKED_TMP_FILE, SEGMENT_HEADER_BYTES};
use recovery::{check_keys, list_segments, read_acked, recover_segments, remove_if_exists};
use reopen::Health;
use segment::{frame_bytes, segment_path, sync_dir, sync_segment, Segment};
use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;
use strata_segment_log::fs::{create_dir_all_durably, FileRef, Fs, StdFs};

/// One batch as read back for forwarding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BufferedBatch {
    pub first_seq: u64,
    pub records: u32,
    pub max_timestamp_ms: i64,
    pub batch: bytes::Bytes,
}

/// Result of a successful append.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    /// Seq of the batch's first record.
    pub first_seq: u64,
    /// Unforwarded records the `drop_oldest` policy deleted to make room.
    pub dropped_records: u64,
}

/// What [`StreamBuffer::open`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Recovery {
    /// Segment files kept.
    pub segments: usize,
    /// Valid batches in them (including acked ones not yet deleted).
    pub batches: u64,
    /// Records in those batches.
    pub records: u64,
    /// Bytes cut off the torn or corrupt tail of the last segment.
    pub truncated_bytes: u64,
}

/// A snapshot of a buffer's positions and counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BufferStats {
    pub acked_seq: u64,
    pub durable_seq: u64,
    pub next_seq: u64,
    pub buffered_bytes: u64,
    pub buffered_records: u64,
    /// Records deleted unforwarded by `drop_oldest` since open.
    pub dropped_records: u64,
    /// Segment data and directory fsyncs since open (not counting those of
    /// the recovery and of `acked` writes).
    pub fsyncs: u64,
    /// Completed syncs that made new records durable since open: one per
    /// group of appends the driver acknowledged.
    pub commits: u64,
    /// Reopens after an I/O failure since open (`reopen.rs`).
    pub reopens: u64,
}

/// The fsyncs making everything appended before [`StreamBuffer::begin_sync`]
/// durable; run it without holding the buffer's lock, then hand it to
/// [`StreamBuffer::finish_sync`].
#[must_use = "a sync ticket must be run and passed to finish_sync"]
#[derive(Debug)]
pub struct SyncTicket {
    segment: Option<(FileRef, PathBuf)>,
    dir: Option<(Arc<dyn Fs>, PathBuf)>,
    target_seq: u64,
    /// fsyncs `run` performed, for the stats.
    fsyncs: AtomicU64,
}

impl SyncTicket {
    /// `durable_seq` once this ticket is finished.
    pub fn target_seq(&self) -> u64 {
        self.target_seq
    }

    /// Performs the fsyncs (fdatasync of the active segment, fsync of the
    /// directory when a segment file was created).
    pub fn run(&self) -> Result<(), BufferError> {
        if let Some((file, path)) = &self.segment {
            sync_segment(&**file, path)?;
            self.fsyncs.fetch_add(1, Ordering::Relaxed);
        }
        if let Some((fs, path)) = &self.dir {
            sync_dir(&**fs, path)?;
            self.fsyncs.fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    }
}

/// The durable buffer of one stream. See the module doc for format and rules.
#[derive(Debug)]
pub struct StreamBuffer {
    fs: Arc<dyn Fs>,
    dir: PathBuf,
    opts: BufferOptions,
    /// Ordered by seq; the last one is appended to when `active`.
    segments: VecDeque<Segment>,
    active: bool,
    acked_seq: u64,
    /// What the `acked` file holds, as far as this process wrote it (lazy
    /// acks move `acked_seq` ahead of it: [`Self::ack_lazily`]).
    acked_persisted: u64,
    /// When the `acked` file was last written.
    acked_persisted_at: Instant,
    durable_seq: u64,
    next_seq: u64,
    dropped_records: u64,
    fsyncs: u64,
    commits: u64,
    reopens: u64,
    /// A segment file was created since the directory was last fsynced.
    dir_dirty: bool,
    /// Frame bytes appended since the last sync began: the group the next
    /// sync commits, which decides whether to zero-fill ahead.
    group_bytes: u64,
    sync_in_flight: bool,
    health: Health,
    /// Reused frame encoding buffer.
    scratch: Vec<u8>,
    /// The configured keys; new segments are encrypted when it has a
    /// current key.
    keys: Option<Arc<Keyring>>,
}

/// Frames bigger than this do not keep their encoding buffer around.
const SCRATCH_KEEP_BYTES_MAX: usize = 1024 * 1024;

impl StreamBuffer {
    /// Opens (creating if needed) the buffer in `dir` and recovers it; see
    /// the module doc for the rules. Never panics on bad bytes on disk.
    pub fn open(dir: &Path, opts: BufferOptions) -> Result<(Self, Recovery), BufferError> {
        Self::open_on(StdFs::shared(), dir, opts)
    }

    /// [`open`](Self::open) on another file system (tests crash a simulated
    /// one). The key files, if any, are read from the real file system.
    pub fn open_on(
        fs: Arc<dyn Fs>,
        dir: &Path,
        opts: BufferOptions,
    ) -> Result<(Self, Recovery), BufferError> {
        opts.validate()?;
        let keys = Keyring::load(
            opts.encryption_key_file.as_deref(),
            &opts.encryption_previous_key_files,
        )?;
        Self::open_with_keys(fs, dir, opts, keys.map(Arc::new))
    }

    /// [`open_on`](Self::open_on) with the keys given rather than read from
    /// `opts`' key files.
    pub fn open_with_keys(
        fs: Arc<dyn Fs>,
        dir: &Path,
        opts: BufferOptions,
        keys: Option<Arc<Keyring>>,
    ) -> Result<(Self, Recovery), BufferError> {
        opts.validate()?;
        create_dir_all_durably(&*fs, dir)
            .map_err(|e| BufferError::io("create buffer directory", dir, e))?;
        // Also when the directory was there: an earlier open may have failed
        // (or its process died) between the mkdir and this fsync.
        if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
            sync_dir(&*fs, parent)?;
        }
        let acked_seq = read_acked(&*fs, dir)?;
        let files = list_segments(&*fs, dir)?;
        // Before anything changes: a missing or wrong key leaves it as it is.
        check_keys(
            &*fs,
            &files,
            acked_seq,
            keys.as_deref(),
            opts.batch_bytes_max,
        )?;
        remove_if_exists(&*fs, &dir.join(ACKED_TMP_FILE))?;
        let mut recovery = Recovery::default();
        let segments = recover_segments(
            &*fs,
            &files,
            acked_seq,
            &opts,
            keys.as_deref(),
            &mut recovery,
        )?;
        let next_seq = [
            Some(acked_seq),
            segments.back().map(|s| s.end_seq),
            files.last().map(|f| f.first_seq),
        ]
        .into_iter()
        .flatten()
        .max()
        .unwrap_or(0);
        // A crash of the previous process (not of the OS) leaves unsynced
        // frames in the page cache: make all that is recovered durable.
        if let Some(last) = segments.back() {
            last.sync_data()?;
        }
        sync_dir(&*fs, dir)?;
        recovery.segments = segments.len();
        let encrypting = keys.as_ref().and_then(|k| k.current.as_ref());
        // A plaintext segment is not appended to once encryption is on, nor
        // an encrypted one by a later process (its nonce counter restarts).
        let active = segments
            .back()
            .is_some_and(|s| s.end_seq == next_seq && s.sealing.is_plain() && encrypting.is_none());
        let encryption = encrypting.map(|k| k.fingerprint().to_string());
        let buffer = Self {
            fs,
            dir: dir.to_owned(),
            active,
            segments,
            opts,
            acked_seq,
            acked_persisted: acked_seq,
            acked_persisted_at: Instant::now(),
            durable_seq: next_seq,
            next_seq,
            dropped_records: 0,
            fsyncs: 0,
            commits: 0,
            reopens: 0,
            dir_dirty: false,
            group_bytes: 0,
            sync_in_flight: false,
            health: Health::Usable,
            scratch: Vec::new(),
            keys,
        };
        tracing::info!(
            dir = %dir.display(),
            encryption_key = encryption.as_deref().unwrap_or("none"),
            segments = recovery.segments,
            batches = recovery.batches,
            records = recovery.records,
            truncated_bytes = recovery.truncated_bytes,
            acked_seq,
            next_seq,
            "edge buffer opened"
        );
        Ok((buffer, recovery))
    }

    /// Appends one batch of `records` records; it is durable (and readable by
    /// the forwarder) only after the next completed sync. Refused
    /// ([`BufferError::Recovering`]) after an I/O failure until
    /// [`recover`](Self::recover) reopened the buffer.
    pub fn append(
        &mut self,
        records: u32,
        max_timestamp_ms: i64,
        batch: &[u8],
    ) -> Result<Appended, BufferError> {
        self.check_usable()?;
        if records == 0 {
            return Err(BufferError::NoRecords);
        }
        if batch.len() > self.opts.batch_bytes_max {
            return Err(BufferError::BatchTooLarge {
                batch_bytes: batch.len(),
                batch_bytes_max: self.opts.batch_bytes_max,
            });
        }
        let frame_bytes = frame_bytes(batch.len(), self.encrypting().is_some());
        self.seal_if_full(frame_bytes)?;
        // A new encrypted segment starts with its header.
        let header = match self.encrypting() {
            Some(_) if !self.active => SEGMENT_HEADER_BYTES as u64,
            _ => 0,
        };
        let dropped_records = self.make_room(frame_bytes + header)?;
        let first_seq = self.write_frame(records, max_timestamp_ms, batch)?;
        Ok(Appended {
            first_seq,
            dropped_records,
        })
    }

    /// Makes everything appended so far durable: `durable_seq() == next_seq()`
    /// afterwards.
    pub fn sync(&mut self) -> Result<(), BufferError> {
        let ticket = self.begin_sync()?;
        let outcome = ticket.run();
        self.finish_sync(ticket, outcome)
    }

    /// First half of [`sync`](Self::sync): captures what must be fsynced.
    pub fn begin_sync(&mut self) -> Result<SyncTicket, BufferError> {
        self.check_usable()?;
        assert!(!self.sync_in_flight, "at most one sync ticket in flight");
        // Sealed segments were fdatasynced when sealed; only the active one
        // can hold unsynced frames.
        let group_bytes = std::mem::take(&mut self.group_bytes);
        // Zero-filled bytes count against the buffer's disk budget too.
        let room = self
            .opts
            .buffer_bytes_max
            .saturating_sub(self.buffered_bytes());
        let segment_bytes_max = self.opts.segment_bytes_max;
        let prefill = self.opts.prefill;
        let durable_seq = self.durable_seq;
        let segment = match self.segments.back_mut() {
            Some(last) if self.active && last.end_seq > durable_seq => {
                let limit = segment_bytes_max.min(last.len_bytes.saturating_add(room));
                if let Err(err) = last.fill_ahead(&prefill, group_bytes, limit) {
                    return Err(self.must_reopen(err.to_string()));
                }
                Some((Arc::clone(&last.file), last.path.clone()))
            }
            _ => None,
        };
        let dir =
            std::mem::take(&mut self.dir_dirty).then(|| (Arc::clone(&self.fs), self.dir.clone()));
        self.sync_in_flight = true;
        Ok(SyncTicket {
            segment,
            dir,
            target_seq: self.next_seq,
            fsyncs: AtomicU64::new(0),
        })
    }

    /// Last half of [`sync`](Self::sync): `outcome` is what
    /// [`SyncTicket::run`] returned. A failed fsync refuses every record
    /// not yet durable ([`BufferError::NotStored`]) and makes the buffer
    /// reopen before it takes more (`reopen.rs`).
    pub fn finish_sync(
        &mut self,
        ticket: SyncTicket,
        outcome: Result<(), BufferError>,
    ) -> Result<(), BufferError> {
        assert!(self.sync_in_flight, "finish_sync without begin_sync");
        self.sync_in_flight = false;
        self.fsyncs += ticket.fsyncs.load(Ordering::Relaxed);
        if let Err(err) = outcome {
            return Err(self.must_reopen(err.to_string()));
        }
        assert!(ticket.target_seq <= self.next_seq);
        if ticket.target_seq > self.durable_seq {
            self.durable_seq = ticket.target_seq;
            self.commits += 1;
        }
        Ok(())
    }

    /// Durable batches in seq order, starting with the one holding
    /// `max(from_seq, acked_seq)` (or the first one after it, should that seq
    /// fall in a gap), up to `max_bytes` of batch bytes but at least one batch
    /// when any durable data is there. Never returns data at or beyond
    /// `durable_seq`; every batch's checksum is verified on the way out.
    pub fn read_durable(
        &self,
        from_seq: u64,
        max_bytes: usize,
    ) -> Result<Vec<BufferedBatch>, BufferError> {
        let start = from_seq.max(self.acked_seq);
        let mut out = Vec::new();
        let mut bytes = 0;
        let first = self.segments.partition_point(|s| s.end_seq <= start);
        for segment in self.segments.iter().skip(first) {
            let (mut seq, mut offset) = segment.locate(start);
            while offset < segment.len_bytes && seq < self.durable_seq {
                let (prefix, prefix_bytes) =
                    segment.read_prefix_at(offset, self.opts.batch_bytes_max)?;
                if prefix.first_seq != seq {
                    return Err(segment.corrupt(
                        offset,
                        format!(
                            "batch starts at seq {}, expected seq {seq}",
                            prefix.first_seq
                        ),
                    ));
                }
                let end_seq = prefix.end_seq().unwrap_or(u64::MAX);
                if end_seq > start {
                    if !out.is_empty() && bytes + segment.plain_len(&prefix) > max_bytes {
                        return Ok(out);
                    }
                    let batch = segment.read_batch_at(offset, &prefix, &prefix_bytes, seq)?;
                    assert!(
                        end_seq <= self.durable_seq,
                        "durable_seq is on a batch boundary"
                    );
                    bytes += batch.len();
                    out.push(BufferedBatch {
                        first_seq: seq,
                        records: prefix.records,
                        max_timestamp_ms: prefix.max_timestamp_ms,
                        batch,
                    });
                }
                seq = end_seq;
                offset += prefix.frame_len();
            }
        }
        Ok(out)
    }

    pub fn acked_seq(&self) -> u64 {
        self.acked_seq
    }

    pub fn durable_seq(&self) -> u64 {
        self.durable_seq
    }

    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// Bytes the segment files occupy (what `buffer_bytes_max` bounds).
    pub fn buffered_bytes(&self) -> u64 {
        self.segments.iter().map(|s| s.len_bytes).sum()
    }

    /// Records on disk not yet acked.
    pub fn buffered_records(&self) -> u64 {
        self.segments
            .iter()
            .map(|s| s.end_seq.saturating_sub(s.first_seq.max(self.acked_seq)))
            .sum()
    }

    pub fn dropped_records(&self) -> u64 {
        self.dropped_records
    }

    pub fn stats(&self) -> BufferStats {
        BufferStats {
            acked_seq: self.acked_seq,
            durable_seq: self.durable_seq,
            next_seq: self.next_seq,
            buffered_bytes: self.buffered_bytes(),
            buffered_records: self.buffered_records(),
            dropped_records: self.dropped_records,
            fsyncs: self.fsyncs,
            commits: self.commits,
            reopens: self.reopens,
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The key new segments are encrypted with, if any.
    fn encrypting(&self) -> Option<&BufferKey> {
        self.keys.as_ref().and_then(|k| k.current.as_ref())
    }

    /// Seals the active segment when `frame_bytes` more would overflow it.
    fn seal_if_full(&mut self, frame_bytes: u64) -> Result<(), BufferError> {
        let last = match self.segments.back() {
            Some(last) if self.active => last,
            _ => return Ok(()),
        };
        if last.is_empty() || last.len_bytes + frame_bytes <= self.opts.segment_bytes_max {
            return Ok(());
        }
        // Sealed segments hold only frames: cut the zeros filled ahead, and
        // make the cut durable before a later segment can be (recovery
        // refuses anything but frames in a segment that is not the last).
        let cut = self
            .segments
            .back_mut()
            .expect("checked above")
            .cut_zero_tail();
        let cut = match cut {
            Ok(cut) => cut,
            Err(err) => return Err(self.must_reopen(err.to_string())),
        };
        let last = self.segments.back().expect("checked above");
        if last.end_seq > self.durable_seq || cut {
            if let Err(err) = last.sync_data() {
                return Err(self.must_reopen(err.to_string()));
            }
            self.fsyncs += 1;
        }
        self.active = false;
        if last.end_seq <= self.acked_seq {
            let segment = self.segments.pop_back().expect("last exists");
            remove_segment_file(&*self.fs, &segment);
        }
        Ok(())
    }

    /// Frees room for `frame_bytes` per the full policy; returns the records
    /// dropped. On `Err` nothing changed.
    fn make_room(&mut self, frame_bytes: u64) -> Result<u64, BufferError> {
        let max = self.opts.buffer_bytes_max;
        let buffered = self.buffered_bytes();
        if buffered + frame_bytes <= max {
            return Ok(0);
        }
        let full = BufferError::Full {
            buffered_bytes: buffered,
            frame_bytes,
            buffer_bytes_max: max,
        };
        if self.opts.full_policy == FullPolicy::Reject {
            return Err(full);
        }
        // Only sealed, durable segments: dropping must not move acked_seq past
        // durable_seq, and producers of unsynced frames are still waiting.
        let sealed = self.segments.len() - usize::from(self.active);
        let mut freed = 0;
        let mut count = 0;
        for segment in self.segments.iter().take(sealed) {
            if buffered - freed + frame_bytes <= max || segment.end_seq > self.durable_seq {
                break;
            }
            freed += segment.len_bytes;
            count += 1;
        }
        if buffered - freed + frame_bytes > max {
            return Err(full);
        }
        let new_acked = self.segments[count - 1].end_seq.max(self.acked_seq);
        self.persist_acked(new_acked)?;
        let mut dropped = 0;
        for segment in self.segments.drain(..count) {
            dropped += segment
                .end_seq
                .saturating_sub(segment.first_seq.max(self.acked_seq));
            remove_segment_file(&*self.fs, &segment);
        }
        tracing::warn!(
            dir = %self.dir.display(),
            dropped_records = dropped,
            segments = count,
            freed_bytes = freed,
            acked_seq = new_acked,
            "edge buffer full: dropped the oldest unforwarded records (full_policy = drop_oldest)"
        );
        self.acked_seq = new_acked;
        self.dropped_records += dropped;
        Ok(dropped)
    }

    fn write_frame(
        &mut self,
        records: u32,
        max_timestamp_ms: i64,
        batch: &[u8],
    ) -> Result<u64, BufferError> {
        if !self.active {
            let segment = match self.encrypting() {
                Some(key) => {
                    let path = segment_path(&self.dir, self.next_seq, true);
                    Segment::create_sealed(&*self.fs, path, self.next_seq, key)?
                }
                None => {
                    let path = segment_path(&self.dir, self.next_seq, false);
                    Segment::create(&*self.fs, path, self.next_seq)?
                }
            };
            self.segments.push_back(segment);
            self.active = true;
            self.dir_dirty = true;
        }
        let first_seq = self.next_seq;
        let end_seq = first_seq
            .checked_add(u64::from(records))
            .expect("u64 seqs do not run out");
        let mut frame = std::mem::take(&mut self.scratch);
        let segment = self.segments.back_mut().expect("active segment exists");
        segment.encode_frame(&mut frame, first_seq, records, max_timestamp_ms, batch);
        let written = segment.file.write_all_at(&frame, segment.len_bytes);
        let frame_len = frame.len() as u64;
        if frame.capacity() <= SCRATCH_KEEP_BYTES_MAX {
            self.scratch = frame;
        }
        if let Err(source) = written {
            // Cut a partial frame so later frames stay contiguous; if even
            // that fails the file's tail is unknown.
            let err = BufferError::io("write segment", &segment.path, source);
            if let Err(cut) = segment.file.set_len(segment.len_bytes) {
                return Err(self.must_reopen(format!("{err}; then truncating it failed: {cut}")));
            }
            return Err(err);
        }
        segment.push_frame(first_seq, records, frame_len);
        self.group_bytes += frame_len;
        self.next_seq = end_seq;
        Ok(first_seq)
    }

    /// Asserts the internal invariants; tests call it after every step.
    #[cfg(test)]
    fn check_invariants(&self) {
        assert!(self.acked_seq <= self.durable_seq, "{:?}", self.stats());
        assert!(self.durable_seq <= self.next_seq, "{:?}", self.stats());
        for pair in self.segments.iter().collect::<Vec<_>>().windows(2) {
            assert!(pair[0].end_seq <= pair[1].first_seq, "segments overlap");
            assert!(!pair[0].is_empty(), "only the last segment may be empty");
            assert!(
                pair[0].end_seq > self.acked_seq,
                "fully acked sealed segment kept"
            );
        }
        for segment in &self.segments {
            assert!(segment.first_seq <= segment.end_seq);
            assert!(segment.end_seq <= self.next_seq);
        }
        let sealed = self.segments.len() - usize::from(self.active);
        for segment in self.segments.iter().take(sealed) {
            assert_eq!(
                segment.file_len, segment.len_bytes,
                "zeros in a sealed segment"
            );
        }
        if self.active {
            let last = self.segments.back().expect("active segment exists");
            assert_eq!(last.end_seq, self.next_seq);
            assert_eq!(last.sealing.is_plain(), self.encrypting().is_none());
        }
    }
}

/// Deletes a segment whose records are all acked. A failure only leaks disk
/// space until the next open, which deletes it again.
fn remove_segment_file(fs: &dyn Fs, segment: &Segment) {
    if let Err(err) = fs.remove_file(&segment.path) {
        tracing::warn!(path = %segment.path.display(), %err, "edge buffer: could not delete an acked segment");
    }
}
