//! Tests of store URLs and of the whole path through a local directory.

use crate::keys;
use crate::manifest::Manifest;
use crate::manifest::CHECKSUM_BLOCK_BYTES;
use crate::store::{open, open_with, put_object, UrlError};
use crate::{read_object, BlockChecksums, SegmentWriter, TierError, WriterOptions};
use futures::TryStreamExt;
use object_store::aws::AmazonS3Builder;
use object_store::{ObjectStore, ObjectStoreExt};
use std::sync::Arc;
use strata_schema::batch::{self, Builder, NewRecord};

fn url_error(url: &str, s3: AmazonS3Builder) -> String {
    match open_with(url, s3) {
        Ok(_) => panic!("{url} was accepted"),
        Err(e @ TierError::Url { .. }) => {
            let msg = e.to_string();
            assert!(msg.contains(url), "{msg} does not name {url}");
            msg
        }
        Err(e) => panic!("{url}: unexpected error {e}"),
    }
}

fn endpoint(e: &str) -> AmazonS3Builder {
    AmazonS3Builder::new().with_endpoint(e)
}

#[test]
fn file_urls_and_absolute_paths_open_a_created_directory() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a/b");
    let (_, prefix) = open(&format!("file://{}", a.display())).unwrap();
    assert!(a.is_dir());
    assert_eq!(prefix.as_ref(), "");
    let c = dir.path().join("c");
    open(c.to_str().unwrap()).unwrap();
    assert!(c.is_dir());
}

#[test]
fn s3_urls_give_bucket_and_prefix() {
    let (_, prefix) = open_with("s3://bucket/some/prefix/", AmazonS3Builder::new()).unwrap();
    assert_eq!(prefix.as_ref(), "some/prefix");
    let (_, prefix) = open_with("s3://bucket", AmazonS3Builder::new()).unwrap();
    assert_eq!(prefix.as_ref(), "");
    for ok in [
        "http://127.0.0.1:8333",
        "http://127.9.9.9",
        "http://localhost:9000",
        "http://[::1]:9000",
        "https://s3.example.com",
    ] {
        open_with("s3://bucket/p", endpoint(ok)).unwrap_or_else(|e| panic!("{ok}: {e}"));
    }
}

#[test]
fn bad_urls_are_refused_with_the_reason() {
    let none = AmazonS3Builder::new;
    assert!(url_error("relative/dir", none()).contains("expected file:///"));
    assert!(url_error("ftp://host/x", none()).contains("unsupported scheme \"ftp\""));
    assert!(url_error("file://otherhost/x", none()).contains("absolute local path"));
    assert!(url_error("s3:///prefix", none()).contains("no bucket"));
    assert!(url_error("s3://b/p?versionId=1", none()).contains("query"));
    assert!(url_error("s3://key:secret@b/p", none()).contains("credentials"));
    assert!(url_error("s3://b/a//c", none()).contains("prefix"));
    for remote in [
        "http://10.0.0.1:9000",
        "http://example.com",
        "http://192.168.1.10",
    ] {
        let msg = url_error("s3://b/p", endpoint(remote));
        assert!(msg.contains("not loopback"), "{msg}");
    }
    assert!(url_error("s3://b/p", endpoint("ftp://127.0.0.1")).contains("scheme"));
    // The reason is typed, so a caller can tell the cases apart.
    let reason = match open_with("s3://b/p", endpoint("http://10.0.0.1")) {
        Err(TierError::Url { reason, .. }) => reason,
        other => panic!("expected a URL error, got {:?}", other.map(|_| ())),
    };
    assert!(
        matches!(reason, UrlError::PlainHttpNotLoopback { ref endpoint } if endpoint == "http://10.0.0.1"),
        "{reason:?}"
    );
}

