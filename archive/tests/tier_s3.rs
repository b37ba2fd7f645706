//! Tiered objects against real outside parts: a SeaweedFS S3 server
//! (`weed mini`) and the readers users query the archive with (DuckDB,
//! pyarrow). Both need `deploy/scripts/setup-s3.sh`; without it these tests
//! fail and say so (they never skip silently).

use anyhow::{ensure, Context, Result};
use bytes::Bytes;
use object_store::aws::AmazonS3Builder;
use object_store::path::Path;
use object_store::{BackoffConfig, ObjectStore, ObjectStoreExt, RetryConfig};
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;
use strata_archive::store::{open, open_with, put_object};
use strata_archive::{
    keys, read_object, read_records, EncodedObject, Manifest, SegmentWriter, WriterOptions,
};
use strata_schema::batch::{self, Builder, NewRecord};
use strata_tests::s3::{read_archive, S3Server};

/// An owned record and the bytes it is expected to come back as.
struct Rec {
    key: Option<String>,
    value: Vec<u8>,
    timestamp_ms: i64,
    headers: Vec<(String, Vec<u8>)>,
}

/// 2026-11-23T05:06:07.089Z
const T0: i64 = 1_795_410_367_089;

/// Awkward records first, then `n` with `value_len` pseudo-random bytes.
fn records(n: usize, value_len: usize, t0: i64, seed: u64) -> Vec<Rec> {
    let mut out = vec![
        Rec {
            key: None,
            value: vec![],
            timestamp_ms: t0,
            headers: vec![],
        },
        Rec {
            key: Some("ключ-🔑".into()),
            value: "значение ✓".as_bytes().to_vec(),
            timestamp_ms: t0 + 1,
            headers: vec![
                ("trace".into(), b"a".to_vec()),
                ("trace".into(), b"b".to_vec()),
                ("bin".into(), vec![0xff, 0, 0xfe]),
            ],
        },
    ];
    let mut x = seed | 1;
    for i in 0..n {
        let value = (0..value_len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        out.push(Rec {
            key: Some(format!("device-{}", i % 5)),
            value,
            timestamp_ms: t0 + 2 + i as i64,
            headers: vec![("seq".into(), i.to_string().into_bytes())],
        });
    }
    out
}

fn batch_of(recs: &[Rec]) -> Bytes {
    let mut b = Builder::default();
    for r in recs {
        let hs: Vec<(&str, &[u8])> = r
            .headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_slice()))
            .collect();
        b.push(&NewRecord {
            key: r.key.as_deref(),
            value: &r.value,
            timestamp_ms: r.timestamp_ms,
            headers: &hs,
        });
    }
    b.finish()
}

fn encode(stream: &str, shard: u32, first: u64, recs: &[Rec]) -> Result<EncodedObject> {
    let bytes = batch_of(recs);
    let mut w = SegmentWriter::new(
        stream,
        shard,
        WriterOptions {
            row_group_rows_max: 2048,
            ..WriterOptions::default()
        },
    )?;
    for (i, r) in batch::open(&bytes)?.records().iter().enumerate() {
        w.push(first + i as u64, &r)?;
    }
    Ok(w.finish()?)
}

