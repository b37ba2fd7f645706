//! The printed table (Markdown, so docs/benchmarks.md can take it as is)
//! and the CSV files. Every figure is `median [min–max]` over the runs.

use crate::load::Load;
use crate::plan::Plan;
use crate::stats::{Case, Results, Spread, System, Workload};
use anyhow::Result;
use std::fmt::Write as _;
use std::path::Path;

/// `1234567` -> `1.23M`, `51234` -> `51.2k`, `950` -> `950`.
pub fn si(x: f64) -> String {
    let a = x.abs();
    if a >= 1e6 {
        format!("{:.2}M", x / 1e6)
    } else if a >= 1e5 {
        format!("{:.0}k", x / 1e3)
    } else if a >= 1e3 {
        format!("{:.1}k", x / 1e3)
    } else if a >= 10.0 {
        format!("{x:.0}")
    } else {
        format!("{x:.2}")
    }
}

/// Three significant digits, for milliseconds, cores and MB.
pub fn sig3(x: f64) -> String {
    let a = x.abs();
    if a >= 100.0 {
        format!("{x:.0}")
    } else if a >= 10.0 {
        format!("{x:.1}")
    } else if a >= 1.0 {
        format!("{x:.2}")
    } else {
        format!("{x:.3}")
    }
}

fn cell(s: Option<Spread>, f: fn(f64) -> String) -> String {
    match s {
        Some(s) if s.n > 1 => format!("{} [{}–{}]", f(s.median), f(s.min), f(s.max)),
        Some(s) => f(s.median),
        None => "—".into(),
    }
}

fn size_label(size: usize) -> String {
    if size >= 1024 && size.is_multiple_of(1024) {
        format!("{} KiB", size / 1024)
    } else {
        format!("{size} B")
    }
}

/// Machine and run facts, printed above the tables and saved as machine.csv.
pub type Facts = Vec<(String, String)>;

/// The facts every results table opens with: start time, mode, machine,
/// load, the disk's fsync rate (probed for `probe_secs` in `tmp`) and the
/// Strata commit.
pub fn machine_facts(
    started_utc: chrono::DateTime<chrono::Utc>,
    mode: String,
    m: &crate::procfs::Machine,
    probe_secs: f64,
    tmp: &Path,
    fsync: &crate::procfs::FsyncRate,
) -> Facts {
    vec![
        (
            "started (UTC)".into(),
            started_utc.format("%Y-%m-%d %H:%M:%S").to_string(),
        ),
        ("mode".into(), mode),
        (
            "machine".into(),
            format!(
                "{} cores ({}), {:.1} GiB memory, kernel {}",
                m.cores,
                m.cpu_model,
                m.mem_total_mib as f64 / 1024.0,
                m.kernel
            ),
        ),
        ("load average at start".into(), m.loadavg.clone()),
        (
            format!(
                "disk fsync rate ({probe_secs} s of 4 KiB write + fdatasync in {})",
                tmp.display()
            ),
            format!(
                "{:.0} writes/s, fdatasync p50 {:.2} ms, p99 {:.2} ms",
                fsync.writes_per_s, fsync.p50_ms, fsync.p99_ms
            ),
        ),
        ("Strata commit".into(), crate::git_commit()),
    ]
}

struct Tables<'a> {
    r: &'a Results,
    plan: &'a Plan,
    out: String,
}

