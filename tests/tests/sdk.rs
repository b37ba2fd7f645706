//! The SDK against real processes.
//!
//! - Push subscriptions: subscribers opened before any record exists receive
//!   every record after it commits, in offset order, over their one request,
//!   while a subscriber that reads nothing (its QUIC flow-control window
//!   full) holds back neither the writers nor the others.
//! - The producer: the async producer (batching, a small queue for
//!   backpressure) and the blocking wrapper deliver every record, in order
//!   per key, through an edge that restarts in the middle.

use anyhow::{anyhow, bail, Result};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;
use strata_client::api::{self, Subscription};
use strata_client::producer::{Producer, ProducerConfig, Record, SyncProducer};
use strata_client::reader::StreamReader;
use strata_schema::batch::{Builder, NewRecord};
use strata_tests::{wait_for, Pipeline};

const RECORDS: u64 = 3_000;
/// Large enough that a stalled subscriber's stream fills its flow-control
/// window many times over (3,000 × 4 KiB = 12 MiB).
const VALUE_BYTES: usize = 4096;

/// Waits until `stream` holds at least `n` records in the core.
async fn wait_records(core: &strata_client::Client, stream: &str, n: u64) -> Result<()> {
    let what = format!("the core to hold {n} records of {stream}");
    wait_for(&what, Duration::from_secs(120), || async {
        let d = api::describe_stream(core, stream).await?;
        Ok((d.records() >= n).then_some(()))
    })
    .await
}

/// Keys of the producer test: value `i` goes with key `k{i % KEYS}`.
const KEYS: u64 = 16;

/// The re-delivery the producer test allows. The SDK producer delivers at
/// least once: when the edge is killed after storing a batch but before
/// acknowledging it, the producer sends the same batch again and the core
/// holds it twice. The producer has one batch in flight, so at most one
/// batch of the phase where the edge restarts repeats: a run of
/// consecutive values inside `phase`, at most `batch_max` long, each stored
/// exactly twice, the copy right after the first (in each key's order, the
/// key's values of that batch again, before any newer value of the key).
struct Redelivery {
    phase: std::ops::Range<u64>,
    batch_max: u64,
}

/// One pass over the stream, in the order it was read: how often each
/// position and each value came, and each key's values in order.
#[derive(Default)]
struct Pass {
    positions: HashMap<(u32, u64), u32>,
    times: BTreeMap<u64, u32>,
    per_key: HashMap<String, Vec<u64>>,
    /// Records whose value is not a number.
    other: Vec<String>,
}

impl Pass {
    fn push(&mut self, r: &api::ConsumedRecord) -> Result<()> {
        *self.positions.entry((r.shard, r.offset)).or_default() += 1;
        let text = std::str::from_utf8(&r.data)?;
        let Ok(v) = text.parse::<u64>() else {
            self.other.push(text.to_string());
            return Ok(());
        };
        let key = r.key.clone().unwrap_or_default();
        if key != format!("k{}", v % KEYS) {
            bail!("value {v} has key {key:?}");
        }
        *self.times.entry(v).or_default() += 1;
        self.per_key.entry(key).or_default().push(v);
        Ok(())
    }

    /// Checks the pass read `positions` records, each position once, and
    /// every value in `values` (no other), in order per key with only the
    /// re-delivery `allowed`. Returns the values read twice.
    fn check(
        &self,
        what: &str,
        positions: u64,
        values: std::ops::Range<u64>,
        allowed: &Redelivery,
    ) -> Result<BTreeSet<u64>> {
        let read: u32 = self.positions.values().sum();
        if let Some((p, n)) = self.positions.iter().find(|(_, &n)| n > 1) {
            bail!("{what}: position {p:?} read {n} times ({read} records read)");
        }
        if u64::from(read) != positions {
            bail!("{what}: read {read} records; the stream holds {positions}");
        }
        if let Some(v) = values.clone().find(|v| !self.times.contains_key(v)) {
            bail!("{what}: value {v} never arrived");
        }
        if let Some((v, _)) = self.times.iter().find(|(v, _)| !values.contains(v)) {
            bail!("{what}: value {v} was never sent");
        }
        let repeated = self.repeated(what, allowed)?;
        for (key, seq) in &self.per_key {
            one_copy_in_order(key, seq, &repeated).map_err(|e| anyhow!("{what}: {e}"))?;
        }
        Ok(repeated)
    }

