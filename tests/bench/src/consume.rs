//! `strata-bench consume`: how records reach consumers, on one core and
//! edge (release binaries, one shard).
//!
//! - **Latency.** Producers send stamped records through the edge at a fixed
//!   rate. Three consumers read the same shard at once: a push subscription,
//!   a long poll (fetch waiting at the end for new records), and a plain
//!   poll (a fetch every `poll_ms`, as a Kinesis GetRecords loop does).
//!   Each records produce-to-receive latency (the producer and the
//!   consumers share this process's clock).
//! - **Fan-out.** With the shard pre-filled, N subscribers (each on its own
//!   QUIC connection) read it from the start at once, for N in
//!   `subscribers`. The same is done with N long-polling fetchers. Reported
//!   as aggregate and per-subscriber records/s.

use crate::load::{now_ns, read_stamp, template, write_stamp, LatencyRecorder, Ticker};
use anyhow::{bail, Context, Result};
use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::{Duration, Instant};
use strata_client::{api, Client};
use strata_schema::batch::{Builder, NewRecord};
use strata_tests::{wait_for, Pipeline};

#[derive(clap::Args, Debug)]
pub struct ConsumeOpts {
    /// Producer rate for the latency runs, records/s.
    #[arg(long, default_value_t = 10_000)]
    rate: u64,
    /// Measured window of the latency run, seconds (after 2 s of warm-up).
    #[arg(long, default_value_t = 10.0)]
    measure_secs: f64,
    /// Interval of the plain poll, milliseconds.
    #[arg(long, default_value_t = 100)]
    poll_ms: u64,
    /// Subscriber counts for the fan-out runs.
    #[arg(long, value_delimiter = ',', default_value = "1,4,16")]
    subscribers: Vec<usize>,
    /// Records in the shard for the fan-out runs.
    #[arg(long, default_value_t = 500_000)]
    fanout_records: u64,
    /// Record value size, bytes.
    #[arg(long, default_value_t = 100)]
    size: usize,
    /// Results directory [default: target/bench/consume-<UTC timestamp>].
    #[arg(long)]
    out: Option<PathBuf>,
    /// Do not build the release binaries first.
    #[arg(long)]
    pub no_build: bool,
}

pub async fn command(o: ConsumeOpts) -> Result<()> {
    let out = o.out.clone().unwrap_or_else(|| {
        PathBuf::from(format!(
            "target/bench/consume-{}",
            chrono::Utc::now().format("%Y%m%dT%H%M%SZ")
        ))
    });
    std::fs::create_dir_all(&out)?;
    let p = Pipeline::start("").await?;
    let mut md = String::new();
    writeln!(
        md,
        "# Consumers: push vs polling, fan-out\n\nOne strata-core and one strata-edge (release), one shard, {} B records, on this machine ({} cores).\n",
        o.size,
        std::thread::available_parallelism().map_or(0, |n| n.get())
    )?;
    latency(&p, &o, &mut md).await?;
    fanout(&p, &o, &mut md).await?;
    std::fs::write(out.join("results.md"), &md)?;
    println!("{md}");
    eprintln!("written to {}", out.join("results.md").display());
    Ok(())
}

/// How one consumer reads.
#[derive(Clone, Copy, Debug)]
enum Mode {
    Push,
    LongPoll,
    Poll(Duration),
}

impl Mode {
    fn label(self) -> String {
        match self {
            Mode::Push => "push subscription".into(),
            Mode::LongPoll => "long poll".into(),
            Mode::Poll(d) => format!("poll every {} ms", d.as_millis()),
        }
    }
}

/// Reads `stream`/0 from `offset` in `mode` until `stop`, handing each page
/// to `f`.
async fn read(
    c: &Client,
    stream: &str,
    mut offset: u64,
    mode: Mode,
    stop: &tokio::sync::watch::Receiver<bool>,
    mut f: impl FnMut(&[api::ConsumedRecord]),
) -> Result<()> {
    match mode {
        Mode::Push => {
            let mut sub = api::subscribe(c, stream, 0, offset, 5000).await?;
            let mut stop = stop.clone();
            loop {
                tokio::select! {
                    page = sub.next() => f(&page?.records),
                    _ = stop.wait_for(|s| *s) => return Ok(()),
                }
            }
        }
        Mode::LongPoll | Mode::Poll(_) => {
            let wait = match mode {
                Mode::LongPoll => Duration::from_secs(5),
                _ => Duration::ZERO,
            };
            while !*stop.borrow() {
                let page = api::fetch(c, stream, 0, offset, 5000, wait).await?;
                offset = page.next_offset;
                f(&page.records);
                if let Mode::Poll(every) = mode {
                    if page.records.is_empty() {
                        // The poll interval is the point of this mode.
                        tokio::time::sleep(every).await;
                    }
                }
            }
            Ok(())
        }
    }
}

