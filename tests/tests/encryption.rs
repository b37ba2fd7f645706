//! Encryption at rest of the edge buffers, with real processes: an edge
//! with `encryption_key_file` buffers records while the core is down; no
//! segment file holds a produced payload in clear; killed with SIGKILL, the
//! edge refuses to start on a wrong key (naming the segment and the key
//! fingerprints, changing nothing) and on a key file others may read; with
//! the right key it forwards everything, exactly once. And a core with
//! `object_store_sse = "s3"` tiers to a real S3 server (SeaweedFS, from
//! `deploy/scripts/setup-s3.sh`) and reads every record back from there.

use anyhow::{bail, ensure, Result};
use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;
use strata_client::api;
use strata_client::cluster::Cluster;
use strata_schema::batch::{Builder, NewRecord};
use strata_tests::{files_under, s3, wait_for, workload, Pipeline, Proc};

const RECORDS: u64 = 20_000;
const KEYS: u64 = 20;
/// In every value the workload produces (`<i>|<attempt>|payload-<i>`).
const PAYLOAD_MARK: &[u8] = b"|payload-";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn encrypted_edge_buffers_hold_no_plaintext_and_forward_exactly_once() -> Result<()> {
    match tokio::time::timeout(Duration::from_secs(600), run()).await {
        Ok(r) => r,
        Err(_) => bail!("test exceeded 600 s"),
    }
}

/// Writes a key file (64 hex characters) with `mode`.
fn key_file(path: &Path, byte: u8, mode: u32) -> Result<PathBuf> {
    let hex: String = std::iter::repeat_n(format!("{byte:02x}"), 32).collect();
    std::fs::write(path, format!("{hex}\n"))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
    Ok(path.to_owned())
}

/// Relative path → contents of every file below `dir`.
fn snapshot(dir: &Path) -> Result<BTreeMap<PathBuf, Vec<u8>>> {
    files_under(dir)?
        .into_iter()
        .map(|f| Ok((f.strip_prefix(dir)?.to_owned(), std::fs::read(&f)?)))
        .collect()
}

/// Starts the edge with `edge.toml` as it is now and waits for it to exit
/// (it must refuse to start); returns its log.
async fn refused_start(p: &Pipeline, what: &str) -> Result<String> {
    let dir = p.dir.path();
    let log = dir.join(format!("edge-{what}.log"));
    let mut edge = Proc::spawn("strata-edge", &dir.join("edge.toml"), &log)?;
    wait_for(
        &format!("the edge to refuse to start ({what})"),
        Duration::from_secs(60),
        || {
            let running = edge.is_running();
            async move { Ok((!running).then_some(())) }
        },
    )
    .await?;
    Ok(std::fs::read_to_string(&log)?)
}

