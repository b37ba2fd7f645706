//! Unit tests of [`StreamBuffer`]: one behaviour each, on a temp directory.

use super::*;
use std::fs::{self, OpenOptions};
use std::os::unix::fs::FileExt;
use strata_segment_log::prefill::Prefill;
use tempfile::TempDir;

/// Also used by other buffer test modules.
pub(super) fn small_opts() -> BufferOptions {
    BufferOptions {
        segment_bytes_max: 256,
        buffer_bytes_max: 1 << 20,
        full_policy: FullPolicy::Reject,
        batch_bytes_max: 128,
        // These tests look at segment files byte for byte; zero-filling
        // ahead has its own tests (`prefill_tests.rs`).
        prefill: Prefill::OFF,
        ..BufferOptions::default()
    }
}

/// Deterministic, seq-dependent batch bytes so a mix-up is visible.
fn payload(seq: u64, len: usize) -> Vec<u8> {
    (0..len).map(|i| (seq as usize * 31 + i) as u8).collect()
}

fn open(dir: &Path, opts: BufferOptions) -> (StreamBuffer, Recovery) {
    let (buffer, recovery) = StreamBuffer::open(dir, opts).expect("open");
    buffer.check_invariants();
    (buffer, recovery)
}

fn append(buffer: &mut StreamBuffer, records: u32, len: usize) -> Appended {
    let seq = buffer.next_seq();
    let appended = buffer
        .append(records, seq as i64 * 10, &payload(seq, len))
        .expect("append");
    buffer.check_invariants();
    appended
}

/// Appends `batches` batches of `records` records and `len` bytes each,
/// then syncs them.
fn append_synced(buffer: &mut StreamBuffer, batches: usize, records: u32, len: usize) {
    for _ in 0..batches {
        append(buffer, records, len);
    }
    buffer.sync().expect("sync");
    buffer.check_invariants();
}

fn assert_batch(batch: &BufferedBatch, first_seq: u64, records: u32, len: usize) {
    assert_eq!(batch.first_seq, first_seq);
    assert_eq!(batch.records, records);
    assert_eq!(batch.max_timestamp_ms, first_seq as i64 * 10);
    assert_eq!(batch.batch, payload(first_seq, len));
}

fn segment_files(dir: &Path) -> Vec<(String, u64)> {
    let mut files: Vec<_> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".buf"))
        .map(|e| {
            let len = e.metadata().unwrap().len();
            (e.file_name().to_string_lossy().into_owned(), len)
        })
        .collect();
    files.sort();
    files
}

#[test]
fn append_sync_read_ack_reopen() {
    let dir = TempDir::new().unwrap();
    let (mut buffer, recovery) = open(dir.path(), small_opts());
    assert_eq!(recovery, Recovery::default());
    assert_eq!(append(&mut buffer, 2, 10).first_seq, 0);
    assert_eq!(append(&mut buffer, 1, 0).first_seq, 2);
    assert_eq!(append(&mut buffer, 3, 20).first_seq, 3);
    assert_eq!((buffer.next_seq(), buffer.durable_seq()), (6, 0));
    assert!(
        buffer.read_durable(0, usize::MAX).unwrap().is_empty(),
        "nothing durable yet"
    );

    buffer.sync().unwrap();
    buffer.check_invariants();
    assert_eq!(buffer.durable_seq(), 6);
    let all = buffer.read_durable(0, usize::MAX).unwrap();
    assert_eq!(all.len(), 3);
    assert_batch(&all[0], 0, 2, 10);
    assert_batch(&all[1], 2, 1, 0);
    assert_batch(&all[2], 3, 3, 20);
    // The batch holding the start seq comes first.
    assert_eq!(buffer.read_durable(4, usize::MAX).unwrap()[0].first_seq, 3);
    assert_eq!(buffer.read_durable(6, usize::MAX).unwrap(), vec![]);

    buffer.ack(3).unwrap();
    buffer.check_invariants();
    assert_eq!(buffer.buffered_records(), 3);
    assert_eq!(buffer.read_durable(0, usize::MAX).unwrap()[0].first_seq, 3);
    drop(buffer);

    let (buffer, recovery) = open(dir.path(), small_opts());
    assert_eq!(recovery.segments, 1);
    assert_eq!(
        (recovery.batches, recovery.records, recovery.truncated_bytes),
        (3, 6, 0)
    );
    assert_eq!(buffer.acked_seq(), 3);
    assert_eq!((buffer.durable_seq(), buffer.next_seq()), (6, 6));
    let rest = buffer.read_durable(0, usize::MAX).unwrap();
    assert_eq!(rest.len(), 1);
    assert_batch(&rest[0], 3, 3, 20);
}

