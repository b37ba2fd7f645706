//! Push subscriptions with real processes: subscribers opened before any
//! record exists receive every record after it commits, in offset order,
//! over their one request, while a subscriber that reads nothing (its QUIC
//! flow-control window full) holds back neither the writers nor the others.

use anyhow::{bail, Result};
use std::time::Duration;
use strata_client::api::{self, Subscription};
use strata_schema::batch::{Builder, NewRecord};
use strata_tests::{wait_for, Pipeline};

const RECORDS: u64 = 3_000;
/// Large enough that a stalled subscriber's stream fills its flow-control
/// window many times over (3,000 × 4 KiB = 12 MiB).
const VALUE_BYTES: usize = 4096;

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
    wait_for(
        "the core to hold every record",
        Duration::from_secs(120),
        || async {
            let d = api::describe_stream(&core, "live").await?;
            Ok((d.records() >= RECORDS).then_some(()))
        },
    )
    .await?;
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