impl Tables<'_> {
    fn case(&self, system: System, workload: Workload, size: usize) -> Case {
        Case {
            system,
            workload,
            size,
        }
    }

    /// A cell for `metric`, or the skip reason.
    fn fig(&self, case: Case, metric: &str, f: fn(f64) -> String) -> String {
        match self.r.spread(case, metric) {
            Some(s) => cell(Some(s), f),
            None => match self.r.skipped.get(&case) {
                Some(why) => why.clone(),
                None if !self.plan.systems.contains(&case.system) => "not run (--systems)".into(),
                None => "—".into(),
            },
        }
    }

    fn header(&mut self, cols: &[&str]) {
        let _ = writeln!(self.out, "| {} |", cols.join(" | "));
        let _ = writeln!(
            self.out,
            "|{}",
            cols.iter().map(|_| " --- |").collect::<String>()
        );
    }

    fn row(&mut self, cols: &[String]) {
        let _ = writeln!(self.out, "| {} |", cols.join(" | "));
    }

    fn throughput(&mut self) {
        let _ = writeln!(
            self.out,
            "\n### (a), (b) Throughput, records/s — median [min–max] of {} runs\n",
            self.plan.runs
        );
        let mut cols = vec!["workload".to_string(), "system".into(), "acked when".into()];
        cols.extend(self.plan.sizes.iter().map(|&s| size_label(s)));
        self.header(&cols.iter().map(String::as_str).collect::<Vec<_>>());
        let rows: [(&str, System, &str, &str); 7] = [
            (
                "(a) producer → edge",
                System::StrataRf1,
                "fsynced at the edge",
                "ack_rps",
            ),
            (
                "(b) producer → edge → core",
                System::StrataRf1,
                "committed in the core (fsynced)",
                "e2e_rps",
            ),
            (
                "(b) producer → edge → core",
                System::StrataRf3,
                "committed by 2 of 3 core nodes",
                "e2e_rps",
            ),
            (
                "peer",
                System::NatsR1Default,
                "stored (fsync every 2 min)",
                "ack_rps",
            ),
            ("peer", System::NatsR1Always, "fsynced", "ack_rps"),
            ("peer", System::NatsR3Default, "stored on 2 of 3", "ack_rps"),
            ("peer", System::NatsR3Always, "fsynced on 2 of 3", "ack_rps"),
        ];
        for (w, sys, when, metric) in rows {
            let mut c = vec![w.to_string(), sys.label().into(), when.into()];
            for &size in &self.plan.sizes {
                c.push(self.fig(self.case(sys, Workload::Throughput, size), metric, si));
            }
            self.row(&c);
        }
        let mut c = vec![
            "(e) tiering to object storage".to_string(),
            "Strata".into(),
            "—".into(),
        ];
        c.extend(
            self.plan
                .sizes
                .iter()
                .map(|_| "measured by `strata-bench tier` (its own table)".to_string()),
        );
        self.row(&c);
    }

    fn ratio(&self, a: Case, am: &str, b: Case, bm: &str) -> String {
        match (self.r.spread(a, am), self.r.spread(b, bm)) {
            (Some(x), Some(y)) if y.median > 0.0 => format!("{:.2}×", x.median / y.median),
            _ => "—".into(),
        }
    }

    fn throughput_ratios(&mut self) {
        let _ = writeln!(self.out, "\n### Strata ÷ NATS, throughput (medians)\n");
        let mut cols = vec!["Strata figure".to_string(), "÷ peer".into()];
        cols.extend(self.plan.sizes.iter().map(|&s| size_label(s)));
        self.header(&cols.iter().map(String::as_str).collect::<Vec<_>>());
        let pairs = [
            (
                "(a) edge ack",
                System::StrataRf1,
                "ack_rps",
                System::NatsR1Default,
            ),
            (
                "(a) edge ack",
                System::StrataRf1,
                "ack_rps",
                System::NatsR1Always,
            ),
            (
                "(b) committed, RF=1",
                System::StrataRf1,
                "e2e_rps",
                System::NatsR1Default,
            ),
            (
                "(b) committed, RF=1",
                System::StrataRf1,
                "e2e_rps",
                System::NatsR1Always,
            ),
            (
                "(b) committed, RF=3",
                System::StrataRf3,
                "e2e_rps",
                System::NatsR3Default,
            ),
            (
                "(b) committed, RF=3",
                System::StrataRf3,
                "e2e_rps",
                System::NatsR3Always,
            ),
        ];
        for (what, s, sm, peer) in pairs {
            let mut c = vec![what.to_string(), peer.label().into()];
            for &size in &self.plan.sizes {
                let a = self.case(s, Workload::Throughput, size);
                let b = self.case(peer, Workload::Throughput, size);
                c.push(self.ratio(a, sm, b, "ack_rps"));
            }
            self.row(&c);
        }
    }

    fn latency(&mut self) {
        let _ = writeln!(
            self.out,
            "\n### (c) Produce-to-consume latency, ms — median [min–max] of {} runs\n\n\
             `ack` is send to acknowledgement (Strata: fsynced at the edge); p50–p99.9 are \
             send to seen by the consumer (Strata: committed in the core, then fetched).\n",
            self.plan.runs
        );
        self.header(&[
            "system",
            "size",
            "offered",
            "achieved rec/s",
            "ack p50",
            "ack p99",
            "p50",
            "p99",
            "p99.9",
        ]);
        for sys in self.plan.systems.clone() {
            for load in self.plan.loads() {
                for &size in &self.plan.sizes {
                    let case = self.case(sys, Workload::Latency(load), size);
                    let mut c = vec![sys.label().to_string(), size_label(size), load.label()];
                    if let Some(why) = self.r.skipped.get(&case) {
                        if sys == System::StrataRf3 || why.starts_with("nats-server") {
                            continue; // said once in the throughput table
                        }
                        c.push(why.clone());
                        c.extend(std::iter::repeat_n(String::new(), 5));
                    } else {
                        c.push(self.fig(case, "achieved_rps", si));
                        for m in ["ack_p50_ms", "ack_p99_ms", "p50_ms", "p99_ms", "p999_ms"] {
                            c.push(self.fig(case, m, sig3));
                        }
                    }
                    self.row(&c);
                }
            }
        }
        let _ = writeln!(
            self.out,
            "\n### Strata ÷ NATS, latency (medians; below 1 is Strata faster)\n"
        );
        self.header(&["Strata", "÷ peer", "size", "offered", "p50", "p99", "p99.9"]);
        for (sys, peer) in [
            (System::StrataRf1, System::NatsR1Default),
            (System::StrataRf3, System::NatsR3Default),
        ] {
            for load in self.plan.loads() {
                for &size in &self.plan.sizes {
                    let a = self.case(sys, Workload::Latency(load), size);
                    let b = self.case(peer, Workload::Latency(load), size);
                    let mut c = vec![
                        sys.label().to_string(),
                        peer.label().to_string(),
                        size_label(size),
                        load.label(),
                    ];
                    for m in ["p50_ms", "p99_ms", "p999_ms"] {
                        c.push(self.ratio(a, m, b, m));
                    }
                    if c[4..].iter().any(|x| x != "—") {
                        self.row(&c);
                    }
                }
            }
        }
    }

    fn resources(&mut self) {
        let _ = writeln!(
            self.out,
            "\n### (d) Resources per process — median [min–max] of {} runs\n\n\
             CPU is user+system time over the measured window; \"per 100k rec/s\" is the \
             cores that process needs per 100k records/s at that load. RSS in MB: peak \
             (VmHWM, reset at the window's start) and at the window's end.\n",
            self.plan.runs
        );
        self.header(&[
            "system",
            "process",
            "size",
            "load",
            "rec/s",
            "CPU cores",
            "cores per 100k rec/s",
            "peak RSS MB",
            "RSS MB",
        ]);
        let procs = [
            (System::StrataRf1, "edge"),
            (System::StrataRf1, "core"),
            (System::StrataRf3, "edge"),
            (System::StrataRf3, "core"),
            (System::NatsR1Default, "nats"),
            (System::NatsR3Default, "nats"),
        ];
        let mut workloads = vec![Workload::Throughput];
        workloads.extend(self.plan.loads().into_iter().map(Workload::Latency));
        for (sys, role) in procs {
            for &w in &workloads {
                for &size in &self.plan.sizes {
                    let case = self.case(sys, w, size);
                    if self.r.spread(case, &format!("cpu_cores_{role}")).is_none() {
                        continue;
                    }
                    let (load, rate) = match w {
                        Workload::Throughput if sys.is_nats() => {
                            ("max, no consumer".into(), "ack_rps")
                        }
                        Workload::Throughput => ("max, no consumer".into(), "e2e_rps"),
                        Workload::Latency(l) => {
                            (format!("{} + consumer", l.label()), "achieved_rps")
                        }
                    };
                    let role_label = match (sys, role) {
                        (System::NatsR3Default, _) => "nats-server ×3 (CPU summed, RSS largest)",
                        (System::StrataRf3, "core") => "core ×3 (CPU summed, RSS largest)",
                        _ => role,
                    };
                    self.row(&[
                        sys.label().into(),
                        role_label.into(),
                        size_label(size),
                        load,
                        self.fig(case, rate, si),
                        self.fig(case, &format!("cpu_cores_{role}"), sig3),
                        self.fig(case, &format!("cpu_per_100k_{role}"), sig3),
                        self.fig(case, &format!("hwm_mb_{role}"), sig3),
                        self.fig(case, &format!("rss_mb_{role}"), sig3),
                    ]);
                }
            }
        }
    }

    fn cpu_split(&mut self) {
        let _ = writeln!(
            self.out,
            "\n### CPU split at peak (throughput runs, average cores busy, medians)\n\n\
             `bench` is this harness (the producer); `other` is CPU used on the machine by \
             processes outside the benchmark (noise from a shared machine).\n"
        );
        self.header(&[
            "system",
            "size",
            "bench (producer)",
            "edge",
            "core / nats",
            "other",
            "machine",
        ]);
        for sys in [
            System::StrataRf1,
            System::StrataRf3,
            System::NatsR1Default,
            System::NatsR1Always,
            System::NatsR3Default,
            System::NatsR3Always,
        ] {
            for &size in &self.plan.sizes {
                let case = self.case(sys, Workload::Throughput, size);
                if self.r.spread(case, "machine_cores").is_none() {
                    continue;
                }
                let med = |m: &str| {
                    self.r
                        .spread(case, m)
                        .map_or("—".into(), |s| sig3(s.median))
                };
                let server = if sys.is_nats() {
                    "cpu_cores_nats"
                } else {
                    "cpu_cores_core"
                };
                let c = vec![
                    sys.label().to_string(),
                    size_label(size),
                    med("cpu_cores_bench"),
                    med("cpu_cores_edge"),
                    med(server),
                    med("other_cores"),
                    med("machine_cores"),
                ];
                self.row(&c);
            }
        }
    }
}

