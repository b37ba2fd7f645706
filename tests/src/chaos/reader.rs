//! Reads every record of the stream for the oracle, shard by shard, going
//! on past a range the core cannot serve: a fetch that keeps failing at an
//! offset is probed forward (1, 2, 4, … offsets on, then halved back) to
//! the first offset that reads, and the range in between is reported as
//! unreadable. Its records count as lost to the oracle if they were
//! acknowledged; the error names why.

use crate::oracle::Held;
use anyhow::{Context, Result};
use std::future::Future;
use std::time::Duration;
use strata_client::api::{self, Start};
use strata_client::cluster::Cluster;

/// A range of one shard the core could not serve at the end.
#[derive(Debug, Clone)]
pub struct Unreadable {
    pub shard: u32,
    pub from: u64,
    pub to: u64,
    pub error: String,
}

/// Everything that could be read, and what could not.
pub struct Read {
    pub records: Vec<Held>,
    pub unreadable: Vec<Unreadable>,
}

/// Retries `f` three times (1 s apart, each bounded to 30 s).
async fn retried<T, F, Fut>(what: &str, mut f: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, strata_client::ClientError>>,
{
    let mut last = None;
    for _ in 0..3 {
        match tokio::time::timeout(Duration::from_secs(30), f()).await {
            Ok(Ok(v)) => return Ok(v),
            Ok(Err(e)) => last = Some(format!("{e}")),
            Err(_) => last = Some("no answer within 30 s".into()),
        }
        // Back off before asking again (not synchronisation).
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    anyhow::bail!("{what}: {}", last.unwrap_or_default())
}

/// Reads `shards` shards of `stream` through `c`.
pub async fn read_stream(c: &Cluster, stream: &str, shards: u32) -> Result<Read> {
    let mut out = Read {
        records: Vec::new(),
        unreadable: Vec::new(),
    };
    for shard in 0..shards {
        read_shard(c, stream, shard, &mut out).await?;
    }
    Ok(out)
}

async fn fetch_at(
    c: &Cluster,
    stream: &str,
    shard: u32,
    offset: u64,
) -> Result<api::Fetched, strata_client::ClientError> {
    c.to_leader(stream, shard, |cl| async move {
        api::fetch(&cl, stream, shard, offset, 10_000, Duration::ZERO).await
    })
    .await
}

async fn read_shard(c: &Cluster, stream: &str, shard: u32, out: &mut Read) -> Result<()> {
    let seek = |start| {
        c.to_leader(stream, shard, move |cl| async move {
            api::seek(&cl, stream, shard, start).await
        })
    };
    let first = retried(&format!("seeking shard {shard}"), || seek(Start::Oldest)).await?;
    let end = retried(&format!("seeking shard {shard}"), || seek(Start::Latest)).await?;
    let mut offset = first;
    while offset < end {
        let what = format!("fetching {stream}/{shard} at {offset}");
        match retried(&what, || fetch_at(c, stream, shard, offset)).await {
            Ok(f) if !f.records.is_empty() => {
                offset = f.next_offset;
                out.records
                    .extend(
                        f.records
                            .into_iter()
                            .filter(|r| r.offset < end)
                            .map(|r| Held {
                                shard: r.shard,
                                offset: r.offset,
                                key: r.key,
                                value: r.data.to_vec(),
                            }),
                    );
            }
            Ok(_) => anyhow::bail!("{what}: nothing returned before the end {end}"),
            Err(e) => {
                let to = first_readable(c, stream, shard, offset, end).await;
                out.unreadable.push(Unreadable {
                    shard,
                    from: offset,
                    to,
                    error: format!("{e:#}"),
                });
                offset = to;
            }
        }
    }
    Ok(())
}

/// The first offset after `bad` (which fails) that reads, or `end`. A
/// probe gets 5 s: the SDK retries a failing read (an object it cannot
/// read answers UNAVAILABLE, which is retryable) for 15 s or more, and a
/// damaged object takes a dozen probes.
async fn first_readable(c: &Cluster, stream: &str, shard: u32, bad: u64, end: u64) -> u64 {
    let reads = |o: u64| async move {
        let f = tokio::time::timeout(Duration::from_secs(5), fetch_at(c, stream, shard, o));
        matches!(f.await, Ok(Ok(_)))
    };
    let (mut lo, mut step) = (bad, 1u64);
    // Probe forward, doubling, to an offset that reads.
    let hi = loop {
        let probe = bad.saturating_add(step);
        if probe >= end {
            break end;
        }
        if reads(probe).await {
            break probe;
        }
        lo = probe;
        step *= 2;
    };
    // Halve back: the unreadable range is contiguous (one object).
    let (mut lo, mut hi) = (lo, hi);
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        if reads(mid).await {
            hi = mid;
        } else {
            lo = mid;
        }
    }
    hi
}

/// Unreadable ranges as one line each.
pub fn describe(u: &[Unreadable]) -> Vec<String> {
    u.iter()
        .map(|r| {
            format!(
                "shard {} offsets [{}, {}): {}",
                r.shard, r.from, r.to, r.error
            )
        })
        .collect()
}

/// The read, or an error naming the stream.
pub async fn read_or_explain(c: &Cluster, stream: &str, shards: u32) -> Result<Read> {
    read_stream(c, stream, shards)
        .await
        .with_context(|| format!("reading {stream} for the oracle"))
}