    /// The values read twice, checked against `allowed`.
    fn repeated(&self, what: &str, allowed: &Redelivery) -> Result<BTreeSet<u64>> {
        if let Some((v, n)) = self.times.iter().find(|(_, &n)| n > 2) {
            bail!("{what}: value {v} read {n} times");
        }
        let twice: BTreeSet<u64> = self
            .times
            .iter()
            .filter(|(_, &n)| n == 2)
            .map(|(&v, _)| v)
            .collect();
        let (Some(&first), Some(&last)) = (twice.first(), twice.last()) else {
            return Ok(twice);
        };
        let run = last - first + 1;
        if run != twice.len() as u64
            || run > allowed.batch_max
            || !allowed.phase.contains(&first)
            || !allowed.phase.contains(&last)
        {
            bail!(
                "{what}: values {first}..={last} ({} of them) read twice; allowed: one run of consecutive values of at most {} inside {:?}",
                twice.len(),
                allowed.batch_max,
                allowed.phase
            );
        }
        Ok(twice)
    }
}

/// Checks one key's values as read: strictly increasing, except that its
/// values in `repeated` come a second time right after their first copy.
fn one_copy_in_order(key: &str, seq: &[u64], repeated: &BTreeSet<u64>) -> Result<()> {
    let copy = seq.iter().filter(|v| repeated.contains(v)).count() / 2;
    // Where the copy starts: the first step that does not go up.
    let start = (1..seq.len()).find(|&j| seq[j] <= seq[j - 1]);
    let (before, after) = match start {
        None if copy == 0 => return Ok(()),
        Some(p) if copy > 0 && p >= copy && seq.len() >= p + copy => (p, p + copy),
        _ => bail!("key {key}: values out of order ({copy} re-delivered): {seq:?}"),
    };
    let (first, again) = (&seq[before - copy..before], &seq[before..after]);
    if first != again || again.iter().any(|v| !repeated.contains(v)) {
        bail!("key {key}: the re-delivered values {again:?} are not a copy of the values just before them, {first:?}");
    }
    let mut prev = seq[before - 1];
    for &v in &seq[after..] {
        if v <= prev {
            bail!("key {key}: value {v} came after {prev}");
        }
        prev = v;
    }
    Ok(())
}

