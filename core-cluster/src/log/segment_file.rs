//! One segment file of a [`super::segment::SegmentLog`]: its handle and
//! length, and its recovery when the log is opened (scan every record, cut
//! the torn tail of the last segment, delete an emptied last segment). The
//! rules are those of the [`super::segment`] module documentation; the log
//! over many segments (ordering, gaps, appends) stays there.

use std::path::{Path, PathBuf};

use strata_segment_log::fs::{FileRef, Fs, OpenMode};

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
        tracing::warn!(
            path = %path.display(),
            pos,
            reason,
            cut_bytes = file_len - scan.valid_len,
            "cutting the torn tail of the last segment"
        );
        file.set_len(scan.valid_len)
            .map_err(io_err("truncate", &path))?;
        fsync_file(&*file, &path, false)?;
        *truncated_bytes += file_len - scan.valid_len;
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
    };
    Ok(Some((segment, scan.slots)))
}
