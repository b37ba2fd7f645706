//! End to end with real processes: producer → strata-edge → strata-core.
//!
//! 100,000 records over 100 keys are produced through the edge while the
//! edge is killed with SIGKILL mid-stream and the core is killed and
//! restarted once. Afterwards every acknowledged record must be in the core
//! exactly once, in per-key order.

use anyhow::{bail, Result};
use std::time::Duration;
use strata_client::api;
use strata_client::cluster::Cluster;
use strata_tests::{workload, Pipeline};

const RECORDS: u64 = 100_000;
const KEYS: u64 = 100;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill9_edge_and_restart_core_lose_nothing_and_duplicate_nothing() -> Result<()> {
    match tokio::time::timeout(Duration::from_secs(600), run()).await {
        Ok(r) => r,
        Err(_) => bail!("test exceeded 600 s"),
    }
}

async fn run() -> Result<()> {
    let mut p = Pipeline::start("").await?;
    api::create_stream(&p.client(p.core_addr), "sensors", 4, 1).await?;
    let producers = workload::start(p.edge_addr, &p.pki.ca, "sensors", RECORDS, KEYS, 4, 250);

    producers
        .wait_acked(30_000, Duration::from_secs(240))
        .await?;
    p.edge.kill9();
    p.restart_edge().await?;
    producers
        .wait_acked(60_000, Duration::from_secs(240))
        .await?;
    p.core.kill9();
    p.restart_core().await?;

    let acked = producers.finish().await?;
    assert_eq!(acked.len() as u64, RECORDS);
    let cluster = Cluster::new(vec![p.core_addr], &p.pki.ca)?;
    let report =
        workload::verify(&cluster, "sensors", &acked, KEYS, Duration::from_secs(180)).await?;
    eprintln!("{report:?}");
    assert!(p.core.is_running() && p.edge.is_running());
    assert!(p.edge.stop(), "edge did not stop cleanly");
    assert!(p.core.stop(), "core did not stop cleanly");
    Ok(())
}