/// An S3 client for `s3`, configured like `store::open` would be from the
/// server's environment, with short retries so a stopped server fails fast.
fn s3_store(s3: &S3Server, prefix: &str) -> Result<(Arc<dyn ObjectStore>, Path)> {
    let mut b = AmazonS3Builder::new().with_retry(RetryConfig {
        backoff: BackoffConfig::default(),
        max_retries: 1,
        retry_timeout: Duration::from_secs(2),
    });
    for (k, v) in s3.env() {
        b = b.with_config(k.to_ascii_lowercase().parse()?, v);
    }
    Ok(open_with(&s3.url(prefix), b)?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tiered_objects_round_trip_through_a_real_s3_server() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mut s3 = S3Server::start(&dir.path().join("weed")).await?;
    let (store, prefix) = s3_store(&s3, "archive/v1")?;

    // ~12 MiB of incompressible values: past BufWriter's 10 MiB, so the
    // upload is multipart.
    let recs = records(12_000, 1024, T0, 7);
    let obj = encode("orders", 3, 1000, &recs)?;
    ensure!(obj.object_bytes() > 10 << 20, "{}", obj.object_bytes());
    let key = obj.key(&prefix, "orders", 3, 1);
    assert_eq!(
        key.as_ref(),
        "archive/v1/stream=orders/date=2026-11-23/hour=05/shard-3-00000000000000001000-00000000000000013002-1.parquet"
    );
    put_object(&store, &key, obj.parquet.clone()).await?;
    assert_eq!(store.head(&key).await?.size, obj.object_bytes());

    let mut manifest = Manifest::new("orders", 3);
    manifest.push(obj.tiered_object(&key))?;
    let mkey = keys::manifest_key(&prefix, "orders", 3);
    put_object(&store, &mkey, manifest.to_json().into()).await?;
    let back = Manifest::from_json(&store.get(&mkey).await?.bytes().await?)?;
    assert_eq!(back, manifest);

    // Through the manifest entry (its size, and its checksums verified on
    // every fetched block), or with only the path (size from a HEAD).
    for (from, via_manifest) in [(1000, false), (7777, true), (12_999, true)] {
        let o = back.locate(from).context("offset is tiered")?;
        let read = if via_manifest {
            read_object(Arc::clone(&store), o, from, 3000, 8 << 20).await
        } else {
            read_records(
                Arc::clone(&store),
                &o.path()?,
                None,
                None,
                from,
                3000,
                8 << 20,
            )
            .await
        }
        .with_context(|| format!("reading from offset {from}"))?;
        let i = (from - 1000) as usize;
        assert_eq!(read.first_offset, from);
        assert_eq!(
            read.batch,
            batch_of(&recs[i..i + read.records]),
            "from {from}"
        );
        assert!(read.records >= 1 && read.records <= 3000);
        // Only the needed row groups travel: far less than the whole object.
        assert!(
            read.fetched_bytes < obj.object_bytes() / 2,
            "from {from}: {}",
            read.fetched_bytes
        );
    }

    // S3 goes away: reads and uploads fail with errors worth retrying...
    s3.stop();
    let err = read_records(Arc::clone(&store), &key, None, None, 1000, 10, 1 << 20)
        .await
        .expect_err("S3 is down");
    assert!(err.is_retryable(), "{err}");
    let err = put_object(&store, &key, obj.parquet.clone())
        .await
        .expect_err("S3 is down");
    assert!(err.is_retryable(), "{err}");

    // ...and once it is back on the same port and data, everything is there.
    s3.restart().await?;
    let read = read_records(Arc::clone(&store), &key, None, None, 12_500, 100, 1 << 20)
        .await
        .with_context(|| format!("reading after the restart; weed log:\n{}", s3.log_tail()))?;
    assert_eq!(read.batch, batch_of(&recs[11_500..11_600]));
    Ok(())
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// What read_archive.py should print for `recs` at `first` of `shard`.
fn expected_rows(shard: u32, first: u64, recs: &[Rec], date: &str, hour: &str) -> Vec<Value> {
    recs.iter()
        .enumerate()
        .map(|(i, r)| {
            serde_json::json!({
                "offset": first + i as u64,
                "shard": shard,
                "partition_key": r.key,
                "data_hex": hex(&r.value),
                "data_utf8": std::str::from_utf8(&r.value).ok(),
                "timestamp_ms": r.timestamp_ms,
                "headers": r.headers.iter().map(|(k, v)| vec![k.clone(), hex(v)]).collect::<Vec<_>>(),
                "stream": "orders",
                "date": date,
                "hour": hour,
            })
        })
        .collect()
}

fn column_type<'a>(out: &'a Value, name: &str) -> &'a str {
    out["columns"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["name"] == name))
        .and_then(|c| c["type"].as_str())
        .unwrap_or("<missing>")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_archive_reads_in_duckdb_and_pyarrow_locally_and_on_s3() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let local = dir.path().join("archive");
    let (fs, fs_prefix) = open(local.to_str().context("utf-8 path")?)?;
    let s3 = S3Server::start(&dir.path().join("weed")).await?;
    let (s3_store, s3_prefix) = s3_store(&s3, "lake")?;

    // Two shards of "orders" in different hours, a manifest copy, and a
    // stream that must not show up.
    let shard0 = records(300, 24, T0, 1);
    let shard1 = records(200, 24, T0 + 3_600_000, 2);
    let objects = [
        ("orders", 0, 0, encode("orders", 0, 0, &shard0)?),
        ("orders", 1, 40, encode("orders", 1, 40, &shard1)?),
        ("other", 0, 0, encode("other", 0, 0, &shard0[..5])?),
    ];
    for (store, prefix) in [(&fs, &fs_prefix), (&s3_store, &s3_prefix)] {
        for (stream, shard, _, obj) in &objects {
            let key = obj.key(prefix, stream, *shard, 1);
            put_object(store, &key, obj.parquet.clone()).await?;
            let mut m = Manifest::new(*stream, *shard);
            m.push(obj.tiered_object(&key))?;
            let mkey = keys::manifest_key(prefix, stream, *shard);
            put_object(store, &mkey, m.to_json().into()).await?;
        }
    }

    let mut want = expected_rows(0, 0, &shard0, "2026-11-23", "05");
    want.extend(expected_rows(1, 40, &shard1, "2026-11-23", "06"));
    let reads = [
        (
            "local",
            read_archive(&local.display().to_string(), "orders", &[])?,
        ),
        ("s3", read_archive(&s3.url("lake"), "orders", &s3.env())?),
    ];
    for (name, out) in &reads {
        assert_eq!(out["rows"], want.len(), "{name}");
        let got = out["records"].as_array().context("records")?;
        for (g, w) in got.iter().zip(&want) {
            assert_eq!(g, w, "{name}");
        }
        for (col, ty) in [
            ("offset", "BIGINT"),
            ("timestamp", "TIMESTAMP WITH TIME ZONE"),
            ("partition_key", "VARCHAR"),
            ("data", "BLOB"),
            ("headers", "MAP(VARCHAR, BLOB)"),
            ("shard", "BIGINT"),
            ("stream", "VARCHAR"),
            ("date", "DATE"),
            ("hour", "VARCHAR"),
        ] {
            assert_eq!(column_type(out, col), ty, "{name}: column {col}");
        }
        let arrow = &out["pyarrow"];
        assert_eq!(arrow["rows"], want.len(), "{name}");
        assert_eq!(arrow["streams"], serde_json::json!(["orders"]), "{name}");
        let ts = arrow["schema"]
            .as_array()
            .and_then(|s| s.iter().find(|f| f["name"] == "timestamp"))
            .context("pyarrow timestamp column")?;
        assert_eq!(ts["type"], "timestamp[ms, tz=UTC]", "{name}");
    }
    Ok(())
}
