//! The run driver: starts a fresh core and edge per run and takes it
//! through ingest, tiering, compression, the local replay, the restart that
//! purges the local log, and the replay from the object store, putting every
//! figure into the [`TierReport`].

use super::core_view::{
    dir_bytes, free_tcp_port, parse_tiered_line, prom_sum, read_log, scrape, TieredLine,
};
use super::options::TierPlan;
use super::results::{mb, TierReport};
use super::workload::{now_ms, produce, replay, Produced};
use super::STREAM;
use crate::procfs;
use crate::report::si;
use anyhow::{bail, ensure, Context, Result};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use strata_client::{api, Client};
use strata_tests::Pipeline;

/// Local retention while tiering and the local replay run: nothing is purged.
const KEEP_LOCAL_MS: u64 = 7 * 24 * 3600 * 1000;
/// How often `describe` is polled while tiering runs.
const POLL: Duration = Duration::from_millis(20);
/// The CPU window opens this long before the configured seal time.
const METER_LEAD: Duration = Duration::from_millis(250);
/// Longest wait, once every shard has purged, for its log files to shrink.
const FREED_MAX: Duration = Duration::from_secs(5);

struct Run<'a> {
    plan: &'a TierPlan,
    p: Pipeline,
    core: Arc<Client>,
    metrics_port: u16,
}

impl Run<'_> {
    fn core_pid(&self) -> Result<u32> {
        let needle = self.p.dir.path().join("core.toml").display().to_string();
        procfs::find_pid(&needle).with_context(|| format!("no process runs with {needle}"))
    }

    fn shard_dir(&self, shard: u32) -> PathBuf {
        self.p
            .dir
            .path()
            .join(format!("core/shards/{STREAM}/{shard:05}"))
    }

    async fn describe(&self) -> Result<api::StreamInfo> {
        api::describe_stream(&self.core, STREAM)
            .await
            .context("describing the stream")
    }

    /// Polls `describe` every [`POLL`] until `done` holds; also returns
    /// how long each `describe` took, microseconds.
    async fn poll_until(
        &self,
        what: &str,
        deadline: Instant,
        done: impl Fn(&api::StreamInfo) -> bool,
    ) -> Result<(api::StreamInfo, Instant, Vec<u64>)> {
        let mut took = Vec::new();
        loop {
            let t = Instant::now();
            let d = self.describe().await?;
            took.push(t.elapsed().as_micros() as u64);
            if done(&d) {
                return Ok((d, Instant::now(), took));
            }
            if Instant::now() > deadline {
                bail!("timed out waiting for {what}: {:?}", shard_view(&d));
            }
            tokio::time::sleep(POLL).await;
        }
    }

    fn no_purge_yet(&self) -> bool {
        (0..self.plan.shards).all(|s| !self.shard_dir(s).join("purged.json").exists())
    }
}

/// (id, next_offset, tiered_offset) per shard, for error messages.
fn shard_view(d: &api::StreamInfo) -> Vec<(u32, u64, u64)> {
    d.shards
        .iter()
        .map(|s| (s.id, s.next_offset, s.tiered_offset))
        .collect()
}

/// Runs the three measurements `plan.runs` times, appending to `rep` as it
/// goes (so a late failure keeps the earlier figures). A failed run is noted
/// and the others still run; the first error is returned at the end. Each
/// run's core log is copied to `dir/tier-core-<run>.log`.
pub async fn measure(plan: &TierPlan, dir: &Path, rep: &mut TierReport) -> Result<()> {
    let mut outcome = Ok(());
    for run in 1..=plan.runs {
        rep.run = run;
        if plan.runs > 1 {
            eprintln!("   run {run}/{}", plan.runs);
        }
        if let Err(e) = measure_once(plan, dir, rep).await {
            eprintln!("   run {run} failed: {e:#}");
            rep.note(format!("failed: {e:#}"));
            if outcome.is_ok() {
                outcome = Err(e.context(format!("tiering run {run}")));
            }
        }
    }
    outcome
}

