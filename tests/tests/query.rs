//! `strata query` against a real pipeline: sensor readings over six hours
//! are produced and tiered (one object per shard and hour), then aggregated
//! with SQL, and the same aggregates computed by pyarrow and plain Python
//! (tests/py/aggregate_archive.py) on the same files must match. Then the
//! core is restarted so that new readings stay hot, and `--include-hot`
//! must count every record exactly once across the seam. A filter on one
//! hour must open only that hour's objects, and bad SQL must get
//! DataFusion's message, not a panic.

use anyhow::{bail, Context, Result};
use std::collections::BTreeSet;
use std::process::{Command, Stdio};
use std::time::Duration;
use strata_client::{api, Client};
use strata_schema::batch::{Builder, NewRecord};
use strata_tests::{s3, wait_for, Pipeline};

const HOUR_MS: i64 = 3_600_000;
/// 2026-11-19T08:00:00Z.
const BASE_TS: i64 = 1_795_075_200_000;
const HOURS: i64 = 6;
const PER_HOUR: u64 = 1_000;
const HOT: u64 = 1_500;
const DEVICES: u64 = 8;
const SHARDS: u32 = 2;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sql_over_the_archive_matches_pyarrow_and_the_hot_tail_joins_without_duplicates(
) -> Result<()> {
    let mut p = Pipeline::start_with("", "segment_age_max_ms = 1000\n").await?;
    let r = tokio::time::timeout(Duration::from_secs(300), run(&mut p)).await;
    let r = r.unwrap_or_else(|_| Err(anyhow::anyhow!("test exceeded 300 s")));
    if r.is_err() {
        eprintln!("--- core ---\n{}", p.core.log_tail());
    }
    r
}

