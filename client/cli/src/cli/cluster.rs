//! `strata cluster status`: nodes (id, zone, address, up/down, state,
//! replicas), the metadata leader, and every shard's leader with per-replica
//! commit lag. `strata cluster add-node` / `remove-node`: membership.

use super::{Seeds, TlsArgs};
use anyhow::Result;
use clap::Subcommand;
use serde::Serialize;
use std::net::SocketAddr;
use std::time::Duration;
use std::time::Instant;
use strata_client::api::{self, MembershipChange, NodeInfo, ShardLeadership};

#[derive(Subcommand, Debug)]
pub enum ClusterCmd {
    /// Show nodes, the metadata leader and shard leaders with replica lag.
    Status {
        #[arg(long)]
        json: bool,
    },
    /// Register a new core node. Start it first with the cluster's `peers`
    /// list (without itself) in its config; it then joins the metadata group
    /// and gets replicas of new streams and of removed nodes.
    AddNode {
        /// The new node's id (non-zero, unused).
        #[arg(long)]
        id: u64,
        /// Its availability zone.
        #[arg(long)]
        zone: String,
        /// Its client API address (its `listen_addr`).
        #[arg(long)]
        addr: SocketAddr,
        /// Its inter-node address (its `peer_advertise_addr` or `peer_addr`).
        #[arg(long)]
        peer_addr: SocketAddr,
    },
    /// Move every replica off a node (to active nodes in zones each shard
    /// does not use yet; each move keeps a majority), then remove the node.
    RemoveNode {
        /// The node's id.
        id: u64,
        /// Return once the removal is accepted instead of waiting for it.
        #[arg(long)]
        no_wait: bool,
        /// Give up waiting after this many seconds (the removal goes on).
        #[arg(long, default_value_t = 600)]
        timeout_secs: u64,
    },
}

#[derive(Serialize)]
struct NodeStatus {
    #[serde(flatten)]
    node: NodeInfo,
    up: bool,
    meta_leader: bool,
}

#[derive(Serialize)]
struct Status {
    meta_leader: u64,
    producers: u64,
    nodes: Vec<NodeStatus>,
    shards: Vec<ShardLeadership>,
}

pub async fn run(cmd: ClusterCmd, tls: &TlsArgs, core: &Seeds) -> Result<()> {
    let c = tls.cluster(core)?;
    let r = match cmd {
        ClusterCmd::Status { json } => status(&c, json).await,
        ClusterCmd::AddNode {
            id,
            zone,
            addr,
            peer_addr,
        } => {
            let change = MembershipChange::Add {
                node_id: id,
                zone,
                addr: addr.to_string(),
                peer_addr: peer_addr.to_string(),
            };
            let change = &change;
            c.any(|c| async move { api::change_membership(&c, change).await })
                .await?;
            println!("added node {id}; it joins the metadata group as a learner and takes new replicas (check with `strata cluster status`)");
            Ok(())
        }
        ClusterCmd::RemoveNode {
            id,
            no_wait,
            timeout_secs,
        } => remove_node(&c, id, no_wait, Duration::from_secs(timeout_secs)).await,
    };
    c.close().await;
    r
}

async fn remove_node(
    c: &strata_client::cluster::Cluster,
    id: u64,
    no_wait: bool,
    timeout: Duration,
) -> Result<()> {
    let change = &MembershipChange::Remove { node_id: id };
    let v = c
        .any(|c| async move { api::change_membership(&c, change).await })
        .await?;
    let total = v
        .nodes
        .iter()
        .find(|n| n.id == id)
        .and_then(|n| n.replicas)
        .unwrap_or(0);
    if no_wait {
        println!("node {id} is draining: {total} replica(s) to move; follow with `strata cluster status`");
        return Ok(());
    }
    let bar = indicatif::ProgressBar::new(u64::from(total));
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{spinner} node {msg}: {pos}/{len} replicas moved [{elapsed}]",
        )
        .expect("valid template"),
    );
    bar.set_message(id.to_string());
    let start = Instant::now();
    loop {
        // Only the metadata leader's own view counts: a node that joined a
        // moment ago may not have the catalog yet (and lists no nodes).
        if let Some(v) = leader_view(c).await {
            match v.nodes.iter().find(|n| n.id == id) {
                None => break,
                Some(n) => {
                    let left = n.replicas.unwrap_or(0);
                    bar.set_position(u64::from(total.saturating_sub(left)));
                }
            }
        }
        if start.elapsed() > timeout {
            bar.abandon();
            anyhow::bail!("node {id} is still draining after {timeout:?}; the removal goes on: follow it with `strata cluster status`");
        }
        bar.tick();
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    bar.finish_and_clear();
    println!(
        "node {id} removed ({total} replica(s) moved in {:.1} s); stop its process and delete its data directory",
        start.elapsed().as_secs_f64()
    );
    Ok(())
}

