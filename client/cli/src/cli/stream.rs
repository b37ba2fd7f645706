//! `strata stream create|restore|list|describe|split|merge|scale|delete`.

use super::{Seeds, TlsArgs};
use anyhow::Result;
use clap::Subcommand;
use strata_client::api::{self, StreamInfo};
use strata_client::cluster::Cluster;

#[derive(Subcommand, Debug)]
pub enum StreamCmd {
    /// Create a stream with N shards over evenly split hash-key ranges.
    Create {
        name: String,
        /// Number of shards.
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=1024))]
        shards: u32,
        /// Replicas per shard, each in a distinct zone; default 3 with at
        /// least 3 zones, else one per zone.
        #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u32).range(0..=7), hide_default_value = true)]
        replication: u32,
        #[command(flatten)]
        retention: RetentionArgs,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Change a stream's retention (needs `alter`): the four settings
    /// replace the old ones, and one left out goes back to its default
    /// (the core's for local, unlimited for total). Tiering applies it on
    /// its next pass.
    Retention {
        name: String,
        #[command(flatten)]
        retention: RetentionArgs,
        #[arg(long)]
        json: bool,
    },
    /// Recreate a stream from its Parquet archive (objects and manifests)
    /// in the cluster's object store, e.g. in a fresh cluster after losing
    /// the old one. Offsets, keys, values, timestamps and headers come back
    /// as they were; nothing is downloaded (reads go to the objects).
    Restore {
        name: String,
        /// Archive location, e.g. s3://bucket/prefix; must be the
        /// cluster's object_store (the default).
        #[arg(long, value_name = "URL", default_value = "")]
        from: String,
        /// Replicas per shard (default as for `create`).
        #[arg(long, default_value_t = 0, hide_default_value = true)]
        replication: u32,
        #[arg(long)]
        json: bool,
    },
    /// Delete a stream everywhere (needs `admin`): its catalog entry,
    /// consumer groups, and every replica's data. Edge agents refuse new
    /// records for it. The Parquet archive is kept (`strata stream restore`
    /// brings the stream back) unless --purge-archive.
    Delete {
        name: String,
        /// Also delete the stream's archive (objects and manifest copies).
        #[arg(long)]
        purge_archive: bool,
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
    /// Split a shard in two: it closes at its final offset, and two children
    /// own the lower and upper part of its hash-key range.
    Split {
        name: String,
        /// The open shard to split.
        #[arg(long)]
        shard: u32,
        /// The upper child's first hash key (decimal, as `describe` shows);
        /// default: the middle of the shard's range.
        #[arg(long, value_name = "HASHKEY", value_parser = parse_hash_key)]
        at: Option<u128>,
        #[arg(long)]
        json: bool,
    },
    /// Merge two open shards with adjacent hash-key ranges into one.
    Merge {
        name: String,
        /// The two shards, e.g. --shards 3,4.
        #[arg(long, value_delimiter = ',', required = true)]
        shards: Vec<u32>,
        #[arg(long)]
        json: bool,
    },
    /// Close every open shard and create N with uniform hash-key ranges.
    Scale {
        name: String,
        /// Open shards wanted.
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..=1024))]
        shards: u32,
        #[arg(long)]
        json: bool,
    },
}

fn parse_hash_key(s: &str) -> Result<u128, strata_schema::hashkey::HashKeyError> {
    strata_schema::hashkey::parse_hash_key(s)
}

/// Sends a reshard and waits (up to 30 s) for the parents to close.
async fn reshard(c: &Cluster, name: &str, op: &api::Reshard, json: bool) -> Result<()> {
    let before = c.describe(name).await?;
    let s = c
        .any(|c| async move { api::reshard(&c, name, op).await })
        .await?;
    let old: Vec<u32> = before.shards.iter().map(|sh| sh.id).collect();
    let children: Vec<u32> = s
        .shards
        .iter()
        .filter(|sh| !old.contains(&sh.id))
        .map(|sh| sh.id)
        .collect();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let s = loop {
        let s = describe_merged(c, name).await?;
        if s.shards.iter().all(|sh| sh.state != "closing") {
            break s;
        }
        if std::time::Instant::now() > deadline {
            eprintln!("the parents are still closing after 30 s; `strata stream describe {name}` shows when they are closed");
            break s;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&s)?);
        return Ok(());
    }
    for sh in s.shards.iter().filter(|sh| children.contains(&sh.id)) {
        println!(
            "shard {} ({}..={}) from {}",
            sh.id,
            sh.start_hash_key,
            sh.end_hash_key,
            sh.parents
                .iter()
                .map(|p| {
                    let end = s
                        .shards
                        .iter()
                        .find(|x| x.id == *p)
                        .and_then(|x| x.end_offset)
                        .map_or("closing".to_string(), |e| format!("closed at offset {e}"));
                    format!("shard {p} ({end})")
                })
                .collect::<Vec<_>>()
                .join(" and ")
        );
    }
    print_describe(&s);
    Ok(())
}

