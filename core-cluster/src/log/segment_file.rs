//! One segment file of a [`super::segment::SegmentLog`]: its handle and
//! length, and its recovery when the log is opened (scan every record, cut
//! the torn tail of the last segment, delete an emptied last segment). The
//! rules are those of the [`super::segment`] module documentation; the log
//! over many segments (ordering, gaps, appends) stays there.

use std::path::{Path, PathBuf};

use strata_segment_log::fs::{FileRef, Fs, OpenMode};
use strata_segment_log::prefill::{zero_tail, Prefill};

use super::error::{io_err, LogError};
use super::frame::{fsync_dir, fsync_file, scan_segment, Slot};

/// What recovering a segment needs to know besides the file.
#[derive(Debug, Clone, Copy)]
pub(super) struct RecoverOptions {
    pub(super) record_bytes_max: usize,
    /// Records up to this index were made durable (see
    /// [`super::segment::SegmentLog::open_synced_in`]).
    pub(super) synced: Option<u64>,
}

/// An open segment file.
#[derive(Debug)]
pub(super) struct Segment {
    pub(super) first_index: u64,
    pub(super) path: PathBuf,
    pub(super) file: FileRef,
    /// Bytes of records in this segment, including the write buffer.
    pub(super) len: u64,
    /// Bytes in the file as last written: past `len` (once the buffer is
    /// flushed) only zeros, filled ahead of small group commits
    /// ([`strata_segment_log::prefill`]).
    pub(super) file_len: u64,
}

impl Segment {
    /// Zero-fills the file ahead of its records if `prefill` asks for it
    /// after a group of `group_bytes` (the write buffer already flushed),
    /// never past `limit`. Not synced: the group's fdatasync covers it.
    pub(super) fn fill_ahead(
        &mut self,
        prefill: &Prefill,
        group_bytes: u64,
        limit: u64,
    ) -> Result<(), LogError> {
        self.file_len = prefill
            .fill_after_group(&*self.file, self.len, group_bytes, self.file_len, limit)
            .map_err(io_err("cut a failed zero-fill of", &self.path))?;
        Ok(())
    }

    /// Cuts the zeros filled ahead (not synced; the write buffer already
    /// flushed): a sealed segment holds only records.
    pub(super) fn cut_zero_tail(&mut self) -> Result<(), LogError> {
        if self.file_len > self.len {
            self.file
                .set_len(self.len)
                .map_err(io_err("truncate", &self.path))?;
        }
        self.file_len = self.len;
        Ok(())
    }
}

/// Opens the segment at `path` in `dir` and scans it. An invalid record in
/// the last segment is a torn tail: the file is cut there and fsynced; an
/// emptied last segment is deleted (and `None` returned). In any other
/// segment, an invalid record or no records at all is an error, and so is an
/// invalid record in the last one whose index is at most `synced` (records
/// known durable: [`LogError::DurableCorrupt`]). Bytes cut are added to
/// `truncated_bytes`.
pub(super) fn recover_segment(
    fs: &dyn Fs,
    dir: &Path,
    first_index: u64,
    path: PathBuf,
    is_last: bool,
    opts: &RecoverOptions,
    truncated_bytes: &mut u64,
) -> Result<Option<(Segment, Vec<Slot>)>, LogError> {
    let file = fs
        .open(&path, OpenMode::Existing)
        .map_err(io_err("open", &path))?;
    let file_len = file.size().map_err(io_err("stat", &path))?;
    let scan = scan_segment(&*file, &path, first_index, file_len, opts.record_bytes_max)?;
    if let Some((pos, reason)) = scan.bad {
        if !is_last {
            return Err(LogError::Corrupt { path, pos, reason });
        }
        // The record that should start at `pos`: the next index in order.
        let index = first_index + scan.slots.len() as u64;
        if let Some(synced) = opts.synced.filter(|&synced| index <= synced) {
            return Err(LogError::DurableCorrupt {
                path,
                pos,
                index,
                synced,
                reason,
            });
        }
        // Zeros after the last record are the tail filled ahead of writes,
        // not damage: cut them too (the log fills again as it needs), but
        // quietly.
        let zeros = zero_tail(&*file, scan.valid_len, file_len).map_err(io_err("read", &path))?;
        if !zeros {
            tracing::warn!(
                path = %path.display(),
                pos,
                reason,
                cut_bytes = file_len - scan.valid_len,
                "cutting the torn tail of the last segment"
            );
            *truncated_bytes += file_len - scan.valid_len;
        }
        file.set_len(scan.valid_len)
            .map_err(io_err("truncate", &path))?;
        fsync_file(&*file, &path, false)?;
    }
    if scan.slots.is_empty() {
        if !is_last {
            return Err(LogError::Corrupt {
                path,
                pos: 0,
                reason: "segment holds no records".into(),
            });
        }
        drop(file);
        fs.remove_file(&path).map_err(io_err("remove", &path))?;
        fsync_dir(fs, dir)?;
        return Ok(None);
    }
    let segment = Segment {
        first_index,
        path,
        file,
        len: scan.valid_len,
        file_len: scan.valid_len,
    };
    Ok(Some((segment, scan.slots)))
}
