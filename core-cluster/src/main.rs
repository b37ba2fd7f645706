//! `strata-core`: runs one core node from a TOML config.

use anyhow::{Context, Result};
use clap::Parser;
use std::path::PathBuf;
use std::sync::Arc;
use strata_core::api::server::CoreHandler;
use strata_core::config::CoreConfig;
use strata_core::node::Node;
use strata_core::raft::net::NetworkFactory;
use strata_core::raft::network::PeerPool;
use strata_core::raft::peer::{serve_peers, PeerAccess};
use strata_runtime::server::{bind_server, serve};
use tokio::sync::watch;

/// Strata core node: Raft-replicated shard logs behind a QUIC API.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// TOML config file (see deploy/config/core.example.toml). STRATA_CORE_*
    /// environment variables override its keys.
    #[arg(long, short)]
    config: Option<PathBuf>,
}

fn main() {
    let args = Args::parse();
    // Two worker threads are plenty on a Raspberry-class device (edge); the
    // core uses one per core.
    strata_runtime::daemon::run("strata-core", "info,openraft=warn", None, run(args));
}

async fn run(args: Args) -> Result<()> {
    let cfg: CoreConfig = strata_runtime::settings::load(args.config.as_deref(), "STRATA_CORE")?;
    cfg.validate()
        .map_err(|e| anyhow::anyhow!("invalid config: {e}"))?;
    strata_runtime::tls::install_crypto_provider();
    let auth = cfg.client_auth();
    if auth.mode == strata_runtime::identity::ClientAuthMode::Off {
        tracing::warn!("client_auth = \"off\": clients are not authenticated and no access rules apply; use this only for a loopback test setup");
    }
    let limits = cfg.serve_limits();
    let server_cfg =
        strata_runtime::tls::server_config(&cfg.tls_cert, &cfg.tls_key, &auth, &limits)?;
    if let Some(addr) = cfg.metrics_addr {
        metrics_exporter_prometheus::PrometheusBuilder::new()
            .with_http_listener(addr)
            .install()
            .with_context(|| format!("starting the metrics endpoint on {addr}"))?;
    }
    std::fs::create_dir_all(&cfg.data_dir)
        .with_context(|| format!("creating data_dir {}", cfg.data_dir.display()))?;
    let endpoint = bind_server(cfg.listen_addr, server_cfg)?;
    let (stop_tx, stop_rx) = watch::channel(false);
    let peer_endpoint = if cfg.peers.is_empty() {
        None
    } else {
        let ca = cfg.tls_ca.as_ref().expect("validated: tls_ca with peers");
        let id = cfg.peer_identity();
        let access = peer_access(&cfg, &id)?;
        let server = strata_runtime::tls::peer_server_config(&id.cert, &id.key, ca)?;
        let client = strata_runtime::tls::peer_client_config(&id.cert, &id.key, ca)?;
        let ep = bind_server(cfg.peer_addr, server)?;
        let window = std::time::Duration::from_millis(cfg.peer_coalesce_window_ms);
        Some((
            ep.clone(),
            PeerPool::with_coalescing(ep, client, window),
            access,
        ))
    };
    let net = match &peer_endpoint {
        None => NetworkFactory::SingleNode,
        Some((_, pool, _)) => NetworkFactory::Quic(pool.clone()),
    };
    let node = Node::start(cfg.clone(), net, stop_rx.clone()).await?;
    if node.tier.enabled {
        tracing::info!(object_store = %node.tier.url, "tiering sealed segments");
    }
    let tiering = tokio::spawn(strata_core::control::tiering::run(
        node.clone(),
        node.tier.clone(),
        stop_rx.clone(),
    ));
    tokio::spawn(node.clone().report_group_lag(stop_rx.clone()));
    tokio::spawn(node.clone().run_quiescence(stop_rx.clone()));
    tokio::spawn(node.clone().run_producer_expiry(stop_rx.clone()));
    let peers = peer_endpoint.map(|(ep, _, access)| {
        tracing::info!(addr = %cfg.peer_addr, peers = cfg.peers.len(), node_identities = access.enforced(), "Raft peer endpoint listening (QUIC, mutual TLS)");
        tokio::spawn(serve_peers(ep, node.clone(), access, stop_rx.clone()))
    });
    tracing::info!(addr = %cfg.listen_addr, node_id = cfg.node_id, zone = %cfg.zone, "strata-core listening (QUIC)");
    let server = tokio::spawn(serve(
        endpoint,
        Arc::new(CoreHandler { node: node.clone() }),
        limits,
        stop_rx,
    ));
    strata_runtime::daemon::shutdown_signal().await;
    tracing::info!("shutting down");
    let _ = stop_tx.send(true);
    let _ = server.await;
    let _ = tiering.await;
    node.shutdown().await;
    if let Some(p) = peers {
        let _ = p.await;
    }
    Ok(())
}

/// The peer port's access policy from the node id its certificate names:
/// another node's certificate stops the start; none (a legacy certificate
/// shared by every node) serves any certificate of the cluster CA, warned.
fn peer_access(cfg: &CoreConfig, id: &strata_runtime::identity::Identity) -> Result<PeerAccess> {
    let named = strata_runtime::tls::node_id_of_file(&id.cert)?;
    let seeds = cfg.peers.iter().map(|p| p.id).collect();
    let access = PeerAccess::for_node(cfg.node_id, named, seeds)
        .with_context(|| format!("peer certificate {}", id.cert.display()))?;
    if !access.enforced() {
        if cfg.peer_cert.is_none() {
            tracing::warn!(cert = %id.cert.display(), "the peer port uses the client port's certificate (tls_cert): client and peer roles should use different certificates; set peer_cert/peer_key to a certificate naming this node's id (strata identity issue-node ID)");
        }
        tracing::warn!(cert = %id.cert.display(), "peer identities not enforced: give each node a peer certificate naming its id (SAN URI strata:node/ID); until then any certificate of the cluster CA may use the peer port");
    }
    Ok(access)
}
