//! Server-side encryption against a real S3 server (SeaweedFS `weed mini`,
//! from `deploy/scripts/setup-s3.sh`; without it this test fails and says
//! so): an object written through `store::open_encrypted` with SSE-S3 is
//! stored encrypted by the server (a distinctive payload is nowhere in its
//! data directory, while the same payload written without SSE is) and reads
//! back unchanged.

use anyhow::{ensure, Context, Result};
use bytes::Bytes;
use object_store::aws::AmazonS3Builder;
use object_store::path::Path;
use object_store::ObjectStoreExt;
use std::time::Duration;
use strata_archive::sse::{S3Encryption, Sse};
use strata_archive::store::{open_encrypted_with, put_object};
use strata_tests::files_under;
use strata_tests::s3::S3Server;

/// Incompressible bytes with a marker every 4 KiB.
fn payload(marker: &[u8], len: usize) -> Vec<u8> {
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let mut out: Vec<u8> = (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    for at in (0..len - marker.len()).step_by(4096) {
        out[at..at + marker.len()].copy_from_slice(marker);
    }
    out
}

fn builder(s3: &S3Server) -> Result<AmazonS3Builder> {
    let mut b = AmazonS3Builder::new();
    for (k, v) in s3.env() {
        b = b.with_config(k.to_ascii_lowercase().parse()?, v);
    }
    Ok(b)
}

/// Whether any file under `dir` contains `needle`.
fn stored_in_clear(dir: &std::path::Path, needle: &[u8]) -> Result<bool> {
    for f in files_under(dir)? {
        let bytes = std::fs::read(&f).unwrap_or_default();
        if bytes.windows(needle.len()).any(|w| w == needle) {
            return Ok(true);
        }
    }
    Ok(false)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sse_s3_objects_are_stored_encrypted_and_read_back() -> Result<()> {
    tokio::time::timeout(Duration::from_secs(120), run())
        .await
        .unwrap_or_else(|_| anyhow::bail!("test exceeded 120 s"))
}

async fn run() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let data = dir.path().join("weed");
    let s3 = S3Server::start(&data).await?;
    write_and_read_back(&s3, &data)
        .await
        .with_context(|| format!("weed log:\n{}", s3.log_tail()))
}

async fn write_and_read_back(s3: &S3Server, data: &std::path::Path) -> Result<()> {
    let url = s3.url("archive");

    let plain_marker = b"strata-plain-marker-7a1c";
    let plain = payload(plain_marker, 64 << 10);
    let (store, prefix) = open_encrypted_with(&url, &S3Encryption::default(), builder(s3)?)?;
    let plain_path = Path::from(format!("{prefix}/plain.bin"));
    put_object(&store, &plain_path, Bytes::from(plain.clone())).await?;

    let sealed_marker = b"strata-sse-marker-5e2d";
    let sealed = payload(sealed_marker, 64 << 10);
    let sse = S3Encryption {
        sse: Some(Sse::S3),
        ..S3Encryption::default()
    };
    let (store, _) = open_encrypted_with(&url, &sse, builder(s3)?)?;
    let sealed_path = Path::from(format!("{prefix}/sealed.bin"));
    put_object(&store, &sealed_path, Bytes::from(sealed.clone())).await?;

    let back = store.get(&sealed_path).await?.bytes().await?;
    ensure!(
        back.as_ref() == sealed.as_slice(),
        "SSE-S3 object read back differently"
    );
    let back = store.get(&plain_path).await?.bytes().await?;
    ensure!(back.as_ref() == plain.as_slice());

    ensure!(
        stored_in_clear(data, plain_marker)?,
        "control: the object written without SSE is not found in clear under {} (the server \
         transforms stored bytes, so this test cannot tell encryption apart)",
        data.display()
    );
    ensure!(
        !stored_in_clear(data, sealed_marker)?,
        "the SSE-S3 object is stored in clear under {}",
        data.display()
    );
    Ok(())
}
