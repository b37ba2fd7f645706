//! `strata-bench profile`: where the time goes in Strata, at peak or at a
//! fixed rate. Runs the producer against a fresh pipeline and, after a
//! warm-up, samples strata-edge, strata-core and this process (the producer)
//! with `perf record -e cpu-clock` (a software clock: hardware counters are
//! often missing in VMs), counts context switches and the syscalls that
//! matter (fsyncs, UDP sends and receives) per process with `perf stat`, and
//! reads CPU per thread from /proc. Writes:
//!
//! - `summary.txt`: rates, per-process syscalls per second and per record,
//!   CPU per thread;
//! - `perf-by-dso.txt`, `perf-by-symbol.txt`: flat profiles by thread
//!   (shares of all samples, so processes compare);
//! - `perf-stat-<process>.txt`, `perf.data`.

use crate::load::{template, Load};
use crate::strata::StrataTarget;
use crate::target::{ProducerSpec, Progress, Target};
use anyhow::{bail, Context, Result};
use clap::Args;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Args, Debug)]
pub struct ProfileOpts {
    /// Results directory [default: target/bench/profile-<UTC timestamp>].
    #[arg(long)]
    out: Option<PathBuf>,
    /// Record value size, bytes.
    #[arg(long, default_value_t = 100)]
    size: usize,
    /// Offered records/s; default: unpaced (peak).
    #[arg(long)]
    rate: Option<u64>,
    /// Seconds sampled (after 1 s of warm-up).
    #[arg(long, default_value_t = 8.0)]
    secs: f64,
    /// Samples per second per CPU.
    #[arg(long, default_value_t = 499)]
    freq: u32,
    #[arg(long, default_value_t = 4096)]
    window: usize,
    #[arg(long, default_value_t = 8)]
    lanes: usize,
    #[arg(long, default_value_t = 1)]
    shards: u32,
    /// Do not run `cargo build --release` for strata-core and strata-edge first.
    #[arg(long)]
    pub no_build: bool,
}

/// Events counted per process.
const STAT_EVENTS: &str = "task-clock,context-switches,\
syscalls:sys_enter_fdatasync,syscalls:sys_enter_fsync,\
syscalls:sys_enter_pwrite64,syscalls:sys_enter_write,\
syscalls:sys_enter_sendmsg,syscalls:sys_enter_sendmmsg,\
syscalls:sys_enter_recvmsg,syscalls:sys_enter_recvmmsg";

/// CPU seconds per (process role, thread name) from /proc.
fn threads(procs: &[(&'static str, u32)]) -> BTreeMap<(String, String), f64> {
    let mut out = BTreeMap::new();
    for &(role, pid) in procs {
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
            continue;
        };
        for t in tasks.flatten() {
            let comm = std::fs::read_to_string(t.path().join("comm")).unwrap_or_default();
            let stat = std::fs::read_to_string(t.path().join("stat")).unwrap_or_default();
            if let Some(ticks) = crate::procfs::parse_stat_ticks(&stat) {
                *out.entry((role.to_string(), comm.trim().to_string()))
                    .or_insert(0.0) += ticks as f64 / crate::procfs::ticks_per_s();
            }
        }
    }
    out
}

/// `(count, event)` pairs from `perf stat` output.
pub fn parse_perf_stat(text: &str) -> Vec<(f64, String)> {
    text.lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let n: f64 = f.next()?.replace(',', "").parse().ok()?;
            let mut ev = f.next()?.to_string();
            if ev == "msec" {
                ev = f.next()?.to_string();
            }
            Some((n, ev))
        })
        .collect()
}

fn perf(args: &[&str], out: &Path) -> Result<()> {
    let o = Command::new("perf")
        .args(args)
        .output()
        .context("running perf")?;
    std::fs::write(out, [o.stdout, o.stderr].concat())?;
    if !o.status.success() {
        bail!("perf {} failed: see {}", args.join(" "), out.display());
    }
    Ok(())
}

