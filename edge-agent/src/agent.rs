//! Wiring: opens the stream registry, starts one forwarder per stream (for
//! the cached streams now, for new ones as the registry opens them) and
//! registers the producer id with the core. Decisions live in `registry`,
//! `forward` and `ingest`; this module only connects them.

use crate::config::EdgeConfig;
use crate::forward;
use crate::registry::{producer, Registry, RegistryError};
use std::sync::Arc;
use strata_client::cluster::Cluster;
use tokio::sync::watch;

/// Opens the agent: reads its id and stream cache, reopens every buffer and
/// starts its forwarder (buffered data drains as soon as the core answers).
/// Everything it starts stops when `shutdown` turns true.
pub async fn start(
    cfg: EdgeConfig,
    core: Arc<Cluster>,
    shutdown: watch::Receiver<bool>,
) -> Result<Arc<Registry>, RegistryError> {
    let who = format!("edge {}", cfg.listen_addr);
    let (registry, mut opened) = Registry::open(cfg, core.clone()).await?;
    tracing::info!(
        producer_id = registry.producer_id(),
        streams = registry.streams().len(),
        "edge agent ready"
    );
    let forwarders = registry.clone();
    let stop = shutdown.clone();
    tokio::spawn(async move {
        while let Some(stream) = opened.recv().await {
            tokio::spawn(forward::run(forwarders.clone(), stream, stop.clone()));
        }
    });
    tokio::spawn(producer::register(
        core,
        registry.producer_id(),
        who,
        shutdown,
    ));
    Ok(registry)
}
