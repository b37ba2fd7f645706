//! Tiering through a real pipeline (edge → core → object store): sealed
//! segments become Parquet objects, the core deletes the tiered entries from
//! its local log, consumers still read every record (now from the objects),
//! and independent readers (DuckDB and pyarrow, run by
//! tests/py/read_archive.py) find exactly the records that were produced.
//! Once on the local filesystem (the default store), once on a real
//! S3-compatible server (SeaweedFS) that goes down mid-run.

use anyhow::{bail, Result};
use std::collections::BTreeMap;
use std::time::Duration;
use strata_client::{api, Client};
use strata_schema::batch::{Builder, NewRecord};
use strata_tests::{s3, wait_for, Pipeline};

const RECORDS: u64 = 20_000;
const SHARDS: u32 = 2;
const BASE_TS: i64 = 1_795_000_000_000;
/// Seal segments after 1 s and delete tiered entries locally after 1 s.
const FAST_TIERING: &str = "segment_age_max_ms = 1000\nlocal_retention_ms = 1000\n";

type Row = (u32, u64, String, String, i64);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tiered_segments_are_read_back_and_open_to_duckdb() -> Result<()> {
    let p = Pipeline::start_with("", FAST_TIERING).await?;
    let r = tokio::time::timeout(Duration::from_secs(240), local(&p)).await;
    let r = r.unwrap_or_else(|_| Err(anyhow::anyhow!("test exceeded 240 s")));
    if r.is_err() {
        eprintln!("--- core ---\n{}", p.core.log_tail());
    }
    r
}

async fn local(p: &Pipeline) -> Result<()> {
    let core = p.client(p.core_addr);
    let edge = p.client(p.edge_addr);
    api::create_stream(&core, "sensors", SHARDS, 1).await?;
    let mut produced = BTreeMap::new();
    produce(&edge, 0..RECORDS, &mut produced).await?;

    // Everything reaches the core and is tiered: `describe` shows no backlog.
    let d = wait_for(
        "the tiering backlog to drain",
        Duration::from_secs(120),
        || drained(&core, RECORDS),
    )
    .await?;
    assert!(d
        .shards
        .iter()
        .all(|s| s.tier_objects > 0 && s.tier_bytes > 0));
    assert!(
        d.archive_url.starts_with("file://") && d.archive_url.ends_with("/stream=sensors"),
        "{}",
        d.archive_url
    );
    // ...and the tiered entries leave the local log.
    let shard_dir = |s: u32| p.dir.path().join(format!("core/shards/sensors/{s:05}"));
    wait_for(
        "tiered entries to be deleted from the local log",
        Duration::from_secs(60),
        || async {
            Ok((0..SHARDS)
                .all(|s| shard_dir(s).join("purged.json").exists())
                .then_some(()))
        },
    )
    .await?;

    // The disk space is given back: the segment files holding the tiered
    // entries are deleted (about 2 MB were written per shard).
    wait_for(
        "the tiered segment files to be deleted",
        Duration::from_secs(60),
        || async {
            let mut sizes = Vec::new();
            for s in 0..SHARDS {
                sizes.push(strata_tests::dir_bytes(&shard_dir(s).join("log"))?);
            }
            Ok(sizes.iter().all(|&b| b < 100_000).then_some(()))
        },
    )
    .await?;

    // Every record is still readable through the consumer API, in order.
    let by_offset = read_all(&core, &produced).await?;
    // DuckDB (hive_partitioning) and pyarrow read the same records.
    let archive = p.dir.path().join("core/archive");
    let got = s3::read_archive(&archive.display().to_string(), "sensors", &[])?;
    check_archive(&got, &by_offset)
}

/// Tiering to a real S3-compatible server (SeaweedFS): while the server is
/// down, ingestion goes on, the backlog shows in `describe` and holds; after
/// it returns the backlog drains and DuckDB reads the stream from S3.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_outage_loses_nothing_and_tiering_catches_up() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mut s3 = s3::S3Server::start(&dir.path().join("s3")).await?;
    let url = s3.url("archive");
    let core_cfg = format!("object_store = \"{url}\"\n{FAST_TIERING}");
    let p = Pipeline::start_env("", &core_cfg, &s3.env()).await?;
    let r = tokio::time::timeout(Duration::from_secs(300), outage(&p, &mut s3, &url)).await;
    let r = r.unwrap_or_else(|_| Err(anyhow::anyhow!("test exceeded 300 s")));
    if r.is_err() {
        let _ = std::fs::copy(
            &p.core.log,
            std::env::temp_dir().join("strata-s3-test-core.log"),
        );
        eprintln!(
            "--- core ---\n{}\n--- s3 ---\n{}",
            p.core.log_tail(),
            s3.log_tail()
        );
    }
    r
}