/// The full report: facts, then the tables, then notes.
pub fn render(r: &Results, plan: &Plan, facts: &Facts) -> String {
    let mut t = Tables {
        r,
        plan,
        out: String::new(),
    };
    let _ = writeln!(t.out, "### Machine and settings\n");
    for (k, v) in facts {
        let _ = writeln!(t.out, "- {k}: {v}");
    }
    t.throughput();
    t.throughput_ratios();
    t.latency();
    t.resources();
    t.cpu_split();
    if !r.notes.is_empty() {
        let _ = writeln!(t.out, "\n### Notes\n");
        for n in &r.notes {
            let _ = writeln!(t.out, "- {n}");
        }
    }
    t.out
}

fn load_col(w: Workload) -> String {
    match w {
        Workload::Throughput => String::new(),
        Workload::Latency(Load::Max) => "max".into(),
        Workload::Latency(Load::Rate(r)) => r.to_string(),
    }
}

/// runs.csv (every sample), summary.csv (median/min/max), skipped.csv,
/// machine.csv.
pub fn write_csv(dir: &Path, r: &Results, facts: &Facts) -> Result<()> {
    let mut runs = String::from("system,workload,load,size_bytes,run,metric,value\n");
    for (c, rep, m, v) in &r.samples {
        let kind = if c.workload == Workload::Throughput {
            "throughput"
        } else {
            "latency"
        };
        let _ = writeln!(
            runs,
            "{},{kind},{},{},{},{m},{v}",
            c.system.key(),
            load_col(c.workload),
            c.size,
            rep + 1
        );
    }
    std::fs::write(dir.join("runs.csv"), runs)?;
    let mut sum = String::from("system,workload,load,size_bytes,metric,median,min,max,runs\n");
    for (c, m) in r.groups() {
        if let Some(s) = r.spread(c, &m) {
            let kind = if c.workload == Workload::Throughput {
                "throughput"
            } else {
                "latency"
            };
            let _ = writeln!(
                sum,
                "{},{kind},{},{},{m},{},{},{},{}",
                c.system.key(),
                load_col(c.workload),
                c.size,
                s.median,
                s.min,
                s.max,
                s.n
            );
        }
    }
    std::fs::write(dir.join("summary.csv"), sum)?;
    let mut sk = String::from("system,workload,load,size_bytes,reason\n");
    for (c, why) in &r.skipped {
        let kind = if c.workload == Workload::Throughput {
            "throughput"
        } else {
            "latency"
        };
        let _ = writeln!(
            sk,
            "{},{kind},{},{},\"{}\"",
            c.system.key(),
            load_col(c.workload),
            c.size,
            why.replace('"', "'")
        );
    }
    std::fs::write(dir.join("skipped.csv"), sk)?;
    write_facts(dir, facts)
}

