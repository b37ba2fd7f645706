//! Model check of [`StreamBuffer`] with crashes (in the spirit of vector's
//! `disk_v2` model tests): random operations run against the real buffer on a
//! temp directory and against a tiny in-memory model; after every step the
//! two must agree.
//!
//! A crash drops the buffer and tears the last segment file to a random length
//! between its length at the last completed sync and its current length,
//! sometimes followed by garbage, then reopens. Sealed segments were
//! fdatasynced when sealed and the `acked` file is fsynced before it is
//! replaced, so they survive intact.
//!
//! Properties: every record appended before a completed sync and not acked
//! is readable after any crash, byte-identical, under its seq; `next_seq`
//! never drops below a seq that was ever durable (so no forwarded seq is
//! reused); reads return only durable, checksummed, model-identical batches;
//! the full policies behave as documented.

use super::*;
use proptest::prelude::*;
use std::collections::BTreeMap;
use std::fs::{self, OpenOptions};
use std::os::unix::fs::FileExt;
use tempfile::TempDir;

const BATCH_BYTES_MAX: usize = 48;

#[derive(Debug, Clone)]
enum Op {
    Append {
        records: u32,
        len: usize,
    },
    Sync,
    Read {
        from_delta: i64,
        max_bytes: usize,
    },
    /// `permille` of the way from `acked_seq` to `durable_seq`; above 1000
    /// asks for an ack beyond `durable_seq`.
    Ack {
        permille: u32,
    },
    Crash {
        keep_permille: u32,
        garbage: Vec<u8>,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (1u32..5, 0..=BATCH_BYTES_MAX).prop_map(|(records, len)| Op::Append { records, len }),
        2 => Just(Op::Sync),
        2 => (-3i64..6, 0usize..200).prop_map(|(from_delta, max_bytes)| Op::Read { from_delta, max_bytes }),
        2 => (0u32..1100).prop_map(|permille| Op::Ack { permille }),
        1 => (0u32..=1000, prop_oneof![3 => Just(Vec::new()), 1 => prop::collection::vec(any::<u8>(), 1..40)])
            .prop_map(|(keep_permille, garbage)| Op::Crash { keep_permille, garbage }),
    ]
}

