//! The recovery rules of [`StreamBuffer::open`](super::StreamBuffer::open)
//! (see the module doc of [`buffer`](super)): listing, scanning, cutting the
//! torn tail and deleting what is fully acked; before any of that, the
//! check that every encrypted segment still needed has its key.

use super::crypto::Keyring;
use super::format::{decode_acked, ACKED_FILE, SEALED_SEGMENT_EXTENSION, SEGMENT_EXTENSION};
use super::segment::{peek_header, Segment};
use super::{BufferError, BufferOptions, Recovery};
use std::collections::VecDeque;
use std::io;
use std::path::{Path, PathBuf};
use strata_segment_log::fs::Fs;
use strata_segment_log::names;
use strata_segment_log::prefill::zero_tail;

/// A segment file found in the buffer directory.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct SegmentFile {
    pub first_seq: u64,
    /// An `.ebuf` file (plaintext `.buf` sorts first at the same seq).
    pub encrypted: bool,
    pub path: PathBuf,
}

/// Whether the segment `files[i]` is fully acked without reading it: a later
/// segment starts at or below `acked_seq` (a crash came between persisting
/// the ack and deleting).
fn acked_by_successor(files: &[SegmentFile], i: usize, acked_seq: u64) -> bool {
    files
        .get(i + 1)
        .is_some_and(|next| next.first_seq <= acked_seq)
}

/// Fails, before anything in the directory is changed, when an encrypted
/// segment holding records not yet acked was written with a key that is not
/// in `keys` (or no key is configured). Segments whose header is torn or
/// damaged are left to the recovery rules; fully acked ones need no key,
/// since recovery deletes them.
pub(super) fn check_keys(
    fs: &dyn Fs,
    files: &[SegmentFile],
    acked_seq: u64,
    keys: Option<&Keyring>,
    batch_bytes_max: usize,
) -> Result<(), BufferError> {
    for (i, file) in files.iter().enumerate().filter(|(_, f)| f.encrypted) {
        let Some(header) = peek_header(fs, &file.path)? else {
            continue;
        };
        if keys.is_some_and(|k| k.find(header.fingerprint).is_some())
            || acked_by_successor(files, i, acked_seq)
        {
            continue;
        }
        let scan = Segment::open_and_scan(
            fs,
            file.path.clone(),
            file.first_seq,
            batch_bytes_max,
            true,
            keys,
        )?;
        if scan.segment.is_empty() || scan.segment.end_seq <= acked_seq {
            continue;
        }
        return Err(match keys {
            None => BufferError::NoKey {
                path: file.path.clone(),
                segment_key: header.fingerprint,
            },
            Some(keys) => BufferError::WrongKey {
                path: file.path.clone(),
                segment_key: header.fingerprint,
                configured: keys.fingerprints(),
            },
        });
    }
    Ok(())
}

/// Scans the segment files (sorted by first seq) and applies the recovery
/// rules of the module doc.
pub(super) fn recover_segments(
    fs: &dyn Fs,
    files: &[SegmentFile],
    acked_seq: u64,
    opts: &BufferOptions,
    keys: Option<&Keyring>,
    recovery: &mut Recovery,
) -> Result<VecDeque<Segment>, BufferError> {
    let mut segments = VecDeque::new();
    let mut prev_end: Option<(u64, &Path)> = None;
    for (i, file) in files.iter().enumerate() {
        let (first_seq, path) = (&file.first_seq, &file.path);
        let is_last = i + 1 == files.len();
        if acked_by_successor(files, i, acked_seq) {
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
        let mut scan = Segment::open_and_scan(
            fs,
            path.clone(),
            *first_seq,
            opts.batch_bytes_max,
            file.encrypted,
            keys,
        )?;
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
            // Zeros after the last frame are the tail filled ahead of
            // writes (`strata_segment_log::prefill`), not damage: cut them
            // too, quietly.
            let zeros = zero_tail(&*scan.segment.file, offset, scan.file_len)
                .map_err(|e| BufferError::io("read segment", path, e))?;
            if !zeros {
                tracing::warn!(
                    path = %path.display(), offset, %reason,
                    cut_bytes = scan.file_len - offset,
                    "edge buffer: cutting the torn tail of the last segment"
                );
                recovery.truncated_bytes = scan.file_len - offset;
            }
            scan.segment.truncate_to_valid()?;
        }
        let segment = scan.segment;
        prev_end = Some((segment.end_seq, path));
        if segment.is_empty() || segment.end_seq <= acked_seq {
            remove_if_exists(fs, path)?;
            continue;
        }
        recovery.batches += scan.batches;
        recovery.records += segment.records();
        segments.push_back(segment);
    }
    Ok(segments)
}

/// Segment files in `dir`, plaintext and encrypted, sorted by first seq.
/// Other files are ignored.
pub(super) fn list_segments(fs: &dyn Fs, dir: &Path) -> Result<Vec<SegmentFile>, BufferError> {
    let listing = names::list_segments(fs, dir, SEGMENT_EXTENSION)
        .map_err(|e| BufferError::io("list buffer directory", dir, e))?;
    let mut files: Vec<SegmentFile> = listing
        .segments
        .into_iter()
        .map(|(first_seq, path)| SegmentFile {
            first_seq,
            encrypted: false,
            path,
        })
        .collect();
    for name in listing.other_files.iter().filter(|n| *n != ACKED_FILE) {
        let sealed = name
            .to_str()
            .and_then(|n| names::parse_segment_file_name(n, SEALED_SEGMENT_EXTENSION));
        match sealed {
            Some(first_seq) => files.push(SegmentFile {
                first_seq,
                encrypted: true,
                path: dir.join(name),
            }),
            None => {
                tracing::debug!(file = ?dir.join(name), "edge buffer: ignoring unknown file");
            }
        }
    }
    files.sort_unstable();
    Ok(files)
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
