//! `strata consume`: read committed records from one shard or all of them.

use super::TlsArgs;
use anyhow::{bail, Context, Result};
use base64::Engine;
use clap::Args;
use std::io::Write;
use std::sync::Arc;
use std::time::Duration;
use strata_client::api::{self, ConsumedRecord, Start};

#[derive(Args, Debug)]
pub struct ConsumeArgs {
    /// Stream to read.
    pub stream: String,
    /// Core node addresses (QUIC), comma-separated.
    #[arg(long, default_value = super::DEFAULT_CORE, value_parser = super::parse_seeds)]
    pub core: super::Seeds,
    /// Read from a replica in this availability zone when one exists
    /// (replicas serve committed records only).
    #[arg(long)]
    pub zone: Option<String>,
    /// Where to start: oldest, latest, offset:N (needs --shard with several shards) or time:RFC3339.
    #[arg(long, default_value = "oldest", value_parser = parse_start)]
    pub from: Start,
    /// Read only this shard.
    #[arg(long)]
    pub shard: Option<u32>,
    /// Stop after N records.
    #[arg(long)]
    pub limit: Option<u64>,
    /// Keep waiting for new records.
    #[arg(long)]
    pub follow: bool,
    /// With --follow: the core pushes records to this consumer as they
    /// commit (one subscription per shard) instead of answering long polls.
    #[arg(long, requires = "follow", conflicts_with = "group")]
    pub push: bool,
    /// One JSON object per line: stream, shard, offset, timestamp, key, data or data_b64.
    #[arg(long)]
    pub json: bool,
    /// Read as a member of this consumer group: the group's members share
    /// the shards, and the group's checkpoints (kept by the core) say where
    /// to resume; --from applies only to shards without a checkpoint.
    #[arg(long)]
    pub group: Option<String>,
    /// This member's name within the group (default: host-pid).
    #[arg(long, requires = "group")]
    pub member: Option<String>,
    /// Without a heartbeat for this long a member loses its shards.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration, requires = "group")]
    pub session: Duration,
    #[command(flatten)]
    pub tls: TlsArgs,
}

fn parse_start(s: &str) -> Result<Start, String> {
    match s {
        "oldest" => Ok(Start::Oldest),
        "latest" => Ok(Start::Latest),
        _ => {
            if let Some(o) = s.strip_prefix("offset:") {
                o.parse()
                    .map(Start::Offset)
                    .map_err(|e| format!("offset {o:?}: {e}"))
            } else if let Some(t) = s.strip_prefix("time:") {
                chrono::DateTime::parse_from_rfc3339(t)
                    .map(|d| Start::TimestampMs(d.timestamp_millis()))
                    .map_err(|e| {
                        format!("time {t:?} is not RFC 3339 (e.g. 2026-11-23T10:00:00Z): {e}")
                    })
            } else {
                Err(format!(
                    "{s:?}: expected oldest, latest, offset:N or time:RFC3339"
                ))
            }
        }
    }
}

/// `consume --follow --push`: one subscription to a replica of the shard,
/// resubscribing from the last position if it breaks (a node restarts).
/// Returns whether the shard ended (closed and read to its end).
async fn push_shard(
    client: &strata_client::cluster::Cluster,
    stream: &str,
    shard: u32,
    mut offset: u64,
    tx: tokio::sync::mpsc::Sender<Vec<ConsumedRecord>>,
) -> Result<bool> {
    loop {
        let mut sub = client
            .to_reader(stream, shard, |c| async move {
                api::subscribe(&c, stream, shard, offset, 5000).await
            })
            .await
            .with_context(|| format!("subscribing to shard {shard}"))?;
        loop {
            match sub.next().await {
                Ok(f) => {
                    offset = f.next_offset;
                    let ended = f.end_of_shard;
                    if !f.records.is_empty() && tx.send(f.records).await.is_err() {
                        return Ok(false);
                    }
                    if ended {
                        return Ok(true);
                    }
                }
                Err(e) if e.is_retryable() => {
                    tracing::warn!(shard, error = %e, "subscription broke; subscribing again");
                    break;
                }
                Err(e) => return Err(e).with_context(|| format!("subscription to shard {shard}")),
            }
        }
    }
}

