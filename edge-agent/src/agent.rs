//! Wiring: reads the producer identity, opens the stream registry, checks
//! the buffers against the core's high-water marks (or retires the producer
//! id), starts one forwarder per stream (for the cached streams now, for
//! new ones as the registry opens them) and registers the producer id with
//! the core. Decisions live in `registry`, `forward` and `ingest`, the
//! checks in `startup`; this module only connects them.

use crate::config::EdgeConfig;
use crate::forward;
use crate::registry::identity::{Identity, StartMode};
use crate::registry::{producer, Registry};
use crate::startup::{self, StartError};
use std::sync::Arc;
use strata_client::cluster::Cluster;
use tokio::sync::watch;

/// Opens the agent: reads its identity and stream cache, reopens every
/// buffer, checks them against the core (refusing a buffer behind it) or,
/// with `mode.retire`, retires the producer id, and starts the forwarders
/// (buffered data drains as soon as the core answers). Everything it
/// starts stops when `shutdown` turns true.
pub async fn start(
    cfg: EdgeConfig,
    core: Arc<Cluster>,
    mode: StartMode,
    shutdown: watch::Receiver<bool>,
) -> Result<Arc<Registry>, StartError> {
    let who = format!("edge {}", cfg.listen_addr);
    let identity = Identity::load(&cfg.data_dir, mode)?;
    let (registry, mut opened) = Registry::open(cfg, core.clone(), identity).await?;
    if mode.retire {
        startup::retire(&registry, &who).await?;
    } else {
        startup::check_at_start(&registry, &who).await?;
    }
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
