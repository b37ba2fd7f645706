//! `strata-edge`: runs the edge agent from a TOML config.

use anyhow::{Context, Result};
use clap::Parser;
use std::path::PathBuf;
use std::sync::Arc;
use strata_client::cluster::Cluster;
use strata_edge::config::EdgeConfig;
use strata_edge::ingest::EdgeHandler;
use strata_runtime::server::{bind_server, serve};
use tokio::sync::watch;

/// Strata edge agent: QUIC ingest, durable buffers, forwarding to the core.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// TOML config file (see deploy/config/edge.example.toml). STRATA_EDGE_*
    /// environment variables override its keys.
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// Continue under a new producer id: for a data directory restored from
    /// a backup or cloned, whose buffer positions are behind what the core
    /// holds (the agent refuses to start and names this flag). Needs the
    /// core reachable; nothing buffered is lost or duplicated. See
    /// docs/operations.md#restored-or-cloned-edge-data-directories.
    #[arg(long)]
    retire_producer: bool,
    /// With --retire-producer, when the `producer_id` file was lost: the
    /// lost id (every start logs it: `edge agent ready producer_id=...`).
    #[arg(long, value_name = "ID", requires = "retire_producer")]
    previous_producer_id: Option<u64>,
}

fn main() {
    let args = Args::parse();
    // Two worker threads are plenty on a Raspberry-class device (edge); the
    // core uses one per core.
    strata_runtime::daemon::run("strata-edge", "info", Some(2), run(args));
}

async fn run(args: Args) -> Result<()> {
    let cfg: EdgeConfig = strata_runtime::settings::load(args.config.as_deref(), "STRATA_EDGE")?;
    cfg.validate()
        .map_err(|e| anyhow::anyhow!("invalid config: {e}"))?;
    strata_runtime::tls::install_crypto_provider();
    let auth = cfg.client_auth();
    if auth.mode == strata_runtime::identity::ClientAuthMode::Off {
        tracing::warn!("client_auth = \"off\": producers are not authenticated and no access rules apply; use this only for a loopback test setup");
    }
    let limits = cfg.serve_limits();
    let server_cfg =
        strata_runtime::tls::server_config(&cfg.tls_cert, &cfg.tls_key, &auth, &limits)?;
    let core = Arc::new(
        Cluster::with_identity(
            cfg.core_addrs.clone(),
            &cfg.core_ca,
            Some(&cfg.core_identity()),
        )
        .context("core client")?,
    );
    if let Some(addr) = cfg.metrics_addr {
        metrics_exporter_prometheus::PrometheusBuilder::new()
            .with_http_listener(addr)
            .install()
            .with_context(|| format!("starting the metrics endpoint on {addr}"))?;
    }
    let endpoint = bind_server(cfg.listen_addr, server_cfg)?;
    let (stop_tx, stop_rx) = watch::channel(false);
    let mode = strata_edge::registry::identity::StartMode {
        retire: args.retire_producer,
        previous_id: args.previous_producer_id,
    };
    let registry = strata_edge::agent::start(cfg.clone(), core.clone(), mode, stop_rx.clone())
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let access = strata_edge::agent::start_access(&cfg, core.clone(), stop_rx.clone())?;
    tracing::info!(addr = %cfg.listen_addr, core = ?cfg.core_addrs, "strata-edge listening (QUIC)");
    let handler = Arc::new(EdgeHandler::new(registry.clone(), access.rules.clone()));
    let kinesis = strata_edge::agent::start_kinesis(
        &cfg,
        handler.clone(),
        access.aws_keys.clone(),
        stop_rx.clone(),
    )
    .await?;
    let server = tokio::spawn(serve(endpoint, handler, limits, stop_rx));
    let mut halted = registry.halted();
    let halt = tokio::select! {
        _ = strata_runtime::daemon::shutdown_signal() => None,
        h = halted.wait_for(|h| h.is_some()) => h.ok().and_then(|h| h.clone()),
    };
    tracing::info!("shutting down");
    let _ = stop_tx.send(true);
    let _ = server.await;
    if let Some(k) = kinesis {
        let _ = k.await;
    }
    for (name, s) in registry.streams() {
        if let Err(e) = s.buffer.flush_ack().await {
            tracing::warn!(stream = %name, error = %e, "could not save the forwarded position; the next start sends again what the core already has (it drops those)");
        }
        let st = s.buffer.stats();
        tracing::info!(stream = %name, buffered_records = st.next_seq - st.acked_seq, "buffer kept for the next start");
    }
    match halt {
        Some(why) => Err(anyhow::anyhow!("{why}")),
        None => Ok(()),
    }
}