async fn measure_once(plan: &TierPlan, dir: &Path, rep: &mut TierReport) -> Result<()> {
    let metrics_port = free_tcp_port()?;
    let core_extra = format!(
        "metrics_addr = \"127.0.0.1:{metrics_port}\"\nsegment_age_max_ms = {}\nlocal_retention_ms = {KEEP_LOCAL_MS}\n",
        plan.seal_after.as_millis()
    );
    let p = Pipeline::start_with("", &core_extra)
        .await
        .context("starting strata-core and strata-edge")?;
    let core = Arc::new(p.client(p.core_addr));
    let mut run = Run {
        plan,
        p,
        core,
        metrics_port,
    };
    let r = phases(&mut run, rep).await;
    let log_path = run.p.core.log.clone();
    let _ = std::fs::copy(&log_path, dir.join(format!("tier-core-{}.log", rep.run)));
    let log = read_log(&log_path);
    let mut odd: Vec<String> = Vec::new();
    for l in log
        .lines()
        .filter(|l| l.contains(" WARN ") || l.contains(" ERROR "))
    {
        let l: String = l.chars().take(400).collect();
        if odd.len() < 10 && !odd.contains(&l) {
            odd.push(l);
        }
    }
    for l in odd {
        rep.note(format!("core log: {l}"));
    }
    r
}