#[test]
fn read_respects_max_bytes_but_returns_at_least_one_batch() {
    let dir = TempDir::new().unwrap();
    let (mut buffer, _) = open(dir.path(), small_opts());
    append_synced(&mut buffer, 4, 1, 50);
    assert_eq!(buffer.read_durable(0, 0).unwrap().len(), 1);
    assert_eq!(buffer.read_durable(0, 99).unwrap().len(), 1);
    assert_eq!(buffer.read_durable(0, 100).unwrap().len(), 2);
    assert_eq!(buffer.read_durable(1, 150).unwrap()[0].first_seq, 1);
}

#[test]
fn only_durable_data_is_read_and_acked() {
    let dir = TempDir::new().unwrap();
    let (mut buffer, _) = open(dir.path(), small_opts());
    append(&mut buffer, 1, 5);
    buffer.sync().unwrap();
    append(&mut buffer, 1, 5);
    let read = buffer.read_durable(0, usize::MAX).unwrap();
    assert_eq!(read.len(), 1, "the unsynced batch is not handed out");
    let err = buffer.ack(2).unwrap_err();
    assert!(
        matches!(
            err,
            BufferError::AckBeyondDurable {
                seq: 2,
                durable_seq: 1
            }
        ),
        "{err}"
    );
    assert_eq!(buffer.acked_seq(), 0);
    buffer.ack(1).unwrap();
    buffer.ack(0).unwrap(); // stale acks are ignored
    assert_eq!(buffer.acked_seq(), 1);
}

#[test]
fn segments_roll_and_acked_sealed_segments_are_deleted() {
    let dir = TempDir::new().unwrap();
    let (mut buffer, _) = open(dir.path(), small_opts());
    // 100-byte frames, 256-byte segments: two frames per segment.
    append_synced(&mut buffer, 7, 1, 72);
    assert_eq!(
        segment_files(dir.path()),
        [
            ("00000000000000000000.buf".to_owned(), 200),
            ("00000000000000000002.buf".to_owned(), 200),
            ("00000000000000000004.buf".to_owned(), 200),
            ("00000000000000000006.buf".to_owned(), 100),
        ]
    );
    assert_eq!(buffer.buffered_bytes(), 700);
    buffer.ack(5).unwrap();
    buffer.check_invariants();
    assert_eq!(
        segment_files(dir.path()).len(),
        2,
        "segments entirely below 5 are gone"
    );
    buffer.ack(7).unwrap();
    buffer.check_invariants();
    assert_eq!(
        segment_files(dir.path()).len(),
        1,
        "the active segment stays"
    );
    assert_eq!(buffer.buffered_records(), 0);
    append(&mut buffer, 1, 72);
    buffer.sync().unwrap();
    buffer.ack(8).unwrap();
    assert_eq!(
        segment_files(dir.path()).len(),
        1,
        "the fully acked active segment stays"
    );
    // Sealing a fully acked active segment deletes it.
    append(&mut buffer, 1, 72);
    assert_eq!(
        segment_files(dir.path()),
        [("00000000000000000008.buf".to_owned(), 100)]
    );
}

/// The forwarder's acks: no `acked` write inside the interval, segments
/// below the ack deleted at once; after a crash the buffer resumes from
/// the first segment left (the core drops what it gets twice), never
/// before the persisted position and never losing an unacked record.
#[test]
fn lazy_acks_write_the_acked_file_once_per_interval() {
    let dir = TempDir::new().unwrap();
    let (mut buffer, _) = open(dir.path(), small_opts());
    append_synced(&mut buffer, 7, 1, 72);
    let t0 = Instant::now() + ACK_PERSIST_INTERVAL;
    buffer.ack_lazily(1, t0).unwrap();
    let acked_file = || fs::read(dir.path().join(format::ACKED_FILE)).ok();
    let written = acked_file();
    assert_eq!(written.as_deref().map(format::decode_acked), Some(Ok(1)));
    let fsyncs = buffer.stats().fsyncs;
    buffer.ack_lazily(5, t0).unwrap();
    buffer.check_invariants();
    assert_eq!(buffer.acked_seq(), 5);
    assert_eq!(
        acked_file(),
        written,
        "not written again inside the interval"
    );
    assert_eq!(buffer.stats().fsyncs, fsyncs);
    assert_eq!(
        segment_files(dir.path()).len(),
        2,
        "segments below 5 are gone"
    );
    // A crash now: the persisted position is 1, the first segment left
    // starts at 4.
    drop(buffer);
    let (mut buffer, _) = open(dir.path(), small_opts());
    let read = buffer.read_durable(0, 1 << 20).unwrap();
    assert_eq!(read.first().map(|b| b.first_seq), Some(4));
    assert_eq!(read.last().map(|b| b.first_seq), Some(6));
    assert_eq!(buffer.next_seq(), 7);
    // Past the interval the ack is written.
    buffer
        .ack_lazily(6, Instant::now() + ACK_PERSIST_INTERVAL)
        .unwrap();
    assert_eq!(
        acked_file().as_deref().map(format::decode_acked),
        Some(Ok(6))
    );
}