async fn latency(p: &Pipeline, o: &ConsumeOpts, md: &mut String) -> Result<()> {
    let core = p.client(p.core_addr);
    api::create_stream(&core, "latency", 1, 1).await?;
    let modes = [
        Mode::Push,
        Mode::LongPoll,
        Mode::Poll(Duration::from_millis(o.poll_ms)),
    ];
    let warm = 2_000_000_000u64;
    // Readers keep (stamp, arrival) pairs; the window is known only once the
    // schedule starts, after one record crossed the whole path (below).
    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    let mut readers = tokio::task::JoinSet::new();
    let mut counters = Vec::new();
    for mode in modes {
        let (c, stop) = (p.client(p.core_addr), stop.clone());
        let seen = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        counters.push(seen.clone());
        readers.spawn(async move {
            let mut stamps = Vec::new();
            read(&c, "latency", 0, mode, &stop, |recs| {
                let now = now_ns();
                seen.fetch_add(recs.len() as u64, std::sync::atomic::Ordering::SeqCst);
                stamps.extend(
                    recs.iter()
                        .filter_map(|r| read_stamp(&r.data))
                        .map(|s| (s, now)),
                );
            })
            .await?;
            Ok::<_, anyhow::Error>((mode, stamps))
        });
    }
    // Start-up (the stream reaching the edge, connections, first
    // subscription frames) is not measured: one record crosses edge, core
    // and every reader before the schedule starts.
    let edge = std::sync::Arc::new(p.client(p.edge_addr));
    let tmpl = template(7, o.size);
    let mut first = Builder::default();
    first.push(&NewRecord {
        key: Some("k0"),
        value: &tmpl,
        timestamp_ms: 0,
        headers: &[],
    });
    api::produce(&edge, "latency", &first.finish()).await?;
    wait_for(
        "every reader to see a first record",
        Duration::from_secs(60),
        || {
            let done = counters
                .iter()
                .all(|c| c.load(std::sync::atomic::Ordering::SeqCst) >= 1);
            async move { Ok(done.then_some(())) }
        },
    )
    .await?;
    let start = now_ns() + 100_000_000;
    let window = (start + warm, start + warm + (o.measure_secs * 1e9) as u64);
    // The producer: one batch per 1 ms tick, sent in the background so a
    // slow acknowledgement does not delay the schedule.
    let mut ticker = Ticker::new(o.rate, start);
    let mut sends = tokio::task::JoinSet::new();
    let mut produced = 1u64;
    loop {
        let (due, n) = ticker.next_tick();
        if due >= window.1 {
            break;
        }
        let wait = due.saturating_sub(now_ns());
        tokio::time::sleep(Duration::from_nanos(wait)).await;
        if n == 0 {
            continue;
        }
        let mut b = Builder::default();
        let mut v = tmpl.clone();
        for i in 0..n {
            write_stamp(&mut v, now_ns());
            let key = format!("k{}", i % 64);
            b.push(&NewRecord {
                key: Some(&key),
                value: &v,
                timestamp_ms: 0,
                headers: &[],
            });
        }
        produced += n;
        let (edge, batch) = (edge.clone(), b.finish());
        sends.spawn(async move { api::produce(&edge, "latency", &batch).await });
        while let Some(r) = sends.try_join_next() {
            r??;
        }
    }
    while let Some(r) = sends.join_next().await {
        r??;
    }
    // Every consumer sees the last records, then they stop.
    wait_for(
        "the consumers to see every record",
        Duration::from_secs(60),
        || {
            let done = counters
                .iter()
                .all(|c| c.load(std::sync::atomic::Ordering::SeqCst) >= produced);
            async move { Ok(done.then_some(())) }
        },
    )
    .await?;
    let _ = stop_tx.send(true);
    let mut rows = Vec::new();
    while let Some(r) = readers.join_next().await {
        let (mode, stamps) = r??;
        let mut rec = LatencyRecorder::new(window);
        for (s, now) in stamps {
            rec.handle_record(s, now);
        }
        rows.push((mode, rec));
    }
    rows.sort_by_key(|(m, _)| m.label());
    writeln!(
        md,
        "## Produce-to-receive latency at {} records/s ({} s measured)\n\n| consumer | records | p50 ms | p99 ms | max ms |\n| --- | ---: | ---: | ---: | ---: |",
        o.rate, o.measure_secs
    )?;
    let push_p50 = rows
        .iter()
        .find(|(m, _)| matches!(m, Mode::Push))
        .map(|(_, r)| r.quantile_ms(0.5))
        .unwrap_or(0.0);
    for (m, r) in &rows {
        if r.hist.is_empty() {
            bail!("{} received no record in the window", m.label());
        }
        writeln!(
            md,
            "| {} | {} | {:.2} | {:.2} | {:.2} |",
            m.label(),
            r.hist.len(),
            r.quantile_ms(0.5),
            r.quantile_ms(0.99),
            r.quantile_ms(1.0)
        )?;
    }
    writeln!(
        md,
        "\nThe same records were produced once and read by all three at once. Push p50 ÷ long-poll p50 and ÷ poll p50: {}.\n",
        rows.iter()
            .filter(|(m, _)| !matches!(m, Mode::Push))
            .map(|(m, r)| format!("{:.2} ({})", push_p50 / r.quantile_ms(0.5), m.label()))
            .collect::<Vec<_>>()
            .join(", ")
    )?;
    Ok(())
}

