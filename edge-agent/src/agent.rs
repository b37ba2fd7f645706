//! Wiring: reads the producer identity, opens the stream registry, checks
//! the buffers against the core's high-water marks (or retires the producer
//! id), starts one forwarder per stream (for the cached streams now, for
//! new ones as the registry opens them) and registers the producer id with
//! the core. Decisions live in `registry`, `forward` and `ingest`, the
//! checks in `startup`; this module only connects them.

use crate::config::EdgeConfig;
use crate::forward;
use crate::registry::aws_keys::AwsKeyStore;
use crate::registry::identity::{Identity, StartMode};
use crate::registry::rules::{self, Rules};
use crate::registry::{producer, Registry, RegistryError};
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

/// Starts the Kinesis-compatible endpoint when `kinesis_addr` is set:
/// writes take `edge`'s produce path; signatures are checked against
/// `keys` unless client authentication is off.
pub async fn start_kinesis(
    cfg: &EdgeConfig,
    edge: Arc<crate::ingest::EdgeHandler>,
    keys: Arc<crate::registry::aws_keys::AwsKeyStore>,
    shutdown: watch::Receiver<bool>,
) -> Result<Option<tokio::task::JoinHandle<()>>, crate::kinesis::server::StartError> {
    use crate::kinesis::{ops, seqno, server};
    let Some(addr) = cfg.kinesis_addr else {
        return Ok(None);
    };
    let tls = server::tls_config(&cfg.tls_cert, &cfg.tls_key)?;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| server::StartError::Bind { addr, source })?;
    let auth = match cfg.client_auth {
        strata_runtime::identity::ClientAuthMode::Off => server::Auth::Off,
        _ => server::Auth::Keys(keys),
    };
    let kinesis = ops::Kinesis {
        edge,
        iterators: seqno::Iterators::new(&rand::random::<[u8; 32]>()),
    };
    tracing::info!(%addr, "strata-edge listening (Kinesis API, HTTPS)");
    Ok(Some(tokio::spawn(server::serve(
        listener,
        tls,
        kinesis,
        auth,
        cfg.serve_limits(),
        shutdown,
    ))))
}

/// What the agent checks callers against, copies of the core's: the access
/// rules (every produce, on any port) and the AWS access keys (signatures
/// on the Kinesis API).
pub struct Access {
    pub rules: Arc<Rules>,
    pub aws_keys: Arc<AwsKeyStore>,
}

/// Opens the agent's copies of the rules and keys (from its data
/// directory, so they apply while the core is away) and keeps them in step
/// with the core until `shutdown`.
pub fn start_access(
    cfg: &EdgeConfig,
    core: Arc<Cluster>,
    shutdown: watch::Receiver<bool>,
) -> Result<Access, RegistryError> {
    let rules = Rules::open(&cfg.data_dir, cfg.superusers.clone())?;
    let aws_keys = AwsKeyStore::open(&cfg.data_dir)?;
    tokio::spawn(rules::sync(rules.clone(), aws_keys.clone(), core, shutdown));
    Ok(Access { rules, aws_keys })
}
