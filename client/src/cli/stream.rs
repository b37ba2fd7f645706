//! `strata stream create|list|describe`.

use super::TlsArgs;
use anyhow::Result;
use clap::Subcommand;
use std::net::SocketAddr;
use strata_client::api::{self, StreamInfo};

#[derive(Subcommand, Debug)]
pub enum StreamCmd {
    /// Create a stream with N shards over evenly split hash-key ranges.
    Create {
        name: String,
        /// Number of shards.
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=1024))]
        shards: u32,
        /// Replicas per shard (needs that many core nodes).
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=7))]
        replication: u32,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
    /// List streams.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Show a stream's shards, hash-key ranges and offsets.
    Describe {
        name: String,
        #[arg(long)]
        json: bool,
    },
}

pub async fn run(cmd: StreamCmd, tls: &TlsArgs, core: SocketAddr) -> Result<()> {
    let c = tls.client(core)?;
    match cmd {
        StreamCmd::Create {
            name,
            shards,
            replication,
            json,
        } => {
            let s = api::create_stream(&c, &name, shards, replication).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&s)?);
            } else {
                println!("created stream {} with {} shard(s)", s.name, s.shards.len());
                print_describe(&s);
            }
        }
        StreamCmd::List { json } => {
            let list = api::list_streams(&c).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&list)?);
            } else if list.is_empty() {
                println!("no streams (create one: strata stream create NAME --shards N)");
            } else {
                println!(
                    "{:<32} {:>6} {:>11} {:>14}",
                    "STREAM", "SHARDS", "REPLICATION", "RECORDS"
                );
                for s in &list {
                    let records: u64 = s
                        .shards
                        .iter()
                        .map(|sh| sh.next_offset - sh.first_offset)
                        .sum();
                    println!(
                        "{:<32} {:>6} {:>11} {:>14}",
                        s.name,
                        s.shards.len(),
                        s.replication,
                        records
                    );
                }
            }
        }
        StreamCmd::Describe { name, json } => {
            let s = api::describe_stream(&c, &name).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&s)?);
            } else {
                print_describe(&s);
            }
        }
    }
    c.close().await;
    Ok(())
}

fn print_describe(s: &StreamInfo) {
    println!(
        "stream {}  replication {}  shards {}",
        s.name,
        s.replication,
        s.shards.len()
    );
    println!(
        "{:>5} {:>40} {:>40} {:>12} {:>12} {:>7}",
        "SHARD", "START HASH KEY", "END HASH KEY", "FIRST", "NEXT", "LEADER"
    );
    for sh in &s.shards {
        println!(
            "{:>5} {:>40} {:>40} {:>12} {:>12} {:>7}",
            sh.id,
            sh.start_hash_key,
            sh.end_hash_key,
            sh.first_offset,
            sh.next_offset,
            sh.leader_node
        );
    }
}