/// The facts every mode records once it has measured: the load average at
/// the end, the wall time since `started`, and the error that stopped the
/// run early, if any.
pub fn closing_facts<T>(facts: &mut Facts, started: std::time::Instant, outcome: &Result<T>) {
    facts.push((
        "load average at the end".into(),
        crate::procfs::machine().loadavg,
    ));
    facts.push((
        "wall time".into(),
        format!("{:.0} s", started.elapsed().as_secs_f64()),
    ));
    if let Err(e) = outcome {
        facts.push(("incomplete".into(), format!("stopped by an error: {e:#}")));
    }
}

/// machine.csv: the facts as `key,value`.
pub fn write_facts(dir: &Path, facts: &Facts) -> Result<()> {
    let mut mc = String::from("key,value\n");
    for (k, v) in facts {
        let _ = writeln!(
            mc,
            "\"{}\",\"{}\"",
            k.replace('"', "'"),
            v.replace('"', "'")
        );
    }
    std::fs::write(dir.join("machine.csv"), mc)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_short() {
        assert_eq!(si(1_234_567.0), "1.23M");
        assert_eq!(si(512_345.0), "512k");
        assert_eq!(si(51_234.0), "51.2k");
        assert_eq!(si(950.0), "950");
        assert_eq!(sig3(0.5812), "0.581");
        assert_eq!(sig3(12.345), "12.3");
        assert_eq!(size_label(1024), "1 KiB");
        assert_eq!(size_label(100), "100 B");
    }

    #[test]
    fn cells_show_the_spread() {
        let s = crate::stats::spread(&[1.0, 2.0, 4.0]);
        assert_eq!(cell(s, sig3), "2.00 [1.00–4.00]");
        assert_eq!(cell(None, sig3), "—");
    }
}