/// A clean shutdown writes what lazy acks left behind; nothing to write
/// is no write.
#[test]
fn flush_ack_writes_a_lazy_ack() {
    let dir = TempDir::new().unwrap();
    let (mut buffer, _) = open(dir.path(), small_opts());
    append_synced(&mut buffer, 3, 1, 72);
    buffer.ack_lazily(2, Instant::now()).unwrap();
    let acked_file = || fs::read(dir.path().join(format::ACKED_FILE)).ok();
    assert_eq!(acked_file(), None, "inside the interval: not written");
    buffer.flush_ack().unwrap();
    assert_eq!(
        acked_file().as_deref().map(format::decode_acked),
        Some(Ok(2))
    );
    // Already written: a second flush writes nothing (a marker survives).
    let marker = format::encode_acked(1);
    fs::write(dir.path().join(format::ACKED_FILE), marker).unwrap();
    buffer.flush_ack().unwrap();
    assert_eq!(acked_file().as_deref(), Some(&marker[..]));
    fs::write(dir.path().join(format::ACKED_FILE), format::encode_acked(2)).unwrap();
    drop(buffer);
    let (buffer, _) = open(dir.path(), small_opts());
    assert_eq!(buffer.acked_seq(), 2);
}

#[test]
fn reads_find_their_start_across_index_intervals() {
    let dir = TempDir::new().unwrap();
    let opts = BufferOptions {
        segment_bytes_max: 1 << 20,
        buffer_bytes_max: 4 << 20,
        batch_bytes_max: 4096,
        ..small_opts()
    };
    let (mut buffer, _) = open(dir.path(), opts.clone());
    append_synced(&mut buffer, 400, 2, 1000);
    for buffer in [buffer, open(dir.path(), opts).0] {
        for from in [0, 1, 131, 132, 133, 500, 799] {
            let read = buffer.read_durable(from, 1).unwrap();
            assert_batch(&read[0], from - from % 2, 2, 1000);
        }
    }
}

#[test]
fn seqs_continue_after_all_segments_are_deleted() {
    let dir = TempDir::new().unwrap();
    let (mut buffer, _) = open(dir.path(), small_opts());
    append_synced(&mut buffer, 5, 3, 72);
    buffer.ack(15).unwrap();
    drop(buffer);

    // A fully acked active segment is deleted on open; the seq survives in `acked`.
    let (mut buffer, recovery) = open(dir.path(), small_opts());
    assert_eq!(recovery.segments, 0);
    assert!(segment_files(dir.path()).is_empty());
    assert_eq!((buffer.acked_seq(), buffer.next_seq()), (15, 15));
    assert_eq!(append(&mut buffer, 1, 1).first_seq, 15);
    buffer.sync().unwrap();
    buffer.ack(16).unwrap();
    drop(buffer);

    // Even an operator wiping every segment file cannot make a seq reappear.
    for (name, _) in segment_files(dir.path()) {
        fs::remove_file(dir.path().join(name)).unwrap();
    }
    let (mut buffer, _) = open(dir.path(), small_opts());
    assert_eq!(buffer.next_seq(), 16);
    assert_eq!(append(&mut buffer, 1, 1).first_seq, 16);
}

