//! The edge agent's state: its durable producer id, the cache of stream
//! descriptions learned from the core, and one buffer plus one forwarder per
//! stream. Also the QUIC ingest handler.
//!
//! A producer's batch is verified, appended to the stream's buffer and
//! acknowledged only after the buffer's group commit made it durable.

use crate::buffer::{BufferError, BufferHandle, StreamBuffer};
use crate::config::EdgeConfig;
use crate::forwarder;
use anyhow::{Context, Result};
use bytes::Bytes;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use strata_client::api::{self, StreamInfo};
use strata_client::cluster::Cluster;
use strata_client::transport::ClientError;
use strata_runtime::server::Handler;
use strata_schema::batch;
use strata_schema::fb::{self, ErrorCode};
use strata_schema::wire::{self, RemoteError};
use tokio::sync::watch;

/// One stream known to this agent.
pub struct StreamState {
    pub buffer: BufferHandle,
    pub info: Mutex<StreamInfo>,
    /// Closed shards that refused this agent's records (`SHARD_CLOSED`):
    /// shard → the position after the agent's last record in it. Learned
    /// again after a restart.
    pub closed_at: Mutex<HashMap<u32, u64>>,
}

pub struct Agent {
    pub cfg: EdgeConfig,
    pub producer_id: u64,
    pub core: Arc<Cluster>,
    streams: Mutex<HashMap<String, Arc<StreamState>>>,
    /// Serialises buffer creation so two producers cannot open one stream twice.
    opening: tokio::sync::Mutex<()>,
    shutdown: watch::Receiver<bool>,
}

/// Reads or creates the agent's durable producer id (random, non-zero).
pub fn producer_id(data_dir: &Path) -> Result<u64> {
    let path = data_dir.join("producer_id");
    if let Ok(s) = std::fs::read_to_string(&path) {
        return s
            .trim()
            .parse::<u64>()
            .ok()
            .filter(|&id| id != 0)
            .with_context(|| format!("{} does not hold a producer id", path.display()));
    }
    let id = loop {
        let id: u64 = rand::random();
        if id != 0 {
            break id;
        }
    };
    write_durably(&path, id.to_string().as_bytes())?;
    Ok(id)
}

fn write_durably(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let tmp = path.with_extension("tmp");
    let mut f =
        std::fs::File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path).with_context(|| format!("renaming to {}", path.display()))?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

impl Agent {
    fn cache_path(&self) -> PathBuf {
        self.cfg.data_dir.join("streams.json")
    }

    fn buffer_dir(&self, stream: &str) -> PathBuf {
        self.cfg.data_dir.join("buffers").join(stream)
    }