/// Reads `n` records from a subscription; checks they are offsets 0..n in
/// order with their values. Returns the number of frames they came in.
async fn read_all(sub: &mut Subscription, n: u64) -> Result<u64> {
    let mut next = 0u64;
    let mut frames = 0;
    while next < n {
        let f = tokio::time::timeout(Duration::from_secs(60), sub.next()).await??;
        frames += 1;
        for r in &f.records {
            if r.offset != next {
                bail!("expected offset {next}, got {}", r.offset);
            }
            let want = format!("{next:08}");
            if !r.data.starts_with(want.as_bytes()) || r.data.len() != VALUE_BYTES {
                bail!("record {next} has the wrong value");
            }
            next += 1;
        }
    }
    Ok(frames)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribers_get_every_record_as_it_commits_without_polling() -> Result<()> {
    let p = Pipeline::start("").await?;
    let core = p.client(p.core_addr);
    api::create_stream(&core, "live", 1, 1).await?;
    // Subscribed before the first record: only a push can deliver them.
    let mut fast = api::subscribe(&core, "live", 0, 0, 500).await?;
    let mut second = api::subscribe(&core, "live", 0, 0, 500).await?;
    let mut stalled = api::subscribe(&core, "live", 0, 0, 500).await?;

    let edge = p.client(p.edge_addr);
    let mut i = 0u64;
    while i < RECORDS {
        let mut b = Builder::default();
        let mut values = Vec::new();
        for j in i..(i + 100).min(RECORDS) {
            let mut v = format!("{j:08}").into_bytes();
            v.resize(VALUE_BYTES, b'x');
            values.push(v);
        }
        for v in &values {
            b.push(&NewRecord {
                key: Some("k"),
                value: v,
                timestamp_ms: 0,
                headers: &[],
            });
        }
        api::produce(&edge, "live", &b.finish()).await?;
        i += values.len() as u64;
    }
    // The writers finished while one subscriber read nothing.
    wait_records(&core, "live", RECORDS).await?;
    let frames = read_all(&mut fast, RECORDS).await?;
    read_all(&mut second, RECORDS).await?;
    assert!(
        frames > 1,
        "one subscription request should bring several frames"
    );
    // The stalled subscriber still gets everything, in order.
    read_all(&mut stalled, RECORDS).await?;

    // A subscription past the end of the shard is refused with a clear error.
    let mut bad = api::subscribe(&core, "live", 0, RECORDS + 10, 0).await?;
    let e = bad
        .next()
        .await
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(e.contains("outside"), "{e}");
    let mut unknown = api::subscribe(&core, "nope", 0, 0, 0).await?;
    let e = unknown
        .next()
        .await
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(e.contains("does not exist"), "{e}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_producer_batches_retries_and_keeps_order() -> Result<()> {
    const N: u64 = 20_000;
    let mut p = Pipeline::start("").await?;
    let core = p.client(p.core_addr);
    api::create_stream(&core, "sdk", 4, 1).await?;

    // The async producer with a small queue: `send` waits when it is full.
    let mut cfg = ProducerConfig::new("sdk");
    cfg.queue_records = 100;
    cfg.batch_records = 250;
    let producer = Producer::new(p.client(p.edge_addr), cfg);
    let mut acks = Vec::new();
    for i in 0..N / 2 {
        if i == N / 4 {
            // The edge restarts under the producer: batches are retried.
            p.edge.kill9();
            p.restart_edge().await?;
        }
        let r = Record::new(format!("k{}", i % KEYS), format!("{i}"));
        acks.push(producer.send(r).await?);
    }
    producer.flush().await?;
    for a in acks {
        a.await?;
    }
    producer.close().await;

    // The blocking wrapper, from a plain thread.
    let (edge, ca) = (p.edge_addr, p.pki.ca.clone());
    tokio::task::spawn_blocking(move || -> Result<()> {
        let sync = SyncProducer::connect(edge, &ca, ProducerConfig::new("sdk"))?;
        let mut acks = Vec::new();
        for i in N / 2..N {
            acks.push(sync.send(Record::new(format!("k{}", i % KEYS), format!("{i}")))?);
        }
        sync.flush()?;
        for a in acks {
            sync.wait(a)?;
        }
        Ok(())
    })
    .await??;

    wait_records(&core, "sdk", N).await?;
    // Every value arrived, in order per key, with at most the one batch in
    // flight at the edge restart stored twice.
    let allowed = Redelivery {
        phase: 0..N / 2,
        batch_max: 250,
    };
    let d = api::describe_stream(&core, "sdk").await?;
    let mut held = Pass::default();
    for sh in &d.shards {
        let mut offset = sh.first_offset;
        while offset < sh.next_offset {
            let f = api::fetch(&core, "sdk", sh.id, offset, 5000, Duration::ZERO).await?;
            for r in &f.records {
                held.push(r)?;
            }
            offset = f.next_offset;
        }
    }
    let repeated = held.check("the core", d.records(), 0..N, &allowed)?;
    eprintln!("values stored twice by the producer's retry: {repeated:?}");

    // The whole-stream reader from the oldest record sees them all again;
    // from the latest it sees nothing until something new arrives.
    let cluster = strata_client::cluster::Cluster::new(vec![p.core_addr], &p.pki.ca)?;
    // Exactly once: each position once, the same re-delivered values.
    let mut all = StreamReader::open(&cluster, "sdk", api::Start::Oldest).await?;
    let mut again = Pass::default();
    loop {
        let page = all.next(Duration::ZERO).await?;
        if page.is_empty() {
            break;
        }
        for r in &page {
            again.push(r)?;
        }
    }
    let seen_twice = again.check("the reader", d.records(), 0..N, &allowed)?;
    assert_eq!(seen_twice, repeated, "the reader and the core disagree");
    let mut latest = StreamReader::open(&cluster, "sdk", api::Start::Latest).await?;
    assert!(latest.next(Duration::ZERO).await?.is_empty());
    let producer = Producer::new(p.client(p.edge_addr), ProducerConfig::new("sdk"));
    producer.send_wait(Record::new("new", "after")).await?;
    let page = tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            let page = latest.next(Duration::from_secs(1)).await?;
            if !page.is_empty() {
                return Ok::<_, anyhow::Error>(page);
            }
        }
    })
    .await??;
    assert_eq!(&page[0].data[..], b"after");
    let one_shard = StreamReader::open(&cluster, "sdk", api::Start::Offset(0)).await;
    assert!(one_shard.is_err(), "an offset applies to one shard only");

    // Across a split: the producer goes on with the same keys, and the
    // whole-stream reader reads the closed shard before its children, so
    // it reads every record exactly once and every key in order.
    let split = api::Reshard::Split { shard: 1, at: None };
    api::reshard(&core, "sdk", &split).await?;
    for i in N..N + 2_000 {
        producer
            .send(Record::new(format!("k{}", i % KEYS), format!("{i}")))
            .await?;
    }
    producer.flush().await?;
    producer.close().await;
    let total = d.records() + 1 + 2_000;
    wait_records(&core, "sdk", total).await?;
    let mut reader = StreamReader::open(&cluster, "sdk", api::Start::Oldest).await?;
    let (mut read, mut split) = (0u64, Pass::default());
    while read < total {
        let page =
            tokio::time::timeout(Duration::from_secs(60), reader.next(Duration::from_secs(1)))
                .await??;
        for r in &page {
            read += 1;
            split.push(r)?;
        }
    }
    // Nothing beyond the stream's records.
    let extra = reader.next(Duration::ZERO).await?;
    for r in &extra {
        split.push(r)?;
    }
    let seen_twice = split.check("the reader across the split", total, 0..N + 2_000, &allowed)?;
    assert_eq!(seen_twice, repeated, "the reader and the core disagree");
    assert_eq!(split.other, ["after"]);
    let split_shards: Vec<_> = reader.positions().iter().map(|p| p.0).collect();
    if split_shards.contains(&1) || !split_shards.contains(&4) || !split_shards.contains(&5) {
        bail!("the reader should have moved from shard 1 to its children: {split_shards:?}");
    }
    Ok(())
}

/// The per-key check itself: one re-delivered copy right after its first
/// copy passes; anything else out of order does not.
#[test]
fn one_copy_in_order_allows_only_an_immediate_copy() -> Result<()> {
    let repeated: BTreeSet<u64> = [32, 48].into_iter().collect();
    one_copy_in_order("k", &[0, 16, 32, 48, 64], &BTreeSet::new())?;
    one_copy_in_order("k", &[0, 16, 32, 48, 32, 48, 64, 80], &repeated)?;
    one_copy_in_order("k", &[32, 48, 32, 48], &repeated)?;
    for (seq, rep) in [
        (&[0, 32, 16, 48][..], &BTreeSet::new()),
        (&[0, 16, 16, 32][..], &BTreeSet::new()),
        (&[0, 32, 48, 64, 32, 48, 80][..], &repeated),
        (&[0, 32, 48, 48, 32, 64][..], &repeated),
        (&[0, 32, 48, 32, 48, 40][..], &repeated),
    ] {
        if one_copy_in_order("k", seq, rep).is_ok() {
            bail!("{seq:?} passed with {rep:?} re-delivered");
        }
    }
    Ok(())
}
