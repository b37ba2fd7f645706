//! The stream cache (`<data_dir>/streams.json`) and durable small-file writes.
//!
//! The cache holds what the agent learned from the core about each stream
//! (name, replication, creation time, shards with their hash ranges and
//! state), so an agent keeps accepting known streams while the core is down.
//! Format: a pretty-printed JSON array of [`CachedStream`]; a shard without
//! `state` (caches from before resharding) is open.

use super::RegistryError;
use std::path::Path;
use strata_protocol::{ShardInfo, StreamInfo};
use strata_segment_log::atomic::{write_file_atomic, Durability};
use strata_segment_log::fs::StdFs;

/// The on-disk form of a cached stream description.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct CachedStream {
    name: String,
    replication: u32,
    created_ms: i64,
    shards: Vec<CachedShard>,
}

#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct CachedShard {
    id: u32,
    start_hash_key: String,
    end_hash_key: String,
    /// "open", "closing" or "closed" (absent in caches from before resharding: open).
    #[serde(default)]
    state: String,
}

impl From<&StreamInfo> for CachedStream {
    fn from(s: &StreamInfo) -> Self {
        Self {
            name: s.name.clone(),
            replication: s.replication,
            created_ms: s.created_ms,
            shards: s
                .shards
                .iter()
                .map(|sh| CachedShard {
                    id: sh.id,
                    start_hash_key: sh.start_hash_key.clone(),
                    end_hash_key: sh.end_hash_key.clone(),
                    state: sh.state.clone(),
                })
                .collect(),
        }
    }
}

impl From<CachedStream> for StreamInfo {
    fn from(s: CachedStream) -> Self {
        StreamInfo {
            name: s.name,
            replication: s.replication,
            created_ms: s.created_ms,
            shards: s
                .shards
                .into_iter()
                .map(|sh| ShardInfo {
                    id: sh.id,
                    start_hash_key: sh.start_hash_key,
                    end_hash_key: sh.end_hash_key,
                    state: sh.state,
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }
    }
}

/// The cache file's bytes for `streams`.
pub(super) fn encode<'a>(
    streams: impl Iterator<Item = &'a StreamInfo>,
) -> Result<Vec<u8>, RegistryError> {
    let list: Vec<CachedStream> = streams.map(CachedStream::from).collect();
    serde_json::to_vec_pretty(&list).map_err(RegistryError::EncodeCache)
}

/// The streams in the cache file's `bytes`.
pub(super) fn decode(path: &Path, bytes: &[u8]) -> Result<Vec<StreamInfo>, RegistryError> {
    let list: Vec<CachedStream> =
        serde_json::from_slice(bytes).map_err(|source| RegistryError::BadCache {
            path: path.to_path_buf(),
            source,
        })?;
    Ok(list.into_iter().map(Into::into).collect())
}

/// The streams cached at `path` (none if there is no cache yet).
pub(super) fn load(path: &Path) -> Result<Vec<StreamInfo>, RegistryError> {
    match std::fs::read(path) {
        Ok(b) => decode(path, &b),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(RegistryError::io("reading the stream cache", path, e)),
    }
}

/// Replaces `path` with `bytes` so that a crash leaves the old or the new
/// content: write a sibling `.tmp`, fsync it, rename, fsync the directory.
pub(super) fn write_durably(path: &Path, bytes: &[u8]) -> Result<(), RegistryError> {
    let tmp = path.with_extension("tmp");
    write_file_atomic(&StdFs, path, &tmp, bytes, Durability::All)
        .map_err(|e| RegistryError::io(e.op, &e.path, e.source))?;
    Ok(())
}

/// [`write_durably`] for a file that holds secrets: created readable by
/// this user only (0600), the temporary file included.
pub(super) fn write_private_durably(path: &Path, bytes: &[u8]) -> Result<(), RegistryError> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let tmp = path.with_extension("tmp");
    let private = std::fs::Permissions::from_mode(0o600);
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .and_then(|f| f.set_permissions(private))
        .map_err(|e| RegistryError::io("creating", &tmp, e))?;
    write_durably(path, bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stream() -> StreamInfo {
        StreamInfo {
            name: "orders".into(),
            replication: 3,
            created_ms: 1_700_000_000_000,
            shards: vec![
                ShardInfo {
                    id: 0,
                    start_hash_key: "0".into(),
                    end_hash_key: u128::MAX.to_string(),
                    state: "closed".into(),
                    next_offset: 42,
                    ..Default::default()
                },
                ShardInfo {
                    id: 1,
                    start_hash_key: "0".into(),
                    end_hash_key: u128::MAX.to_string(),
                    state: "open".into(),
                    ..Default::default()
                },
            ],
            archive_url: "s3://bucket/stream=orders".into(),
            ..Default::default()
        }
    }

    /// The file format, byte for byte: caches written by older agents must
    /// keep loading, and this one must load in older agents.
    const CACHE_V1: &str = r#"[
  {
    "name": "orders",
    "replication": 3,
    "created_ms": 1700000000000,
    "shards": [
      {
        "id": 0,
        "start_hash_key": "0",
        "end_hash_key": "340282366920938463463374607431768211455",
        "state": "closed"
      },
      {
        "id": 1,
        "start_hash_key": "0",
        "end_hash_key": "340282366920938463463374607431768211455",
        "state": "open"
      }
    ]
  }
]"#;

    #[test]
    fn the_cache_format_is_unchanged() {
        let s = stream();
        let bytes = encode([&s].into_iter()).unwrap();
        assert_eq!(String::from_utf8(bytes).unwrap(), CACHE_V1);
        let back = decode(Path::new("streams.json"), CACHE_V1.as_bytes()).unwrap();
        assert_eq!(back.len(), 1);
        // Only what the cache keeps comes back.
        assert_eq!(back[0].name, "orders");
        assert_eq!(back[0].replication, 3);
        assert_eq!(back[0].shards.len(), 2);
        assert!(back[0].shards[0].is_closed());
        assert!(back[0].shards[1].is_open());
        assert_eq!(back[0].shards[0].next_offset, 0);
        assert_eq!(back[0].archive_url, "");
    }

    #[test]
    fn a_cache_from_before_resharding_has_open_shards() {
        let old = r#"[{"name":"s","replication":1,"created_ms":5,
            "shards":[{"id":0,"start_hash_key":"0","end_hash_key":"9"}]}]"#;
        let back = decode(Path::new("streams.json"), old.as_bytes()).unwrap();
        assert!(back[0].shards[0].is_open());
    }

    #[test]
    fn a_damaged_cache_is_named() {
        let err = decode(Path::new("/d/streams.json"), b"[{\"name\":").unwrap_err();
        assert!(err.to_string().contains("/d/streams.json"), "{err}");
    }

    #[test]
    fn durable_writes_replace_the_file_and_leave_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("streams.json");
        assert!(load(&path).unwrap().is_empty());
        write_durably(&path, b"[]").unwrap();
        let s = stream();
        write_durably(&path, &encode([&s].into_iter()).unwrap()).unwrap();
        assert_eq!(load(&path).unwrap()[0].name, "orders");
        assert!(!dir.path().join("streams.tmp").exists());
    }
}
