//! The workload shared by the end-to-end tests: producer lanes sending keyed
//! records through an edge agent with retries, and the check that every
//! acknowledged record is in the core exactly once and in per-key order.
//!
//! Record `i` has key `key-(i % keys)` and value `"<i>|<attempt>|..."`. A lane
//! owns a fixed set of keys and sends one batch at a time, so per-key order
//! is the order of `i`. A batch retried after an ambiguous failure is a new
//! attempt (producer → edge is at least once); the check is that each
//! acknowledged (i, attempt) appears exactly once.

use crate::wait_for;
use anyhow::{anyhow, bail, Result};
use std::collections::{HashMap, HashSet};
use std::hash::Hash;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use strata_client::api::{self, ConsumedRecord, Start};
use strata_client::cluster::Cluster;
use strata_client::Client;
use strata_schema::batch::{Builder, NewRecord};

pub type Acked = Arc<Mutex<HashSet<(u64, u32)>>>;

/// Running producer lanes.
pub struct Producers {
    pub acked: Acked,
    pub count: Arc<AtomicU64>,
    stop: Arc<std::sync::atomic::AtomicBool>,
    lanes: tokio::task::JoinSet<Result<()>>,
}

/// Starts `lanes` producers writing up to `records` records over `keys` keys
/// to `stream` through the edge at `edge`, `batch` records per request,
/// until they run out of records or [`Producers::stop`] is called.
pub fn start(
    edge: SocketAddr,
    ca: &Path,
    stream: &str,
    records: u64,
    keys: u64,
    lanes: u64,
    batch: usize,
) -> Producers {
    let acked: Acked = Arc::default();
    let count = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut set = tokio::task::JoinSet::new();
    for lane in 0..lanes {
        let client = Client::new(edge, ca).expect("edge client");
        let (acked, count, stream, stop) = (
            acked.clone(),
            count.clone(),
            stream.to_string(),
            stop.clone(),
        );
        set.spawn(async move {
            let mut mine = (0..records)
                .filter(|i| (i % keys) % lanes == lane)
                .peekable();
            while mine.peek().is_some() && !stop.load(Ordering::SeqCst) {
                let chunk: Vec<u64> = mine.by_ref().take(batch).collect();
                let mut attempt = 0u32;
                loop {
                    let mut b = Builder::default();
                    for &i in &chunk {
                        let key = format!("key-{}", i % keys);
                        let v = format!("{i}|{attempt}|payload-{i:08}");
                        b.push(&NewRecord {
                            key: Some(&key),
                            value: v.as_bytes(),
                            timestamp_ms: i as i64,
                            headers: &[],
                        });
                    }
                    match api::produce(&client, &stream, &b.finish()).await {
                        Ok(_) => {
                            let mut a = acked.lock().unwrap();
                            a.extend(chunk.iter().map(|&i| (i, attempt)));
                            count.fetch_add(chunk.len() as u64, Ordering::SeqCst);
                            break;
                        }
                        Err(e)
                            if e.is_retryable()
                                || matches!(e, strata_client::ClientError::Connect { .. }) =>
                        {
                            attempt += 1;
                            if attempt > 3000 {
                                bail!("lane {lane}: gave up: {e}");
                            }
                            // Back off before retrying a failed request (not synchronisation).
                            tokio::time::sleep(Duration::from_millis(20)).await;
                        }
                        Err(e) => bail!("lane {lane}: {e}"),
                    }
                }
            }
            Ok(())
        });
    }
    Producers {
        acked,
        count,
        stop,
        lanes: set,
    }
}

impl Producers {
    pub fn acked_count(&self) -> u64 {
        self.count.load(Ordering::SeqCst)
    }

    /// Waits until at least `n` records were acknowledged.
    pub async fn wait_acked(&self, n: u64, timeout: Duration) -> Result<()> {
        let count = self.count.clone();
        wait_for(&format!("{n} acknowledged records"), timeout, || {
            let v = count.load(Ordering::SeqCst);
            async move { Ok((v >= n).then_some(())) }
        })
        .await
    }