/// Prints one record as `consume` does.
fn print_record(out: &mut impl Write, a: &ConsumeArgs, r: &ConsumedRecord) -> std::io::Result<()> {
    if a.json {
        writeln!(out, "{}", record_json(&a.stream, r))
    } else {
        writeln!(
            out,
            "{}/{} {} {}",
            r.shard,
            r.offset,
            r.key.as_deref().unwrap_or("-"),
            String::from_utf8_lossy(&r.data)
        )
    }
}

/// `consume --group`: a consumer-group member that prints what it reads and
/// checkpoints what it printed; Ctrl-C (or --limit) commits and leaves.
async fn run_group(client: &strata_client::cluster::Cluster, a: &ConsumeArgs) -> Result<()> {
    use strata_client::group::{GroupConfig, GroupConsumer};
    let group = a.group.as_deref().expect("checked by the caller");
    if a.shard.is_some() {
        bail!("--group and --shard exclude each other: the group assigns the shards");
    }
    if matches!(a.from, Start::Offset(_)) {
        bail!("--from offset:N does not apply to a group: offsets are per shard");
    }
    let member = match &a.member {
        Some(m) => m.clone(),
        None => format!(
            "{}-{}",
            hostname().unwrap_or_else(|| "strata".into()),
            std::process::id()
        ),
    };
    let mut cfg = GroupConfig::new(&a.stream, group, &member);
    cfg.session = a.session;
    cfg.start = a.from;
    cfg.stop_at_end = !a.follow;
    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    // Ctrl-C or SIGTERM: commit what was printed and leave the group.
    let signalled = stop_tx.clone();
    tokio::spawn(async move {
        strata_runtime::daemon::shutdown_signal().await;
        let _ = signalled.send(true);
    });
    let mut consumer = GroupConsumer::new(client, cfg);
    let mut out = std::io::BufWriter::new(std::io::stdout());
    let mut printed = 0u64;
    let stats = consumer
        .run(
            |_, recs| {
                let mut handled = 0;
                let mut result = Ok(());
                let room = a
                    .limit
                    .map_or(usize::MAX, |l| l.saturating_sub(printed) as usize);
                for r in recs.iter().take(room) {
                    if let Err(e) = print_record(&mut out, a, r) {
                        result = Err(e);
                        break;
                    }
                    printed += 1;
                    handled += 1;
                }
                if a.limit.is_some_and(|l| printed >= l) {
                    let _ = stop_tx.send(true);
                }
                let flushed = out.flush();
                async move {
                    result?;
                    flushed?;
                    Ok::<usize, std::io::Error>(handled)
                }
            },
            stop,
        )
        .await
        .with_context(|| format!("consumer group {group} of stream {}", a.stream))?;
    tracing::info!(member = %member, records = stats.records, rebalances = stats.rebalances, "left the consumer group");
    Ok(())
}

fn hostname() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
}

pub fn record_json(stream: &str, r: &ConsumedRecord) -> serde_json::Value {
    let ts = chrono::DateTime::from_timestamp_millis(r.timestamp_ms)
        .map(|d| d.to_rfc3339_opts(chrono::SecondsFormat::Millis, true));
    let mut o = serde_json::json!({
        "stream": stream,
        "shard": r.shard,
        "offset": r.offset,
        "timestamp": ts,
        "key": r.key,
    });
    match std::str::from_utf8(&r.data) {
        Ok(s) => o["data"] = s.into(),
        Err(_) => {
            o["data_b64"] = base64::engine::general_purpose::STANDARD
                .encode(&r.data)
                .into()
        }
    }
    o
}

