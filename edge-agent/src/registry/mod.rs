//! The stream registry: every stream this agent knows, each with its durable
//! buffer and its shard map, the cache of those maps (`streams.json`, see
//! [`cache`]) and the agent's producer id ([`producer`]).
//!
//! The registry opens streams and keeps their maps fresh; it does not
//! forward. Each stream it opens is announced once on the channel
//! [`Registry::open`] returns, and the agent's wiring (`agent.rs`) starts
//! that stream's forwarder.

mod cache;
pub mod producer;
pub mod rules;

use crate::buffer::{BufferError, BufferHandle, StreamBuffer};
use crate::config::EdgeConfig;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use strata_client::cluster::Cluster;
use strata_client::ClientError;
use strata_protocol::StreamInfo;
use tokio::sync::mpsc;

/// Why the registry could not load or save its state.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("{action} {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{} does not hold a producer id", path.display())]
    BadProducerId { path: PathBuf },
    #[error("{} is missing but {} holds buffered records numbered under it: restore the file from a backup of this agent (a new id would make the core store again what it already has); only if that is impossible, move the buffers directory away: the agent then starts afresh and does not forward what it held", path.display(), buffers.display())]
    LostProducerId { path: PathBuf, buffers: PathBuf },
    #[error("parsing {}: {source}", path.display())]
    BadCache {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("encoding the stream cache: {0}")]
    EncodeCache(serde_json::Error),
    #[error("opening the buffer of stream {stream}: {source}")]
    Buffer { stream: String, source: BufferError },
    #[error("opening the buffer of stream {stream}: the opening task failed: {source}")]
    OpenTask {
        stream: String,
        source: tokio::task::JoinError,
    },
}

impl RegistryError {
    fn io(action: &'static str, path: &Path, source: std::io::Error) -> Self {
        Self::Io {
            action,
            path: path.to_path_buf(),
            source,
        }
    }
}

/// One stream known to this agent.
pub struct StreamState {
    pub name: String,
    pub buffer: BufferHandle,
    pub info: Mutex<StreamInfo>,
    /// Closed shards that refused this agent's records (`SHARD_CLOSED`):
    /// shard → the position after the agent's last record in it. Learned
    /// again after a restart.
    pub closed_at: Mutex<HashMap<u32, u64>>,
}

pub struct Registry {
    cfg: EdgeConfig,
    producer_id: u64,
    core: Arc<Cluster>,
    streams: Mutex<HashMap<String, Arc<StreamState>>>,
    /// Serialises buffer creation so two producers cannot open one stream twice.
    opening: tokio::sync::Mutex<()>,
    /// Announces each newly opened stream (one message per stream, so it is
    /// bounded by the number of streams the registry holds anyway).
    opened: mpsc::UnboundedSender<Arc<StreamState>>,
}

impl Registry {
    /// Opens the registry: reads the producer id and the stream cache and
    /// reopens every cached stream's buffer. Returns the registry and the
    /// announcements of opened streams (the cached ones are queued already).
    pub async fn open(
        cfg: EdgeConfig,
        core: Arc<Cluster>,
    ) -> Result<(Arc<Self>, mpsc::UnboundedReceiver<Arc<StreamState>>), RegistryError> {
        let buffers = cfg.data_dir.join("buffers");
        // Durably: a stream directory created in `buffers/` later is fsynced
        // into it, and `buffers/` itself must survive a power cut too.
        strata_segment_log::fs::create_dir_all_durably(&strata_segment_log::fs::StdFs, &buffers)
            .map_err(|e| RegistryError::io("creating", &buffers, e))?;
        let producer_id = producer::producer_id(&cfg.data_dir)?;
        let (opened, announcements) = mpsc::unbounded_channel();
        let registry = Arc::new(Self {
            cfg,
            producer_id,
            core,
            streams: Mutex::new(HashMap::new()),
            opening: tokio::sync::Mutex::new(()),
            opened,
        });
        for info in cache::load(&registry.cache_path())? {
            registry.open_stream(info).await?;
        }
        Ok((registry, announcements))
    }

    pub fn cfg(&self) -> &EdgeConfig {
        &self.cfg
    }

    pub fn producer_id(&self) -> u64 {
        self.producer_id
    }

    pub fn core(&self) -> &Arc<Cluster> {
        &self.core
    }

    fn cache_path(&self) -> PathBuf {
        self.cfg.data_dir.join("streams.json")
    }

    fn buffer_dir(&self, stream: &str) -> PathBuf {
        self.cfg.data_dir.join("buffers").join(stream)
    }

    fn save_cache(&self) -> Result<(), RegistryError> {
        let infos: Vec<StreamInfo> = self
            .streams
            .lock()
            .expect("streams lock")
            .values()
            .map(|s| s.info.lock().expect("info lock").clone())
            .collect();
        cache::write_durably(&self.cache_path(), &cache::encode(infos.iter())?)
    }

    /// The stream, if this agent knows it.
    pub fn get(&self, name: &str) -> Option<Arc<StreamState>> {
        self.streams
            .lock()
            .expect("streams lock")
            .get(name)
            .cloned()
    }

    /// Opens `info`'s stream (its buffer, recovered) unless it is open
    /// already, saves the cache and announces the new stream.
    pub async fn open_stream(&self, info: StreamInfo) -> Result<Arc<StreamState>, RegistryError> {
        let _guard = self.opening.lock().await;
        if let Some(s) = self.get(&info.name) {
            return Ok(s);
        }
        let dir = self.buffer_dir(&info.name);
        let opts = self.cfg.buffer_options();
        let name = info.name.clone();
        let (buffer, recovery) =
            tokio::task::spawn_blocking(move || StreamBuffer::open(&dir, opts))
                .await
                .map_err(|source| RegistryError::OpenTask {
                    stream: name.clone(),
                    source,
                })?
                .map_err(|source| RegistryError::Buffer {
                    stream: name.clone(),
                    source,
                })?;
        if recovery.truncated_bytes > 0 {
            tracing::warn!(stream = %name, truncated_bytes = recovery.truncated_bytes, "cut a torn tail from the buffer (unacknowledged writes)");
        }
        let state = Arc::new(StreamState {
            name: name.clone(),
            buffer: BufferHandle::spawn(buffer, name.clone()),
            info: Mutex::new(info),
            closed_at: Mutex::new(HashMap::new()),
        });
        self.streams
            .lock()
            .expect("streams lock")
            .insert(name, state.clone());
        self.save_cache()?;
        // No receiver only while the agent shuts down: nothing to forward then.
        let _ = self.opened.send(state.clone());
        Ok(state)
    }

    pub fn streams(&self) -> Vec<(String, Arc<StreamState>)> {
        self.streams
            .lock()
            .expect("streams lock")
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    /// Replaces a stream's shard map after the core reported a change.
    pub async fn refresh(&self, stream: &StreamState) -> Result<(), ClientError> {
        let info = self.core.describe(&stream.name).await?;
        *stream.info.lock().expect("info lock") = info;
        if let Err(e) = self.save_cache() {
            tracing::warn!(error = %e, "could not save the stream cache");
        }
        Ok(())
    }
}