/// The cluster status as the metadata leader itself reports it, if reachable.
async fn leader_view(c: &strata_client::cluster::Cluster) -> Option<api::NodeView> {
    let any = c
        .any(|c| async move { api::cluster_status(&c).await })
        .await
        .ok()?;
    if any.node == any.meta_leader {
        return Some(any);
    }
    let addr = any
        .nodes
        .iter()
        .find(|n| n.id == any.meta_leader)?
        .addr
        .parse()
        .ok()?;
    let v = api::cluster_status(&*c.client(addr).ok()?).await.ok()?;
    (v.node == v.meta_leader && !v.nodes.is_empty()).then_some(v)
}

async fn status(c: &strata_client::cluster::Cluster, json: bool) -> Result<()> {
    let first = c
        .any(|c| async move { api::cluster_status(&c).await })
        .await?;
    let mut nodes = Vec::new();
    let mut shards = Vec::new();
    let mut meta_leader = first.meta_leader;
    for n in &first.nodes {
        let view = match n.addr.parse() {
            Ok(addr) => {
                let client = c.client(addr)?;
                tokio::time::timeout(Duration::from_secs(2), api::cluster_status(&client))
                    .await
                    .ok()
                    .and_then(Result::ok)
            }
            Err(_) => None,
        };
        if let Some(v) = &view {
            shards.extend(v.shards.iter().cloned());
            if v.meta_leader != 0 {
                meta_leader = v.meta_leader;
            }
        }
        nodes.push(NodeStatus {
            node: n.clone(),
            up: view.is_some(),
            meta_leader: false,
        });
    }
    for n in &mut nodes {
        n.meta_leader = n.node.id == meta_leader;
    }
    shards.sort_by(|a, b| (&a.stream, a.shard).cmp(&(&b.stream, b.shard)));
    let status = Status {
        meta_leader,
        producers: first.producers,
        nodes,
        shards,
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&status)?);
    } else {
        println!(
            "{:>5} {:<10} {:<22} {:<5} {:<9} {:>8} ROLE",
            "NODE", "ZONE", "ADDRESS", "UP", "STATE", "REPLICAS"
        );
        for n in &status.nodes {
            println!(
                "{:>5} {:<10} {:<22} {:<5} {:<9} {:>8} {}",
                n.node.id,
                n.node.zone,
                n.node.addr,
                if n.up { "up" } else { "DOWN" },
                n.node.state,
                n.node.replicas.unwrap_or(0),
                if n.meta_leader { "metadata leader" } else { "" }
            );
        }
        println!("producers registered: {}", status.producers);
        println!();
        println!(
            "{:<24} {:>5} {:>6} {:>6} {:>10}  REPLICAS (node:lag)",
            "STREAM", "SHARD", "LEADER", "TERM", "LAST INDEX"
        );
        for s in &status.shards {
            let reps: Vec<String> = s
                .replicas
                .iter()
                .map(|r| format!("{}:{}", r.node, r.lag))
                .collect();
            println!(
                "{:<24} {:>5} {:>6} {:>6} {:>10}  {}",
                s.stream,
                s.shard,
                s.leader,
                s.term,
                s.last_log_index,
                reps.join(" ")
            );
        }
    }
    Ok(())
}