async fn run() -> Result<()> {
    let keys = tempfile::tempdir()?;
    let right = key_file(&keys.path().join("buffer.key"), 0x5a, 0o600)?;
    let wrong = key_file(&keys.path().join("other.key"), 0xa5, 0o600)?;
    let extra = format!("encryption_key_file = {right:?}\n");
    let mut p = Pipeline::start(&extra).await?;
    let buffers = p.dir.path().join("edge").join("buffers");
    api::create_stream(&p.client(p.core_addr), "secrets", 2, 1).await?;
    let producers = workload::start(p.edge_addr, &p.pki.ca, "secrets", RECORDS, KEYS, 2, 100);
    producers
        .wait_acked(4_000, Duration::from_secs(120))
        .await?;

    // The core goes away: what is produced now stays in the edge buffer.
    p.core.kill9();
    producers
        .wait_acked(12_000, Duration::from_secs(120))
        .await?;
    let files = snapshot(&buffers)?;
    let sealed_bytes: usize = files
        .iter()
        .filter(|(f, _)| f.extension().is_some_and(|e| e == "ebuf"))
        .map(|(_, b)| b.len())
        .sum();
    ensure!(
        sealed_bytes > 100_000,
        "expected the unforwarded records in encrypted segments, found {sealed_bytes} bytes in {:?}",
        files.keys().collect::<Vec<_>>()
    );
    for (f, bytes) in &files {
        ensure!(
            f.extension().is_none_or(|e| e != "buf"),
            "plaintext segment {f:?}"
        );
        ensure!(
            !bytes.windows(PAYLOAD_MARK.len()).any(|w| w == PAYLOAD_MARK),
            "{f:?} holds a produced payload in clear"
        );
    }

    // SIGKILL; the buffer as it is on disk must survive every refused start.
    p.edge.kill9();
    let on_disk = snapshot(&buffers)?;
    let toml = p.dir.path().join("edge.toml");
    let config = std::fs::read_to_string(&toml)?;
    std::fs::write(
        &toml,
        config.replace(&format!("{right:?}"), &format!("{wrong:?}")),
    )?;
    let log = refused_start(&p, "wrong key").await?;
    ensure!(
        log.contains("was encrypted with the key of fingerprint")
            && log.contains("nothing was changed")
            && log.contains(".ebuf"),
        "no clear wrong-key error in the edge log:\n{log}"
    );
    ensure!(
        snapshot(&buffers)? == on_disk,
        "a refused start changed the buffer"
    );
    std::fs::write(&toml, &config)?;
    std::fs::set_permissions(&right, std::fs::Permissions::from_mode(0o644))?;
    let log = refused_start(&p, "exposed key").await?;
    ensure!(
        log.contains("readable by group or others") && log.contains("chmod 600"),
        "no clear permission error in the edge log:\n{log}"
    );
    std::fs::set_permissions(&right, std::fs::Permissions::from_mode(0o600))?;
    ensure!(snapshot(&buffers)? == on_disk);

    // The right key: everything buffered and produced meanwhile arrives once.
    p.restart_core().await?;
    p.restart_edge().await?;
    let acked = producers.finish().await?;
    ensure!(acked.len() as u64 == RECORDS, "{} acked", acked.len());
    let cluster = Cluster::new(vec![p.core_addr], &p.pki.ca)?;
    let report =
        workload::verify(&cluster, "secrets", &acked, KEYS, Duration::from_secs(180)).await?;
    eprintln!("{report:?}");
    ensure!(p.edge.stop(), "edge did not stop cleanly");
    ensure!(p.core.stop(), "core did not stop cleanly");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_core_with_sse_s3_tiers_to_s3_and_reads_back() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let s3 = s3::S3Server::start(&dir.path().join("s3")).await?;
    let core_cfg = format!(
        "object_store = \"{}\"\nobject_store_sse = \"s3\"\n\
         segment_age_max_ms = 1000\nlocal_retention_ms = 1000\n",
        s3.url("archive")
    );
    let p = Pipeline::start_env("", &core_cfg, &s3.env()).await?;
    let r = tokio::time::timeout(Duration::from_secs(240), tier_with_sse(&p)).await;
    let r = r.unwrap_or_else(|_| Err(anyhow::anyhow!("test exceeded 240 s")));
    if r.is_err() {
        eprintln!(
            "--- core ---\n{}\n--- s3 ---\n{}",
            p.core.log_tail(),
            s3.log_tail()
        );
    }
    r
}

async fn tier_with_sse(p: &Pipeline) -> Result<()> {
    const N: u64 = 5_000;
    let core = p.client(p.core_addr);
    let edge = p.client(p.edge_addr);
    api::create_stream(&core, "vault", 1, 1).await?;
    let mut b = Builder::default();
    for i in 0..N {
        let value = format!("sealed-{i}");
        b.push(&NewRecord {
            key: Some("k"),
            value: value.as_bytes(),
            timestamp_ms: i as i64,
            headers: &[],
        });
        if b.len() == 500 {
            api::produce(&edge, "vault", &b.finish()).await?;
        }
    }
    // Tiered, and the tiered entries purged from the core's local log: the
    // records are read back from the SSE-S3 objects.
    let purged = p.dir.path().join("core/shards/vault/00000/purged.json");
    wait_for(
        "the stream to be tiered and purged locally",
        Duration::from_secs(120),
        || {
            let core = &core;
            let purged = &purged;
            async move {
                let d = api::describe_stream(core, "vault").await?;
                let s = &d.shards[0];
                Ok((s.next_offset == N
                    && s.tiered_offset == N
                    && s.tier_objects > 0
                    && purged.exists())
                .then_some(()))
            }
        },
    )
    .await?;
    let mut offset = 0;
    while offset < N {
        let f = api::fetch(&core, "vault", 0, offset, 1000, Duration::ZERO).await?;
        ensure!(!f.records.is_empty(), "nothing at offset {offset}");
        for r in &f.records {
            ensure!(r.offset == offset && r.data.as_ref() == format!("sealed-{offset}").as_bytes());
            offset += 1;
        }
    }
    Ok(())
}
