//! The stream registry: every stream this agent knows, each with its durable
//! buffer and its shard map, the cache of those maps (`streams.json`, see
//! [`cache`]), the agent's producer id ([`producer`]) and identity (retired
//! ids, positions not yet checked against the core: [`identity`]), and the
//! high-water decisions ([`high_water`]).
//!
//! The registry opens streams and keeps their maps fresh; it does not
//! forward. Each stream it opens is announced once on the channel
//! [`Registry::open`] returns, and the agent's wiring (`agent.rs`) starts
//! that stream's forwarder.

pub mod aws_keys;
mod cache;
pub mod high_water;
pub mod identity;
pub mod producer;
pub mod rules;
#[cfg(test)]
mod tests;

use crate::buffer::{BufferError, BufferHandle, StreamBuffer};
use crate::config::EdgeConfig;
use high_water::BehindCore;
use identity::Identity;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use strata_client::cluster::Cluster;
use strata_client::ClientError;
use strata_protocol::StreamInfo;
use strata_schema::fb::ErrorCode;
use tokio::sync::{mpsc, watch};

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
    #[error("{} is missing but {} holds buffered records numbered under it (a new id would make the core store again what it already has): restore the file from a backup of this agent; or, knowing the lost id (every start logs it: `edge agent ready producer_id=...`), start once with `strata-edge --retire-producer --previous-producer-id ID`, which continues under a new id without losing or duplicating what is buffered (see {}); only if neither is possible, move the buffers directory away: the agent then starts afresh and does not forward what it held", path.display(), buffers.display(), high_water::DOCS)]
    LostProducerId { path: PathBuf, buffers: PathBuf },
    #[error("--previous-producer-id {previous} contradicts {} (producer id {id}): it is only for an agent whose producer_id file was lost", path.display())]
    PreviousIdMismatch {
        path: PathBuf,
        id: u64,
        previous: u64,
    },
    #[error("producer id {id} is listed as retired in {} but is still the current id: a `strata-edge --retire-producer` was interrupted; run it again", path.display())]
    InterruptedRetire { id: u64, path: PathBuf },
    #[error("parsing {}: {source}", path.display())]
    BadIdentityFile {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("encoding {}: {source}", path.display())]
    EncodeState {
        path: PathBuf,
        source: serde_json::Error,
    },
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
    /// Since when the core answers that the stream does not exist (it was
    /// deleted): after [`DELETED_CONFIRM`] of that the agent drops it.
    pub unknown_since: Mutex<Option<std::time::Instant>>,
    /// Dropped as deleted ([`Registry::drop_deleted`]): its shard map is
    /// empty and stays so, so a record that slipped in while it was dropped
    /// can never reach a new stream of the same name.
    pub dropped: std::sync::atomic::AtomicBool,
}

/// How long the core must keep answering "no such stream" before the agent
/// drops a stream it buffers (`strata stream delete`): one answer could come
/// from a node whose catalog lags behind.
pub const DELETED_CONFIRM: std::time::Duration = std::time::Duration::from_secs(5);

pub struct Registry {
    cfg: EdgeConfig,
    identity: Mutex<Identity>,
    core: Arc<Cluster>,
    streams: Mutex<HashMap<String, Arc<StreamState>>>,
    /// Serialises buffer creation so two producers cannot open one stream twice.
    opening: tokio::sync::Mutex<()>,
    /// Announces each newly opened stream (one message per stream, so it is
    /// bounded by the number of streams the registry holds anyway).
    opened: mpsc::UnboundedSender<Arc<StreamState>>,
    /// The last write of `streams.json` failed ([`Self::save_cache_or_warn`]).
    cache_dirty: std::sync::atomic::AtomicBool,
    /// Set once when a buffer turns out to be behind the core: the agent
    /// stops (see `startup`).
    halted: watch::Sender<Option<Arc<BehindCore>>>,
}

impl Registry {
    /// Opens the registry: reads the stream cache and reopens every cached
    /// stream's buffer, recording where each one's records start to be
    /// unchecked against the core. Returns the registry and the
    /// announcements of opened streams (the cached ones are queued already).
    pub async fn open(
        cfg: EdgeConfig,
        core: Arc<Cluster>,
        identity: Identity,
    ) -> Result<(Arc<Self>, mpsc::UnboundedReceiver<Arc<StreamState>>), RegistryError> {
        let buffers = cfg.data_dir.join("buffers");
        // Durably: a stream directory created in `buffers/` later is fsynced
        // into it, and `buffers/` itself must survive a power cut too.
        strata_segment_log::fs::create_dir_all_durably(&strata_segment_log::fs::StdFs, &buffers)
            .map_err(|e| RegistryError::io("creating", &buffers, e))?;
        // The entries of `buffers/` (in the data directory) and of the data
        // directory (in its parent), also when they were there: a previous
        // start may have stopped between a mkdir and its parent's fsync,
        // which `create_dir_all_durably` skips for existing directories.
        let data_dir = cfg.data_dir.as_path();
        Self::sync_dir(data_dir)?;
        if let Some(parent) = data_dir.parent() {
            // Not ours, and maybe not readable by this user: best effort.
            if let Err(e) = Self::sync_dir(parent) {
                tracing::warn!(error = %e, "could not fsync the data directory's parent");
            }
        }
        let (opened, announcements) = mpsc::unbounded_channel();
        let registry = Arc::new(Self {
            cfg,
            identity: Mutex::new(identity),
            core,
            streams: Mutex::new(HashMap::new()),
            opening: tokio::sync::Mutex::new(()),
            opened,
            cache_dirty: Default::default(),
            halted: watch::channel(None).0,
        });
        for info in cache::load(&registry.cache_path())? {
            registry.open_stream_with(info, false).await?;
        }
        registry.save_unchecked()?;
        Ok((registry, announcements))
    }

