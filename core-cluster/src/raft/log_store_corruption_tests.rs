//! Damage to durable entries is not a torn tail: a record of the last
//! segment at or below the saved committed (or purged) index that reads back
//! invalid makes the store refuse to open, naming the segment file, the byte
//! offset and the index; an invalid tail past that point is still cut.

use std::path::{Path, PathBuf};

use bytes::Bytes;
use openraft::storage::{RaftLogStorage, RaftLogStorageExt};
use strata_segment_log::fs::{Fs, OpenMode};
use strata_segment_log::sim::SimFs;

use super::*;
use crate::raft::command::{AppendCmd, ShardCommand};
use crate::raft::types::ShardTypes;

type LogStore = super::LogStore<ShardTypes>;
type Entry = crate::raft::types::Entry<ShardTypes>;

const DIR: &str = "/data/shards/s/00000";

fn open(disk: &SimFs) -> Result<LogStore, StoreError> {
    // One segment: every record is in the last one, where torn tails are
    // cut. No zero-filling ahead: the tests find records by file size.
    let opts = SegmentLogOptions {
        prefill: strata_segment_log::prefill::Prefill::OFF,
        ..SegmentLogOptions::default()
    };
    LogStore::open_in(disk.shared(), Path::new(DIR), opts)
}

fn segment() -> PathBuf {
    Path::new(DIR).join("log/00000000000000000001.log")
}

fn entry(index: u64) -> Entry {
    Entry {
        log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
        payload: EntryPayload::Normal(ShardCommand::Append(AppendCmd {
            producer_id: 9,
            first_seq: index,
            seq_deltas: None,
            max_timestamp_ms: 0,
            records: 1,
            batch: Bytes::from(vec![index as u8; 64]),
        })),
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime")
}

/// Appends entries 1..=6 one by one (each durable when its append returns),
/// saves `committed`, closes the store. Returns where each record starts.
fn write_log(disk: &SimFs, committed: Option<u64>) -> Vec<u64> {
    let rt = runtime();
    let mut store = open(disk).expect("a new store opens");
    let mut starts = Vec::new();
    for index in 1..=6 {
        starts.push(file_size(disk));
        rt.block_on(store.blocking_append([entry(index)])).unwrap();
    }
    let committed = committed.map(|i| entry(i).log_id);
    rt.block_on(store.save_committed(committed)).unwrap();
    starts
}

fn file_size(disk: &SimFs) -> u64 {
    disk.open(&segment(), OpenMode::Existing)
        .and_then(|f| f.size())
        .unwrap_or(0)
}

/// Flips one byte on the disk, as media corruption would (durably).
fn flip_byte(disk: &SimFs, pos: u64) {
    let file = disk.open(&segment(), OpenMode::Existing).unwrap();
    let mut byte = [0u8];
    file.read_exact_at(&mut byte, pos).unwrap();
    file.write_all_at(&[byte[0] ^ 0x40], pos).unwrap();
    file.sync_data().unwrap();
}

fn assert_refused(disk: &SimFs, pos: u64, index: u64) {
    let size = file_size(disk);
    let err = open(disk).expect_err("a damaged durable record must not be cut");
    let msg = err.to_string();
    for want in [
        "00000000000000000001.log".to_string(),
        format!("at byte {pos}"),
        format!("index {index}"),
        "not a torn write".to_string(),
        "remove-node".to_string(),
    ] {
        assert!(msg.contains(&want), "{want:?} missing from: {msg}");
    }
    // Nothing was cut: the file is left as it was, for inspection.
    assert_eq!(file_size(disk), size, "the damaged segment was changed");
}

#[test]
fn damaged_committed_record_in_the_middle_refuses_to_open() {
    let disk = SimFs::new();
    let starts = write_log(&disk, Some(6));
    flip_byte(&disk, starts[2] + 40);
    assert_refused(&disk, starts[2], 3);
}

#[test]
fn damaged_last_committed_record_refuses_to_open() {
    let disk = SimFs::new();
    let starts = write_log(&disk, Some(6));
    // The frame header: its length now claims more bytes than are left.
    flip_byte(&disk, starts[5] + 2);
    assert_refused(&disk, starts[5], 6);
}

/// `committed.json` is not fsynced, so a power cut may lose it; the purge
/// point is durable, and protects the records up to it that a partly purged
/// last segment still holds.
#[test]
fn damaged_purged_record_refuses_to_open_after_a_power_cut() {
    let rt = runtime();
    let disk = SimFs::new();
    let starts = write_log(&disk, Some(6));
    let mut store = open(&disk).unwrap();
    rt.block_on(store.purge(entry(3).log_id)).unwrap();
    drop(store);
    disk.crash();
    flip_byte(&disk, starts[1] + 40);
    assert_refused(&disk, starts[1], 2);
}

/// What no durable record covers is still a torn tail: bytes after the
/// committed records that are not a valid record are cut.
#[test]
fn invalid_bytes_after_the_committed_records_are_cut() {
    let disk = SimFs::new();
    write_log(&disk, Some(6));
    let size = file_size(&disk);
    let file = disk.open(&segment(), OpenMode::Existing).unwrap();
    file.write_all_at(&[0x5a; 30], size).unwrap();
    file.sync_data().unwrap();
    drop(file);
    let store = open(&disk).expect("a torn tail is cut");
    assert_eq!(store.recovery().truncated_bytes, 30);
    assert_eq!(store.last_index(), Some(6));
    assert_eq!(file_size(&disk), size);
}

/// Entries written but not yet fsynced when the power went, torn in every
/// way `crash_torn` draws, are cut; the committed entries stay.
#[test]
fn torn_unsynced_entries_after_the_committed_ones_are_cut() {
    let rt = runtime();
    for seed in 0..64 {
        let disk = SimFs::new();
        write_log(&disk, Some(6));
        let mut store = open(&disk).unwrap();
        {
            let mut log = store.inner.write_log();
            let mut buf = Vec::new();
            for index in 7..=9 {
                buf.clear();
                let e = entry(index);
                let kind = encode_entry(&e, &mut buf).unwrap();
                log.append(1, 1, index, kind, &buf).unwrap();
            }
            // Handed to the OS; the fsync never runs.
            drop(log.begin_sync().unwrap());
        }
        rt.block_on(store.save_committed(Some(entry(6).log_id)))
            .unwrap();
        drop(store);
        disk.crash_torn(seed);
        let store = open(&disk).unwrap_or_else(|e| panic!("seed {seed}: {e}"));
        let last = store.last_index().unwrap();
        assert!((6..=9).contains(&last), "seed {seed}: last index {last}");
        for index in 1..=last {
            assert_eq!(store.read_entry(index).unwrap(), Some(entry(index)));
        }
    }
}
