//! The on-disk format is stable: a buffer written by Strata 0.1 before the
//! file layer moved into `strata-segment-log` (`tests/fixtures/dev-data-v0.1`,
//! see its `generate.sh`) opens with today's code. Its stream `fixture`
//! holds 200 records `v-0`..`v-199` (key `k{i % 10}`); the first 100 were
//! forwarded (acked), the last 100 only buffered while the core was down.

use super::*;
use std::path::PathBuf;

fn fixture() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures/dev-data-v0.1/edge/buffers/fixture")
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

#[test]
fn a_buffer_written_by_v0_1_opens_and_reads_back_its_unforwarded_records() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("fixture");
    copy_dir(&fixture(), &dir);
    let (buf, recovery) = StreamBuffer::open(&dir, BufferOptions::default()).unwrap();
    assert_eq!(recovery.truncated_bytes, 0, "{recovery:?}");
    assert_eq!(
        (buf.acked_seq(), buf.durable_seq(), buf.next_seq()),
        (100, 200, 200)
    );
    let batches = buf.read_durable(0, usize::MAX).unwrap();
    let mut values = Vec::new();
    let mut seq = 100;
    for b in &batches {
        assert_eq!(b.first_seq, seq, "batches are contiguous");
        let batch = strata_schema::batch::open(&b.batch).unwrap();
        for r in batch.records() {
            values.push((
                r.key().unwrap().to_string(),
                String::from_utf8(r.value().unwrap().bytes().to_vec()).unwrap(),
            ));
        }
        seq += u64::from(b.records);
    }
    let want: Vec<(String, String)> = (100..200)
        .map(|i| (format!("k{}", i % 10), format!("v-{i}")))
        .collect();
    assert_eq!(values, want);
}
