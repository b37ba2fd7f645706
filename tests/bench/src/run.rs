//! The runner: which cases each system gets, in which order, and how one
//! throughput or latency run is timed. Every system goes through the same
//! two functions ([`throughput_run`], [`latency_run`]) via [`Target`].
//!
//! Order: per system, all throughput runs (repetitions outermost, sizes
//! inner), then the latency runs. Fixed rates above what the system just
//! showed it can sustain are skipped with the reason, since their latency
//! would only measure an ever-growing queue.

use crate::load::{now_ns, template, Load};
use crate::nats::{NatsSpec, NatsTarget};
use crate::plan::Plan;
use crate::stats::{Case, Results, System, Workload};
use crate::strata::{NotAvailable, StrataTarget};
use crate::target::{Meter, ProducerSpec, Progress, Target};
use anyhow::{bail, Context, Result};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// Runs every system of the plan, appending to `results`.
pub async fn run_plan(plan: &Plan, results: &mut Results) -> Result<()> {
    for &system in &plan.systems {
        eprintln!("== {}", system.label());
        let started = Instant::now();
        match system {
            System::StrataRf1 | System::StrataRf3 => {
                let nodes = if system == System::StrataRf1 { 1 } else { 3 };
                match StrataTarget::start(nodes, plan.shards).await {
                    Ok(mut t) => run_system(&mut t, system, plan, results).await?,
                    Err(e) => match e.downcast_ref::<NotAvailable>() {
                        Some(na) => skip_system(plan, system, &na.to_string(), results),
                        None => return Err(e.context("starting Strata")),
                    },
                }
            }
            _ => {
                let Some(bin) = &plan.nats_bin else {
                    skip_system(
                        plan,
                        system,
                        "nats-server not found (deploy/scripts/setup-bench.sh installs it)",
                        results,
                    );
                    continue;
                };
                let spec = NatsSpec {
                    bin: bin.clone(),
                    replicas: if matches!(system, System::NatsR3Default | System::NatsR3Always) {
                        3
                    } else {
                        1
                    },
                    sync_always: matches!(system, System::NatsR1Always | System::NatsR3Always),
                };
                let mut t = NatsTarget::start(spec, plan.window)
                    .await
                    .with_context(|| format!("starting {}", system.label()))?;
                run_system(&mut t, system, plan, results).await?;
            }
        }
        eprintln!(
            "   {} done in {:.0} s",
            system.label(),
            started.elapsed().as_secs_f64()
        );
    }
    Ok(())
}

fn skip_system(plan: &Plan, system: System, reason: &str, results: &mut Results) {
    eprintln!("   skipped: {reason}");
    let workloads = std::iter::once(Workload::Throughput)
        .chain(plan.loads().into_iter().map(Workload::Latency));
    for workload in workloads {
        for &size in &plan.sizes {
            let case = Case {
                system,
                workload,
                size,
            };
            results.skipped.insert(case, reason.to_string());
        }
    }
}

/// The throughput a fixed rate must not exceed to be worth measuring:
/// what reaches the consumer (Strata: committed in the core; NATS: acked).
fn capacity(results: &Results, system: System, size: usize) -> Option<f64> {
    let case = Case {
        system,
        workload: Workload::Throughput,
        size,
    };
    let metric = if system.is_nats() {
        "ack_rps"
    } else {
        "e2e_rps"
    };
    results.spread(case, metric).map(|s| s.median)
}

/// A fixed rate above this share of the system's throughput is not run: it
/// would measure a queue that grows for the whole window.
const RATE_OF_CAPACITY_MAX: f64 = 0.8;

/// An unpaced run whose window alone queues longer than this is not run:
/// its latency is known in advance and its tail would cost the time budget.
const MAX_LATENCY_QUEUE_S: f64 = 3.0;