    /// Asks every lane to stop after its current batch, then waits for them.
    pub async fn stop(self) -> Result<HashSet<(u64, u32)>> {
        self.stop.store(true, Ordering::SeqCst);
        self.finish().await
    }

    /// Waits for every lane to finish; returns the acknowledged set.
    pub async fn finish(mut self) -> Result<HashSet<(u64, u32)>> {
        while let Some(r) = self.lanes.join_next().await {
            r??;
        }
        Ok(self.acked.lock().unwrap().clone())
    }
}

/// Reads every committed record of `stream` (from each shard's leader).
pub async fn read_all(c: &Cluster, stream: &str) -> Result<Vec<ConsumedRecord>> {
    let info = c.describe(stream).await?;
    let mut out = Vec::new();
    for sh in &info.shards {
        let id = sh.id;
        let first = c
            .to_leader(stream, id, |cl| async move {
                api::seek(&cl, stream, id, Start::Oldest).await
            })
            .await?;
        let end = c
            .to_leader(stream, id, |cl| async move {
                api::seek(&cl, stream, id, Start::Latest).await
            })
            .await?;
        let mut offset = first;
        while offset < end {
            let f = c
                .to_leader(stream, id, |cl| async move {
                    api::fetch(&cl, stream, id, offset, 10_000, Duration::ZERO).await
                })
                .await?;
            if f.records.is_empty() {
                bail!("fetch at {offset} of shard {id} returned nothing before {end}");
            }
            offset = f.next_offset;
            out.extend(f.records.into_iter().filter(|r| r.offset < end));
        }
    }
    Ok(out)
}

fn parse(r: &ConsumedRecord) -> Result<(u64, u32)> {
    let s = std::str::from_utf8(&r.data)?;
    let mut it = s.split('|');
    let i = it
        .next()
        .and_then(|x| x.parse().ok())
        .ok_or_else(|| anyhow!("bad value {s:?}"))?;
    let a = it
        .next()
        .and_then(|x| x.parse().ok())
        .ok_or_else(|| anyhow!("bad value {s:?}"))?;
    Ok((i, a))
}

/// Checks that each key's records come in increasing record number
/// (`(key, i)` in the order they were read); returns how many there were.
pub fn keys_in_order<'a>(
    what: &str,
    records: impl IntoIterator<Item = (&'a str, u64)>,
) -> Result<u64> {
    let mut last: HashMap<&str, u64> = HashMap::new();
    let mut n = 0;
    for (key, i) in records {
        if let Some(prev) = last.insert(key, i).filter(|&prev| prev >= i) {
            bail!("{what}: key {key} record {i} came after record {prev}");
        }
        n += 1;
    }
    Ok(n)
}

/// What [`verify`] found.
#[derive(Debug)]
pub struct Report {
    pub records: usize,
    pub acked: usize,
    /// Records from attempts whose acknowledgement was lost (allowed).
    pub unacked_attempts: usize,
}