async fn fanout(p: &Pipeline, o: &ConsumeOpts, md: &mut String) -> Result<()> {
    let core = p.client(p.core_addr);
    api::create_stream(&core, "fanout", 1, 1).await?;
    let edge = p.client(p.edge_addr);
    let tmpl = template(9, o.size);
    let mut sent = 0u64;
    while sent < o.fanout_records {
        let n = 2000.min(o.fanout_records - sent);
        let mut b = Builder::default();
        for i in 0..n {
            let key = format!("k{}", (sent + i) % 64);
            b.push(&NewRecord {
                key: Some(&key),
                value: &tmpl,
                timestamp_ms: 0,
                headers: &[],
            });
        }
        api::produce(&edge, "fanout", &b.finish()).await?;
        sent += n;
    }
    wait_for(
        "the core to hold the fan-out records",
        Duration::from_secs(300),
        || async {
            let d = api::describe_stream(&core, "fanout").await?;
            Ok((d.records() >= o.fanout_records).then_some(()))
        },
    )
    .await?;
    writeln!(
        md,
        "## Fan-out: N readers of one shard, {} records each\n\n| readers | mode | wall s | aggregate records/s | per reader records/s | push ÷ long poll (aggregate) |\n| ---: | --- | ---: | ---: | ---: | ---: |",
        o.fanout_records
    )?;
    for &n in &o.subscribers {
        let mut push_rate = 0.0;
        for mode in [Mode::Push, Mode::LongPoll] {
            let t0 = Instant::now();
            let mut tasks = tokio::task::JoinSet::new();
            for _ in 0..n {
                let c = p.client(p.core_addr);
                let total = o.fanout_records;
                tasks.spawn(async move {
                    let (stop_tx, stop) = tokio::sync::watch::channel(false);
                    let mut got = 0u64;
                    read(&c, "fanout", 0, mode, &stop, |recs| {
                        got += recs.len() as u64;
                        if got >= total {
                            let _ = stop_tx.send(true);
                        }
                    })
                    .await?;
                    c.close().await;
                    Ok::<_, anyhow::Error>(got)
                });
            }
            let mut total = 0;
            while let Some(r) = tasks.join_next().await {
                total += r.context("reader")??;
            }
            let secs = t0.elapsed().as_secs_f64();
            let agg = total as f64 / secs;
            if matches!(mode, Mode::Push) {
                push_rate = agg;
            }
            writeln!(
                md,
                "| {n} | {} | {secs:.2} | {:.0} | {:.0} | {} |",
                mode.label(),
                agg,
                agg / n as f64,
                if matches!(mode, Mode::LongPoll) {
                    format!("{:.2}", push_rate / agg)
                } else {
                    String::new()
                }
            )?;
        }
    }
    Ok(())
}
