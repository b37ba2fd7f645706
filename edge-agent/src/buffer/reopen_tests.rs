//! Tests of the reopen after an I/O failure (`reopen.rs`), on the simulated
//! file system with fsync failures injected ([`FaultyFs`]): nothing is
//! acknowledged on an unknown state, the refused records are not stored,
//! what was acknowledged before stays, and the buffer takes records again
//! once the disk works (attempts paced while it does not).

use super::tests::small_opts as opts;
use super::*;
use bytes::Bytes;
use std::time::Duration;
use strata_segment_log::fs::{FaultyFs, SyncFaults};
use strata_segment_log::sim::SimFs;

const DIR: &str = "/data/buffers/sensors";
const DEADLINE: Duration = Duration::from_secs(20);

fn payload(tag: u8) -> Vec<u8> {
    vec![tag; 40]
}

/// A buffer on a simulated disk whose fsyncs can be made to fail.
fn open_faulty() -> (SimFs, Arc<SyncFaults>, StreamBuffer) {
    let sim = SimFs::new();
    let faulty = FaultyFs::new(sim.shared());
    let faults = faulty.faults();
    let (buffer, _) = StreamBuffer::open_on(faulty.shared(), Path::new(DIR), opts()).unwrap();
    (sim, faults, buffer)
}

/// The batches a buffer reopened on `sim` after a power cut holds.
fn after_power_cut(sim: &SimFs) -> Vec<(u64, Bytes)> {
    sim.crash();
    let (buffer, _) = StreamBuffer::open_on(sim.shared(), Path::new(DIR), opts()).unwrap();
    batches(&buffer)
}

fn batches(buffer: &StreamBuffer) -> Vec<(u64, Bytes)> {
    buffer
        .read_durable(0, usize::MAX)
        .unwrap()
        .into_iter()
        .map(|b| (b.first_seq, b.batch))
        .collect()
}

fn bytes(tag: u8) -> Bytes {
    Bytes::from(payload(tag))
}

#[test]
fn a_failed_fsync_refuses_what_is_not_durable_then_the_buffer_reopens() {
    let (sim, faults, mut buffer) = open_faulty();
    buffer.append(2, 0, &payload(b'a')).unwrap();
    buffer.sync().unwrap();

    buffer.append(1, 0, &payload(b'b')).unwrap();
    faults.fail_next(1);
    let refused = buffer.sync().unwrap_err();
    assert!(
        matches!(refused, BufferError::NotStored { .. }),
        "{refused}"
    );
    assert!(refused.is_retryable());
    assert!(refused.to_string().contains(DIR), "{refused}");
    assert_eq!(
        buffer.durable_seq(),
        2,
        "nothing acknowledged on an unknown state"
    );
    // Not before it has reopened.
    let err = buffer.append(1, 0, &payload(b'x')).unwrap_err();
    assert!(matches!(err, BufferError::Recovering { .. }), "{err}");
    assert!(err.is_retryable() && err.to_string().contains(DIR), "{err}");
    assert!(buffer.must_recover());
    // Reads of what was durable go on meanwhile.
    assert_eq!(batches(&buffer), [(0, bytes(b'a'))]);

    buffer.recover().unwrap();
    buffer.check_invariants();
    assert!(!buffer.must_recover());
    let stats = buffer.stats();
    assert_eq!(
        (stats.durable_seq, stats.next_seq, stats.reopens),
        (2, 2, 1)
    );
    assert_eq!(
        batches(&buffer),
        [(0, bytes(b'a'))],
        "the refused batch was not stored"
    );
    assert_eq!(buffer.append(3, 0, &payload(b'c')).unwrap().first_seq, 2);
    buffer.sync().unwrap();
    buffer.check_invariants();
    assert_eq!(after_power_cut(&sim), [(0, bytes(b'a')), (2, bytes(b'c'))]);
}

/// A seal's fsync fails inside an append: that append and the earlier ones
/// of the same group, not yet synced, are all refused.
#[test]
fn a_failed_seal_refuses_the_whole_unsynced_group() {
    let (sim, faults, mut buffer) = open_faulty();
    buffer.append(1, 0, &payload(b'a')).unwrap();
    buffer.sync().unwrap();
    buffer.append(1, 0, &payload(b'b')).unwrap();
    buffer.append(1, 0, &payload(b'c')).unwrap();
    faults.fail_next(1);
    // The segment is full: this append seals it, and the seal's fsync fails.
    let sealing = buffer.append(1, 0, &payload(b'd')).unwrap_err();
    assert!(
        matches!(sealing, BufferError::NotStored { .. }),
        "{sealing}"
    );
    let group = buffer.begin_sync().unwrap_err();
    assert!(group.is_retryable(), "{group}");

    buffer.recover().unwrap();
    buffer.check_invariants();
    assert_eq!(batches(&buffer), [(0, bytes(b'a'))]);
    assert_eq!(buffer.append(1, 0, &payload(b'e')).unwrap().first_seq, 1);
    buffer.sync().unwrap();
    assert_eq!(after_power_cut(&sim), [(0, bytes(b'a')), (1, bytes(b'e'))]);
}