#[tokio::test]
async fn objects_and_manifests_round_trip_through_a_local_directory() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("tier");
    let (store, prefix) = open(&format!("file://{}", root.display())).unwrap();

    let mut b = Builder::default();
    for i in 0..300u32 {
        b.push(&NewRecord {
            key: (i % 2 == 0).then_some("k"),
            value: format!("value {i}").as_bytes(),
            timestamp_ms: 1_795_410_367_089 + i64::from(i),
            headers: &[("h", b"v")],
        });
    }
    let bytes = b.finish();
    let mut w = SegmentWriter::new("orders", 2, WriterOptions::default()).unwrap();
    for (i, r) in batch::open(&bytes).unwrap().records().iter().enumerate() {
        w.push(40 + i as u64, &r).unwrap();
    }
    let obj = w.finish().unwrap();
    let key = obj.key(&prefix, "orders", 2, 1);
    put_object(&store, &key, obj.parquet.clone()).await.unwrap();
    let file =
        root.join(
            "stream=orders/date=2026-11-23/hour=05/shard-2-00000000000000000040-00000000000000000340-1.parquet",
        );
    assert_eq!(std::fs::read(&file).unwrap(), obj.parquet);

    let mut manifest = Manifest::new("orders", 2);
    manifest.push(obj.tiered_object(&key)).unwrap();
    let mkey = keys::manifest_key(&prefix, "orders", 2);
    put_object(&store, &mkey, manifest.to_json().into())
        .await
        .unwrap();
    let listed: Vec<_> = store
        .list(Some(&keys::stream_prefix(&prefix, "orders")))
        .try_collect()
        .await
        .unwrap();
    assert_eq!(listed.len(), 1, "only data under stream=: {listed:?}");

    let back = store.get(&mkey).await.unwrap().bytes().await.unwrap();
    let manifest = Manifest::from_json(&back).unwrap();
    let o = manifest.locate(200).unwrap();
    // The manifest read back carries the object's checksums, and the read
    // verifies them.
    assert_eq!(
        o.checksums,
        Some(BlockChecksums::of(&obj.parquet, CHECKSUM_BLOCK_BYTES))
    );
    let read = read_object(Arc::clone(&store), o, 200, 1000, 1 << 20)
        .await
        .unwrap();
    assert_eq!((read.first_offset, read.next_offset), (200, 340));
    let batch = batch::open(&read.batch).unwrap();
    let first = batch.records().get(0);
    assert_eq!(first.value().unwrap().bytes(), b"value 160");
    assert_eq!(first.key(), Some("k"));
    assert_eq!(batch.records().get(1).key(), None);
}

#[test]
fn server_side_encryption_needs_an_s3_store_and_consistent_settings() {
    use crate::sse::{S3Encryption, Sse};
    use crate::store::open_encrypted_with;
    let dir = tempfile::tempdir().unwrap();
    let local = format!("file://{}", dir.path().display());
    open_encrypted_with(&local, &S3Encryption::default(), AmazonS3Builder::new()).unwrap();
    let kms = S3Encryption {
        sse: Some(Sse::Kms),
        kms_key_id: Some("alias/strata".into()),
        bucket_key: Some(true),
    };
    let err = match open_encrypted_with(&local, &kms, AmazonS3Builder::new()) {
        Err(e) => e.to_string(),
        Ok(_) => panic!("SSE on a local directory was accepted"),
    };
    assert!(
        err.contains("s3:// stores only") && err.contains(&local),
        "{err}"
    );
    open_encrypted_with("s3://bucket/p", &kms, AmazonS3Builder::new()).unwrap();
    let bad = S3Encryption {
        sse: Some(Sse::S3),
        kms_key_id: Some("alias/strata".into()),
        bucket_key: None,
    };
    let err = match open_encrypted_with("s3://bucket/p", &bad, AmazonS3Builder::new()) {
        Err(e) => e.to_string(),
        Ok(_) => panic!("a KMS key with SSE-S3 was accepted"),
    };
    assert!(err.contains("KMS key id applies to SSE-KMS only"), "{err}");
}