    /// fsync of a directory (`""` is the current one).
    fn sync_dir(dir: &Path) -> Result<(), RegistryError> {
        let dir = if dir.as_os_str().is_empty() {
            Path::new(".")
        } else {
            dir
        };
        strata_segment_log::fs::Fs::sync_dir(&strata_segment_log::fs::StdFs, dir)
            .map_err(|e| RegistryError::io("fsyncing the directory", dir, e))
    }

    pub fn cfg(&self) -> &EdgeConfig {
        &self.cfg
    }

    /// The current producer id.
    pub fn producer_id(&self) -> u64 {
        self.identity().current
    }

    /// A copy of the agent's identity.
    pub fn identity(&self) -> Identity {
        self.identity.lock().expect("identity lock").clone()
    }

    /// The id that forwards `stream`'s record at `seq`, and where that id's
    /// range ends (see [`identity::producer_for`]).
    pub fn producer_for(&self, stream: &str, seq: u64) -> (u64, Option<u64>) {
        self.identity
            .lock()
            .expect("identity lock")
            .producer_for(stream, seq)
    }

    /// Where `stream`'s records not yet checked against the core start.
    pub fn unchecked_from(&self, stream: &str) -> Option<u64> {
        self.identity
            .lock()
            .expect("identity lock")
            .unchecked
            .get(stream)
            .copied()
    }

    /// Records, durably, that `streams` were checked against the core's
    /// marks. Only then may they forward: an unchecked position left on
    /// disk below records forwarded since would look like a restored copy
    /// at the next start.
    pub fn mark_checked(&self, streams: &[&str]) -> Result<(), RegistryError> {
        let mut id = self.identity.lock().expect("identity lock");
        let mut next = id.clone();
        for s in streams {
            next.unchecked.remove(*s);
        }
        if next.unchecked.len() == id.unchecked.len() {
            return Ok(());
        }
        next.save_unchecked(&self.cfg.data_dir)?;
        *id = next;
        Ok(())
    }

    fn save_unchecked(&self) -> Result<(), RegistryError> {
        self.identity
            .lock()
            .expect("identity lock")
            .save_unchecked(&self.cfg.data_dir)
    }

    /// Makes `retired` the last retired id and `current` the producer id,
    /// durably; every stream's records from its switch position on are
    /// unchecked under the new id.
    pub fn retire(&self, retired: identity::Retired, current: u64) -> Result<(), RegistryError> {
        let mut id = self.identity.lock().expect("identity lock");
        let mut next = id.clone();
        next.unchecked = retired.switch_at.clone();
        next.retired.push(retired);
        next.current = current;
        next.save_retirement(&self.cfg.data_dir)?;
        *id = next;
        Ok(())
    }

    /// Stops the agent: a buffer is behind the core. The first reason wins.
    pub fn halt(&self, why: BehindCore) {
        self.halted.send_if_modified(|h| {
            if h.is_some() {
                return false;
            }
            *h = Some(Arc::new(why));
            true
        });
    }

    /// Why the agent was halted, once it is.
    pub fn halted(&self) -> watch::Receiver<Option<Arc<BehindCore>>> {
        self.halted.subscribe()
    }

