//! Model check of [`StreamBuffer`] with crashes (in the spirit of vector's
//! `disk_v2` model tests): random operations run against the real buffer on a
//! simulated file system ([`SimFs`]) and against a tiny in-memory model; after
//! every step the two must agree.
//!
//! The buffer is never told how it will die. A `Crash` is a power cut of the
//! simulated machine: [`SimFs::crash`] keeps exactly what the buffer fsynced
//! (file bytes up to each file's last fsync, directory entries only once
//! their directory was fsynced, including the stream directory's own entry
//! in its parent), and [`SimFs::crash_torn`] also keeps a random part of the
//! rest (a prefix of each file's unsynced appends, maybe ending in zeros or
//! garbage; a random subset of the unsynced entries). A `Restart` kills only
//! the process: the page cache survives, and what the reopened buffer
//! recovers counts as durable from then on (it may be forwarded), so a later
//! crash must keep it too. So removing any fsync the buffer relies on makes a
//! property below fail; each was checked by deleting it:
//!
//! * `SyncTicket::run`: the group commit's fdatasync of the active segment,
//!   and the directory fsync after a segment was created (also
//!   `driver_tests`);
//! * `StreamBuffer::open`: the parent's fsync after creating the stream
//!   directory (also `driver_tests`), the fdatasync of the recovered last
//!   segment and the directory fsync after recovery (found through
//!   `Restart` then `Crash`);
//! * `seal_if_full`: the fdatasync of a sealed segment (also `driver_tests`);
//! * `persist_acked`: the fdatasync of `acked.tmp` and the directory fsync
//!   after the rename.
//!
//! Not needed for any acknowledged record, so not caught: the fdatasync in
//! `Segment::truncate_to_valid` (see there).
//!
//! A `FailedSync` is a sync whose first fsync fails (the file system is
//! wrapped in a [`FaultyFs`]): the records not yet durable are refused and
//! must be gone after the reopen that follows, and every property above
//! holds across it.
//!
//! Properties: every record appended before a completed sync (or recovered by
//! a reopen) and not acked is readable after any crash, byte-identical, under
//! its seq; of the records never made durable a crash may keep any (with gaps
//! between them after a torn crash), but only as they were appended;
//! `next_seq` never drops below the end of a batch that was ever durable (so
//! no forwarded seq is reused) and lands on a seq it once had; a persisted
//! ack survives; a restart loses nothing; reads return only durable,
//! checksummed, model-identical batches; the full policies behave as
//! documented.

use super::*;
use proptest::prelude::*;
use std::collections::{BTreeMap, BTreeSet};
use strata_segment_log::fs::{FaultyFs, SyncFaults};
use strata_segment_log::sim::SimFs;

const BATCH_BYTES_MAX: usize = 48;
/// The agent's `<data_dir>/buffers`, durable before the buffer opens.
const BUFFERS_DIR: &str = "/data/buffers";
/// The stream directory: the buffer creates it.
const STREAM_DIR: &str = "/data/buffers/sensors";

#[derive(Debug, Clone)]
enum Op {
    Append {
        records: u32,
        len: usize,
    },
    Sync,
    /// A sync whose first fsync fails (`reopen.rs`): what was not durable
    /// is refused, and the buffer reopens.
    FailedSync,
    Read {
        from_delta: i64,
        max_bytes: usize,
    },
    /// `permille` of the way from `acked_seq` to `durable_seq`; above 1000
    /// asks for an ack beyond `durable_seq`.
    Ack {
        permille: u32,
    },
    /// The process dies; the page cache survives.
    Restart,
    /// A power cut: strict, or torn from the seed.
    Crash {
        torn: Option<u64>,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (1u32..5, 0..=BATCH_BYTES_MAX).prop_map(|(records, len)| Op::Append { records, len }),
        2 => Just(Op::Sync),
        1 => Just(Op::FailedSync),
        2 => (-3i64..6, 0usize..200).prop_map(|(from_delta, max_bytes)| Op::Read { from_delta, max_bytes }),
        2 => (0u32..1100).prop_map(|permille| Op::Ack { permille }),
        1 => Just(Op::Restart),
        1 => proptest::option::of(any::<u64>()).prop_map(|torn| Op::Crash { torn }),
    ]
}