    /// Opens the agent: reads its id and stream cache, reopens every buffer
    /// and starts its forwarder (buffered data drains as soon as the core answers).
    pub async fn start(
        cfg: EdgeConfig,
        core: Arc<Cluster>,
        shutdown: watch::Receiver<bool>,
    ) -> Result<Arc<Self>> {
        std::fs::create_dir_all(cfg.data_dir.join("buffers"))
            .with_context(|| format!("creating {}", cfg.data_dir.display()))?;
        let producer_id = producer_id(&cfg.data_dir)?;
        let agent = Arc::new(Self {
            cfg,
            producer_id,
            core,
            streams: Mutex::new(HashMap::new()),
            opening: tokio::sync::Mutex::new(()),
            shutdown,
        });
        let cached: Vec<StreamInfo> = match std::fs::read(agent.cache_path()) {
            Ok(b) => serde_json::from_slice::<Vec<CachedStream>>(&b)
                .with_context(|| format!("parsing {}", agent.cache_path().display()))?
                .into_iter()
                .map(Into::into)
                .collect(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(e).context("reading the stream cache"),
        };
        for info in cached {
            agent.open_stream(info).await?;
        }
        tracing::info!(
            producer_id,
            streams = agent.streams.lock().expect("lock").len(),
            "edge agent ready"
        );
        tokio::spawn(register(agent.clone()));
        Ok(agent)
    }

    fn save_cache(&self) -> Result<()> {
        let list: Vec<CachedStream> = self
            .streams
            .lock()
            .expect("streams lock")
            .values()
            .map(|s| CachedStream::from(&*s.info.lock().expect("info lock")))
            .collect();
        write_durably(&self.cache_path(), &serde_json::to_vec_pretty(&list)?)
    }

    async fn open_stream(self: &Arc<Self>, info: StreamInfo) -> Result<Arc<StreamState>> {
        let _guard = self.opening.lock().await;
        if let Some(s) = self.streams.lock().expect("streams lock").get(&info.name) {
            return Ok(s.clone());
        }
        let dir = self.buffer_dir(&info.name);
        let opts = self.cfg.buffer_options();
        let name = info.name.clone();
        let (buffer, recovery) =
            tokio::task::spawn_blocking(move || StreamBuffer::open(&dir, opts))
                .await?
                .with_context(|| format!("opening the buffer of stream {name}"))?;
        if recovery.truncated_bytes > 0 {
            tracing::warn!(stream = %name, truncated_bytes = recovery.truncated_bytes, "cut a torn tail from the buffer (unacknowledged writes)");
        }
        let state = Arc::new(StreamState {
            buffer: BufferHandle::spawn(buffer, name.clone()),
            info: Mutex::new(info),
            closed_at: Mutex::new(HashMap::new()),
        });
        self.streams
            .lock()
            .expect("streams lock")
            .insert(name.clone(), state.clone());
        self.save_cache()?;
        tokio::spawn(forwarder::run(
            self.clone(),
            name,
            state.clone(),
            self.shutdown.clone(),
        ));
        Ok(state)
    }

    /// The stream's state, asking the core about streams not seen before.
    async fn stream(self: &Arc<Self>, name: &str) -> Result<Arc<StreamState>, RemoteError> {
        if let Some(s) = self.streams.lock().expect("streams lock").get(name) {
            return Ok(s.clone());
        }
        strata_schema::validate_stream_name(name)
            .map_err(|m| RemoteError::new(ErrorCode::InvalidArgument, m))?;
        let info = match self.core.describe(name).await {
            Ok(info) => info,
            Err(ClientError::Remote(e)) => return Err(e),
            Err(e) => {
                return Err(RemoteError::new(
                    ErrorCode::Unavailable,
                    format!("stream {name:?} is not known to this agent yet and the core cannot be asked: {e}"),
                ))
            }
        };
        self.open_stream(info)
            .await
            .map_err(|e| RemoteError::new(ErrorCode::Internal, format!("{e:#}")))
    }

    pub fn streams(&self) -> Vec<(String, Arc<StreamState>)> {
        self.streams
            .lock()
            .expect("streams lock")
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    /// `frame` is the request frame `r` was read from: the batch is sliced out of it, not copied.
    async fn produce(
        self: &Arc<Self>,
        frame: &Bytes,
        r: fb::ProduceRequest<'_>,
    ) -> Result<Bytes, RemoteError> {
        let bytes = r.batch().bytes();
        let summary = batch::verify(bytes, &self.cfg.limits())
            .map_err(|e| RemoteError::new(e.code(), e.to_string()))?;
        let stream = self.stream(r.stream()).await?;
        stream
            .buffer
            .append(
                summary.records as u32,
                summary.max_timestamp_ms,
                frame.slice_ref(bytes),
            )
            .await
            .map_err(|e| match e {
                BufferError::Full { .. } => RemoteError::new(ErrorCode::BufferFull, e.to_string()),
                other => RemoteError::new(ErrorCode::Internal, format!("edge buffer: {other}")),
            })?;
        metrics::counter!("strata_edge_records_in_total").increment(summary.records as u64);
        Ok(wire::response(fb::ResponseBody::ProduceResponse, |fbb| {
            fb::ProduceResponse::create(
                fbb,
                &fb::ProduceResponseArgs {
                    records: summary.records as u32,
                },
            )
            .as_union_value()
        }))
    }

    /// Replaces a stream's shard map after the core reported a change.
    pub async fn refresh(&self, stream: &StreamState, name: &str) -> Result<(), ClientError> {
        let info = self.core.describe(name).await?;
        *stream.info.lock().expect("info lock") = info;
        if let Err(e) = self.save_cache() {
            tracing::warn!(error = %e, "could not save the stream cache");
        }
        Ok(())
    }
}

/// QUIC handler of the ingest endpoint.
pub struct EdgeHandler(pub Arc<Agent>);

impl Handler for EdgeHandler {
    async fn handle(&self, request: Bytes, peer: SocketAddr) -> Bytes {
        let req = wire::decode_request(&request).expect("serve() verified the request");
        let result = match req.body_as_produce_request() {
            Some(r) => self.0.produce(&request, r).await,
            None => Err(RemoteError::new(
                ErrorCode::InvalidArgument,
                "an edge agent only accepts produce requests; send admin and fetch requests to the core",
            )),
        };
        result.unwrap_or_else(|e| {
            tracing::debug!(%peer, error = %e, "produce refused");
            e.encode()
        })
    }
}

/// The on-disk form of a cached stream description.
#[derive(serde::Serialize, serde::Deserialize)]
struct CachedStream {
    name: String,
    replication: u32,
    created_ms: i64,
    shards: Vec<CachedShard>,
}

#[derive(serde::Serialize, serde::Deserialize)]
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

/// Registers the agent's producer id with the core's metadata group,
/// retrying (with backoff) until it succeeds or the agent stops. Forwarding
/// does not wait for it: dedup works on the id either way.
async fn register(agent: Arc<Agent>) {
    let who = format!("edge {}", agent.cfg.listen_addr);
    let mut backoff = std::time::Duration::from_millis(200);
    let mut shutdown = agent.shutdown.clone();
    loop {
        let (id, who) = (agent.producer_id, who.as_str());
        match agent
            .core
            .any(|c| async move { api::register_producer(&c, id, who).await })
            .await
        {
            Ok((since, producers)) => {
                tracing::info!(
                    producer_id = id,
                    registered_ms = since,
                    producers,
                    "producer id registered with the core"
                );
                return;
            }
            Err(e) => tracing::debug!(error = %e, "registering the producer id; will retry"),
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = shutdown.wait_for(|s| *s) => return,
        }
        backoff = (backoff * 2).min(std::time::Duration::from_secs(10));
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
                .map(|sh| api::ShardInfo {
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