    /// Whether the agent was halted.
    pub fn is_halted(&self) -> bool {
        self.halted.borrow().is_some()
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

    /// [`Self::save_cache`] where a failure must not stop the caller: the
    /// cache is a start-up aid (which streams to reopen, and their maps
    /// while the core is down), never what decides whether a record is
    /// kept. A failed write is logged and marks the cache dirty; the next
    /// save, which writes every stream again (each forwarder's map refresh,
    /// another stream opened), retries it.
    fn save_cache_or_warn(&self) {
        use std::sync::atomic::Ordering;
        match self.save_cache() {
            Ok(()) => {
                if self.cache_dirty.swap(false, Ordering::AcqRel) {
                    tracing::info!(path = %self.cache_path().display(), "stream cache written again after an earlier failure");
                }
            }
            Err(e) => {
                self.cache_dirty.store(true, Ordering::Release);
                tracing::warn!(error = %e, "could not save the stream cache; streams opened since are forwarded all the same, and the next save retries (until then a restart reopens only the streams cached before)");
            }
        }
    }

    /// Whether the last write of the stream cache failed (the file lacks
    /// recent changes until a save succeeds).
    pub fn cache_dirty(&self) -> bool {
        self.cache_dirty.load(std::sync::atomic::Ordering::Acquire)
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
    /// already, announces the new stream and saves the cache (a failed
    /// cache write is only logged: [`Self::save_cache_or_warn`]). Its records
    /// from the buffer's next position on are unchecked until its
    /// forwarder heard the core's marks (recorded before any is accepted).
    pub async fn open_stream(&self, info: StreamInfo) -> Result<Arc<StreamState>, RegistryError> {
        self.open_stream_with(info, true).await
    }

    async fn open_stream_with(
        &self,
        info: StreamInfo,
        save_unchecked: bool,
    ) -> Result<Arc<StreamState>, RegistryError> {
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
        // Kept if present: records numbered in an earlier run whose check
        // never happened are unchecked still.
        self.identity
            .lock()
            .expect("identity lock")
            .unchecked
            .entry(name.clone())
            .or_insert(buffer.next_seq());
        if save_unchecked {
            self.save_unchecked()?;
        }
        let state = Arc::new(StreamState {
            name: name.clone(),
            buffer: BufferHandle::spawn(buffer, name.clone()),
            info: Mutex::new(info),
            closed_at: Mutex::new(HashMap::new()),
            unknown_since: Mutex::new(None),
            dropped: Default::default(),
        });
        self.streams
            .lock()
            .expect("streams lock")
            .insert(name, state.clone());
        // Announced before anything else can fail: from now on produces to
        // the stream are acknowledged, so its forwarder must run. No
        // receiver only while the agent shuts down: nothing to forward then.
        let _ = self.opened.send(state.clone());
        self.save_cache_or_warn();
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

    /// Replaces a stream's shard map after the core reported a change. A
    /// stream the core keeps saying it does not know (deleted) is dropped
    /// once that lasted [`DELETED_CONFIRM`] ([`Registry::drop_deleted`]).
    pub async fn refresh(&self, stream: &StreamState) -> Result<(), ClientError> {
        if stream.dropped.load(std::sync::atomic::Ordering::Acquire) {
            return Err(ClientError::Remote(strata_schema::wire::RemoteError::new(
                ErrorCode::UnknownStream,
                format!("stream {:?} was deleted", stream.name),
            )));
        }
        let info = match self.core.describe(&stream.name).await {
            Ok(info) => info,
            Err(ClientError::Remote(e)) if e.code == ErrorCode::UnknownStream => {
                let since = *stream
                    .unknown_since
                    .lock()
                    .expect("unknown_since lock")
                    .get_or_insert_with(std::time::Instant::now);
                if since.elapsed() >= DELETED_CONFIRM {
                    self.drop_deleted(stream).await;
                }
                return Err(ClientError::Remote(e));
            }
            Err(e) => return Err(e),
        };
        *stream.unknown_since.lock().expect("unknown_since lock") = None;
        *stream.info.lock().expect("info lock") = info;
        self.save_cache_or_warn();
        Ok(())
    }

    /// Forgets a stream deleted in the core: it leaves the registry and the
    /// cache (a produce to it asks the core again and gets UNKNOWN_STREAM),
    /// its buffered records are discarded and its buffer directory removed,
    /// so a stream created later under the same name starts empty. The
    /// stream's forwarder finds nothing more to send (and, with an empty
    /// shard map, nowhere to send a record that raced the drop).
    pub async fn drop_deleted(&self, stream: &StreamState) {
        let name = stream.name.clone();
        {
            let mut streams = self.streams.lock().expect("streams lock");
            match streams.get(&name) {
                Some(s) if std::ptr::eq(Arc::as_ptr(s), stream) => {
                    streams.remove(&name);
                }
                _ => return,
            }
        }
        stream
            .dropped
            .store(true, std::sync::atomic::Ordering::Release);
        stream.info.lock().expect("info lock").shards.clear();
        let stats = stream.buffer.stats();
        if let Err(e) = stream.buffer.ack(stats.next_seq).await {
            tracing::warn!(stream = %name, error = %e, "discarding a deleted stream's buffer");
        }
        self.identity
            .lock()
            .expect("identity lock")
            .unchecked
            .remove(&name);
        if let Err(e) = self.save_unchecked() {
            tracing::warn!(stream = %name, error = %e, "saving the registry after dropping a deleted stream");
        }
        self.save_cache_or_warn();
        let dir = self.buffer_dir(&name);
        if let Err(e) = std::fs::remove_dir_all(&dir) {
            tracing::warn!(dir = %dir.display(), error = %e, "removing a deleted stream's buffer");
        }
        tracing::warn!(stream = %name, discarded_records = stats.next_seq - stats.acked_seq, "the stream was deleted in the core: dropped it and its buffer");
    }
}
