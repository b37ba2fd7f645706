//! `strata cluster status`: nodes (id, zone, address, up/down), the metadata
//! leader, and every shard's leader with per-replica commit lag.

use super::{Seeds, TlsArgs};
use anyhow::Result;
use clap::Subcommand;
use serde::Serialize;
use std::time::Duration;
use strata_client::api::{self, NodeInfo, ShardLeadership};

#[derive(Subcommand, Debug)]
pub enum ClusterCmd {
    /// Show nodes, the metadata leader and shard leaders with replica lag.
    Status {
        #[arg(long)]
        json: bool,
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
    nodes: Vec<NodeStatus>,
    shards: Vec<ShardLeadership>,
}

pub async fn run(cmd: ClusterCmd, tls: &TlsArgs, core: &Seeds) -> Result<()> {
    let ClusterCmd::Status { json } = cmd;
    let c = tls.cluster(core)?;
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
        nodes,
        shards,
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&status)?);
    } else {
        println!(
            "{:>5} {:<10} {:<22} {:<5} ROLE",
            "NODE", "ZONE", "ADDRESS", "STATE"
        );
        for n in &status.nodes {
            println!(
                "{:>5} {:<10} {:<22} {:<5} {}",
                n.node.id,
                n.node.zone,
                n.node.addr,
                if n.up { "up" } else { "DOWN" },
                if n.meta_leader { "metadata leader" } else { "" }
            );
        }
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
    c.close().await;
    Ok(())
}
