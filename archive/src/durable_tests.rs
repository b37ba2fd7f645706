//! Tests of the durable `file://` store: which paths a write fsyncs, in
//! which order, and that a failed fsync fails the write.

use std::io;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};

use crate::durable::{DurableLocal, SyncFn};
use crate::store::{open, put_object};
use crate::TierError;

/// A sync function that records the paths it is given (and fails on the
/// ones named in `fail`).
fn recorder(fail: Option<&str>) -> (SyncFn, Arc<Mutex<Vec<PathBuf>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&seen);
    let fail = fail.map(str::to_owned);
    let sync: SyncFn = Arc::new(move |p: &std::path::Path| {
        log.lock().unwrap().push(p.to_path_buf());
        match &fail {
            Some(f) if p.ends_with(f) => Err(io::Error::other("injected fsync failure")),
            _ => Ok(()),
        }
    });
    (sync, seen)
}

fn taken(seen: &Mutex<Vec<PathBuf>>) -> Vec<PathBuf> {
    std::mem::take(&mut *seen.lock().unwrap())
}

/// The object file, then each directory from its parent up to the root.
fn expected(root: &std::path::Path, key: &str) -> Vec<PathBuf> {
    let file = root.join(key);
    let mut want = vec![file.clone()];
    want.extend(
        file.ancestors()
            .skip(1)
            .take_while(|d| d.starts_with(root))
            .map(|d| d.to_path_buf()),
    );
    want
}

const KEY: &str = "stream=s/shard=00001/date=2024-01-02/obj.parquet";

#[tokio::test]
async fn a_put_syncs_the_object_and_every_directory_up_to_the_root() {
    let tmp = tempfile::tempdir().unwrap();
    let base = std::fs::canonicalize(tmp.path()).unwrap();
    let (sync, seen) = recorder(None);
    let store = DurableLocal::open(&base.join("archive/tier"), sync).unwrap();
    // Creating the root made both new entries durable.
    assert_eq!(taken(&seen), vec![base.clone(), base.join("archive")]);
    let root = base.join("archive/tier");
    let store: Arc<dyn ObjectStore> = Arc::new(store);
    put_object(&store, &Path::from(KEY), Bytes::from_static(b"parquet"))
        .await
        .unwrap();
    assert_eq!(taken(&seen), expected(&root, KEY));
    // Again into existing directories: they are synced again (an earlier
    // attempt may have created them and crashed before syncing).
    let key2 = "stream=s/shard=00001/date=2024-01-02/obj2.parquet";
    put_object(&store, &Path::from(key2), Bytes::from_static(b"p2"))
        .await
        .unwrap();
    assert_eq!(taken(&seen), expected(&root, key2));
    // What was written reads back through the wrapper.
    let got = store.get(&Path::from(KEY)).await.unwrap().bytes().await;
    assert_eq!(got.unwrap(), Bytes::from_static(b"parquet"));
}

#[tokio::test]
async fn a_multipart_upload_is_synced_when_it_completes() {
    let tmp = tempfile::tempdir().unwrap();
    let root = std::fs::canonicalize(tmp.path()).unwrap();
    let (sync, seen) = recorder(None);
    let store: Arc<dyn ObjectStore> = Arc::new(DurableLocal::open(&root, sync).unwrap());
    assert_eq!(taken(&seen), Vec::<PathBuf>::new());
    // Over the single-PUT size: put_object uploads it in parts.
    let big = Bytes::from(vec![7u8; 11 << 20]);
    put_object(&store, &Path::from(KEY), big.clone())
        .await
        .unwrap();
    assert_eq!(taken(&seen), expected(&root, KEY));
    let len = store.head(&Path::from(KEY)).await.unwrap().size;
    assert_eq!(len, big.len() as u64);
}

#[tokio::test]
async fn a_failed_fsync_fails_the_put_naming_the_path() {
    let tmp = tempfile::tempdir().unwrap();
    let root = std::fs::canonicalize(tmp.path()).unwrap();
    let (sync, _) = recorder(Some("shard=00001"));
    let store: Arc<dyn ObjectStore> = Arc::new(DurableLocal::open(&root, sync).unwrap());
    let err = put_object(&store, &Path::from(KEY), Bytes::from_static(b"x"))
        .await
        .unwrap_err();
    assert!(
        matches!(err, TierError::ObjectStore { op: "put", .. }),
        "{err}"
    );
    let msg = format!("{err}: {:?}", std::error::Error::source(&err));
    let dir = root.join("stream=s/shard=00001");
    assert!(msg.contains(&format!("fsync {}", dir.display())), "{msg}");
    assert!(msg.contains("injected fsync failure"), "{msg}");
}

/// The store a `file://` URL (or an absolute path) opens is the durable
/// one; before, it was object_store's LocalFileSystem, which never fsyncs.
#[test]
fn file_urls_open_the_durable_store() {
    let tmp = tempfile::tempdir().unwrap();
    for url in [
        format!("file://{}", tmp.path().join("a").display()),
        tmp.path().join("b").display().to_string(),
    ] {
        let (store, _) = open(&url).unwrap();
        assert!(store.to_string().starts_with("Durable("), "{url}: {store}");
    }
}
