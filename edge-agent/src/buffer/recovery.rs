//! The recovery rules of [`StreamBuffer::open`](super::StreamBuffer::open)
//! (see the module doc of [`buffer`](super)): listing, scanning, cutting the
//! torn tail and deleting what is fully acked.

use super::format::{decode_acked, ACKED_FILE, SEGMENT_EXTENSION};
use super::segment::Segment;
use super::{BufferError, BufferOptions, Recovery};
use std::collections::VecDeque;
use std::io;
use std::path::{Path, PathBuf};
use strata_segment_log::fs::Fs;
use strata_segment_log::names;

/// Scans the segment files (sorted by first seq) and applies the recovery
/// rules of the module doc.
pub(super) fn recover_segments(
    fs: &dyn Fs,
    files: &[(u64, PathBuf)],
    acked_seq: u64,
    opts: &BufferOptions,
    recovery: &mut Recovery,
) -> Result<VecDeque<Segment>, BufferError> {
    let mut segments = VecDeque::new();
    let mut prev_end: Option<(u64, &Path)> = None;
    for (i, (first_seq, path)) in files.iter().enumerate() {
        let is_last = i + 1 == files.len();
        // A later segment starting at or below acked_seq proves this one is
        // fully acked: a crash came between persisting the ack and deleting.
        if !is_last && files[i + 1].0 <= acked_seq {
            remove_if_exists(fs, path)?;
            continue;
        }
        if let Some((end, prev)) = prev_end {
            if *first_seq < end {
                return Err(BufferError::Corrupt {
                    path: path.clone(),
                    offset: 0,
                    reason: format!(
                        "segment starts at seq {first_seq} but {} ends at seq {end}",
                        prev.display()
                    ),
                });
            }
        }
        let scan = Segment::open_and_scan(fs, path.clone(), *first_seq, opts.batch_bytes_max)?;
        if let Some((offset, reason)) = scan.invalid {
            if !is_last {
                return Err(BufferError::Corrupt {
                    path: path.clone(),
                    offset,
                    reason: format!(
                        "{reason}. This sealed segment was fsynced and never written again, so \
                         this is media corruption: truncate the file to {offset} bytes or move it \
                         out of the buffer directory to continue, losing its records from there on"
                    ),
                });
            }
            tracing::warn!(
                path = %path.display(), offset, %reason,
                cut_bytes = scan.file_len - offset,
                "edge buffer: cutting the torn tail of the last segment"
            );
            scan.segment.truncate_to_valid()?;
            recovery.truncated_bytes = scan.file_len - offset;
        }
        let segment = scan.segment;
        prev_end = Some((segment.end_seq, path));
        if segment.len_bytes == 0 || segment.end_seq <= acked_seq {
            remove_if_exists(fs, path)?;
            continue;
        }
        recovery.batches += scan.batches;
        recovery.records += segment.records();
        segments.push_back(segment);
    }
    Ok(segments)
}

/// Segment files in `dir`, sorted by first seq. Other files are ignored.
pub(super) fn list_segments(fs: &dyn Fs, dir: &Path) -> Result<Vec<(u64, PathBuf)>, BufferError> {
    let listing = names::list_segments(fs, dir, SEGMENT_EXTENSION)
        .map_err(|e| BufferError::io("list buffer directory", dir, e))?;
    for name in listing.other_files.iter().filter(|n| *n != ACKED_FILE) {
        tracing::debug!(file = ?dir.join(name), "edge buffer: ignoring unknown file");
    }
    Ok(listing.segments)
}

pub(super) fn read_acked(fs: &dyn Fs, dir: &Path) -> Result<u64, BufferError> {
    let path = dir.join(ACKED_FILE);
    match fs.read(&path) {
        Ok(bytes) => decode_acked(&bytes).map_err(|reason| BufferError::Corrupt {
            path,
            offset: 0,
            reason: reason.to_string(),
        }),
        Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(0),
        Err(err) => Err(BufferError::io("read", &path, err)),
    }
}

pub(super) fn remove_if_exists(fs: &dyn Fs, path: &Path) -> Result<(), BufferError> {
    match fs.remove_file(path) {
        Err(err) if err.kind() != io::ErrorKind::NotFound => {
            Err(BufferError::io("remove", path, err))
        }
        _ => Ok(()),
    }
}