pub async fn run(a: ConsumeArgs) -> Result<()> {
    let client = Arc::new(a.tls.cluster(&a.core)?.with_zone(a.zone.clone()));
    if a.group.is_some() {
        return run_group(&client, &a).await;
    }
    let info = client.describe(&a.stream).await?;
    // The whole stream: parents before children across reshards.
    let mut lineage = None;
    let first: Vec<(u32, Start)> = match a.shard {
        Some(s) => {
            if !info.shards.iter().any(|sh| sh.id == s) {
                bail!(
                    "stream {} has no shard {s} (shards: {})",
                    a.stream,
                    info.shards
                        .iter()
                        .map(|sh| sh.id.to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                );
            }
            vec![(s, a.from)]
        }
        None => {
            if matches!(a.from, Start::Offset(_)) && info.shards.len() > 1 {
                bail!(
                    "--from offset:N needs --shard ID: offsets are per shard and {} has {} shards",
                    a.stream,
                    info.shards.len()
                );
            }
            lineage
                .insert(strata_client::lineage::Lineage::new(&info, a.from))
                .ready()
        }
    };
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<ConsumedRecord>>(64);
    let mut tasks: tokio::task::JoinSet<Result<(u32, bool)>> = tokio::task::JoinSet::new();
    let spawn = |tasks: &mut tokio::task::JoinSet<_>, shard: u32, start: Start| {
        let (client, tx, stream) = (client.clone(), tx.clone(), a.stream.clone());
        let (follow, push) = (a.follow, a.push);
        tasks.spawn(async move {
            let ended = read_shard(&client, &stream, shard, start, follow, push, tx).await?;
            Ok((shard, ended))
        });
    };
    for (shard, start) in first {
        spawn(&mut tasks, shard, start);
    }
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let mut printed = 0u64;
    let mut print = |recs: Vec<ConsumedRecord>, out: &mut std::io::BufWriter<_>| -> Result<bool> {
        for r in recs {
            if a.limit.is_some_and(|l| printed >= l) {
                return Ok(false);
            }
            print_record(out, &a, &r)?;
            printed += 1;
        }
        if a.follow {
            out.flush()?;
        }
        Ok(a.limit.is_none_or(|l| printed < l))
    };
    'outer: loop {
        if tasks.is_empty() {
            // Every shard is done: print what they sent last.
            while let Ok(recs) = rx.try_recv() {
                if !print(recs, &mut out)? {
                    break;
                }
            }
            break;
        }
        tokio::select! {
            Some(recs) = rx.recv() => {
                if !print(recs, &mut out)? {
                    break 'outer;
                }
            }
            Some(done) = tasks.join_next() => {
                let (shard, ended) = done.context("consumer task panicked")??;
                let Some(lineage) = lineage.as_mut().filter(|_| ended) else {
                    continue;
                };
                // A closed shard read to its end: its children come next.
                lineage.finished(shard);
                lineage.update(&client.describe(&a.stream).await?);
                for (child, start) in lineage.ready() {
                    spawn(&mut tasks, child, start);
                }
            }
        }
    }
    out.flush()?;
    tasks.abort_all();
    Ok(())
}

/// Reads one shard from `start` into `tx`: to its end as of now, or with
/// `follow` on and on. Returns whether the shard ended (closed by a
/// reshard and read to its end).
async fn read_shard(
    client: &strata_client::cluster::Cluster,
    stream: &str,
    shard: u32,
    start: Start,
    follow: bool,
    push: bool,
    tx: tokio::sync::mpsc::Sender<Vec<ConsumedRecord>>,
) -> Result<bool> {
    let seek = |start: Start| async move {
        client
            .to_reader(stream, shard, |c| async move {
                api::seek(&c, stream, shard, start).await
            })
            .await
    };
    let mut offset = seek(start)
        .await
        .with_context(|| format!("seeking shard {shard}"))?;
    if push {
        return push_shard(client, stream, shard, offset, tx).await;
    }
    // Without --follow, read up to the end as of now.
    let end = seek(Start::Latest).await?;
    loop {
        let wait = if follow {
            Duration::from_secs(10)
        } else {
            Duration::ZERO
        };
        let f = client
            .to_reader(stream, shard, |c| async move {
                api::fetch(&c, stream, shard, offset, 5000, wait).await
            })
            .await?;
        offset = f.next_offset;
        let mut recs = f.records;
        if !follow {
            recs.retain(|r| r.offset < end);
        }
        if !recs.is_empty() && tx.send(recs).await.is_err() {
            return Ok(false);
        }
        if f.end_of_shard {
            return Ok(true);
        }
        if !follow && offset >= end {
            return Ok(false);
        }
    }
}