/// Retention flags of `stream create` and `stream retention`.
#[derive(clap::Args, Debug)]
pub struct RetentionArgs {
    /// How long tiered records stay on the nodes' disks (e.g. 6h);
    /// default: the core's local_retention_ms.
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    local_retention: Option<std::time::Duration>,
    /// Most bytes per shard kept on the nodes' disks once tiered.
    #[arg(long, value_name = "BYTES", value_parser = clap::value_parser!(u64).range(1..))]
    local_retention_bytes: Option<u64>,
    /// Total retention (e.g. 400d): older records leave the object
    /// store too. Default: unlimited.
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    retention: Option<std::time::Duration>,
    /// Total bytes per shard kept in the object store (oldest objects
    /// go first). Default: unlimited.
    #[arg(long, value_name = "BYTES", value_parser = clap::value_parser!(u64).range(1..))]
    retention_bytes: Option<u64>,
}

impl RetentionArgs {
    fn retention(&self) -> api::Retention {
        let ms = |d: Option<std::time::Duration>| d.map(|d| (d.as_millis() as u64).max(1));
        api::Retention {
            local_ms: ms(self.local_retention),
            local_bytes: self.local_retention_bytes,
            total_ms: ms(self.retention),
            total_bytes: self.retention_bytes,
        }
    }
}

pub async fn run(cmd: StreamCmd, tls: &TlsArgs, core: &Seeds) -> Result<()> {
    let c = tls.cluster(core)?;
    match cmd {
        StreamCmd::Create {
            name,
            shards,
            replication,
            retention,
            json,
        } => {
            let name = &name;
            let r = &retention.retention();
            let s =
                c.any(|c| async move {
                    api::create_stream_with(&c, name, shards, replication, r).await
                })
                .await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&s)?);
            } else {
                println!("created stream {} with {} shard(s)", s.name, s.shards.len());
                print_describe(&s);
            }
        }
        StreamCmd::Retention {
            name,
            retention,
            json,
        } => {
            let (name, r) = (&name, &retention.retention());
            let s = c
                .any(|c| async move { api::set_retention(&c, name, r).await })
                .await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&s)?);
            } else {
                println!("changed the retention of stream {}", s.name);
                print_describe(&s);
            }
        }
        StreamCmd::Restore {
            name,
            from,
            replication,
            json,
        } => {
            let (name, from) = (&name, &from);
            c.any(|c| async move { api::restore_stream(&c, name, from, replication).await })
                .await?;
            // Shard leaders load their manifests in the background.
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
            let s = loop {
                let s = c.describe(name).await?;
                if s.shards.iter().all(|sh| sh.next_offset > 0) {
                    break s;
                }
                if std::time::Instant::now() > deadline {
                    anyhow::bail!("stream {name} is created but some shards have not loaded their manifests within 60 s; check `strata stream describe {name}` and the core logs");
                }
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            };
            if json {
                println!("{}", serde_json::to_string_pretty(&s)?);
            } else {
                let records = s.records();
                println!(
                    "restored stream {} with {} shard(s), {records} records",
                    s.name,
                    s.shards.len()
                );
                print_describe(&s);
            }
        }
        StreamCmd::Delete {
            name,
            purge_archive,
            json,
        } => {
            let name = &name;
            let d = c
                .any(|c| async move { api::delete_stream(&c, name, purge_archive).await })
                .await?;
            if json {
                println!(
                    "{}",
                    serde_json::json!({
                        "name": d.name,
                        "archive_url": d.archive_url,
                        "archive_objects_deleted": d.archive_objects_deleted,
                    })
                );
            } else {
                println!("deleted stream {}", d.name);
                match (d.archive_url.is_empty(), purge_archive) {
                    (true, _) => {}
                    (false, true) => println!(
                        "purged its archive at {} ({} objects)",
                        d.archive_url, d.archive_objects_deleted
                    ),
                    (false, false) => println!(
                        "its archive is kept at {} (strata stream restore {} brings it back; strata stream delete {} --purge-archive removes it)",
                        d.archive_url, d.name, d.name
                    ),
                }
            }
        }
        StreamCmd::List { json } => {
            let list = c
                .any(|c| async move { api::list_streams(&c).await })
                .await?;
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
                    let records = s.records();
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
            let s = describe_merged(&c, &name).await?;
            if json {
                let mut v = serde_json::to_value(&s)?;
                if let Some(gs) = v.get_mut("groups").and_then(|g| g.as_array_mut()) {
                    for (gv, g) in gs.iter_mut().zip(&s.groups) {
                        gv["lag"] = serde_json::to_value(g.lag(&s))?;
                    }
                }
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                print_describe(&s);
            }
        }
        StreamCmd::Split {
            name,
            shard,
            at,
            json,
        } => reshard(&c, &name, &api::Reshard::Split { shard, at }, json).await?,
        StreamCmd::Merge { name, shards, json } => {
            let [a, b] = shards[..] else {
                anyhow::bail!("--shards takes two shard ids, e.g. --shards 3,4 (got {shards:?})");
            };
            let shards = [a, b];
            reshard(&c, &name, &api::Reshard::Merge { shards }, json).await?
        }
        StreamCmd::Scale { name, shards, json } => {
            reshard(&c, &name, &api::Reshard::Scale { count: shards }, json).await?
        }
    }
    c.close().await;
    Ok(())
}

