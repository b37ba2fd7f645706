//! Tests of [`BufferHandle`]: group commit, durability, forwarding.

use super::*;
use bytes::Bytes;
use std::time::Duration;
use strata_segment_log::sim::SimFs;
use tempfile::TempDir;
use tokio::task::JoinSet;

const DEADLINE: Duration = Duration::from_secs(20);

/// Also used by other buffer test modules.
pub(super) fn opts() -> BufferOptions {
    BufferOptions {
        segment_bytes_max: 4096,
        buffer_bytes_max: 1 << 20,
        full_policy: FullPolicy::Reject,
        batch_bytes_max: 1024,
        ..BufferOptions::default()
    }
}

fn payload(i: u64) -> Bytes {
    Bytes::from(format!("batch {i}").into_bytes())
}

fn spawn(dir: &TempDir) -> BufferHandle {
    let (buffer, _) = StreamBuffer::open(dir.path(), opts()).unwrap();
    BufferHandle::spawn(buffer, "sensors".to_owned())
}

/// Every producer answered is durable: a power cut right after the last
/// answer (on the simulated file system, which keeps only what was fsynced)
/// loses none of them; and each acknowledged group had its own fsync, while
/// groups share them.
#[tokio::test]
async fn concurrent_appends_share_fsyncs_and_survive_a_power_cut() {
    let sim = SimFs::new();
    let dir = Path::new("/data/buffers/sensors");
    let (buffer, _) = StreamBuffer::open_on(sim.shared(), dir, opts()).unwrap();
    let syncs_at_open = sim.stats().file_syncs;
    let handle = BufferHandle::spawn(buffer, "sensors".to_owned());
    let appends = 300u64;
    let mut tasks = JoinSet::new();
    for i in 0..appends {
        let handle = handle.clone();
        tasks.spawn(async move {
            let first_seq = handle.append(1, i as i64, payload(i)).await.unwrap();
            // Resolved only once fsynced.
            assert!(handle.stats().durable_seq > first_seq);
            (first_seq, i)
        });
    }
    let mut by_seq = tokio::time::timeout(DEADLINE, tasks.join_all())
        .await
        .expect("appends complete");
    by_seq.sort_unstable();
    let seqs: Vec<u64> = by_seq.iter().map(|(seq, _)| *seq).collect();
    assert_eq!(seqs, (0..appends).collect::<Vec<_>>(), "dense, unique seqs");

    let stats = handle.stats();
    assert_eq!((stats.durable_seq, stats.next_seq), (appends, appends));
    assert!(stats.commits >= 1, "{stats:?}");
    assert!(
        stats.fsyncs >= stats.commits,
        "at least one fsync per acknowledged group: {} fsyncs for {} groups",
        stats.fsyncs,
        stats.commits
    );
    let file_syncs = sim.stats().file_syncs - syncs_at_open;
    assert!(
        file_syncs >= stats.commits,
        "the file system saw {file_syncs} file fsyncs for {} acknowledged groups",
        stats.commits
    );
    assert!(
        stats.fsyncs < appends,
        "group commit: {} fsyncs for {appends} appends",
        stats.fsyncs
    );
    drop(handle);

    sim.crash();
    let (buffer, recovery) = StreamBuffer::open_on(sim.shared(), dir, opts()).unwrap();
    assert_eq!(
        recovery.records, appends,
        "every acknowledged append survives"
    );
    let read = buffer.read_durable(0, usize::MAX).unwrap();
    assert_eq!(read.len(), by_seq.len());
    for (batch, (seq, i)) in read.iter().zip(&by_seq) {
        assert_eq!(batch.first_seq, *seq);
        assert_eq!(batch.batch, payload(*i));
        assert_eq!(batch.max_timestamp_ms, *i as i64);
    }
}

#[tokio::test]
async fn forwarder_loop_reads_durable_batches_and_acks() {
    let dir = TempDir::new().unwrap();
    let handle = spawn(&dir);
    let total = 100u64;
    let forwarder = {
        let handle = handle.clone();
        tokio::spawn(async move {
            let mut next = 0;
            let mut forwarded = Vec::new();
            while next < total {
                let durable = handle.wait_durable_beyond(next).await;
                assert!(durable > next);
                let batches = handle.read_durable(next, 64).await.unwrap();
                // Stats are published under the lock the read took.
                let durable_now = handle.stats().durable_seq;
                for batch in batches {
                    assert_eq!(batch.first_seq, next);
                    assert!(batch.first_seq + u64::from(batch.records) <= durable_now);
                    next = batch.first_seq + u64::from(batch.records);
                    forwarded.push(batch.batch);
                }
                handle.ack(next).await.unwrap();
            }
            forwarded
        })
    };
    for i in 0..total {
        handle.append(1, 0, payload(i)).await.unwrap();
    }
    let forwarded = tokio::time::timeout(DEADLINE, forwarder)
        .await
        .expect("forwarder drains")
        .unwrap();
    assert_eq!(forwarded, (0..total).map(payload).collect::<Vec<_>>());
    let stats = handle.stats();
    assert_eq!((stats.acked_seq, stats.buffered_records), (total, 0));
}

#[tokio::test]
async fn a_refused_append_fails_alone_in_its_group() {
    let dir = TempDir::new().unwrap();
    let handle = DriverOptions {
        pending_appends_max: 4,
        pending_bytes_max: 16,
    };
    let (buffer, _) = StreamBuffer::open(dir.path(), opts()).unwrap();
    let handle = BufferHandle::spawn_with(buffer, "s".to_owned(), handle);
    let (ok, refused, too_big) = tokio::join!(
        handle.append(2, 0, payload(0)),
        handle.append(0, 0, payload(1)),
        handle.append(1, 0, Bytes::from(vec![0; 2000])),
    );
    assert_eq!(ok.unwrap(), 0);
    assert!(matches!(refused, Err(BufferError::NoRecords)));
    assert!(matches!(too_big, Err(BufferError::BatchTooLarge { .. })));
    assert_eq!(handle.append(1, 0, payload(2)).await.unwrap(), 2);
    assert_eq!(handle.stream(), "s");
}