/// Waits until the core holds every acknowledged record, then checks
/// exactly-once and per-key order. The edge may still be forwarding a
/// backlog (a slow machine), so this fails only once `stall` passes with no
/// more acknowledged records arriving in the core.
pub async fn verify(
    c: &Cluster,
    stream: &str,
    acked: &HashSet<(u64, u32)>,
    keys: u64,
    stall: Duration,
) -> Result<Report> {
    let mut best = 0;
    let mut progress_at = Instant::now();
    let mut last_err = None;
    let records = loop {
        match read_all(c, stream).await {
            Ok(all) => {
                let have: HashSet<(u64, u32)> = all.iter().map(parse).collect::<Result<_>>()?;
                let held = acked.iter().filter(|a| have.contains(a)).count();
                if held == acked.len() {
                    break all;
                }
                if held > best {
                    best = held;
                    progress_at = Instant::now();
                }
            }
            Err(e) => last_err = Some(e),
        }
        if progress_at.elapsed() > stall {
            bail!(
                "the core holds {best} of {} acknowledged records, with none more for {stall:?} (last error: {last_err:?})",
                acked.len()
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let mut seen: HashMap<(u64, u32), u64> = HashMap::new();
    for r in &records {
        *seen.entry(parse(r)?).or_default() += 1;
    }
    let dups: Vec<_> = seen.iter().filter(|(_, &n)| n > 1).take(5).collect();
    if !dups.is_empty() {
        bail!("records written twice into the core: {dups:?}");
    }
    let mut by_shard = records.clone();
    by_shard.sort_by_key(|r| (r.shard, r.offset));
    let mut last: HashMap<String, u64> = HashMap::new();
    for r in &by_shard {
        let (i, attempt) = parse(r)?;
        if !acked.contains(&(i, attempt)) {
            continue;
        }
        let key = r.key.clone().ok_or_else(|| anyhow!("record without key"))?;
        if key != format!("key-{}", i % keys) {
            bail!("record {i} has key {key}");
        }
        if let Some(&prev) = last.get(&key) {
            if prev >= i {
                bail!("key {key}: record {i} after {prev}");
            }
        }
        last.insert(key, i);
    }
    Ok(Report {
        records: records.len(),
        acked: acked.len(),
        unacked_attempts: records.len() - acked.len(),
    })
}

/// How many times each item occurs: a multiset.
pub fn multiset<T: Hash + Eq>(items: impl IntoIterator<Item = T>) -> HashMap<T, usize> {
    let mut m = HashMap::new();
    for x in items {
        *m.entry(x).or_default() += 1;
    }
    m
}

/// Checks that multiset `got` equals `want`; the error names up to five
/// items `got` lacks and five it holds too often or without being wanted.
pub fn same_multiset<T: Hash + Eq + std::fmt::Debug>(
    what: &str,
    got: &HashMap<T, usize>,
    want: &HashMap<T, usize>,
) -> Result<()> {
    let count = |m: &HashMap<T, usize>, x: &T| m.get(x).copied().unwrap_or(0);
    let missing: Vec<_> = want.iter().filter(|(x, &n)| count(got, x) < n).collect();
    let extra: Vec<_> = got.iter().filter(|(x, &n)| count(want, x) < n).collect();
    if missing.is_empty() && extra.is_empty() {
        return Ok(());
    }
    bail!(
        "{what}: {} items missing (wanted, times wanted), e.g. {:?}; {} items extra (held, times held), e.g. {:?}",
        missing.len(),
        &missing[..missing.len().min(5)],
        extra.len(),
        &extra[..extra.len().min(5)],
    )
}

/// The Prometheus text a daemon serves at `GET /metrics` on `addr`
/// (bounded: 5 s).
pub async fn scrape(addr: SocketAddr) -> Result<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let text = tokio::time::timeout(Duration::from_secs(5), async {
        let mut s = tokio::net::TcpStream::connect(addr).await?;
        s.write_all(b"GET /metrics HTTP/1.0\r\nHost: strata\r\n\r\n")
            .await?;
        let mut text = String::new();
        s.read_to_string(&mut text).await?;
        anyhow::Ok(text)
    })
    .await
    .map_err(|_| anyhow!("the metrics endpoint {addr} did not answer within 5 s"))??;
    if !text.lines().next().is_some_and(|l| l.contains(" 200")) {
        bail!(
            "the metrics endpoint {addr} answered {:?}",
            text.lines().next()
        );
    }
    Ok(text)
}

/// The value of `series` (a metric name with its labels, exactly as the
/// exporter prints them) in Prometheus text; `None` while it is not
/// registered (a counter appears on its first increment).
pub fn sample(text: &str, series: &str) -> Result<Option<f64>> {
    let Some(line) = text
        .lines()
        .find(|l| l.rsplit_once(' ').is_some_and(|(s, _)| s == series))
    else {
        return Ok(None);
    };
    let v = line.rsplit_once(' ').map_or("", |(_, v)| v);
    Ok(Some(
        v.parse().map_err(|_| anyhow!("bad sample line {line:?}"))?,
    ))
}
