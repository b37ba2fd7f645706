//! The stream directory's own entry (in `buffers/`) and the first segment's
//! entry (in the stream directory) are durable before the first append of a
//! new stream is acknowledged: strict power cuts of the simulated disk
//! right after that acknowledgement (issue 16).

use super::driver_tests::opts;
use super::*;
use bytes::Bytes;
use std::time::Duration;
use strata_segment_log::fs::{create_dir_all_durably, FaultyFs};
use strata_segment_log::sim::SimFs;

/// The agent's `<data_dir>/buffers`, made durable by the registry at start.
const BUFFERS: &str = "/data/buffers";
const STREAM: &str = "/data/buffers/sensors";
const DEADLINE: Duration = Duration::from_secs(20);

/// Opens the stream's buffer on `fs`, appends one batch through the
/// driver (answered once durable), then cuts the power of `sim` and
/// returns what a reopened buffer holds.
async fn first_append_then_power_cut(sim: &SimFs, fs: Arc<dyn Fs>) -> Vec<(u64, Bytes)> {
    let (buffer, _) = StreamBuffer::open_on(fs, Path::new(STREAM), opts()).unwrap();
    let handle = BufferHandle::spawn(buffer, "sensors".to_owned());
    let seq = tokio::time::timeout(DEADLINE, handle.append(1, 7, Bytes::from_static(b"first")))
        .await
        .expect("append answered")
        .expect("the first append is acknowledged");
    assert_eq!(seq, 0);
    drop(handle);
    sim.crash();
    let (buffer, _) = StreamBuffer::open_on(sim.shared(), Path::new(STREAM), opts()).unwrap();
    let read = buffer.read_durable(0, usize::MAX).unwrap();
    read.into_iter().map(|b| (b.first_seq, b.batch)).collect()
}

fn first() -> Vec<(u64, Bytes)> {
    vec![(0, Bytes::from_static(b"first"))]
}

#[tokio::test]
async fn the_first_acknowledged_append_of_a_new_stream_survives_a_power_cut() {
    let sim = SimFs::new();
    create_dir_all_durably(&sim, Path::new(BUFFERS)).unwrap();
    assert_eq!(
        first_append_then_power_cut(&sim, sim.shared()).await,
        first()
    );
}

/// A stream directory that exists but whose entry may not be durable: a
/// first open failed at the fsync of `buffers/` (then the produce was
/// refused, and the next one opens again), or the process died between the
/// `mkdir` and that fsync. Finding the directory there, the open must still
/// make its entry durable.
#[tokio::test]
async fn a_stream_directory_left_by_a_failed_open_is_made_durable() {
    // The first open's fsync of `buffers/` fails.
    let sim = SimFs::new();
    create_dir_all_durably(&sim, Path::new(BUFFERS)).unwrap();
    let faulty = FaultyFs::new(sim.shared());
    faulty.faults().fail_next(1);
    let err = StreamBuffer::open_on(faulty.shared(), Path::new(STREAM), opts()).unwrap_err();
    assert!(err.to_string().contains(STREAM), "{err}");
    assert_eq!(
        first_append_then_power_cut(&sim, faulty.shared()).await,
        first()
    );

    // The directory was created, the process died before the fsync (the
    // page cache survives a process).
    let sim = SimFs::new();
    create_dir_all_durably(&sim, Path::new(BUFFERS)).unwrap();
    sim.create_dir_all(Path::new(STREAM)).unwrap();
    assert_eq!(
        first_append_then_power_cut(&sim, sim.shared()).await,
        first()
    );
}
