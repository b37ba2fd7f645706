//! The client side of a run: producing the readings through the edge and
//! reading every shard back from the core, counting and checksumming both.

use super::options::TierPlan;
use super::sensors::{fnv1a, Sensors};
use super::STREAM;
use anyhow::{bail, Context, Result};
use hdrhistogram::Histogram;
use std::sync::Arc;
use std::time::{Duration, Instant};
use strata_client::{api, Client, ClientError};
use strata_schema::batch::{Builder, NewRecord};
use strata_schema::fb::ErrorCode;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

/// Records per produced batch and batches in flight: the same 4096
/// unacknowledged records as the other benchmarks.
const BATCH_RECORDS: u64 = 512;
const LANES: usize = 8;

pub(super) fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

// ---- producing ----------------------------------------------------------------

#[derive(Debug, Default)]
pub(super) struct Produced {
    pub(super) records: u64,
    pub(super) json_bytes: u64,
    pub(super) key_bytes: u64,
    pub(super) checksum: u64,
    pub(super) first_ts_ms: i64,
    pub(super) last_ts_ms: i64,
    pub(super) secs: f64,
    pub(super) retries: u64,
}

/// Sends every reading through the edge, `LANES` batches of
/// `BATCH_RECORDS` in flight, retrying what the edge asks to retry.
pub(super) async fn produce(edge: Arc<Client>, plan: &TierPlan, seed: u64) -> Result<Produced> {
    let started = Instant::now();
    let unknown_until = started + Duration::from_secs(10);
    let mut gen = Sensors::new(seed, plan.devices);
    let lanes = Arc::new(Semaphore::new(LANES));
    let retries = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let mut in_flight = JoinSet::new();
    let mut out = Produced {
        first_ts_ms: now_ms(),
        ..Default::default()
    };
    let mut value = Vec::with_capacity(256);
    let mut b = Builder::with_capacity(BATCH_RECORDS as usize * 200 + 1024);
    while out.records < plan.records {
        let permit = lanes.clone().acquire_owned().await?;
        let n = BATCH_RECORDS.min(plan.records - out.records);
        let ts = now_ms();
        out.last_ts_ms = ts;
        for _ in 0..n {
            let dev = gen.next(ts, &mut value);
            let key = gen.key(dev);
            b.push(&NewRecord {
                key: Some(key),
                value: &value,
                timestamp_ms: ts,
                headers: &[],
            });
            out.json_bytes += value.len() as u64;
            out.key_bytes += key.len() as u64;
            out.checksum = out.checksum.wrapping_add(fnv1a(&value));
        }
        out.records += n;
        let batch = b.finish();
        let (edge, retries) = (edge.clone(), retries.clone());
        in_flight.spawn(async move {
            let _lane = permit;
            loop {
                match api::produce(&edge, STREAM, &batch).await {
                    Ok(_) => return Ok(()),
                    Err(ClientError::Remote(e))
                        if e.is_retryable()
                            || (e.code == ErrorCode::UnknownStream
                                && Instant::now() < unknown_until) =>
                    {
                        retries.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                    Err(e) => return Err(anyhow::anyhow!(e).context("producing a batch")),
                }
            }
        });
        while let Some(r) = in_flight.try_join_next() {
            r.context("producer lane panicked")??;
        }
    }
    while let Some(r) = in_flight.join_next().await {
        r.context("producer lane panicked")??;
    }
    out.secs = started.elapsed().as_secs_f64();
    out.retries = retries.load(std::sync::atomic::Ordering::Relaxed);
    Ok(out)
}

// ---- reading back --------------------------------------------------------------

#[derive(Debug)]
pub(super) struct Replay {
    pub(super) records: u64,
    pub(super) value_bytes: u64,
    pub(super) checksum: u64,
    pub(super) fetches: u64,
    pub(super) secs: f64,
    /// Latency of each fetch call, microseconds.
    pub(super) fetch_us: Histogram<u64>,
}

/// Reads every shard `(id, end)` from offset 0 to `end`, shards in parallel
/// over one connection, checking that offsets follow each other.
pub(super) async fn replay(core: &Arc<Client>, shards: &[(u32, u64)], max: u32) -> Result<Replay> {
    let started = Instant::now();
    let mut set = JoinSet::new();
    for &(shard, end) in shards {
        let core = core.clone();
        set.spawn(async move {
            let mut r = Replay {
                records: 0,
                value_bytes: 0,
                checksum: 0,
                fetches: 0,
                secs: 0.0,
                fetch_us: Histogram::new_with_bounds(1, 600_000_000, 3)?,
            };
            let mut offset = 0;
            while offset < end {
                let t = Instant::now();
                let f = api::fetch(&core, STREAM, shard, offset, max, Duration::ZERO)
                    .await
                    .with_context(|| format!("fetching shard {shard} at offset {offset}"))?;
                r.fetch_us
                    .saturating_record(t.elapsed().as_micros().max(1) as u64);
                r.fetches += 1;
                if f.records.is_empty() {
                    bail!("shard {shard}: fetch at offset {offset} returned no records (shard ends at {end})");
                }
                for rec in &f.records {
                    if rec.offset != offset {
                        bail!(
                            "shard {shard}: expected offset {offset}, got {}",
                            rec.offset
                        );
                    }
                    r.value_bytes += rec.data.len() as u64;
                    r.checksum = r.checksum.wrapping_add(fnv1a(&rec.data));
                    offset += 1;
                }
                r.records += f.records.len() as u64;
            }
            Ok::<_, anyhow::Error>(r)
        });
    }
    let mut all = Replay {
        records: 0,
        value_bytes: 0,
        checksum: 0,
        fetches: 0,
        secs: 0.0,
        fetch_us: Histogram::new_with_bounds(1, 600_000_000, 3)?,
    };
    while let Some(r) = set.join_next().await {
        let r = r.context("replay task panicked")??;
        all.records += r.records;
        all.value_bytes += r.value_bytes;
        all.checksum = all.checksum.wrapping_add(r.checksum);
        all.fetches += r.fetches;
        all.fetch_us.add(&r.fetch_us)?;
    }
    all.secs = started.elapsed().as_secs_f64();
    Ok(all)
}