/// The driver: the producer whose group's fsync failed gets a retryable
/// error, the next append (after the reopen) is acknowledged and durable,
/// and what was acknowledged before survives a power cut.
#[tokio::test]
async fn through_the_driver_a_refused_append_is_retryable_and_the_next_one_durable() {
    let (sim, faults, buffer) = open_faulty();
    let handle = BufferHandle::spawn(buffer, "sensors".to_owned());
    let append = |tag: u8| {
        let handle = handle.clone();
        async move {
            tokio::time::timeout(DEADLINE, handle.append(1, 0, bytes(tag)))
                .await
                .expect("append answered")
        }
    };
    assert_eq!(append(b'a').await.unwrap(), 0);
    faults.fail_next(1);
    let refused = append(b'b').await.unwrap_err();
    assert!(refused.is_retryable(), "{refused}");
    assert!(
        matches!(refused, BufferError::NotStored { .. }),
        "{refused}"
    );
    let seq = append(b'c').await.unwrap();
    assert_eq!(seq, 1, "b's seq was never durable, so never forwarded");
    let stats = handle.stats();
    assert!(stats.durable_seq > seq, "{stats:?}");
    assert_eq!(stats.reopens, 1);
    let read = handle.read_durable(0, usize::MAX).await.unwrap();
    let read: Vec<_> = read.into_iter().map(|b| (b.first_seq, b.batch)).collect();
    assert_eq!(read, [(0, bytes(b'a')), (1, bytes(b'c'))]);
    drop(handle);
    assert_eq!(after_power_cut(&sim), [(0, bytes(b'a')), (1, bytes(b'c'))]);
}

/// A disk whose fsyncs keep failing: the buffer keeps refusing, with an
/// error naming its directory, and attempts a reopen at most once per
/// backoff however often it is called; once the disk works, it recovers.
#[test]
fn a_dead_disk_keeps_refusing_and_reopen_attempts_are_paced() {
    let (_sim, faults, mut buffer) = open_faulty();
    buffer.append(1, 0, &payload(b'a')).unwrap();
    buffer.sync().unwrap();
    buffer.ack(1).unwrap();
    buffer.append(1, 0, &payload(b'b')).unwrap();
    faults.fail_all(true);
    assert!(buffer.sync().is_err());

    let t0 = Instant::now();
    let mut attempts = 0;
    let mut last_failed_syncs = faults.failed();
    // Ten simulated seconds of calls, one every millisecond.
    for ms in 0..10_000u64 {
        let now = t0 + Duration::from_millis(ms);
        let err = buffer.recover_at(now).unwrap_err();
        let BufferError::Recovering {
            dir,
            failed_reopens,
            last_error,
            ..
        } = &err
        else {
            panic!("{err}");
        };
        assert_eq!(dir, Path::new(DIR));
        assert!(err.is_retryable());
        if faults.failed() > last_failed_syncs {
            attempts += 1;
            last_failed_syncs = faults.failed();
            assert_eq!(*failed_reopens, attempts);
            assert!(last_error.as_deref().unwrap().contains("fsync"), "{err}");
        }
    }
    // At once, then after 0.1, 0.2, 0.4, 0.8, 1.6, 3.2 and 5 s.
    assert_eq!(attempts, 7, "reopen attempts are paced");
    assert!(buffer.append(1, 0, &payload(b'x')).is_err());
    buffer.ack(1).unwrap();

    faults.fail_all(false);
    let later = t0 + Duration::from_secs(60);
    buffer.recover_at(later).unwrap();
    buffer.check_invariants();
    let stats = buffer.stats();
    assert_eq!((stats.acked_seq, stats.next_seq, stats.reopens), (1, 1, 1));
    buffer.append(1, 0, &payload(b'c')).unwrap();
    buffer.sync().unwrap();
    assert_eq!(batches(&buffer), [(1, bytes(b'c'))]);
}

/// Everything was forwarded (acked lazily: the `acked` file is behind) and
/// the segment the cut removes is the only one left: the reopen writes the
/// acked position, so that after a power cut numbering still goes on past
/// every seq that may have been forwarded.
#[test]
fn a_reopen_with_every_record_forwarded_keeps_numbering_past_them_across_a_power_cut() {
    let (sim, faults, mut buffer) = open_faulty();
    for tag in [b'a', b'b', b'c'] {
        buffer.append(1, 0, &payload(tag)).unwrap();
    }
    buffer.sync().unwrap();
    // Lazily: right after the open, so the `acked` file still says 0.
    buffer.ack_lazily(3, Instant::now()).unwrap();
    // The full segment is sealed and, all acked, deleted; `d` starts a new one.
    buffer.append(1, 0, &payload(b'd')).unwrap();
    assert_eq!(buffer.stats().buffered_records, 1);
    faults.fail_next(1);
    assert!(buffer.sync().is_err());
    buffer.recover().unwrap();
    buffer.check_invariants();
    assert_eq!((buffer.acked_seq(), buffer.next_seq()), (3, 3));

    sim.crash();
    let (buffer, _) = StreamBuffer::open_on(sim.shared(), Path::new(DIR), opts()).unwrap();
    assert_eq!(
        buffer.next_seq(),
        3,
        "seqs 0..3 were forwarded: numbering them again would make the core drop new records"
    );
}
