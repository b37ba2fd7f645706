//! The SDK against real processes.
//!
//! - Push subscriptions: subscribers opened before any record exists receive
//!   every record after it commits, in offset order, over their one request,
//!   while a subscriber that reads nothing (its QUIC flow-control window
//!   full) holds back neither the writers nor the others.
//! - The producer: the async producer (batching, a small queue for
//!   backpressure) and the blocking wrapper deliver every record, in order
//!   per key, through an edge that restarts in the middle.

use anyhow::{bail, Result};
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

/// Per key, values only grow: a retried batch may repeat values (`seen`
/// before), never bring a new one out of order.
fn values_grow(
    last: &mut std::collections::HashMap<String, u64>,
    seen: &mut std::collections::HashSet<u64>,
    key: String,
    v: u64,
) -> Result<()> {
    if let Some(&prev) = last.get(&key) {
        if v < prev && !seen.contains(&v) {
            bail!("key {key}: {v} first arrived after {prev}");
        }
    }
    last.insert(key, v);
    seen.insert(v);
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
        let r = Record::new(format!("k{}", i % 16), format!("{i}"));
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
            acks.push(sync.send(Record::new(format!("k{}", i % 16), format!("{i}")))?);
        }
        sync.flush()?;
        for a in acks {
            sync.wait(a)?;
        }
        Ok(())
    })
    .await??;

    wait_records(&core, "sdk", N).await?;
    // Every value arrived; per key, values only grow (a retried batch may
    // repeat records, never reorder them).
    let d = api::describe_stream(&core, "sdk").await?;
    let mut seen = std::collections::HashSet::new();
    let mut last: std::collections::HashMap<String, u64> = Default::default();
    for sh in &d.shards {
        let mut offset = sh.first_offset;
        while offset < sh.next_offset {
            let f = api::fetch(&core, "sdk", sh.id, offset, 5000, Duration::ZERO).await?;
            for r in &f.records {
                let v: u64 = std::str::from_utf8(&r.data)?.parse()?;
                values_grow(&mut last, &mut seen, r.key.clone().unwrap_or_default(), v)?;
            }
            offset = f.next_offset;
        }
    }
    if seen.len() as u64 != N {
        bail!("{} of {N} values arrived", seen.len());
    }

    // The whole-stream reader from the oldest record sees them all again;
    // from the latest it sees nothing until something new arrives.
    let cluster = strata_client::cluster::Cluster::new(vec![p.core_addr], &p.pki.ca)?;
    let mut all = StreamReader::open(&cluster, "sdk", api::Start::Oldest).await?;
    let mut again = std::collections::HashSet::new();
    loop {
        let page = all.next(Duration::ZERO).await?;
        if page.is_empty() {
            break;
        }
        again.extend(page.iter().map(|r| (r.shard, r.offset)));
    }
    assert_eq!(again.len() as u64, d.records());
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
    // every key's values still only grow.
    let split = api::Reshard::Split { shard: 1, at: None };
    api::reshard(&core, "sdk", &split).await?;
    for i in N..N + 2_000 {
        producer
            .send(Record::new(format!("k{}", i % 16), format!("{i}")))
            .await?;
    }
    producer.flush().await?;
    producer.close().await;
    let total = d.records() + 1 + 2_000;
    wait_records(&core, "sdk", total).await?;
    let mut reader = StreamReader::open(&cluster, "sdk", api::Start::Oldest).await?;
    let (mut read, mut last, mut seen) = (
        0u64,
        std::collections::HashMap::new(),
        std::collections::HashSet::new(),
    );
    while read < total {
        let page =
            tokio::time::timeout(Duration::from_secs(60), reader.next(Duration::from_secs(1)))
                .await??;
        for r in &page {
            read += 1;
            let Ok(v) = std::str::from_utf8(&r.data)?.parse::<u64>() else {
                continue; // the one "after" record
            };
            values_grow(&mut last, &mut seen, r.key.clone().unwrap_or_default(), v)?;
        }
    }
    if seen.len() as u64 != N + 2_000 {
        bail!(
            "the reader saw {} of {} values across the split",
            seen.len(),
            N + 2_000
        );
    }
    let split_shards: Vec<_> = reader.positions().iter().map(|p| p.0).collect();
    if split_shards.contains(&1) || !split_shards.contains(&4) || !split_shards.contains(&5) {
        bail!("the reader should have moved from shard 1 to its children: {split_shards:?}");
    }
    Ok(())
}