#[test]
fn torn_tail_of_last_segment_is_cut_on_reopen() {
    let dir = TempDir::new().unwrap();
    let (mut buffer, _) = open(dir.path(), small_opts());
    append(&mut buffer, 1, 30);
    append(&mut buffer, 2, 30);
    buffer.sync().unwrap();
    append(&mut buffer, 4, 30); // never synced
    drop(buffer);
    let path = dir.path().join("00000000000000000000.buf");
    let file = OpenOptions::new().write(true).open(&path).unwrap();
    file.set_len(2 * 58 + 20).unwrap(); // mid-frame
    file.write_all_at(&[0xff; 9], 2 * 58 + 20).unwrap(); // plus garbage
    drop(file);

    let (mut buffer, recovery) = open(dir.path(), small_opts());
    assert_eq!(recovery.truncated_bytes, 29);
    assert_eq!((recovery.batches, recovery.records), (2, 3));
    assert_eq!(fs::metadata(&path).unwrap().len(), 2 * 58);
    assert_eq!((buffer.durable_seq(), buffer.next_seq()), (3, 3));
    assert_eq!(buffer.read_durable(0, usize::MAX).unwrap().len(), 2);
    assert_eq!(append(&mut buffer, 1, 30).first_seq, 3);
}

#[test]
fn corrupt_sealed_segment_is_an_error_naming_file_and_offset() {
    let dir = TempDir::new().unwrap();
    let (mut buffer, _) = open(dir.path(), small_opts());
    append_synced(&mut buffer, 6, 1, 72);
    drop(buffer);
    let path = dir.path().join("00000000000000000002.buf");
    let file = OpenOptions::new().write(true).open(&path).unwrap();
    file.write_all_at(&[0xee], 150).unwrap(); // inside the second frame
    drop(file);

    let err = StreamBuffer::open(dir.path(), small_opts()).unwrap_err();
    let message = err.to_string();
    assert!(
        matches!(err, BufferError::Corrupt { offset: 100, .. }),
        "{message}"
    );
    assert!(message.contains("00000000000000000002.buf"), "{message}");
    assert!(message.contains("checksum mismatch"), "{message}");

    // Following the message's advice opens the buffer with a gap in seqs.
    OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(100)
        .unwrap();
    let (buffer, recovery) = open(dir.path(), small_opts());
    assert_eq!(recovery.records, 5);
    let seqs: Vec<_> = buffer
        .read_durable(0, usize::MAX)
        .unwrap()
        .iter()
        .map(|b| b.first_seq)
        .collect();
    assert_eq!(seqs, [0, 1, 2, 4, 5]);
    assert_eq!(buffer.next_seq(), 6);
}

#[test]
fn segments_left_behind_by_a_crash_after_persisting_an_ack_are_deleted() {
    let dir = TempDir::new().unwrap();
    let (mut buffer, _) = open(dir.path(), small_opts());
    append_synced(&mut buffer, 6, 1, 72);
    drop(buffer);
    // As if the process died between writing `acked` and deleting segments.
    fs::write(dir.path().join("acked"), format::encode_acked(4)).unwrap();
    let (buffer, recovery) = open(dir.path(), small_opts());
    assert_eq!(recovery.segments, 1);
    assert_eq!(
        segment_files(dir.path()),
        [("00000000000000000004.buf".to_owned(), 200)]
    );
    assert_eq!((buffer.acked_seq(), buffer.next_seq()), (4, 6));
    assert_eq!(buffer.read_durable(0, usize::MAX).unwrap()[0].first_seq, 4);
}

#[test]
fn corrupt_acked_file_is_an_error() {
    let dir = TempDir::new().unwrap();
    let (mut buffer, _) = open(dir.path(), small_opts());
    append(&mut buffer, 1, 1);
    buffer.sync().unwrap();
    buffer.ack(1).unwrap();
    drop(buffer);
    fs::write(dir.path().join("acked"), b"garbage").unwrap();
    let err = StreamBuffer::open(dir.path(), small_opts()).unwrap_err();
    assert!(err.to_string().contains("acked"), "{err}");
}

fn tight_opts(full_policy: FullPolicy) -> BufferOptions {
    // 100-byte frames: two per segment, at most 4 on disk.
    BufferOptions {
        segment_bytes_max: 200,
        buffer_bytes_max: 400,
        full_policy,
        batch_bytes_max: 100,
        ..BufferOptions::default()
    }
}