pub async fn run(o: ProfileOpts) -> Result<()> {
    let usable = Command::new("perf")
        .args(["record", "-e", "cpu-clock", "-o", "/dev/null", "--", "true"])
        .output()
        .is_ok_and(|x| x.status.success());
    if !usable {
        bail!("perf is not installed or not permitted here (apt-get install linux-perf; perf_event_paranoid)");
    }
    let dir = o.out.clone().unwrap_or_else(|| {
        let ts = chrono::Utc::now().format("%Y%m%dT%H%M%SZ");
        crate::target_dir()
            .join("bench")
            .join(format!("profile-{ts}"))
    });
    std::fs::create_dir_all(&dir)?;
    let mut t = StrataTarget::start(1, o.shards).await?;
    t.create("profile").await?;
    let mut procs = t.processes();
    procs.push(("bench", std::process::id()));
    let progress = Arc::new(Progress::new((0, 0)));
    let spec = ProducerSpec {
        load: o.rate.map_or(Load::Max, Load::Rate),
        template: Arc::new(template(7, o.size)),
        window: o.window,
        lanes: o.lanes,
        until: Instant::now() + Duration::from_secs_f64(o.secs + 1.5),
    };
    let producer = t.spawn_producer("profile", spec, progress.clone());
    tokio::time::sleep(Duration::from_secs(1)).await;
    let before = threads(&procs);
    let a0 = progress.acked.load(Ordering::Relaxed);
    let c0 = t.committed("profile").await?.unwrap_or(0);
    let secs = o.secs.to_string();
    let data = dir.join("perf.data").display().to_string();
    let mut jobs = Vec::new();
    {
        let pids = procs.iter().map(|p| p.1.to_string()).collect::<Vec<_>>();
        let (d, s, f) = (data.clone(), secs.clone(), o.freq.to_string());
        let log = dir.join("perf-record.log");
        let p = pids.join(",");
        jobs.push(tokio::task::spawn_blocking(move || {
            perf(
                &[
                    "record",
                    "-e",
                    "cpu-clock",
                    "-F",
                    &f,
                    "-p",
                    &p,
                    "-o",
                    &d,
                    "--",
                    "sleep",
                    &s,
                ],
                &log,
            )
        }));
    }
    for &(role, pid) in &procs {
        let (s, out) = (secs.clone(), dir.join(format!("perf-stat-{role}.txt")));
        jobs.push(tokio::task::spawn_blocking(move || {
            let p = pid.to_string();
            perf(
                &["stat", "-e", STAT_EVENTS, "-p", &p, "--", "sleep", &s],
                &out,
            )
        }));
    }
    for j in jobs {
        j.await??;
    }
    let after = threads(&procs);
    let a1 = progress.acked.load(Ordering::Relaxed);
    let c1 = t.committed("profile").await?.unwrap_or(0);
    producer.await??;
    // By thread (the threads of all three processes are all called
    // tokio-rt-worker; summary.txt maps thread ids to processes).
    for (sort, limit, file) in [("pid,dso", "0.5", "dso"), ("pid,dso,sym", "0.3", "symbol")] {
        perf(
            &[
                "report",
                "-i",
                &data,
                "--stdio",
                "--no-children",
                "--sort",
                sort,
                "--percent-limit",
                limit,
            ],
            &dir.join(format!("perf-by-{file}.txt")),
        )?;
    }
    let acked_rps = (a1 - a0) as f64 / o.secs;
    let mut s = format!(
        "load {}, {} B records: acked at the edge {:.0}/s, committed in the core {:.0}/s over {} s\n\n\
         per process, per second (and per 1000 records acked):\n",
        o.rate.map_or("unpaced".to_string(), |r| format!("{r}/s")),
        o.size,
        acked_rps,
        (c1 - c0) as f64 / o.secs,
        o.secs
    );
    for &(role, _) in &procs {
        let text = std::fs::read_to_string(dir.join(format!("perf-stat-{role}.txt")))?;
        let _ = write!(s, "{role}:");
        for (n, ev) in parse_perf_stat(&text) {
            let ev = ev.trim_start_matches("syscalls:sys_enter_");
            if ev == "seconds" {
                continue;
            }
            if ev == "task-clock" {
                let _ = write!(s, " cpu {:.2} cores;", n / 1000.0 / o.secs);
            } else if n > 0.0 {
                let _ = write!(
                    s,
                    " {ev} {:.0}/s ({:.2});",
                    n / o.secs,
                    n / (acked_rps * o.secs / 1000.0).max(1e-9)
                );
            }
        }
        s.push('\n');
    }
    s.push_str("\nthread ids (for perf-by-*.txt):\n");
    for &(role, pid) in &procs {
        let tids: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/task"))
            .map(|d| {
                d.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        let _ = writeln!(s, "{role} (pid {pid}): {}", tids.join(" "));
    }
    s.push_str("\nCPU per thread (cores):\n");
    for (k, v) in &after {
        let d = v - before.get(k).copied().unwrap_or(0.0);
        if d > 0.0 {
            let _ = writeln!(s, "{} {} {:.2}", k.0, k.1, d / o.secs);
        }
    }
    std::fs::write(dir.join("summary.txt"), &s)?;
    println!("{s}");
    println!(
        "wrote {}/{{summary.txt,perf-by-dso.txt,perf-by-symbol.txt,perf-stat-<process>.txt,perf.data}}",
        dir.display()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn perf_stat_lines_parse() {
        let text = " Performance counter stats for process id '42':\n\n\
            \x20         2,168.91 msec task-clock                       #    0.271 CPUs utilized\n\
            \x20           15,392      context-switches                 #    7.186 K/sec\n\
            \x20              812      syscalls:sys_enter_fdatasync\n\n\
            \x20      8.001 seconds time elapsed\n";
        let p = super::parse_perf_stat(text);
        assert_eq!(p[0], (2168.91, "task-clock".to_string()));
        assert_eq!(p[1], (15392.0, "context-switches".to_string()));
        assert_eq!(p[2], (812.0, "syscalls:sys_enter_fdatasync".to_string()));
    }
}
