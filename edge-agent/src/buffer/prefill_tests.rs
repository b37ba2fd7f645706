//! Zero-filling the active segment ahead of small group commits
//! (`strata_segment_log::prefill`): the file holds zeros past the frames,
//! sealed segments hold only frames, reopening cuts the zeros quietly and
//! a torn frame written over them is still cut as a torn tail.

use super::*;
use std::os::unix::fs::FileExt;
use strata_segment_log::prefill::Prefill;
use tempfile::TempDir;

fn opts() -> BufferOptions {
    BufferOptions {
        segment_bytes_max: 4 << 20,
        ..BufferOptions::default()
    }
}

fn append_synced(buffer: &mut StreamBuffer, batches: usize, len: usize) {
    for _ in 0..batches {
        let seq = buffer.next_seq();
        buffer
            .append(1, seq as i64, &vec![seq as u8 | 1; len])
            .expect("append");
    }
    buffer.sync().expect("sync");
    buffer.check_invariants();
}

fn file_len(dir: &Path, name: &str) -> u64 {
    std::fs::metadata(dir.join(name)).expect("stat").len()
}

fn read_all(buffer: &StreamBuffer) -> Vec<(u64, Vec<u8>)> {
    buffer
        .read_durable(0, usize::MAX)
        .expect("read")
        .into_iter()
        .map(|b| (b.first_seq, b.batch.to_vec()))
        .collect()
}

const FIRST: &str = "00000000000000000000.buf";

#[test]
fn small_groups_fill_ahead_as_much_as_the_segment_holds_and_reopening_cuts_it_quietly() {
    let dir = TempDir::new().unwrap();
    let (mut buffer, _) = StreamBuffer::open(dir.path(), opts()).unwrap();
    append_synced(&mut buffer, 10, 100);
    // A young segment gets as many zeros ahead as it holds.
    let data = buffer.buffered_bytes();
    assert_eq!(file_len(dir.path(), FIRST), 2 * data);
    for _ in 0..600 {
        append_synced(&mut buffer, 1, 4000);
    }
    // A grown one up to a chunk; past the frames only zeros.
    let (data, len) = (buffer.buffered_bytes(), file_len(dir.path(), FIRST));
    assert!(len > data && len - data <= Prefill::DEFAULT.chunk_bytes);
    let bytes = std::fs::read(dir.path().join(FIRST)).unwrap();
    assert!(bytes[data as usize..].iter().all(|&b| b == 0));
    let before = read_all(&buffer);
    drop(buffer);

    let (buffer, recovery) = StreamBuffer::open(dir.path(), opts()).unwrap();
    assert_eq!(recovery.truncated_bytes, 0, "zeros are not a torn tail");
    assert_eq!(recovery.records, 610);
    assert_eq!(read_all(&buffer), before);
    assert_eq!(file_len(dir.path(), FIRST), buffer.buffered_bytes());
}

#[test]
fn a_large_group_is_not_filled_ahead() {
    let dir = TempDir::new().unwrap();
    let (mut buffer, _) = StreamBuffer::open(dir.path(), opts()).unwrap();
    append_synced(&mut buffer, 1, 100 << 10);
    assert_eq!(file_len(dir.path(), FIRST), buffer.buffered_bytes());
}

#[test]
fn a_sealed_segment_holds_only_frames() {
    let dir = TempDir::new().unwrap();
    let opts = BufferOptions {
        segment_bytes_max: 64 << 10,
        ..BufferOptions::default()
    };
    let (mut buffer, _) = StreamBuffer::open(dir.path(), opts.clone()).unwrap();
    for _ in 0..40 {
        append_synced(&mut buffer, 1, 4000);
    }
    let stats = buffer.stats();
    let files = segment_names(dir.path());
    assert!(files.len() >= 3, "{files:?}");
    let sizes: u64 = files.iter().map(|n| file_len(dir.path(), n)).sum();
    let last = file_len(dir.path(), files.last().unwrap());
    // Sealed segments are exactly their frames; only the active one has
    // zeros past them, and never past the segment limit.
    assert!(last <= opts.segment_bytes_max);
    let zeros = sizes - stats.buffered_bytes;
    let bytes = std::fs::read(dir.path().join(files.last().unwrap())).unwrap();
    assert!(bytes[(last - zeros) as usize..].iter().all(|&b| b == 0));
    drop(buffer);
    let (buffer, recovery) = StreamBuffer::open(dir.path(), opts).unwrap();
    assert_eq!((recovery.records, recovery.truncated_bytes), (40, 0));
    assert_eq!(read_all(&buffer).len(), 40);
}

#[test]
fn a_torn_frame_over_the_zeros_is_cut_as_a_torn_tail() {
    let dir = TempDir::new().unwrap();
    let (mut buffer, _) = StreamBuffer::open(dir.path(), opts()).unwrap();
    append_synced(&mut buffer, 5, 100);
    let data = buffer.buffered_bytes();
    let before = read_all(&buffer);
    drop(buffer);
    // Half a frame header where the next frame would start.
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(dir.path().join(FIRST))
        .unwrap();
    file.write_all_at(&[0x40, 0, 0, 0, 0xaa], data).unwrap();
    drop(file);

    let (buffer, recovery) = StreamBuffer::open(dir.path(), opts()).unwrap();
    assert!(recovery.truncated_bytes > 0, "{recovery:?}");
    assert_eq!(read_all(&buffer), before);
    assert_eq!(file_len(dir.path(), FIRST), data);
}

fn segment_names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".buf"))
        .collect();
    names.sort();
    names
}
