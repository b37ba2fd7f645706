//! End to end with real processes: producer → strata-edge → strata-core.
//!
//! 100,000 records over 100 keys are produced through the edge while the
//! edge is killed with SIGKILL mid-stream and the core is killed and
//! restarted once. Afterwards every acknowledged record must be in the core
//! exactly once, in per-key order.

use anyhow::{bail, Result};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use strata_client::{api, ClientError};
use strata_schema::batch::{Builder, NewRecord};
use strata_tests::{read_all, wait_for, Pipeline};

const RECORDS: u64 = 100_000;
const KEYS: u64 = 100;
const LANES: u64 = 4;
const BATCH: usize = 250;

fn value(i: u64, attempt: u32) -> String {
    format!("{i}|{attempt}|payload-{i:08}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill9_edge_and_restart_core_lose_nothing_and_duplicate_nothing() -> Result<()> {
    let test = tokio::time::timeout(Duration::from_secs(600), run()).await;
    match test {
        Ok(r) => r,
        Err(_) => bail!("test exceeded 600 s"),
    }
}

async fn run() -> Result<()> {
    let mut p = Pipeline::start("").await?;
    let admin = p.client(p.core_addr);
    api::create_stream(&admin, "sensors", 4, 1).await?;

    let acked: Arc<Mutex<HashSet<(u64, u32)>>> = Arc::default();
    let acked_count = Arc::new(AtomicU64::new(0));
    let mut lanes = tokio::task::JoinSet::new();
    for lane in 0..LANES {
        let edge = Arc::new(p.client(p.edge_addr));
        let (acked, acked_count) = (acked.clone(), acked_count.clone());
        lanes.spawn(async move {
            let mine: Vec<u64> = (0..RECORDS)
                .filter(|i| (i % KEYS) % LANES == lane)
                .collect();
            for chunk in mine.chunks(BATCH) {
                let mut attempt = 0u32;
                loop {
                    let mut b = Builder::default();
                    for &i in chunk {
                        let key = format!("key-{}", i % KEYS);
                        let v = value(i, attempt);
                        b.push(&NewRecord {
                            key: Some(&key),
                            value: v.as_bytes(),
                            timestamp_ms: i as i64,
                            headers: &[],
                        });
                    }
                    match api::produce(&edge, "sensors", &b.finish()).await {
                        Ok(n) => {
                            assert_eq!(n as usize, chunk.len());
                            let mut a = acked.lock().unwrap();
                            for &i in chunk {
                                a.insert((i, attempt));
                            }
                            acked_count.fetch_add(chunk.len() as u64, Ordering::SeqCst);
                            break;
                        }
                        Err(e) if e.is_retryable() || matches!(e, ClientError::Connect { .. }) => {
                            attempt += 1;
                            if attempt > 2000 {
                                return Err(anyhow::anyhow!("lane {lane}: gave up: {e}"));
                            }
                            // Back off before retrying a failed request (not synchronisation).
                            tokio::time::sleep(Duration::from_millis(20)).await;
                        }
                        Err(e) => return Err(anyhow::anyhow!("lane {lane}: {e}")),
                    }
                }
            }
            Ok::<(), anyhow::Error>(())
        });
    }

    // Faults, each once the stream is well under way.
    let count = acked_count.clone();
    wait_for("30k acked records", Duration::from_secs(240), || {
        let n = count.load(Ordering::SeqCst);
        async move { Ok((n >= 30_000).then_some(())) }
    })
    .await?;
    p.edge.kill9();
    p.restart_edge().await?;
    let count = acked_count.clone();
    wait_for("60k acked records", Duration::from_secs(240), || {
        let n = count.load(Ordering::SeqCst);
        async move { Ok((n >= 60_000).then_some(())) }
    })
    .await?;
    p.core.kill9();
    p.restart_core().await?;

    while let Some(r) = lanes.join_next().await {
        r??;
    }
    assert_eq!(acked_count.load(Ordering::SeqCst), RECORDS);

    // Wait until the edge drained everything it acknowledged into the core.
    let admin = p.client(p.core_addr);
    let acked = acked.lock().unwrap().clone();
    let records = wait_for(
        "the core to hold every acknowledged record",
        Duration::from_secs(180),
        || {
            let admin = &admin;
            let acked = &acked;
            async move {
                let all = read_all(admin, "sensors").await?;
                let have: HashSet<(u64, u32)> = all.iter().map(parse).collect();
                Ok(acked.iter().all(|a| have.contains(a)).then_some(all))
            }
        },
    )
    .await?;

    // Exactly once: no (record, attempt) twice; every acknowledged one present.
    let mut seen: HashMap<(u64, u32), u64> = HashMap::new();
    for r in &records {
        *seen.entry(parse(r)).or_default() += 1;
    }
    let dups: Vec<_> = seen.iter().filter(|(_, &n)| n > 1).take(5).collect();
    assert!(
        dups.is_empty(),
        "records written twice into the core: {dups:?}"
    );
    for a in &acked {
        assert_eq!(seen.get(a), Some(&1), "acknowledged record {a:?} missing");
    }
    // Per-key order of acknowledged records, in offset order within each shard.
    let mut by_shard = records.clone();
    by_shard.sort_by_key(|r| (r.shard, r.offset));
    let mut last: HashMap<String, u64> = HashMap::new();
    for r in &by_shard {
        let (i, attempt) = parse(r);
        if !acked.contains(&(i, attempt)) {
            continue;
        }
        let key = r.key.clone().expect("every record has a key");
        assert_eq!(key, format!("key-{}", i % KEYS));
        if let Some(&prev) = last.get(&key) {
            assert!(prev < i, "key {key}: record {i} after {prev}");
        }
        last.insert(key, i);
    }
    assert_eq!(last.len() as u64, KEYS);
    let unacked = records.len() - acked.len();
    eprintln!(
        "core holds {} records: {} acknowledged, {unacked} from attempts whose ack was lost",
        records.len(),
        acked.len()
    );
    assert!(p.core.is_running() && p.edge.is_running());
    assert!(p.edge.stop(), "edge did not stop cleanly");
    assert!(p.core.stop(), "core did not stop cleanly");
    Ok(())
}

fn parse(r: &api::ConsumedRecord) -> (u64, u32) {
    let s = std::str::from_utf8(&r.data).expect("utf8 value");
    let mut it = s.split('|');
    let i = it
        .next()
        .and_then(|x| x.parse().ok())
        .expect("record number");
    let a = it.next().and_then(|x| x.parse().ok()).expect("attempt");
    (i, a)
}
