//! Helpers for tests where the core goes away (killed, or its disk full)
//! while producers write to the edge: batches of unique values, the edge's
//! counters, and the checks that the core ends up with exactly what was
//! acknowledged.

use crate::{wait_for, workload, Pipeline};
use anyhow::Result;
use std::net::SocketAddr;
use std::time::Duration;
use strata_client::api;
use strata_client::cluster::Cluster;
use strata_schema::batch::{Builder, NewRecord};

/// A batch of `n` records keyed `{tag}-{i % 10}`, with values unique to
/// (`tag`, i): `"{tag}/{i}/"` padded with `v` to `size` bytes (a longer
/// prefix is kept whole). Returns the batch and its values, in order.
pub fn batch(n: usize, size: usize, tag: &str) -> (bytes::Bytes, Vec<Vec<u8>>) {
    let mut b = Builder::default();
    let mut values = Vec::with_capacity(n);
    for i in 0..n {
        let key = format!("{tag}-{}", i % 10);
        let mut v = format!("{tag}/{i}/").into_bytes();
        v.resize(v.len().max(size), b'v');
        b.push(&NewRecord {
            key: Some(&key),
            value: &v,
            timestamp_ms: i as i64,
            headers: &[],
        });
        values.push(v);
    }
    (b.finish(), values)
}

/// The edge's counter `name` (0 until its first increment).
pub async fn edge_counter(metrics: SocketAddr, name: &str) -> Result<u64> {
    let text = workload::scrape(metrics).await?;
    Ok(workload::sample(&text, name)?.unwrap_or(0.0) as u64)
}

/// Waits (up to `timeout`) until the edge has forwarded every record it
/// accepted (its records-out counter caught up with its records-in
/// counter, so nothing is left in its buffer) and the core holds at least
/// `n` records of `stream`; returns the edge's records-in count. On a
/// timeout the daemons' log tails are printed.
pub async fn edge_drained(
    p: &Pipeline,
    metrics: SocketAddr,
    stream: &str,
    n: u64,
    timeout: Duration,
) -> Result<u64> {
    let admin = p.client(p.core_addr);
    let r = wait_for(
        &format!("the edge to forward everything and the core to hold {n} records of {stream}"),
        timeout,
        || {
            let admin = &admin;
            async move {
                let accepted = edge_counter(metrics, "strata_edge_records_in_total").await?;
                let forwarded = edge_counter(metrics, "strata_edge_records_out_total").await?;
                let held = api::describe_stream(admin, stream).await?.records();
                Ok((forwarded == accepted && held >= n).then_some(accepted))
            }
        },
    )
    .await;
    if r.is_err() {
        eprintln!("edge log tail:\n{}", p.edge.log_tail());
        eprintln!("core log tail:\n{}", p.core.log_tail());
    }
    r
}

/// Checks that the core holds exactly `acked` in `stream`: each value as
/// many times as it was acknowledged, and nothing else.
pub async fn core_holds_exactly(p: &Pipeline, stream: &str, acked: &[Vec<u8>]) -> Result<()> {
    let all = workload::read_all(&Cluster::new(vec![p.core_addr], &p.pki.ca)?, stream).await?;
    // Values are ASCII: as text, a difference reads well.
    let text = |v: &[u8]| String::from_utf8_lossy(v).into_owned();
    let held = workload::multiset(all.iter().map(|r| text(&r.data)));
    let want = workload::multiset(acked.iter().map(|v| text(v)));
    workload::same_multiset(
        &format!("the core's {stream} against what was acknowledged"),
        &held,
        &want,
    )
}