/// Options with `encrypted`: new segments sealed (the key itself is given
/// to [`StreamBuffer::open_with_keys`]; the file name only makes `validate`
/// count the encryption overhead).
fn options(encrypted: bool) -> impl Strategy<Value = BufferOptions> {
    let overhead = if encrypted {
        format::FRAME_OVERHEAD_BYTES + crypto::SEAL_OVERHEAD_BYTES + format::SEGMENT_HEADER_BYTES
    } else {
        format::FRAME_OVERHEAD_BYTES
    };
    let frame_max = (BATCH_BYTES_MAX + overhead) as u64;
    (
        80u64..400,
        prop_oneof![Just(0u64), 0u64..300, Just(1 << 20)],
        prop_oneof![Just(FullPolicy::Reject), Just(FullPolicy::DropOldest)],
    )
        .prop_map(
            move |(segment_bytes_max, slack, full_policy)| BufferOptions {
                segment_bytes_max,
                buffer_bytes_max: segment_bytes_max + frame_max + slack,
                full_policy,
                batch_bytes_max: BATCH_BYTES_MAX,
                encryption_key_file: encrypted.then(|| PathBuf::from("/model/buffer.key")),
                ..BufferOptions::default()
            },
        )
}

#[derive(Debug, Clone, PartialEq)]
struct ModelBatch {
    records: u32,
    max_timestamp_ms: i64,
    bytes: Vec<u8>,
}

/// What the buffer must hold: unacked batches by first seq, and positions.
#[derive(Debug)]
struct Model {
    batches: BTreeMap<u64, ModelBatch>,
    acked_seq: u64,
    durable_seq: u64,
    next_seq: u64,
    /// End of the last batch that was ever durable: seqs below it may have
    /// been forwarded, so `next_seq` must never go below it. (A torn crash
    /// may leave `next_seq` past seqs that never were in a durable batch,
    /// from a segment's name, and a later crash may take those back.)
    durable_seq_ever: u64,
    dropped_since_open: u64,
    /// Every value `next_seq` had: recovery only ever lands on one of them.
    next_seqs_ever: BTreeSet<u64>,
}

impl Default for Model {
    fn default() -> Self {
        Self {
            batches: BTreeMap::new(),
            acked_seq: 0,
            durable_seq: 0,
            next_seq: 0,
            durable_seq_ever: 0,
            dropped_since_open: 0,
            next_seqs_ever: BTreeSet::from([0]),
        }
    }
}

impl Model {
    fn forget_acked(&mut self) {
        let acked = self.acked_seq;
        self.batches
            .retain(|first, b| first + u64::from(b.records) > acked);
    }

    /// After a reopen: every batch that was durable is back, byte-identical;
    /// of the others (never acknowledged) a crash may have kept any, even
    /// with gaps between them (a torn crash can keep a later segment's name
    /// and lose an earlier one's), but only as they were appended. What was
    /// recovered is durable from now on.
    fn reconcile(&mut self, buffer: &StreamBuffer, why: Reopen) {
        let recovered = buffer.read_durable(0, usize::MAX).expect("read");
        let mut kept = BTreeMap::new();
        for batch in recovered {
            let seq = batch.first_seq;
            let appended = self.batches.remove(&seq).unwrap_or_else(|| {
                panic!("after {why:?}: recovered a batch at {seq} that was never appended")
            });
            assert_eq!(
                (batch.records, batch.max_timestamp_ms, &batch.batch[..]),
                (
                    appended.records,
                    appended.max_timestamp_ms,
                    &appended.bytes[..]
                ),
                "after {why:?}: batch at {seq} is byte-identical"
            );
            kept.insert(seq, appended);
        }
        for (first, lost) in &self.batches {
            assert!(
                first + u64::from(lost.records) > self.durable_seq_ever,
                "after {why:?}: the batch at {first}, acknowledged durable, was lost"
            );
            assert_ne!(
                why,
                Reopen::Restart,
                "a restart lost the batch at {first}: the page cache survives a process"
            );
        }
        self.batches = kept;
        self.next_seq = buffer.next_seq();
        self.mark_durable();
        self.dropped_since_open = 0;
    }

    /// A failed sync refused everything not durable: it is not stored.
    fn refuse_unsynced(&mut self) {
        let durable = self.durable_seq;
        self.batches.retain(|first, _| *first < durable);
        self.next_seq = durable;
    }

    /// Everything appended is durable now (a completed sync or a reopen).
    fn mark_durable(&mut self) {
        self.durable_seq = self.next_seq;
        if let Some((first, last)) = self.batches.last_key_value() {
            let end = first + u64::from(last.records);
            self.durable_seq_ever = self.durable_seq_ever.max(end);
        }
    }

    fn buffered_records(&self) -> u64 {
        self.batches
            .iter()
            .map(|(first, b)| first + u64::from(b.records) - first.max(&self.acked_seq))
            .sum()
    }
}

struct Harness {
    fs: SimFs,
    /// `fs` with fsync failures injected: what the buffer runs on.
    faulty: FaultyFs,
    faults: Arc<SyncFaults>,
    opts: BufferOptions,
    keys: Option<Arc<Keyring>>,
    buffer: Option<StreamBuffer>,
    model: Model,
}