async fn phases(run: &mut Run<'_>, rep: &mut TierReport) -> Result<()> {
    let plan = run.plan;
    api::create_stream(&run.core, STREAM, plan.shards, 1)
        .await
        .context("creating the stream")?;

    // -- ingest: produce and wait until the core has committed everything.
    eprintln!(
        "   producing {} sensor readings ({} devices, {} shards)...",
        plan.records, plan.devices, plan.shards
    );
    let edge = Arc::new(run.p.client(run.p.edge_addr));
    let started = Instant::now();
    let seed = plan.seed.wrapping_add(u64::from(rep.run) - 1);
    let prod = produce(edge.clone(), plan, seed).await?;
    edge.close().await;
    let (d, committed_at, _) = run
        .poll_until(
            "every record to be committed",
            Instant::now() + plan.phase_max,
            |d| d.shards.iter().map(|s| s.next_offset).sum::<u64>() >= prod.records,
        )
        .await?;
    let commit_secs = (committed_at - started).as_secs_f64();
    rep.put("ingest", "records", prod.records as f64, "records");
    rep.put("ingest", "json_bytes", prod.json_bytes as f64, "B");
    rep.put("ingest", "key_bytes", prod.key_bytes as f64, "B");
    rep.put(
        "ingest",
        "json_bytes_per_record",
        prod.json_bytes as f64 / prod.records as f64,
        "B",
    );
    rep.put("ingest", "produce_secs", prod.secs, "s");
    rep.put("ingest", "committed_secs", commit_secs, "s");
    rep.put(
        "ingest",
        "committed_records_per_s",
        prod.records as f64 / commit_secs,
        "records/s",
    );
    rep.put(
        "ingest",
        "producer_retries",
        prod.retries as f64,
        "requests",
    );
    eprintln!(
        "   committed {} records in {:.1} s ({}/s)",
        prod.records,
        commit_secs,
        si(prod.records as f64 / commit_secs)
    );
    let ingest_ms = now_ms() - prod.first_ts_ms;
    if d.shards.iter().any(|s| s.tiered_offset > 0) {
        rep.note(format!(
            "tiering started before every record was committed ({} ms after the first record, \
             seal age {} ms): it overlapped ingestion, so its time and CPU include ingestion; \
             rerun with a larger --seal-after-secs",
            ingest_ms,
            plan.seal_after.as_millis()
        ));
    }

    // -- tiering: wait for the seal time, then poll until the backlog is 0.
    // The core counts the age from when it applied the first entry, a few
    // ms after the first record was stamped here.
    let pid = run.core_pid()?;
    let seal_at_ms = prod.first_ts_ms + plan.seal_after.as_millis() as i64;
    let idle0 = (Instant::now(), procfs::read_proc(pid)?.cpu_s);
    let lead_until = seal_at_ms - METER_LEAD.as_millis() as i64;
    if lead_until > now_ms() {
        eprintln!(
            "   waiting {:.1} s for the records to reach the seal age...",
            (lead_until - now_ms()) as f64 / 1000.0
        );
    }
    // The seal time is fixed by the configuration; until then `describe`
    // is polled as during tiering, as a baseline for its latency.
    let mut idle_took = Vec::new();
    while now_ms() < lead_until {
        let t = Instant::now();
        run.describe().await?;
        idle_took.push(t.elapsed().as_micros() as u64);
        tokio::time::sleep(POLL.min(Duration::from_millis((lead_until - now_ms()).max(0) as u64)))
            .await;
    }
    let (t1, cpu1, busy1) = (
        Instant::now(),
        procfs::read_proc(pid)?.cpu_s,
        procfs::machine_busy_s()?,
    );
    let bench1 = procfs::read_proc(std::process::id())?.cpu_s;
    if (t1 - idle0.0).as_secs_f64() >= 1.0 {
        rep.put(
            "tiering",
            "core_idle_cores_before",
            (cpu1 - idle0.1) / (t1 - idle0.0).as_secs_f64(),
            "cores",
        );
    }
    let records = prod.records;
    let (d, t2, took) = run
        .poll_until("the tiering backlog to drain", t1 + plan.phase_max, |d| {
            d.shards.iter().map(|s| s.next_offset).sum::<u64>() == records
                && d.shards.iter().all(|s| s.tiered_offset == s.next_offset)
        })
        .await?;
    let done_ms = now_ms();
    let cpu2 = procfs::read_proc(pid)?.cpu_s;
    let busy2 = procfs::machine_busy_s()?;
    let bench2 = procfs::read_proc(std::process::id())?.cpu_s;
    let window = (t2 - t1).as_secs_f64();
    let core_cpu = cpu2 - cpu1;

    let log = read_log(&run.p.core.log);
    let objs: Vec<TieredLine> = log.lines().filter_map(parse_tiered_line).collect();
    ensure!(
        !objs.is_empty(),
        "the backlog drained but the core logged no `tiered a segment` line"
    );
    rep.objects
        .extend(objs.iter().map(|o| (rep.run, o.clone())));
    let first_start = objs
        .iter()
        .map(|o| o.at_ms - o.ms as i64)
        .min()
        .unwrap_or(seal_at_ms);
    let last_end = objs.iter().map(|o| o.at_ms).max().unwrap_or(done_ms);
    let log_secs = ((last_end - first_start) as f64 / 1000.0).max(1e-3);
    let payload: u64 = objs.iter().map(|o| o.payload_bytes).sum();
    let logged_records: u64 = objs.iter().map(|o| o.records).sum();
    let logged_object_bytes: u64 = objs.iter().map(|o| o.object_bytes).sum();
    let busy_ms: u64 = objs.iter().map(|o| o.ms).sum();
    let parquet: u64 = d.shards.iter().map(|s| s.tier_bytes).sum();
    let objects: u64 = d.shards.iter().map(|s| s.tier_objects).sum();
    rep.put("tiering", "objects", objects as f64, "objects");
    rep.put("tiering", "records", logged_records as f64, "records");
    rep.put("tiering", "payload_bytes", payload as f64, "B");
    rep.put("tiering", "secs", log_secs, "s");
    rep.put("tiering", "object_busy_secs", busy_ms as f64 / 1000.0, "s");
    rep.put(
        "tiering",
        "secs_polled_from_seal_time",
        (done_ms - seal_at_ms) as f64 / 1000.0,
        "s",
    );
    rep.put(
        "tiering",
        "start_after_seal_time_secs",
        (first_start - seal_at_ms) as f64 / 1000.0,
        "s",
    );
    rep.put(
        "tiering",
        "payload_mb_per_s",
        mb(payload as f64) / log_secs,
        "MB/s",
    );
    rep.put(
        "tiering",
        "records_per_s",
        logged_records as f64 / log_secs,
        "records/s",
    );
    rep.put("tiering", "core_cpu_secs", core_cpu, "s");
    for (mut took, p50, max) in [
        (idle_took, "describe_idle_p50_ms", "describe_idle_max_ms"),
        (took, "describe_p50_ms", "describe_max_ms"),
    ] {
        took.sort_unstable();
        if let Some(&m) = took.last() {
            rep.put("tiering", max, m as f64 / 1000.0, "ms");
            rep.put("tiering", p50, took[took.len() / 2] as f64 / 1000.0, "ms");
        }
    }
    rep.put("tiering", "cpu_window_secs", window, "s");
    rep.put("tiering", "core_cores", core_cpu / window, "cores");
    rep.put(
        "tiering",
        "other_cores",
        ((busy2 - busy1) - core_cpu - (bench2 - bench1)).max(0.0) / window,
        "cores",
    );
    if core_cpu > 0.0 {
        rep.put(
            "tiering",
            "payload_mb_per_core_s",
            mb(payload as f64) / core_cpu,
            "MB/core-s",
        );
        rep.put(
            "tiering",
            "records_per_core_s",
            logged_records as f64 / core_cpu,
            "records/core-s",
        );
    }
    let mut per_obj: Vec<f64> = objs
        .iter()
        .filter(|o| o.ms > 0)
        .map(|o| mb(o.payload_bytes as f64) / (o.ms as f64 / 1000.0))
        .collect();
    per_obj.sort_by(f64::total_cmp);
    if let Some(&m) = per_obj.get(per_obj.len() / 2) {
        rep.put("tiering", "object_payload_mb_per_s_median", m, "MB/s");
    }
    eprintln!(
        "   tiered {} records ({:.1} MB payload) into {} objects in {:.2} s: {:.1} MB/s, core CPU {:.2} s",
        logged_records,
        mb(payload as f64),
        objects,
        log_secs,
        mb(payload as f64) / log_secs,
        core_cpu
    );
    if logged_records != records {
        rep.note(format!(
            "the core logged {logged_records} tiered records, {records} were produced"
        ));
    }

    // -- compression.
    let archive = run.p.dir.path().join("core/archive");
    let files = dir_bytes(&archive.join(format!("stream={STREAM}")), ".parquet");
    rep.put("compression", "parquet_bytes", parquet as f64, "B");
    rep.put(
        "compression",
        "parquet_bytes_per_record",
        parquet as f64 / records as f64,
        "B",
    );
    rep.put(
        "compression",
        "payload_over_parquet",
        payload as f64 / parquet.max(1) as f64,
        "x",
    );
    rep.put(
        "compression",
        "json_over_parquet",
        prod.json_bytes as f64 / parquet.max(1) as f64,
        "x",
    );
    if logged_object_bytes != parquet || files != parquet {
        rep.note(format!(
            "Parquet bytes disagree: describe says {parquet}, the log {logged_object_bytes}, \
             the files under {} {files}",
            archive.display()
        ));
    }
    if payload != prod.json_bytes + prod.key_bytes {
        rep.note(format!(
            "the core counted {payload} payload bytes; the producer sent {} of JSON and {} of keys",
            prod.json_bytes, prod.key_bytes
        ));
    }
    match scrape(run.metrics_port).await {
        Ok(m) => {
            for (name, want) in [
                ("strata_core_tier_payload_bytes_total", payload),
                ("strata_core_tier_object_bytes_total", logged_object_bytes),
                ("strata_core_tier_records_total", logged_records),
            ] {
                let got = prom_sum(&m, name);
                if got != Some(want as f64) {
                    rep.note(format!(
                        "metric {name} is {got:?}; the log lines add up to {want}"
                    ));
                }
            }
        }
        Err(e) => rep
            .notes
            .push(format!("could not read the core's metrics: {e:#}")),
    }

    // -- replay from the local log (tiered, not purged).
    let ends: Vec<(u32, u64)> = d.shards.iter().map(|s| (s.id, s.next_offset)).collect();
    ensure!(
        run.no_purge_yet(),
        "a shard was purged before the local replay"
    );
    eprintln!("   replaying from the local log...");
    replay_phase(run, rep, "replay_local", &ends, &prod, pid).await?;
    ensure!(
        run.no_purge_yet(),
        "a shard was purged during the local replay: it is not a local-only figure"
    );

    // -- restart with local_retention_ms = 1; wait for every shard's purge.
    let shard_log_bytes = |run: &Run<'_>| {
        (0..plan.shards)
            .map(|s| dir_bytes(&run.shard_dir(s).join("log"), ".log"))
            .sum::<u64>()
    };
    let log_before = shard_log_bytes(run);
    rep.put("purge", "local_log_bytes_before", log_before as f64, "B");
    let cfg_path = run.p.dir.path().join("core.toml");
    let cfg = std::fs::read_to_string(&cfg_path)?;
    let keep = format!("local_retention_ms = {KEEP_LOCAL_MS}");
    ensure!(cfg.contains(&keep), "core.toml has no `{keep}` line");
    let stop_started = Instant::now();
    if !run.p.core.stop() {
        rep.note("the core did not exit cleanly (0) on SIGTERM before the restart".into());
    }
    std::fs::write(&cfg_path, cfg.replace(&keep, "local_retention_ms = 1"))?;
    eprintln!("   restarting the core with local_retention_ms = 1...");
    run.p.restart_core().await?;
    let restarted = Instant::now();
    rep.put(
        "purge",
        "restart_secs",
        (restarted - stop_started).as_secs_f64(),
        "s",
    );
    let deadline = restarted + plan.phase_max;
    loop {
        if (0..plan.shards).all(|s| run.shard_dir(s).join("purged.json").exists()) {
            break;
        }
        if Instant::now() > deadline {
            bail!(
                "no purged.json in every shard directory within {:?} of the restart",
                plan.phase_max
            );
        }
        tokio::time::sleep(POLL).await;
    }
    let purged_at = Instant::now();
    rep.put(
        "purge",
        "purged_secs_after_restart",
        (purged_at - restarted).as_secs_f64(),
        "s",
    );
    // purged.json is written before segment files are deleted: give the
    // deletion up to FREED_MAX to show on disk.
    let mut after = shard_log_bytes(run);
    while after >= log_before && purged_at.elapsed() < FREED_MAX {
        tokio::time::sleep(POLL).await;
        after = shard_log_bytes(run);
    }
    rep.put("purge", "local_log_bytes_after", after as f64, "B");
    if after >= log_before {
        rep.note(format!(
            "the local purge freed no disk within {FREED_MAX:?}: the shard logs hold {after} bytes, \
             as before it (a purge deletes whole segment files only)"
        ));
    }
    let d = run.describe().await?;
    let after: Vec<(u32, u64)> = d.shards.iter().map(|s| (s.id, s.next_offset)).collect();
    if after != ends || d.shards.iter().any(|s| s.tiered_offset != s.next_offset) {
        rep.note(format!(
            "after the restart describe shows (shard, next, tiered) {:?}; before it {:?}",
            shard_view(&d),
            ends
        ));
    }
    let pid = run.core_pid()?;
    let before = scrape(run.metrics_port)
        .await
        .ok()
        .and_then(|m| prom_sum(&m, "strata_core_records_out_tier_total"))
        .unwrap_or(0.0);

    // -- replay from the object store.
    eprintln!("   replaying from the object store...");
    replay_phase(run, rep, "replay_tier", &ends, &prod, pid).await?;
    match scrape(run.metrics_port).await {
        Ok(m) => {
            let from_tier =
                prom_sum(&m, "strata_core_records_out_tier_total").unwrap_or(0.0) - before;
            rep.put(
                "replay_tier",
                "records_served_from_tier",
                from_tier,
                "records",
            );
            if from_tier < records as f64 {
                rep.note(format!(
                    "only {from_tier} of {records} replayed records came from the object store \
                     (strata_core_records_out_tier_total): the rest were still local"
                ));
            }
        }
        Err(e) => rep
            .notes
            .push(format!("could not read the core's metrics: {e:#}")),
    }
    if let (Some(t), Some(l)) = (
        rep.this_run("replay_tier", "records_per_s"),
        rep.this_run("replay_local", "records_per_s"),
    ) {
        rep.put("replay_tier", "over_local", t / l, "x");
    }
    Ok(())
}

