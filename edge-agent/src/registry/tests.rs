//! Tests of [`Registry`] that need no core: a registry over a temporary data
//! directory with a core address nothing answers on (nothing here asks it).

use super::identity::{Identity, StartMode};
use super::*;
use bytes::Bytes;
use std::time::Duration;
use strata_protocol::ShardInfo;
use tempfile::TempDir;

const DEADLINE: Duration = Duration::from_secs(20);

type Opened = mpsc::UnboundedReceiver<Arc<StreamState>>;

/// A registry in a fresh data directory, with its announcements.
async fn open_registry() -> (TempDir, Arc<Registry>, Opened) {
    let tmp = TempDir::new().unwrap();
    let (pki, _) = strata_runtime::tls::DevPki::ensure(&tmp.path().join("tls")).unwrap();
    let data_dir = tmp.path().join("data");
    let cfg: EdgeConfig = serde_json::from_value(serde_json::json!({
        "data_dir": data_dir,
        "tls_cert": pki.edge.cert,
        "tls_key": pki.edge.key,
        "core_ca": pki.ca,
        "core_addrs": ["127.0.0.1:9"],
    }))
    .unwrap();
    let core = Arc::new(Cluster::new(cfg.core_addrs.clone(), &cfg.core_ca).unwrap());
    let identity = Identity::load(&data_dir, StartMode::default()).unwrap();
    let (registry, opened) = Registry::open(cfg, core, identity).await.unwrap();
    (tmp, registry, opened)
}

fn info(name: &str) -> StreamInfo {
    StreamInfo {
        name: name.into(),
        replication: 1,
        created_ms: 1_700_000_000_000,
        shards: vec![ShardInfo {
            id: 0,
            start_hash_key: "0".into(),
            end_hash_key: u128::MAX.to_string(),
            state: "open".into(),
            ..Default::default()
        }],
        ..Default::default()
    }
}

fn cached_names(data_dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = cache::load(&data_dir.join("streams.json"))
        .unwrap()
        .into_iter()
        .map(|s| s.name)
        .collect();
    names.sort();
    names
}

/// Issue 16: with `streams.json` not writable (a full disk), a new stream
/// used to stay in the registry without a forwarder: produces to it were
/// acknowledged (the buffer fsyncs fine) and never forwarded. Now the
/// forwarder is announced whatever the cache write does, and the next save
/// writes the cache.
#[tokio::test]
async fn a_failed_cache_write_still_starts_the_forwarder() {
    let (_tmp, registry, mut opened) = open_registry().await;
    let data_dir = registry.cfg().data_dir.clone();
    // A non-empty directory where the cache's temporary file goes: the write
    // fails, as it would on a full disk (a read-only directory does not stop
    // root).
    let obstacle = data_dir.join("streams.tmp");
    std::fs::create_dir_all(obstacle.join("in-the-way")).unwrap();

    let state = registry
        .open_stream(info("orders"))
        .await
        .expect("the stream opens though the cache cannot be written");
    assert!(registry.cache_dirty());
    let announced = opened.try_recv().expect("the forwarder is announced");
    assert!(Arc::ptr_eq(&announced, &state));
    assert!(
        Arc::ptr_eq(&registry.get("orders").unwrap(), &state),
        "the one stream in the map is the announced one"
    );

    // A produce is acknowledged once durable, and what the forwarder reads.
    let seq = tokio::time::timeout(
        DEADLINE,
        state.buffer.append(1, 0, Bytes::from_static(b"record")),
    )
    .await
    .expect("append answered")
    .unwrap();
    let batches = announced
        .buffer
        .read_durable(seq, usize::MAX)
        .await
        .unwrap();
    assert_eq!(batches.len(), 1);
    assert_eq!(batches[0].batch, Bytes::from_static(b"record"));

    // The next save (here: another stream opened) writes every stream.
    std::fs::remove_dir_all(&obstacle).unwrap();
    registry.open_stream(info("events")).await.unwrap();
    assert!(!registry.cache_dirty());
    assert_eq!(cached_names(&data_dir), ["events", "orders"]);
    assert_eq!(opened.try_recv().unwrap().name, "events");
}