/// Why the buffer is reopened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reopen {
    Start,
    Restart,
    Crash,
}

impl Harness {
    fn new(opts: BufferOptions) -> Self {
        let fs = SimFs::new();
        strata_segment_log::fs::create_dir_all_durably(&fs, Path::new(BUFFERS_DIR)).unwrap();
        let keys = opts.encryption_key_file.as_ref().map(|path| {
            Arc::new(Keyring {
                current: Some(BufferKey::from_bytes(&[7; 32], path.clone())),
                previous: Vec::new(),
            })
        });
        let faulty = FaultyFs::new(fs.shared());
        let mut harness = Self {
            faults: faulty.faults(),
            faulty,
            fs,
            opts,
            keys,
            buffer: None,
            model: Model::default(),
        };
        harness.reopen(Reopen::Start);
        harness
    }

    fn buffer(&mut self) -> &mut StreamBuffer {
        self.buffer.as_mut().expect("buffer is open")
    }

    fn reopen(&mut self, why: Reopen) {
        self.buffer = None;
        let (buffer, _) = StreamBuffer::open_with_keys(
            self.faulty.shared(),
            Path::new(STREAM_DIR),
            self.opts.clone(),
            self.keys.clone(),
        )
        .unwrap_or_else(|err| panic!("reopen after {why:?}: {err}"));
        let model = &mut self.model;
        let next = buffer.next_seq();
        assert!(
            next >= model.durable_seq_ever,
            "seq reuse after {why:?}: next_seq {next} < a seq once durable {} \
             (records acknowledged durable were lost)",
            model.durable_seq_ever
        );
        assert!(
            next <= model.next_seq,
            "next_seq {next} beyond any seq handed out"
        );
        assert!(
            next == model.acked_seq || model.next_seqs_ever.contains(&next),
            "next_seq {next} is not a batch boundary"
        );
        assert_eq!(
            buffer.acked_seq(),
            model.acked_seq,
            "the acked seq is persisted"
        );
        model.reconcile(&buffer, why);
        self.buffer = Some(buffer);
        self.check_read(0, usize::MAX);
    }

    fn apply(&mut self, op: &Op) {
        match op {
            Op::Append { records, len } => self.append(*records, *len),
            Op::Sync => {
                self.buffer().sync().expect("sync");
                self.model.mark_durable();
            }
            Op::FailedSync => self.failed_sync(),
            Op::Read {
                from_delta,
                max_bytes,
            } => {
                let from = self.model.acked_seq.saturating_add_signed(*from_delta);
                self.check_read(from, *max_bytes);
            }
            Op::Ack { permille } => self.ack(*permille),
            Op::Restart => self.reopen(Reopen::Restart),
            Op::Crash { torn } => {
                self.buffer = None;
                match torn {
                    None => self.fs.crash(),
                    Some(seed) => self.fs.crash_torn(*seed),
                }
                self.reopen(Reopen::Crash);
            }
        }
        self.check_state();
    }

    fn append(&mut self, records: u32, len: usize) {
        let seq = self.model.next_seq;
        let bytes: Vec<u8> = (0..len)
            .map(|i| (seq as usize * 7 + i * 13) as u8)
            .collect();
        let before = self.buffer().stats();
        match self.buffer().append(records, seq as i64, &bytes) {
            Ok(appended) => {
                assert_eq!(appended.first_seq, seq);
                let acked = self.buffer().acked_seq();
                if acked > self.model.acked_seq {
                    assert_eq!(self.opts.full_policy, FullPolicy::DropOldest);
                    assert!(acked <= self.model.durable_seq, "dropped non-durable data");
                    // Records, not seqs: a torn crash can leave gaps.
                    let unacked_before = self.model.buffered_records();
                    self.model.acked_seq = acked;
                    self.model.forget_acked();
                    let dropped = unacked_before - self.model.buffered_records();
                    assert_eq!(appended.dropped_records, dropped);
                    self.model.dropped_since_open += dropped;
                } else {
                    assert_eq!(appended.dropped_records, 0);
                }
                let batch = ModelBatch {
                    records,
                    max_timestamp_ms: seq as i64,
                    bytes,
                };
                self.model.batches.insert(seq, batch);
                self.model.next_seq += u64::from(records);
                self.model.next_seqs_ever.insert(self.model.next_seq);
            }
            Err(BufferError::Full { .. }) => {
                let after = self.buffer().stats();
                let positions =
                    |s: BufferStats| (s.acked_seq, s.durable_seq, s.next_seq, s.dropped_records);
                assert_eq!(
                    positions(after),
                    positions(before),
                    "a refused append changed nothing"
                );
            }
            Err(err) => panic!("append failed: {err}"),
        }
    }

