//! `strata produce`: one record from the command line, one per stdin line, or
//! synthetic records (`--generate`) with a progress bar and the achieved rate.
//!
//! Batches are the unit: records are grouped into batches and each batch is
//! acknowledged once the edge made it durable. Per-key order holds because
//! every key is sent by one lane, and a lane waits for each batch's ack before
//! sending its next batch.

use super::TlsArgs;
use anyhow::{bail, Context, Result};
use bytes::Bytes;
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use std::fmt::Write as _;
use std::io::BufRead;
use std::io::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;
use strata_client::api;
use strata_client::Client;
use strata_schema::batch::{Builder, NewRecord};

#[derive(Args, Debug)]
pub struct ProduceArgs {
    /// Stream to write to.
    pub stream: String,
    /// The record's value; without it, one record per stdin line.
    pub value: Option<String>,
    /// Edge agent address (QUIC).
    #[arg(long, default_value = super::DEFAULT_EDGE)]
    pub edge: SocketAddr,
    /// Partition key (picks the shard); default: none (records spread over shards).
    #[arg(long)]
    pub key: Option<String>,
    /// Split each stdin line at the first SEP into partition key and value.
    #[arg(long, conflicts_with = "key")]
    pub key_sep: Option<String>,
    /// Produce N synthetic records instead of reading input.
    #[arg(long, conflicts_with_all = ["value", "key_sep"])]
    pub generate: Option<u64>,
    /// Size of each synthetic record's value, bytes.
    #[arg(long, default_value_t = 100, requires = "generate")]
    pub size: usize,
    /// Number of distinct keys for synthetic records.
    #[arg(long, default_value_t = 100, requires = "generate", value_parser = clap::value_parser!(u64).range(1..))]
    pub keys: u64,
    /// Records per batch.
    #[arg(long, default_value_t = 2000, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    pub batch_records: u64,
    /// Batches in flight (synthetic records only; each lane owns a share of the keys).
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u64).range(1..=256))]
    pub lanes: u64,
    /// No progress bar.
    #[arg(long)]
    pub quiet: bool,
    #[command(flatten)]
    pub tls: TlsArgs,
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

pub async fn run(a: ProduceArgs) -> Result<()> {
    strata_schema::validate_stream_name(&a.stream)?;
    let client = Arc::new(a.tls.client(a.edge)?);
    if let Some(n) = a.generate {
        generate(&a, client.clone(), n).await?;
    } else if let Some(v) = &a.value {
        let mut b = Builder::default();
        b.push(&NewRecord {
            key: a.key.as_deref(),
            value: v.as_bytes(),
            timestamp_ms: now_ms(),
            headers: &[],
        });
        api::produce(&client, &a.stream, &b.finish()).await?;
        eprintln!("produced 1 record to {}", a.stream);
    } else {
        stdin_lines(&a, &client).await?;
    }
    client.close().await;
    Ok(())
}

async fn stdin_lines(a: &ProduceArgs, client: &Client) -> Result<()> {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<std::io::Result<String>>(10_000);
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines() {
            if tx.blocking_send(line).is_err() {
                break;
            }
        }
    });
    let mut b = Builder::default();
    let mut total = 0u64;
    let mut line_no = 0u64;
    loop {
        // Take what is available now (up to a batch), waiting only for the first line.
        let first = rx.recv().await;
        let mut lines = match first {
            Some(l) => vec![l],
            None => break,
        };
        while (lines.len() as u64) < a.batch_records {
            match rx.try_recv() {
                Ok(l) => lines.push(l),
                Err(_) => break,
            }
        }
        for line in lines {
            line_no += 1;
            let line = line.with_context(|| format!("reading stdin line {line_no}"))?;
            let (key, value) = match &a.key_sep {
                Some(sep) => match line.split_once(sep.as_str()) {
                    Some((k, v)) => (Some(k.to_string()), v.to_string()),
                    None => bail!("stdin line {line_no} has no key separator {sep:?}; nothing from this line on was sent"),
                },
                None => (a.key.clone(), line),
            };
            b.push(&NewRecord {
                key: key.as_deref(),
                value: value.as_bytes(),
                timestamp_ms: now_ms(),
                headers: &[],
            });
        }
        let n = b.len() as u64;
        api::produce(client, &a.stream, &b.finish())
            .await
            .with_context(|| format!("sending lines {}..={line_no}", line_no + 1 - n))?;
        total += n;
    }
    eprintln!("produced {total} record(s) to {}", a.stream);
    Ok(())
}

/// The synthetic value of record `i`, `"<key>:<i>:"` padded to `size`
/// bytes, written over `out`.
pub fn synthetic_value_into(out: &mut Vec<u8>, key: &str, i: u64, size: usize) {
    out.clear();
    write!(out, "{key}:{i}:").expect("writing to a Vec");
    out.resize(size.max(out.len()), b'x');
}

async fn generate(a: &ProduceArgs, client: Arc<Client>, n: u64) -> Result<()> {
    let pb = if a.quiet {
        ProgressBar::hidden()
    } else {
        ProgressBar::new(n)
    };
    pb.set_style(
        ProgressStyle::with_template("{spinner} [{elapsed_precise}] {bar:40} {human_pos}/{human_len} records  {per_sec}  eta {eta}")
            .expect("valid template"),
    );
    let lanes = a.lanes.min(a.keys);
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for lane in 0..lanes {
        let client = client.clone();
        let stream = a.stream.clone();
        let (size, keys, batch_records, pb) = (a.size, a.keys, a.batch_records, pb.clone());
        tasks.spawn(async move {
            // Record i has key i % keys; this lane sends keys k with k % lanes == lane.
            let mut b = Builder::with_capacity((batch_records as usize) * (size + 64));
            let mut i = lane;
            let mut sent = 0u64;
            // One key and one value buffer, reused; one timestamp per batch.
            let (mut key, mut value) = (String::new(), Vec::with_capacity(size));
            let mut timestamp_ms = now_ms();
            while i < n {
                key.clear();
                write!(key, "key-{}", i % keys).expect("writing to a String");
                synthetic_value_into(&mut value, &key, i, size);
                if b.is_empty() {
                    timestamp_ms = now_ms();
                }
                b.push(&NewRecord {
                    key: Some(&key),
                    value: &value,
                    timestamp_ms,
                    headers: &[],
                });
                i += lanes;
                if b.len() as u64 >= batch_records || i >= n {
                    let count = b.len() as u64;
                    let batch: Bytes = b.finish();
                    api::produce(&client, &stream, &batch).await?;
                    sent += count;
                    pb.inc(count);
                }
            }
            Ok::<u64, anyhow::Error>(sent)
        });
    }
    let mut sent = 0;
    while let Some(r) = tasks.join_next().await {
        sent += r.context("producer lane panicked")??;
    }
    pb.finish_and_clear();
    let secs = started.elapsed().as_secs_f64();
    let mb = (sent as f64) * (a.size as f64) / 1e6;
    println!(
        "produced {sent} records ({mb:.1} MB of values) to {} in {secs:.2} s: {:.0} records/s, {:.1} MB/s (acked after edge fsync)",
        a.stream,
        sent as f64 / secs,
        mb / secs
    );
    Ok(())
}