fn skip_reason(plan: &Plan, results: &Results, case: Case) -> Option<String> {
    let Workload::Latency(load) = case.workload else {
        return None;
    };
    let cap = capacity(results, case.system, case.size)?;
    match load {
        Load::Rate(r) if r as f64 > RATE_OF_CAPACITY_MAX * cap => Some(format!(
            "not run: offered {} is above 80% of its measured throughput ({}/s)",
            load.label(),
            crate::report::si(cap)
        )),
        Load::Max if !plan.always_max_latency && plan.window as f64 / cap > MAX_LATENCY_QUEUE_S => {
            Some(format!(
                "not run: saturated at {}/s, so latency at max is about window / throughput = {:.1} s (Little's law)",
                crate::report::si(cap),
                plan.window as f64 / cap.max(1.0)
            ))
        }
        _ => None,
    }
}

async fn run_system<T: Target>(
    t: &mut T,
    system: System,
    plan: &Plan,
    results: &mut Results,
) -> Result<()> {
    let mut serial = 0u32;
    let mut name = |w: &str, size: usize, rep: u32| {
        serial += 1;
        format!("bench-{serial}-{w}-{size}-{rep}")
    };
    for rep in 0..plan.runs {
        for &size in &plan.sizes {
            let case = Case {
                system,
                workload: Workload::Throughput,
                size,
            };
            match throughput_run(t, plan, size, &name("tp", size, rep)).await {
                Ok(m) => {
                    log_run(plan, case, rep, &m);
                    results.push(case, rep, &m);
                }
                Err(e) => run_failed(results, case, rep, &e),
            }
        }
    }
    let mut cases = Vec::new();
    for load in plan.loads() {
        for &size in &plan.sizes {
            let case = Case {
                system,
                workload: Workload::Latency(load),
                size,
            };
            match skip_reason(plan, results, case) {
                Some(reason) => {
                    eprintln!("   {} {} B: {reason}", load.label(), size);
                    results.skipped.insert(case, reason);
                }
                None => cases.push((case, load)),
            }
        }
    }
    for rep in 0..plan.runs {
        for &(case, load) in &cases {
            let n = name(&format!("lat{}", load.key()), case.size, rep);
            let (m, note) = match latency_run(t, plan, case.size, load, &n).await {
                Ok(r) => r,
                Err(e) => {
                    run_failed(results, case, rep, &e);
                    continue;
                }
            };
            log_run(plan, case, rep, &m);
            if let Some(note) = note {
                results.notes.push(format!(
                    "{} {} {} B run {}: {note}",
                    system.label(),
                    load.label(),
                    case.size,
                    rep + 1
                ));
            }
            results.push(case, rep, &m);
        }
    }
    Ok(())
}

/// A failed run is reported and the benchmark goes on: one bad run on a
/// shared machine must not cost the other figures.
fn run_failed(results: &mut Results, case: Case, rep: u32, e: &anyhow::Error) {
    let what = format!(
        "{} {} {} B run {} failed: {e:#}",
        case.system.label(),
        case.workload.key(),
        case.size,
        rep + 1
    );
    eprintln!("   {what}");
    results.notes.push(what);
}

fn log_run(plan: &Plan, case: Case, rep: u32, m: &[(String, f64)]) {
    let get = |k: &str| m.iter().find(|(n, _)| n == k).map(|(_, v)| *v);
    let si = |k: &str| get(k).map_or_else(|| "-".into(), crate::report::si);
    let what = match case.workload {
        Workload::Throughput => match get("e2e_rps") {
            Some(_) => format!(
                "edge ack {}/s, committed in core {}/s",
                si("ack_rps"),
                si("e2e_rps")
            ),
            None => format!("ack {}/s", si("ack_rps")),
        },
        Workload::Latency(l) => format!(
            "{}: achieved {}/s, p50 {:.2} ms, p99 {:.2} ms, p99.9 {:.2} ms",
            l.label(),
            si("achieved_rps"),
            get("p50_ms").unwrap_or(f64::NAN),
            get("p99_ms").unwrap_or(f64::NAN),
            get("p999_ms").unwrap_or(f64::NAN)
        ),
    };
    eprintln!(
        "   {} {} B run {}/{}: {what}",
        case.workload.key(),
        case.size,
        rep + 1,
        plan.runs
    );
}

