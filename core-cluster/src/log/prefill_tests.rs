//! Zero-filling the active segment ahead of small group commits
//! (`strata_segment_log::prefill`): zeros past the last record of the
//! active segment only, sealed segments exactly their records, a quiet cut
//! on reopen, and truncation that leaves no stale bytes behind. The crash
//! models (`segment_tests.rs`, `raft/log_store_crash_tests.rs`) run with it
//! on.

use std::path::{Path, PathBuf};

use strata_segment_log::prefill::Prefill;

use super::*;

fn opts(segment_bytes_max: u64) -> SegmentLogOptions {
    SegmentLogOptions {
        segment_bytes_max,
        ..SegmentLogOptions::default()
    }
}

fn payload(index: u64, len: usize) -> Vec<u8> {
    vec![index as u8 | 1; len]
}

/// Appends `indexes` one sync each (small groups).
fn append_synced(log: &mut SegmentLog, indexes: std::ops::RangeInclusive<u64>, len: usize) {
    for i in indexes {
        log.append(1, 1, i, 0, &payload(i, len)).unwrap();
        log.sync().unwrap();
    }
    log.check_invariants();
}

fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    out.sort();
    out
}

fn size(path: &Path) -> u64 {
    std::fs::metadata(path).unwrap().len()
}

fn assert_reads(log: &SegmentLog, indexes: std::ops::RangeInclusive<u64>, len: usize) {
    for i in indexes {
        let rec = log
            .read(i)
            .unwrap()
            .unwrap_or_else(|| panic!("{i} missing"));
        assert_eq!(
            rec.payload.as_ref(),
            payload(i, len).as_slice(),
            "index {i}"
        );
    }
}

#[test]
fn prefill_small_groups_write_into_zeros_and_reopen_cuts_them_quietly() {
    let dir = tempfile::tempdir().unwrap();
    let (mut log, _) = SegmentLog::open(dir.path(), opts(128 << 20)).unwrap();
    append_synced(&mut log, 1..=1, 100);
    let seg = &files(dir.path())[0];
    // A young segment gets as many zeros ahead as it holds.
    assert_eq!(size(seg), 2 * log.bytes());
    append_synced(&mut log, 2..=600, 4000);
    // A grown one up to a chunk; past the records only zeros.
    let (data, filled) = (log.bytes(), size(seg));
    assert!(filled > data && filled - data <= Prefill::DEFAULT.chunk_bytes);
    let bytes = std::fs::read(seg).unwrap();
    assert!(bytes[data as usize..].iter().all(|&b| b == 0));
    drop(log);

    let (log, recovery) = SegmentLog::open(dir.path(), opts(128 << 20)).unwrap();
    assert_eq!((recovery.records, recovery.truncated_bytes), (600, 0));
    assert_reads(&log, 1..=1, 100);
    assert_reads(&log, 2..=600, 4000);
    assert_eq!(size(seg), log.bytes());
}

#[test]
fn prefill_skips_large_groups() {
    let dir = tempfile::tempdir().unwrap();
    let (mut log, _) = SegmentLog::open(dir.path(), opts(128 << 20)).unwrap();
    for i in 1..=20 {
        log.append(1, 1, i, 0, &payload(i, 4000)).unwrap();
    }
    log.sync().unwrap();
    assert_eq!(size(&files(dir.path())[0]), log.bytes());
}

#[test]
fn prefill_sealed_segments_hold_only_records() {
    let dir = tempfile::tempdir().unwrap();
    let (mut log, _) = SegmentLog::open(dir.path(), opts(64 << 10)).unwrap();
    append_synced(&mut log, 1..=100, 2000);
    let segs = files(dir.path());
    assert!(segs.len() >= 3, "{segs:?}");
    let (sealed, active) = segs.split_at(segs.len() - 1);
    let active_size = size(&active[0]);
    assert!(active_size <= 64 << 10);
    let sealed_total: u64 = sealed.iter().map(|p| size(p)).sum();
    // The active segment's records end where its zeros start.
    let active_records = log.bytes() - sealed_total;
    let bytes = std::fs::read(&active[0]).unwrap();
    assert!(bytes[active_records as usize..].iter().all(|&b| b == 0));
    drop(log);
    let (log, recovery) = SegmentLog::open(dir.path(), opts(64 << 10)).unwrap();
    assert_eq!((recovery.records, recovery.truncated_bytes), (100, 0));
    assert_reads(&log, 1..=100, 2000);
}

#[test]
fn prefill_truncation_leaves_no_stale_records_behind() {
    let dir = tempfile::tempdir().unwrap();
    let (mut log, _) = SegmentLog::open(dir.path(), opts(128 << 20)).unwrap();
    append_synced(&mut log, 1..=10, 300);
    log.truncate_from(4).unwrap();
    // Shorter records over the cut: the old ones after them must not come
    // back as records on reopen.
    append_synced(&mut log, 4..=5, 10);
    drop(log);
    let (log, recovery) = SegmentLog::open(dir.path(), opts(128 << 20)).unwrap();
    assert_eq!((recovery.records, recovery.truncated_bytes), (5, 0));
    assert_eq!(log.last_index(), Some(5));
    assert_reads(&log, 1..=3, 300);
    assert_reads(&log, 4..=5, 10);
}