    fn failed_sync(&mut self) {
        self.faults.fail_next(1);
        let result = self.buffer().sync();
        // Disarmed if nothing needed an fsync.
        self.faults.fail_next(0);
        match result {
            // No fsync was needed (a sealed segment was fsynced already).
            Ok(()) => {
                self.model.mark_durable();
                return;
            }
            Err(BufferError::NotStored { .. }) => {}
            Err(err) => panic!("a failed fsync gave {err}"),
        }
        self.model.refuse_unsynced();
        let refused = self.buffer().append(1, 0, b"refused");
        assert!(
            matches!(refused, Err(BufferError::Recovering { .. })),
            "{refused:?}"
        );
        self.buffer()
            .recover()
            .expect("reopen after a transient fsync failure");
        let next = self.buffer().next_seq();
        assert_eq!(
            next, self.model.durable_seq,
            "numbering goes on at durable_seq"
        );
        self.check_read(0, usize::MAX);
    }

    fn ack(&mut self, permille: u32) {
        let (acked, durable) = (self.model.acked_seq, self.model.durable_seq);
        let seq = acked + (durable - acked) * u64::from(permille) / 1000;
        let result = self.buffer().ack(seq);
        if seq > durable {
            assert!(
                matches!(result, Err(BufferError::AckBeyondDurable { .. })),
                "{result:?}"
            );
        } else {
            result.expect("ack");
            self.model.acked_seq = seq;
            self.model.forget_acked();
        }
    }

    /// Reads from `from` and checks the answer against the model: the
    /// durable batches holding `from` (or after it) on, in order, within
    /// `max_bytes` but at least one.
    fn check_read(&mut self, from: u64, max_bytes: usize) {
        let read = self.buffer().read_durable(from, max_bytes).expect("read");
        let model = &self.model;
        let start = from.max(model.acked_seq);
        let expected: Vec<(&u64, &ModelBatch)> = model
            .batches
            .iter()
            .filter(|(first, b)| {
                let end = *first + u64::from(b.records);
                end > start && end <= model.durable_seq
            })
            .collect();
        assert!(
            read.len() <= expected.len(),
            "read {} batches from {start}, only {} are durable",
            read.len(),
            expected.len()
        );
        assert!(
            !read.is_empty() || expected.is_empty(),
            "durable data from {start} was not returned"
        );
        let mut bytes = 0;
        for (batch, (first, want)) in read.iter().zip(&expected) {
            assert_eq!(
                batch.first_seq, **first,
                "the next durable batch from {start}"
            );
            assert_eq!(batch.records, want.records);
            assert_eq!(batch.max_timestamp_ms, want.max_timestamp_ms);
            assert_eq!(
                batch.batch, want.bytes,
                "batch at {first} is byte-identical"
            );
            bytes += batch.batch.len();
        }
        assert!(read.len() <= 1 || bytes <= max_bytes, "read over budget");
        if let Some((first, next)) = expected.get(read.len()).filter(|_| !read.is_empty()) {
            assert!(
                bytes + next.bytes.len() > max_bytes,
                "read stopped early at {first}"
            );
        }
    }

    fn check_state(&mut self) {
        let buffer = self.buffer.as_ref().expect("buffer is open");
        buffer.check_invariants();
        let model = &self.model;
        assert_eq!(buffer.acked_seq(), model.acked_seq);
        assert_eq!(buffer.durable_seq(), model.durable_seq);
        assert_eq!(buffer.next_seq(), model.next_seq);
        assert!(model.next_seq >= model.durable_seq_ever);
        assert_eq!(buffer.buffered_records(), model.buffered_records());
        assert_eq!(buffer.dropped_records(), model.dropped_since_open);
        assert!(buffer.buffered_bytes() <= self.opts.buffer_bytes_max);
    }
}

proptest! {
    // The file system is in memory: 256 cases take well under a second;
    // PROPTEST_CASES=20000 for a deep run.
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(256),
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn buffer_matches_model_across_crashes(
        opts in options(false),
        ops in prop::collection::vec(op(), 1..120),
    ) {
        let mut harness = Harness::new(opts);
        for op in &ops {
            harness.apply(op);
        }
        // A final power cut loses nothing that was durable.
        harness.apply(&Op::Crash { torn: None });
    }

    /// The same properties with every new segment encrypted: a segment
    /// header torn by a crash, sealed frames, a new segment per reopen.
    #[test]
    fn encrypted_buffer_matches_model_across_crashes(
        opts in options(true),
        ops in prop::collection::vec(op(), 1..120),
    ) {
        let mut harness = Harness::new(opts);
        for op in &ops {
            harness.apply(op);
        }
        harness.apply(&Op::Crash { torn: None });
    }
}