/// A description with every shard's offsets and leader taken from a replica
/// of that shard (a node only knows the shards it holds).
pub async fn describe_merged(c: &Cluster, name: &str) -> Result<StreamInfo> {
    let mut s = c.describe(name).await?;
    for i in 0..s.shards.len() {
        let id = s.shards[i].id;
        if s.shards[i].leader_node != 0 {
            continue;
        }
        let from_replica = c
            .to_reader(
                name,
                id,
                |c| async move { api::describe_stream(&c, name).await },
            )
            .await;
        if let Ok(r) = from_replica {
            if let Some(sh) = r.shards.into_iter().find(|sh| sh.id == id) {
                s.shards[i] = sh;
            }
        }
    }
    Ok(s)
}

fn print_describe(s: &StreamInfo) {
    println!(
        "stream {}  replication {}  shards {} ({} open)",
        s.name,
        s.replication,
        s.shards.len(),
        s.open_shards().count()
    );
    if !s.archive_url.is_empty() {
        println!("archive {}", s.archive_url);
    }
    let r = &s.retention;
    let dur = |v: Option<u64>, none: &str| {
        v.map_or(none.to_string(), |ms| {
            humantime::format_duration(std::time::Duration::from_millis(ms)).to_string()
        })
    };
    let bytes = |v: Option<u64>| v.map_or(String::new(), |b| format!(" or {b} bytes per shard"));
    println!(
        "retention: local {}{}, total {}{}",
        dur(r.local_ms, "core default"),
        bytes(r.local_bytes),
        dur(r.total_ms, "unlimited"),
        bytes(r.total_bytes)
    );
    println!(
        "{:>5} {:>7} {:>8} {:>40} {:>40} {:>12} {:>12} {:>7} {:>12} {:>10} {:>8} {:>10}",
        "SHARD",
        "STATE",
        "PARENTS",
        "START HASH KEY",
        "END HASH KEY",
        "FIRST",
        "NEXT",
        "LEADER",
        "TIERED",
        "BACKLOG",
        "OBJECTS",
        "TIER BYTES"
    );
    for sh in &s.shards {
        let parents = if sh.parents.is_empty() {
            "-".to_string()
        } else {
            sh.parents
                .iter()
                .map(u32::to_string)
                .collect::<Vec<_>>()
                .join(",")
        };
        println!(
            "{:>5} {:>7} {:>8} {:>40} {:>40} {:>12} {:>12} {:>7} {:>12} {:>10} {:>8} {:>10}",
            sh.id,
            sh.state,
            parents,
            sh.start_hash_key,
            sh.end_hash_key,
            sh.first_offset,
            sh.next_offset,
            sh.leader_node,
            sh.tiered_offset,
            sh.next_offset.saturating_sub(sh.tiered_offset),
            sh.tier_objects,
            sh.tier_bytes
        );
    }
    for g in &s.groups {
        println!(
            "consumer group {}  generation {}  members {}",
            g.name,
            g.generation,
            if g.members.is_empty() {
                "(none)".to_string()
            } else {
                g.members.join(", ")
            }
        );
        println!(
            "{:>5} {:>24} {:>12} {:>12} {:>12}",
            "SHARD", "OWNER", "CHECKPOINT", "LAG RECORDS", "LAG MS"
        );
        for lag in g.lag(s) {
            let gs = g.shards.iter().find(|x| x.shard == lag.shard);
            println!(
                "{:>5} {:>24} {:>12} {:>12} {:>12}",
                lag.shard,
                gs.map_or("-", |x| if x.owner.is_empty() {
                    "-"
                } else {
                    x.owner.as_str()
                }),
                gs.and_then(|x| x.checkpoint)
                    .map_or("-".to_string(), |c| c.offset.to_string()),
                lag.records,
                lag.ms
            );
        }
    }
}
