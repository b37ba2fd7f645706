//! Tiering through a real pipeline (edge → core → local-filesystem object
//! store): sealed segments become Parquet objects, the core deletes the
//! tiered entries from its local log, consumers still read every record (now
//! from the objects), and an independent reader (DuckDB and pyarrow, run by
//! tests/py/read_archive.py) finds exactly the records that were produced.

use anyhow::{bail, Result};
use std::collections::BTreeMap;
use std::time::Duration;
use strata_client::api;
use strata_schema::batch::{Builder, NewRecord};
use strata_tests::{s3, wait_for, Pipeline};

const RECORDS: u64 = 20_000;
const SHARDS: u32 = 2;
const BASE_TS: i64 = 1_795_000_000_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tiered_segments_are_read_back_and_open_to_duckdb() -> Result<()> {
    let p =
        Pipeline::start_with("", "segment_age_max_ms = 1000\nlocal_retention_ms = 1000\n").await?;
    let r = tokio::time::timeout(Duration::from_secs(240), run(&p)).await;
    let r = match r {
        Ok(r) => r,
        Err(_) => Err(anyhow::anyhow!("test exceeded 240 s")),
    };
    if r.is_err() {
        eprintln!("--- core ---\n{}", p.core.log_tail());
    }
    r
}

async fn run(p: &Pipeline) -> Result<()> {
    let core = p.client(p.core_addr);
    api::create_stream(&core, "sensors", SHARDS, 1).await?;
    // Known sensor readings: device d, reading i, a header on every record.
    let edge = p.client(p.edge_addr);
    let mut produced: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for chunk in 0..RECORDS / 500 {
        let mut b = Builder::with_capacity(64 * 1024);
        for i in chunk * 500..(chunk + 1) * 500 {
            let key = format!("device-{}", i % 16);
            let value = format!(r#"{{"device":"{key}","seq":{i},"temp":{}}}"#, 20 + i % 7);
            b.push(&NewRecord {
                key: Some(&key),
                value: value.as_bytes(),
                timestamp_ms: BASE_TS + i as i64,
                headers: &[("unit", b"celsius")],
            });
            produced.entry(key).or_default().push(value);
        }
        api::produce(&edge, "sensors", &b.finish()).await?;
    }

    // The core tiers both shards and deletes the tiered entries locally.
    let shard_dir = |s: u32| p.dir.path().join(format!("core/shards/sensors/{s:05}"));
    wait_for(
        "tiered entries to be deleted from the local log",
        Duration::from_secs(120),
        || async {
            Ok((0..SHARDS)
                .all(|s| shard_dir(s).join("purged.json").exists())
                .then_some(()))
        },
    )
    .await?;

    // `describe` shows no backlog once everything is tiered, and where the
    // archive lives.
    let d = wait_for(
        "the tiering backlog to drain",
        Duration::from_secs(60),
        || async {
            let d = api::describe_stream(&core, "sensors").await?;
            let drained = d.shards.iter().all(|s| {
                s.tiered_offset == s.next_offset && s.tier_objects > 0 && s.tier_bytes > 0
            });
            Ok(drained.then_some(d))
        },
    )
    .await?;
    let total: u64 = d.shards.iter().map(|s| s.next_offset).sum();
    assert_eq!(total, RECORDS);
    assert!(
        d.archive_url.starts_with("file://") && d.archive_url.ends_with("/stream=sensors"),
        "{}",
        d.archive_url
    );

    // Every record is still readable through the consumer API, in order.
    let mut consumed: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut by_offset = Vec::new();
    for shard in 0..SHARDS {
        let mut offset = 0;
        loop {
            let f = api::fetch(&core, "sensors", shard, offset, 1000, Duration::ZERO).await?;
            for r in &f.records {
                if r.offset != offset {
                    bail!("shard {shard}: expected offset {offset}, got {}", r.offset);
                }
                offset += 1;
                let key = r.key.clone().unwrap_or_default();
                let value = String::from_utf8(r.data.to_vec())?;
                assert_eq!(r.headers.len(), 1);
                by_offset.push((shard, r.offset, key.clone(), value.clone(), r.timestamp_ms));
                consumed.entry(key).or_default().push(value);
            }
            if f.records.is_empty() || offset >= f.high_watermark {
                break;
            }
        }
    }
    assert_eq!(by_offset.len() as u64, RECORDS);
    assert_eq!(consumed, produced, "per-key order and values after tiering");

    // DuckDB (hive_partitioning) and pyarrow read the same records.
    let archive = p.dir.path().join("core/archive");
    let got = s3::read_archive(&archive.display().to_string(), "sensors", &[])?;
    assert_eq!(got["rows"].as_u64(), Some(RECORDS), "DuckDB row count");
    assert_eq!(
        got["pyarrow"]["rows"].as_u64(),
        Some(RECORDS),
        "pyarrow row count"
    );
    let columns: Vec<&str> = got["columns"]
        .as_array()
        .map(|c| c.iter().filter_map(|x| x["name"].as_str()).collect())
        .unwrap_or_default();
    for c in [
        "offset",
        "timestamp",
        "partition_key",
        "data",
        "headers",
        "shard",
        "stream",
        "date",
        "hour",
    ] {
        assert!(columns.contains(&c), "column {c} missing from {columns:?}");
    }
    let records = got["records"].as_array().cloned().unwrap_or_default();
    for (r, (shard, offset, key, value, ts)) in records.iter().zip(&by_offset) {
        assert_eq!(r["shard"].as_u64(), Some(u64::from(*shard)));
        assert_eq!(r["offset"].as_u64(), Some(*offset));
        assert_eq!(r["partition_key"].as_str(), Some(key.as_str()));
        assert_eq!(r["data_utf8"].as_str(), Some(value.as_str()));
        assert_eq!(r["timestamp_ms"].as_i64(), Some(*ts));
        assert_eq!(r["stream"].as_str(), Some("sensors"));
    }
    Ok(())
}