async fn outage(p: &Pipeline, s3: &mut s3::S3Server, url: &str) -> Result<()> {
    let core = p.client(p.core_addr);
    let edge = p.client(p.edge_addr);
    api::create_stream(&core, "sensors", SHARDS, 1).await?;
    let mut produced = BTreeMap::new();
    produce(&edge, 0..RECORDS / 2, &mut produced).await?;
    wait_for(
        "the first half to be tiered",
        Duration::from_secs(120),
        || drained(&core, RECORDS / 2),
    )
    .await?;

    // S3 goes away: producers are still acknowledged and the core commits.
    s3.stop();
    let failures_before = tier_failures(p)?;
    produce(&edge, RECORDS / 2..RECORDS, &mut produced).await?;
    let stuck = wait_for(
        "the second half committed",
        Duration::from_secs(60),
        || async {
            let (next, backlog) = totals(&core).await?;
            Ok((next == RECORDS).then_some(backlog))
        },
    )
    .await?;
    assert!(stuck > 0, "nothing can be tiered while S3 is down");
    // Uploads fail and are retried; the backlog holds meanwhile.
    wait_for(
        "failed upload attempts",
        Duration::from_secs(60),
        || async { Ok((tier_failures(p)? >= failures_before + 2).then_some(())) },
    )
    .await?;
    let (_, later) = totals(&core).await?;
    assert_eq!(later, stuck, "the backlog stays until S3 is back");

    // S3 is back: the backlog drains, every record reads back in order.
    s3.restart().await?;
    wait_for("tiering to catch up", Duration::from_secs(120), || {
        drained(&core, RECORDS)
    })
    .await?;
    let by_offset = read_all(&core, &produced).await?;
    let got = s3::read_archive(url, "sensors", &s3.env())?;
    check_archive(&got, &by_offset)?;

    // `strata query` reads the same objects over S3: asking the core where
    // the archive is, and straight from the store.
    let sql = "SELECT count(*) AS n, count(DISTINCT partition_key) AS k FROM sensors";
    let want = format!("n,k\n{RECORDS},16\n");
    for direct in [false, true] {
        let mut cmd = std::process::Command::new(strata_tests::bin("strata")?);
        cmd.args([
            "query",
            "--format",
            "csv",
            "--core",
            &p.core_addr.to_string(),
        ])
        .arg("--ca")
        .arg(&p.pki.ca)
        .envs(s3.env());
        if direct {
            cmd.args(["--object-store", url]);
        }
        let out = cmd.arg(sql).stdin(std::process::Stdio::null()).output()?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success(),
            "strata query (direct: {direct}): {stderr}"
        );
        assert_eq!(String::from_utf8(out.stdout)?, want, "direct: {direct}");
    }
    Ok(())
}

/// Upload failures the core has logged so far.
fn tier_failures(p: &Pipeline) -> Result<usize> {
    let log = std::fs::read_to_string(&p.core.log)?;
    Ok(log.matches("tiering failed; will retry").count())
}

/// (records committed, records not yet tiered) over all shards.
async fn totals(core: &Client) -> Result<(u64, u64)> {
    let d = api::describe_stream(core, "sensors").await?;
    Ok((
        d.shards.iter().map(|s| s.next_offset).sum(),
        d.shards
            .iter()
            .map(|s| s.next_offset - s.tiered_offset)
            .sum(),
    ))
}

/// The description once `want` records are committed and all are tiered.
async fn drained(core: &Client, want: u64) -> Result<Option<api::StreamInfo>> {
    let d = api::describe_stream(core, "sensors").await?;
    let next: u64 = d.shards.iter().map(|s| s.next_offset).sum();
    let tiered = d.shards.iter().all(|s| s.tiered_offset == s.next_offset);
    Ok((next == want && tiered).then_some(d))
}