fn options() -> impl Strategy<Value = BufferOptions> {
    let frame_max = (BATCH_BYTES_MAX + format::FRAME_OVERHEAD_BYTES) as u64;
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
#[derive(Debug, Default)]
struct Model {
    batches: BTreeMap<u64, ModelBatch>,
    acked_seq: u64,
    durable_seq: u64,
    next_seq: u64,
    /// Highest `durable_seq` ever: seqs below it may have been forwarded.
    durable_seq_ever: u64,
    dropped_since_open: u64,
}

impl Model {
    fn forget_acked(&mut self) {
        let acked = self.acked_seq;
        self.batches
            .retain(|first, b| first + u64::from(b.records) > acked);
    }

    fn buffered_records(&self) -> u64 {
        self.batches
            .iter()
            .map(|(first, b)| first + u64::from(b.records) - first.max(&self.acked_seq))
            .sum()
    }
}

struct Harness {
    dir: TempDir,
    opts: BufferOptions,
    buffer: Option<StreamBuffer>,
    model: Model,
    /// The last segment file and its length when everything was last durable.
    synced: Option<(PathBuf, u64)>,
}

impl Harness {
    fn new(opts: BufferOptions) -> Self {
        let dir = TempDir::new().unwrap();
        let mut harness = Self {
            dir,
            opts,
            buffer: None,
            model: Model::default(),
            synced: None,
        };
        harness.reopen();
        harness
    }

    fn buffer(&mut self) -> &mut StreamBuffer {
        self.buffer.as_mut().expect("buffer is open")
    }

    fn last_segment(&self) -> Option<(PathBuf, u64)> {
        let mut files: Vec<_> = fs::read_dir(self.dir.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "buf"))
            .collect();
        files.sort();
        let last = files.pop()?;
        let len = fs::metadata(&last).unwrap().len();
        Some((last, len))
    }

    fn reopen(&mut self) {
        self.buffer = None;
        let (buffer, _) = StreamBuffer::open(self.dir.path(), self.opts.clone()).expect("reopen");
        let model = &mut self.model;
        let next = buffer.next_seq();
        assert!(
            next >= model.durable_seq_ever,
            "seq reuse: next_seq {next} < a seq once durable {}",
            model.durable_seq_ever
        );
        assert!(
            next <= model.next_seq,
            "next_seq {next} beyond any seq handed out"
        );
        assert!(
            next == model.next_seq || model.batches.contains_key(&next),
            "next_seq {next} is not a batch boundary"
        );
        assert_eq!(
            buffer.acked_seq(),
            model.acked_seq,
            "the acked seq is persisted"
        );
        model.batches.retain(|first, _| *first < next);
        model.next_seq = next;
        model.durable_seq = next;
        model.durable_seq_ever = model.durable_seq_ever.max(next);
        model.dropped_since_open = 0;
        self.buffer = Some(buffer);
        self.synced = self.last_segment();
        // Everything recovered is readable, byte-identical, under its seq.
        self.check_read(0, usize::MAX);
    }

    fn apply(&mut self, op: &Op) {
        match op {
            Op::Append { records, len } => self.append(*records, *len),
            Op::Sync => {
                self.buffer().sync().expect("sync");
                self.model.durable_seq = self.model.next_seq;
                self.model.durable_seq_ever = self.model.next_seq;
                self.synced = self.last_segment();
            }
            Op::Read {
                from_delta,
                max_bytes,
            } => {
                let from = self.model.acked_seq.saturating_add_signed(*from_delta);
                self.check_read(from, *max_bytes);
            }
            Op::Ack { permille } => self.ack(*permille),
            Op::Crash {
                keep_permille,
                garbage,
            } => self.crash(*keep_permille, garbage),
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
                    assert_eq!(appended.dropped_records, acked - self.model.acked_seq);
                    self.model.acked_seq = acked;
                    self.model.dropped_since_open += appended.dropped_records;
                    self.model.forget_acked();
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

    fn crash(&mut self, keep_permille: u32, garbage: &[u8]) {
        self.buffer = None;
        if let Some((path, len)) = self.last_segment() {
            let synced_len = match &self.synced {
                Some((synced_path, synced_len)) if *synced_path == path => *synced_len,
                _ => 0,
            };
            assert!(synced_len <= len, "a synced prefix only grows");
            let keep = synced_len + (len - synced_len) * u64::from(keep_permille) / 1000;
            let file = OpenOptions::new().write(true).open(&path).unwrap();
            file.set_len(keep).unwrap();
            file.write_all_at(garbage, keep).unwrap();
        }
        self.reopen();
    }

    /// Reads from `from` and checks the answer against the model.
    fn check_read(&mut self, from: u64, max_bytes: usize) {
        let read = self.buffer().read_durable(from, max_bytes).expect("read");
        let model = &self.model;
        let start = from.max(model.acked_seq);
        let Some(first) = read.first() else {
            assert!(
                start >= model.durable_seq,
                "durable data from {start} was not returned"
            );
            return;
        };
        assert!(first.first_seq <= start, "read starts after {start}");
        let mut seq = first.first_seq;
        let mut bytes = 0;
        for batch in &read {
            assert_eq!(batch.first_seq, seq, "batches are contiguous");
            let expected = model.batches.get(&seq).expect("batch is in the model");
            assert_eq!(batch.records, expected.records);
            assert_eq!(batch.max_timestamp_ms, expected.max_timestamp_ms);
            assert_eq!(
                batch.batch, expected.bytes,
                "batch at {seq} is byte-identical"
            );
            seq += u64::from(batch.records);
            assert!(seq <= model.durable_seq, "non-durable data was read");
            bytes += batch.batch.len();
        }
        assert!(seq > start, "the first batch holds the start seq");
        assert!(read.len() == 1 || bytes <= max_bytes, "read over budget");
        if seq < model.durable_seq {
            let next = &model.batches[&seq];
            assert!(
                bytes + next.bytes.len() > max_bytes,
                "read stopped early at {seq}"
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
    // 48 cases keep it fast on slow disks; PROPTEST_CASES=5000 for a deep run.
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(48),
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn buffer_matches_model_across_crashes(
        opts in options(),
        ops in prop::collection::vec(op(), 1..120),
    ) {
        let mut harness = Harness::new(opts);
        for op in &ops {
            harness.apply(op);
        }
        // A final crash at the synced length loses nothing that was durable.
        harness.apply(&Op::Crash { keep_permille: 0, garbage: vec![0xa5; 3] });
    }
}