fn reading(i: u64) -> (String, String, i64) {
    let device = format!("device-{}", i % DEVICES);
    let temp = 15.0 + ((i * 37) % 200) as f64 / 10.0;
    let value = format!(r#"{{"device":"{device}","seq":{i},"temp":{temp}}}"#);
    // Readings spread evenly over their hour.
    let ts = BASE_TS + (i / PER_HOUR) as i64 * HOUR_MS + (i % PER_HOUR) as i64 * 3_000;
    (device, value, ts)
}

async fn produce(edge: &Client, range: std::ops::Range<u64>) -> Result<()> {
    let mut b = Builder::with_capacity(64 * 1024);
    for i in range {
        let (key, value, ts) = reading(i);
        b.push(&NewRecord {
            key: Some(&key),
            value: value.as_bytes(),
            timestamp_ms: ts,
            headers: &[],
        });
        if b.len() == 500 {
            api::produce(edge, "sensors", &b.finish()).await?;
        }
    }
    if !b.is_empty() {
        api::produce(edge, "sensors", &b.finish()).await?;
    }
    Ok(())
}

/// Waits until the core holds `want` records, and (if `tiered`) all tiered.
async fn at_core(core: &Client, want: u64, tiered: bool) -> Result<api::StreamInfo> {
    wait_for(
        "the core to hold the records",
        Duration::from_secs(60),
        || async {
            let d = api::describe_stream(core, "sensors").await?;
            let next: u64 = d.shards.iter().map(|s| s.next_offset).sum();
            let done = d.shards.iter().all(|s| s.tiered_offset == s.next_offset);
            Ok((next == want && (done || !tiered)).then_some(d))
        },
    )
    .await
}

/// Runs `strata query` with `args`; returns (success, stdout, stderr).
fn strata_query(p: &Pipeline, args: &[&str]) -> Result<(bool, String, String)> {
    let out = Command::new(strata_tests::bin("strata")?)
        .arg("query")
        .args(["--core", &p.core_addr.to_string()])
        .arg("--ca")
        .arg(&p.pki.ca)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .context("running strata query")?;
    Ok((
        out.status.success(),
        String::from_utf8(out.stdout)?,
        String::from_utf8(out.stderr)?,
    ))
}

fn query_json(p: &Pipeline, args: &[&str]) -> Result<Vec<serde_json::Value>> {
    let mut all = vec!["--format", "json"];
    all.extend_from_slice(args);
    let (ok, out, err) = strata_query(p, &all)?;
    if !ok {
        bail!("strata query {args:?} failed:\n{err}");
    }
    out.lines()
        .map(|l| serde_json::from_str(l).with_context(|| format!("not JSON: {l}")))
        .collect()
}

fn int(v: &serde_json::Value, k: &str) -> i64 {
    v[k].as_i64().unwrap_or_else(|| panic!("{k} in {v}"))
}

const BY_DEVICE_HOUR: &str = "SELECT partition_key AS device, \
     to_unixtime(date_trunc('hour', \"timestamp\")) AS hour_s, \
     count(*) AS n, avg(json_get_float(value, 'temp')) AS avg_temp \
     FROM sensors GROUP BY 1, 2 ORDER BY 1, 2";

async fn run(p: &mut Pipeline) -> Result<()> {
    let core = p.client(p.core_addr);
    let edge = p.client(p.edge_addr);
    api::create_stream(&core, "sensors", SHARDS, 1).await?;
    // One hour at a time, each sealed (after 1 s) before the next: every
    // object holds one hour of one shard.
    for h in 0..HOURS as u64 {
        produce(&edge, h * PER_HOUR..(h + 1) * PER_HOUR).await?;
        at_core(&core, (h + 1) * PER_HOUR, true).await?;
    }
    let archived = HOURS as u64 * PER_HOUR;
    let d = at_core(&core, archived, true).await?;
    let objects: u64 = d.shards.iter().map(|s| s.tier_objects).sum();
    assert_eq!(
        objects,
        HOURS as u64 * u64::from(SHARDS),
        "one object per shard and hour"
    );
    let dir = d
        .archive_url
        .strip_prefix("file://")
        .and_then(|u| u.strip_suffix("/stream=sensors"))
        .context("a local archive")?
        .to_string();

    // The same aggregates from strata query and from pyarrow.
    let lo = BASE_TS + 2 * HOUR_MS;
    let py = aggregate(&dir, lo, lo + HOUR_MS)?;
    assert_eq!(py["rows"].as_u64(), Some(archived));
    let got = query_json(p, &[BY_DEVICE_HOUR])?;
    let want = py["groups"].as_array().context("groups")?;
    assert_eq!(got.len(), want.len(), "{got:?}\n{want:?}");
    assert_eq!(got.len() as i64, DEVICES as i64 * HOURS);
    for (g, w) in got.iter().zip(want) {
        assert_eq!(g["device"], w["device"]);
        assert_eq!(int(g, "hour_s"), int(w, "hour_s"));
        assert_eq!(int(g, "n"), int(w, "n"));
        let (a, b) = (
            g["avg_temp"].as_f64().unwrap(),
            w["avg_temp"].as_f64().unwrap(),
        );
        assert!((a - b).abs() < 1e-9, "{g} vs {w}");
    }
    // The same through --object-store, without asking the core.
    let url = format!("file://{dir}");
    let (ok, out, err) = strata_query(
        p,
        &[
            "--object-store",
            &url,
            "--format",
            "csv",
            "SELECT count(*) AS n FROM sensors",
        ],
    )?;
    assert!(ok, "{err}");
    assert_eq!(out, format!("n\n{archived}\n"));

    // A filter on one hour opens only that hour's objects.
    let window = format!(
        "SELECT count(*) AS n FROM sensors WHERE \"timestamp\" >= to_timestamp_millis({lo}) \
         AND \"timestamp\" < to_timestamp_millis({})",
        lo + HOUR_MS
    );
    let (ok, out, err) = strata_query(p, &["--explain", "--format", "csv", &window])?;
    assert!(ok, "{err}");
    assert_eq!(out, format!("n\n{}\n", py["window_rows"]));
    let line = err
        .lines()
        .find(|l| l.starts_with("scanned "))
        .with_context(|| format!("no scan summary in:\n{err}"))?;
    eprintln!("{line}");
    assert!(
        line.starts_with(&format!("scanned {SHARDS} of {objects} objects")),
        "{line}"
    );
    // Partition columns prune too.
    let (ok, out, err) = strata_query(
        p,
        &[
            "--explain",
            "--format",
            "csv",
            "SELECT count(*) AS n FROM sensors WHERE date = '2026-11-19' AND hour = '10'",
        ],
    )?;
    assert!(ok, "{err}");
    assert_eq!(out, format!("n\n{}\n", py["window_rows"]));
    assert!(
        err.contains(&format!("scanned {SHARDS} of {objects} objects")),
        "{err}"
    );

    // New readings stay hot: the core comes back sealing only after an hour.
    assert!(p.core.stop(), "the core did not stop cleanly");
    let cfg = p.dir.path().join("core.toml");
    let toml = std::fs::read_to_string(&cfg)?
        .replace("segment_age_max_ms = 1000", "segment_age_max_ms = 3600000");
    std::fs::write(&cfg, toml)?;
    p.restart_core().await?;
    let core = p.client(p.core_addr);
    produce(&edge, archived..archived + HOT).await?;
    let total = archived + HOT;
    let d = at_core(&core, total, false).await?;
    let tiered: u64 = d.shards.iter().map(|s| s.tiered_offset).sum();
    assert_eq!(tiered, archived, "the new readings are not tiered");

    // Archive only: the tiered readings. With the hot tail: all of them,
    // each (shard, offset) once.
    let count =
        "SELECT count(*) AS n, count(DISTINCT (shard, \"offset\")) AS distinct_n FROM sensors";
    let got = query_json(p, &[count])?;
    assert_eq!(int(&got[0], "n"), archived as i64);
    let got = query_json(p, &["--include-hot", count])?;
    assert_eq!(int(&got[0], "n"), total as i64, "{got:?}");
    assert_eq!(int(&got[0], "distinct_n"), total as i64, "{got:?}");
    // Every produced sequence number is there.
    let seqs = query_json(
        p,
        &[
            "--include-hot",
            "SELECT json_get_int(value, 'seq') AS seq FROM sensors",
        ],
    )?;
    let seqs: BTreeSet<i64> = seqs.iter().map(|v| int(v, "seq")).collect();
    assert_eq!(seqs, (0..total as i64).collect::<BTreeSet<_>>());

    // Output formats and files.
    let out_file = p.dir.path().join("by-device.parquet");
    let (ok, _, err) = strata_query(
        p,
        &[
            "--format",
            "parquet",
            "--output",
            out_file.to_str().context("path")?,
            BY_DEVICE_HOUR,
        ],
    )?;
    assert!(ok, "{err}");
    assert!(std::fs::read(&out_file)?.starts_with(b"PAR1"));
    let (ok, out, err) = strata_query(p, &["SELECT device FROM (SELECT DISTINCT partition_key AS device FROM sensors) ORDER BY device LIMIT 2"])?;
    assert!(ok, "{err}");
    assert!(
        out.contains("| device-0 |") && out.contains("| device-1 |"),
        "{out}"
    );

    // Bad SQL and unknown tables: DataFusion's message, exit status 1, no panic.
    for (sql, expect) in [
        ("SELEC 1", "SQL error"),
        ("SELECT nope FROM sensors", "nope"),
        ("SELECT * FROM missing", "missing"),
        (
            "COPY (SELECT 1) TO '/tmp/strata-query-copy.csv'",
            "not supported",
        ),
    ] {
        let (ok, out, err) = strata_query(p, &[sql])?;
        assert!(!ok, "{sql} succeeded: {out}");
        assert!(err.contains(expect), "{sql}: {err}");
        assert!(!err.contains("panicked"), "{sql}: {err}");
    }
    Ok(())
}

fn aggregate(dir: &str, lo: i64, hi: i64) -> Result<serde_json::Value> {
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("py/aggregate_archive.py");
    let out = Command::new(s3::venv_bin("python")?)
        .arg(&script)
        .args([dir, "sensors", &lo.to_string(), &hi.to_string()])
        .stdin(Stdio::null())
        .output()
        .context("running aggregate_archive.py")?;
    if !out.status.success() {
        bail!(
            "aggregate_archive.py failed ({}):\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    serde_json::from_slice(&out.stdout).context("aggregate_archive.py printed invalid JSON")
}