/// Produces readings `range` (device i % 16, reading i, one header) through
/// the edge, remembering each device's values in order.
async fn produce(
    edge: &Client,
    range: std::ops::Range<u64>,
    produced: &mut BTreeMap<String, Vec<String>>,
) -> Result<()> {
    let mut b = Builder::with_capacity(64 * 1024);
    for i in range {
        let key = format!("device-{}", i % 16);
        let value = format!(r#"{{"device":"{key}","seq":{i},"temp":{}}}"#, 20 + i % 7);
        b.push(&NewRecord {
            key: Some(&key),
            value: value.as_bytes(),
            timestamp_ms: BASE_TS + i as i64,
            headers: &[("unit", b"celsius")],
        });
        produced.entry(key).or_default().push(value);
        if b.len() == 500 {
            api::produce(edge, "sensors", &b.finish()).await?;
        }
    }
    if !b.is_empty() {
        api::produce(edge, "sensors", &b.finish()).await?;
    }
    Ok(())
}

/// Reads every shard from offset 0 through the consumer API; checks dense
/// offsets, the total, and each device's values in order against `produced`.
async fn read_all(core: &Client, produced: &BTreeMap<String, Vec<String>>) -> Result<Vec<Row>> {
    let mut consumed: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut by_offset = Vec::new();
    for shard in 0..SHARDS {
        let mut offset = 0;
        loop {
            let f = api::fetch(core, "sensors", shard, offset, 1000, Duration::ZERO).await?;
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
    let total: usize = produced.values().map(Vec::len).sum();
    assert_eq!(by_offset.len(), total, "records read back");
    assert_eq!(
        &consumed, produced,
        "per-key order and values after tiering"
    );
    Ok(by_offset)
}

/// What read_archive.py found must be exactly `by_offset`, with the
/// documented columns.
fn check_archive(got: &serde_json::Value, by_offset: &[Row]) -> Result<()> {
    let n = by_offset.len() as u64;
    assert_eq!(got["rows"].as_u64(), Some(n), "DuckDB row count");
    assert_eq!(
        got["pyarrow"]["rows"].as_u64(),
        Some(n),
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
    for (r, (shard, offset, key, value, ts)) in records.iter().zip(by_offset) {
        assert_eq!(r["shard"].as_u64(), Some(u64::from(*shard)));
        assert_eq!(r["offset"].as_u64(), Some(*offset));
        assert_eq!(r["partition_key"].as_str(), Some(key.as_str()));
        assert_eq!(r["data_utf8"].as_str(), Some(value.as_str()));
        assert_eq!(r["timestamp_ms"].as_i64(), Some(*ts));
        assert_eq!(r["stream"].as_str(), Some("sensors"));
    }
    Ok(())
}

/// Total retention counts from when the core committed a record, not from
/// its timestamp: a stream keeping one day keeps readings whose timestamps
/// are weeks old (they were committed just now); once the retention is
/// cut to 2 s, they go from the object store and from the shard (reads below
/// the new first offset are out of range).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn total_retention_expires_old_records_everywhere() -> Result<()> {
    let p = Pipeline::start_with("", FAST_TIERING).await?;
    let r = tokio::time::timeout(Duration::from_secs(240), retention(&p)).await;
    let r = r.unwrap_or_else(|_| Err(anyhow::anyhow!("test exceeded 240 s")));
    if r.is_err() {
        eprintln!("--- core ---\n{}", p.core.log_tail());
    }
    r
}

async fn retention(p: &Pipeline) -> Result<()> {
    let core = p.client(p.core_addr);
    let edge = p.client(p.edge_addr);
    let day = api::Retention {
        total_ms: Some(24 * 3600 * 1000),
        ..Default::default()
    };
    let s = api::create_stream_with(&core, "sensors", SHARDS, 1, &day).await?;
    assert_eq!(s.retention.total_ms, Some(24 * 3600 * 1000));
    // BASE_TS is days before now: every reading's timestamp is past a day's
    // retention, but each was committed just now, so all stay.
    let mut produced = BTreeMap::new();
    produce(&edge, 0..RECORDS / 4, &mut produced).await?;
    wait_for("the records to be tiered", Duration::from_secs(120), || {
        drained(&core, RECORDS / 4)
    })
    .await?;
    // Every record reads back from offset 0 (from the objects once purged
    // locally), and a pass of expiry has run after each upload meanwhile.
    read_all(&core, &produced).await?;
    let d = api::describe_stream(&core, "sensors").await?;
    for sh in &d.shards {
        assert_eq!(
            (sh.first_offset, sh.tier_objects > 0),
            (0, true),
            "shard {}: nothing expires by producer timestamps",
            sh.id
        );
    }
    // Two seconds after commit they are all past the retention.
    let brief = api::Retention {
        total_ms: Some(2_000),
        ..Default::default()
    };
    api::set_retention(&core, "sensors", &brief).await?;
    let d = wait_for(
        "old records to expire",
        Duration::from_secs(120),
        || async {
            let d = api::describe_stream(&core, "sensors").await?;
            let next: u64 = d.shards.iter().map(|s| s.next_offset).sum();
            let gone = d
                .shards
                .iter()
                .all(|s| s.first_offset == s.next_offset && s.tier_objects == 0);
            Ok((next == RECORDS / 4 && gone).then_some(d))
        },
    )
    .await?;
    for sh in &d.shards {
        let Err(strata_client::ClientError::Remote(e)) =
            api::fetch(&core, "sensors", sh.id, 0, 10, Duration::ZERO).await
        else {
            bail!("offset 0 of shard {} should be out of range", sh.id);
        };
        assert_eq!(
            e.code,
            strata_schema::fb::ErrorCode::OffsetOutOfRange,
            "{e}"
        );
    }
    // The objects are gone from the store too (only manifests remain).
    let archive = p.dir.path().join("core/archive/stream=sensors");
    let parquet = strata_tests::files_under(&archive)?
        .into_iter()
        .filter(|f| f.extension().is_some_and(|e| e == "parquet"))
        .count();
    assert_eq!(parquet, 0, "expired objects are deleted from the store");
    Ok(())
}

/// Disaster recovery: a fresh core pointed at the same object store rebuilds
/// a stream from its objects and manifests alone (`strata stream restore`),
/// serves the whole history, and appends continue after it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fresh_core_restores_a_stream_from_its_archive() -> Result<()> {
    let store = tempfile::tempdir()?;
    let url = format!("file://{}", store.path().join("archive").display());
    let cfg = format!("object_store = \"{url}\"\n{FAST_TIERING}");
    let r = tokio::time::timeout(Duration::from_secs(240), restore(&cfg)).await;
    r.unwrap_or_else(|_| Err(anyhow::anyhow!("test exceeded 240 s")))
}

async fn restore(cfg: &str) -> Result<()> {
    let mut produced = BTreeMap::new();
    {
        let old = Pipeline::start_with("", cfg).await?;
        let core = old.client(old.core_addr);
        api::create_stream(&core, "sensors", SHARDS, 1).await?;
        produce(&old.client(old.edge_addr), 0..RECORDS / 2, &mut produced).await?;
        wait_for(
            "the archive to be complete",
            Duration::from_secs(120),
            || drained(&core, RECORDS / 2),
        )
        .await?;
    } // the old core and edge are killed, their disks dropped

    let p = Pipeline::start_with("", cfg).await?;
    let out = tokio::time::timeout(
        Duration::from_secs(90),
        tokio::process::Command::new(strata_tests::bin("strata")?)
            .args(["stream", "restore", "sensors", "--core"])
            .arg(p.core_addr.to_string())
            .arg("--ca")
            .arg(&p.pki.ca)
            .kill_on_drop(true)
            .output(),
    )
    .await??;
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains(&format!(
            "restored stream sensors with {SHARDS} shard(s), {} records",
            RECORDS / 2
        )),
        "{text}"
    );
    let core = p.client(p.core_addr);
    read_all(&core, &produced).await?;

    // New readings continue after the restored history, in per-key order.
    produce(&p.client(p.edge_addr), RECORDS / 2..RECORDS, &mut produced).await?;
    wait_for("new records committed", Duration::from_secs(60), || async {
        let (next, _) = totals(&core).await?;
        Ok((next == RECORDS).then_some(()))
    })
    .await?;
    read_all(&core, &produced).await?;
    Ok(())
}