#[test]
fn reject_policy_leaves_buffer_unchanged() {
    let dir = TempDir::new().unwrap();
    let (mut buffer, _) = open(dir.path(), tight_opts(FullPolicy::Reject));
    append_synced(&mut buffer, 4, 1, 72);
    let stats = buffer.stats();
    let files = segment_files(dir.path());

    let err = buffer.append(1, 0, &[0; 72]).unwrap_err();
    assert!(err.is_retryable());
    assert_eq!(
        err.to_string(),
        "edge buffer for this stream is full (400 bytes buffered + 100 bytes for this batch > \
         buffer_bytes_max = 400)"
    );
    buffer.check_invariants();
    assert_eq!(buffer.stats(), stats);
    assert_eq!(segment_files(dir.path()), files);
    assert_eq!(buffer.read_durable(0, usize::MAX).unwrap().len(), 4);
    // Forwarding makes room.
    buffer.ack(2).unwrap();
    assert_eq!(append(&mut buffer, 1, 72).first_seq, 4);
}

#[test]
fn drop_oldest_drops_oldest_durable_segments_and_counts() {
    let dir = TempDir::new().unwrap();
    let (mut buffer, _) = open(dir.path(), tight_opts(FullPolicy::DropOldest));
    let mut dropped = 0;
    for i in 0..10u64 {
        let appended = append(&mut buffer, 3, 72);
        assert_eq!(appended.first_seq, 3 * i);
        dropped += appended.dropped_records;
        buffer.sync().unwrap();
    }
    buffer
        .ack(1)
        .unwrap_or_else(|e| panic!("stale ack is fine: {e}"));
    assert_eq!(dropped, buffer.dropped_records());
    // Frames 0..6 were dropped two at a time (a whole segment each time).
    assert_eq!(buffer.dropped_records(), 18);
    assert_eq!(buffer.acked_seq(), 18);
    assert!(buffer.buffered_bytes() <= 400);
    let read = buffer.read_durable(0, usize::MAX).unwrap();
    assert_eq!(read.first().map(|b| b.first_seq), Some(18));
    assert_eq!(read.len(), 4);
    drop(buffer);
    let (buffer, _) = open(dir.path(), tight_opts(FullPolicy::DropOldest));
    assert_eq!((buffer.acked_seq(), buffer.next_seq()), (18, 30));
}

#[test]
fn drop_oldest_never_drops_unsynced_data() {
    let dir = TempDir::new().unwrap();
    let (mut buffer, _) = open(dir.path(), tight_opts(FullPolicy::DropOldest));
    for _ in 0..4 {
        append(&mut buffer, 1, 72);
    }
    let stats = buffer.stats();
    assert!(matches!(
        buffer.append(1, 0, &[0; 72]),
        Err(BufferError::Full { .. })
    ));
    buffer.check_invariants();
    let after = buffer.stats();
    assert_eq!(
        (after.acked_seq, after.next_seq, after.dropped_records),
        (0, 4, 0)
    );
    assert_eq!(after.buffered_bytes, stats.buffered_bytes);
    buffer.sync().unwrap();
    assert_eq!(append(&mut buffer, 1, 72).dropped_records, 2);
}

#[test]
fn bad_input_is_refused_with_context() {
    let dir = TempDir::new().unwrap();
    let (mut buffer, _) = open(dir.path(), small_opts());
    assert!(matches!(
        buffer.append(0, 0, b"x"),
        Err(BufferError::NoRecords)
    ));
    let err = buffer.append(1, 0, &[0; 129]).unwrap_err();
    assert_eq!(
        err.to_string(),
        "batch of 129 bytes exceeds batch_bytes_max = 128"
    );
    assert_eq!(buffer.next_seq(), 0);

    let opts = BufferOptions {
        buffer_bytes_max: 100,
        ..small_opts()
    };
    let err = StreamBuffer::open(dir.path(), opts).unwrap_err();
    assert!(err.to_string().contains("buffer_bytes_max"), "{err}");
}

#[test]
fn options_deserialize_with_defaults_and_snake_case_policy() {
    let opts: BufferOptions =
        serde_json::from_str(r#"{"full_policy": "drop_oldest", "segment_bytes_max": 1024}"#)
            .unwrap();
    assert_eq!(opts.full_policy, FullPolicy::DropOldest);
    assert_eq!(opts.segment_bytes_max, 1024);
    assert_eq!(
        opts.buffer_bytes_max,
        BufferOptions::default().buffer_bytes_max
    );
    let reject: FullPolicy = serde_json::from_str(r#""reject""#).unwrap();
    assert_eq!(reject, FullPolicy::Reject);
    assert!(serde_json::from_str::<BufferOptions>(r#"{"segment_bytes": 1}"#).is_err());
    BufferOptions::default().validate().unwrap();
}