fn producer_spec(plan: &Plan, size: usize, load: Load, until: Instant) -> ProducerSpec {
    ProducerSpec {
        load,
        template: Arc::new(template(plan.seed ^ size as u64, size)),
        window: plan.window,
        lanes: plan.lanes,
        until,
    }
}

/// Polls until the far end has committed `target` records; returns when.
async fn wait_committed<T: Target>(
    t: &T,
    name: &str,
    target: u64,
    deadline: Instant,
) -> Result<Instant> {
    loop {
        let done = t.committed(name).await?.unwrap_or(u64::MAX);
        if done >= target {
            return Ok(Instant::now());
        }
        if Instant::now() > deadline {
            bail!("only {done} of {target} records of {name} were committed in time");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// An unpaced producer and no consumer. Metrics: `ack_rps` (acks inside
/// the window / window); for Strata also `e2e_rps` (records produced in the
/// window / time until the core committed the last of them), with CPU over
/// that whole time; for NATS, resources over the window.
pub async fn throughput_run<T: Target>(
    t: &mut T,
    plan: &Plan,
    size: usize,
    name: &str,
) -> Result<Vec<(String, f64)>> {
    t.create(name).await?;
    let spec = |until| producer_spec(plan, size, Load::Max, until);
    let mut m = Vec::new();
    let end = if t.committed(name).await?.is_some() {
        // Warm up, let the core catch up, then measure from an empty pipe
        // so the edge and the core handle exactly the measured records.
        let warm = Arc::new(Progress::new((0, 0)));
        t.spawn_producer(name, spec(Instant::now() + plan.warmup), warm.clone())
            .await??;
        let warm = warm.acked.load(Ordering::Relaxed);
        wait_committed(t, name, warm, Instant::now() + plan.drain_max).await?;
        let meter = Meter::start(t.processes())?;
        let t0 = Instant::now();
        let progress = Arc::new(Progress::new((0, 0)));
        let producer = t.spawn_producer(name, spec(t0 + plan.measure), progress.clone());
        tokio::time::sleep_until((t0 + plan.measure).into()).await;
        let in_window = progress.acked.load(Ordering::Relaxed);
        let end = producer.await??;
        let acked = progress.acked.load(Ordering::Relaxed);
        let t_commit =
            wait_committed(t, name, warm + acked, Instant::now() + plan.drain_max).await?;
        m.extend(meter.stop(acked)?);
        m.push((
            "ack_rps".into(),
            in_window as f64 / plan.measure.as_secs_f64(),
        ));
        m.push((
            "e2e_rps".into(),
            acked as f64 / (t_commit - t0).as_secs_f64(),
        ));
        m.push(("records".into(), acked as f64));
        m.push((
            "retries".into(),
            progress.retries.load(Ordering::Relaxed) as f64,
        ));
        end
    } else {
        let t0 = Instant::now() + plan.warmup;
        let t1 = t0 + plan.measure;
        let progress = Arc::new(Progress::new((0, 0)));
        let producer = t.spawn_producer(name, spec(t1), progress.clone());
        tokio::time::sleep_until(t0.into()).await;
        let a0 = progress.acked.load(Ordering::Relaxed);
        let meter = Meter::start(t.processes())?;
        tokio::time::sleep_until(t1.into()).await;
        let a1 = progress.acked.load(Ordering::Relaxed);
        m.extend(meter.stop(a1 - a0)?);
        let end = producer.await??;
        m.push((
            "ack_rps".into(),
            (a1 - a0) as f64 / plan.measure.as_secs_f64(),
        ));
        m.push(("records".into(), (a1 - a0) as f64));
        m.push(("abandoned".into(), end.abandoned as f64));
        end
    };
    t.finish_run(name, end).await?;
    Ok(m)
}

/// A producer at `load` and a consumer reading from the stream's start.
/// Latency is measured for records stamped inside the window (warm-up
/// excluded); CPU over the window, normalised by the records acked in it.
/// Returns a note when the consumer had not seen everything by the deadline
/// (then the percentiles miss the slowest records: lower bounds).
pub async fn latency_run<T: Target>(
    t: &mut T,
    plan: &Plan,
    size: usize,
    load: Load,
    name: &str,
) -> Result<(Vec<(String, f64)>, Option<String>)> {
    t.create(name).await?;
    let base = Instant::now();
    let base_ns = now_ns();
    let t0 = base + plan.warmup;
    let t1 = t0 + plan.measure;
    let ns = |i: Instant| base_ns + (i - base).as_nanos() as u64;
    let consumed = Arc::new(AtomicU64::new(0));
    let (done_tx, done_rx) = watch::channel(false);
    let consumer = t.spawn_consumer(name, (ns(t0), ns(t1)), consumed.clone(), done_rx);
    let progress = Arc::new(Progress::new((ns(t0), ns(t1))));
    let producer = t.spawn_producer(name, producer_spec(plan, size, load, t1), progress.clone());
    tokio::time::sleep_until(t0.into()).await;
    let a0 = progress.acked.load(Ordering::Relaxed);
    let meter = Meter::start(t.processes())?;
    tokio::time::sleep_until(t1.into()).await;
    let a1 = progress.acked.load(Ordering::Relaxed);
    let mut m = meter.stop(a1 - a0)?;
    let achieved = (a1 - a0) as f64 / plan.measure.as_secs_f64();
    if let Some(c1) = t.committed(name).await? {
        // How far the far end trails the acks, as time at the achieved rate:
        // tells core lag from consumer lag.
        let lag = progress.acked.load(Ordering::Relaxed).saturating_sub(c1);
        m.push((
            "commit_lag_ms".into(),
            lag as f64 / achieved.max(1.0) * 1000.0,
        ));
    }
    let end = producer.await??;
    let acked = progress.acked.load(Ordering::Relaxed);
    let deadline = Instant::now() + plan.consume_wait_max;
    while consumed.load(Ordering::Relaxed) < acked && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let seen = consumed.load(Ordering::Relaxed);
    let _ = done_tx.send(true);
    let rec = consumer.await.context("consumer panicked")??;
    let note = (seen < acked).then(|| {
        format!(
            "consumer saw {seen} of {acked} acked records within {:?}; percentiles are lower bounds",
            plan.consume_wait_max
        )
    });
    m.push((
        "achieved_rps".into(),
        (a1 - a0) as f64 / plan.measure.as_secs_f64(),
    ));
    m.push(("samples".into(), rec.hist.len() as f64));
    m.push(("unconsumed".into(), acked.saturating_sub(seen) as f64));
    if !rec.hist.is_empty() {
        m.push(("p50_ms".into(), rec.quantile_ms(0.5)));
        m.push(("p99_ms".into(), rec.quantile_ms(0.99)));
        m.push(("p999_ms".into(), rec.quantile_ms(0.999)));
        m.push(("max_ms".into(), rec.hist.max() as f64 / 1000.0));
    }
    {
        let acks = progress.ack_latency.lock().expect("ack latency lock");
        if !acks.hist.is_empty() {
            m.push(("ack_p50_ms".into(), acks.quantile_ms(0.5)));
            m.push(("ack_p99_ms".into(), acks.quantile_ms(0.99)));
            m.push(("ack_p999_ms".into(), acks.quantile_ms(0.999)));
        }
    }
    t.finish_run(name, end).await?;
    Ok((m, note))
}