async fn replay_phase(
    run: &Run<'_>,
    rep: &mut TierReport,
    phase: &'static str,
    ends: &[(u32, u64)],
    prod: &Produced,
    pid: u32,
) -> Result<()> {
    let (cpu0, bench0) = (
        procfs::read_proc(pid)?.cpu_s,
        procfs::read_proc(std::process::id())?.cpu_s,
    );
    let r = tokio::time::timeout(
        run.plan.phase_max,
        replay(&run.core, ends, run.plan.fetch_records),
    )
    .await
    .with_context(|| format!("{phase} took longer than {:?}", run.plan.phase_max))??;
    let core_cpu = procfs::read_proc(pid)?.cpu_s - cpu0;
    let bench_cpu = procfs::read_proc(std::process::id())?.cpu_s - bench0;
    ensure!(
        r.records == prod.records && r.checksum == prod.checksum,
        "{phase}: read {} records (checksum {:x}); {} were produced (checksum {:x})",
        r.records,
        r.checksum,
        prod.records,
        prod.checksum
    );
    let secs = r.secs.max(1e-6);
    rep.put(phase, "records", r.records as f64, "records");
    rep.put(phase, "secs", secs, "s");
    rep.put(phase, "records_per_s", r.records as f64 / secs, "records/s");
    rep.put(
        phase,
        "value_mb_per_s",
        mb(r.value_bytes as f64) / secs,
        "MB/s",
    );
    rep.put(phase, "fetches", r.fetches as f64, "requests");
    rep.put(
        phase,
        "fetch_p50_ms",
        r.fetch_us.value_at_quantile(0.5) as f64 / 1000.0,
        "ms",
    );
    rep.put(
        phase,
        "fetch_p99_ms",
        r.fetch_us.value_at_quantile(0.99) as f64 / 1000.0,
        "ms",
    );
    rep.put(phase, "core_cores", core_cpu / secs, "cores");
    rep.put(phase, "bench_cores", bench_cpu / secs, "cores");
    eprintln!(
        "   {phase}: {} records in {:.2} s ({}/s, {:.1} MB/s of values)",
        r.records,
        secs,
        si(r.records as f64 / secs),
        mb(r.value_bytes as f64) / secs
    );
    Ok(())
}
