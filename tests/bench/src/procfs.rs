//! Linux `/proc` readings: a process's CPU time and memory, the machine's
//! busy CPU time, the machine description, and the disk fsync probe.
//!
//! CPU time is `utime + stime` from `/proc/<pid>/stat` (clock ticks), so a
//! reading covers every thread of the process. Peak memory is `VmHWM` from
//! `/proc/<pid>/status`; [`reset_peak`] writes `5` to `/proc/<pid>/clear_refs`
//! so each run's peak is its own, not the process's lifetime peak.

use anyhow::{bail, Context, Result};
use hdrhistogram::Histogram;
use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

pub fn ticks_per_s() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as f64
    } else {
        100.0
    }
}

/// One reading of a process.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ProcReading {
    /// User plus system CPU time since the process started, seconds.
    pub cpu_s: f64,
    /// Resident set size now, KiB.
    pub rss_kib: u64,
    /// Peak resident set size since start or the last [`reset_peak`], KiB.
    pub hwm_kib: u64,
}

/// `utime + stime` in ticks from the text of `/proc/<pid>/stat`.
pub fn parse_stat_ticks(stat: &str) -> Option<u64> {
    // The command name (field 2) is in parentheses and may contain spaces
    // or parentheses itself, so count fields from the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // rest starts at field 3 (state); utime is field 14, stime field 15.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// A `kB` field (e.g. `VmHWM`) from the text of `/proc/<pid>/status`.
pub fn parse_status_kib(status: &str, field: &str) -> Option<u64> {
    status.lines().find_map(|l| {
        let v = l.strip_prefix(field)?.strip_prefix(':')?;
        v.split_whitespace().next()?.parse().ok()
    })
}

pub fn read_proc(pid: u32) -> Result<ProcReading> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("reading /proc/{pid}/stat"))?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    let ticks = parse_stat_ticks(&stat).context("parsing /proc/<pid>/stat")?;
    Ok(ProcReading {
        cpu_s: ticks as f64 / ticks_per_s(),
        rss_kib: parse_status_kib(&status, "VmRSS").unwrap_or(0),
        hwm_kib: parse_status_kib(&status, "VmHWM").unwrap_or(0),
    })
}

/// Resets the process's `VmHWM` to its current RSS (Linux >= 4.0).
pub fn reset_peak(pid: u32) -> Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .open(format!("/proc/{pid}/clear_refs"))
        .with_context(|| format!("opening /proc/{pid}/clear_refs"))?;
    f.write_all(b"5")
        .with_context(|| format!("resetting the peak RSS of {pid}"))
}

/// Busy CPU time of the whole machine (all cores), seconds: user, nice,
/// system, irq, softirq and steal from the first line of `/proc/stat`.
pub fn parse_machine_busy_ticks(proc_stat: &str) -> Option<u64> {
    let line = proc_stat.lines().next()?.strip_prefix("cpu ")?;
    let v: Vec<u64> = line
        .split_whitespace()
        .map(|f| f.parse().ok())
        .collect::<Option<_>>()?;
    // user nice system idle iowait irq softirq steal ...
    let at = |i: usize| v.get(i).copied().unwrap_or(0);
    Some(at(0) + at(1) + at(2) + at(5) + at(6) + at(7))
}

pub fn machine_busy_s() -> Result<f64> {
    let s = std::fs::read_to_string("/proc/stat").context("reading /proc/stat")?;
    let t = parse_machine_busy_ticks(&s).context("parsing /proc/stat")?;
    Ok(t as f64 / ticks_per_s())
}

/// The pid of a process whose command line contains `needle` (e.g. a
/// config path unique to one harness), if any.
pub fn find_pid(needle: &str) -> Option<u32> {
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
        let pid: u32 = e.file_name().to_str()?.parse().ok()?;
        let cmd = std::fs::read(e.path().join("cmdline")).ok()?;
        let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
        cmd.contains(needle).then_some(pid)
    })
}

/// What the machine is, for the record.
#[derive(Debug, Clone)]
pub struct Machine {
    pub cores: usize,
    pub cpu_model: String,
    pub mem_total_mib: u64,
    pub kernel: String,
    pub loadavg: String,
}

pub fn machine() -> Machine {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    Machine {
        cores: std::thread::available_parallelism().map_or(0, |n| n.get()),
        cpu_model: cpuinfo
            .lines()
            .find_map(|l| l.strip_prefix("model name")?.split_once(':'))
            .map_or_else(|| "unknown".into(), |(_, m)| m.trim().to_string()),
        mem_total_mib: parse_status_kib(&meminfo, "MemTotal").unwrap_or(0) / 1024,
        kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map_or_else(|_| "unknown".into(), |s| s.trim().to_string()),
        loadavg: std::fs::read_to_string("/proc/loadavg")
            .map_or_else(|_| "unknown".into(), |s| s.trim().to_string()),
    }
}

/// Result of the fsync probe.
#[derive(Debug, Clone, Copy)]
pub struct FsyncRate {
    pub writes_per_s: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
}

/// Appends 4 KiB and fdatasyncs, in a loop, for `duration` in `dir`: the
/// rate a log that acknowledges after every fsync could reach on this disk.
pub fn fsync_probe(dir: &Path, duration: Duration) -> Result<FsyncRate> {
    let path = dir.join(format!("fsync-probe-{}", std::process::id()));
    let mut f =
        std::fs::File::create(&path).with_context(|| format!("creating {}", path.display()))?;
    let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    let block = [0x5au8; 4096];
    let started = Instant::now();
    let mut n = 0u64;
    while started.elapsed() < duration {
        f.write_all(&block)?;
        let t = Instant::now();
        f.sync_data()?;
        hist.saturating_record(t.elapsed().as_micros().max(1) as u64);
        n += 1;
    }
    let secs = started.elapsed().as_secs_f64();
    drop(f);
    let _ = std::fs::remove_file(&path);
    if n == 0 {
        bail!("fsync probe made no writes");
    }
    Ok(FsyncRate {
        writes_per_s: n as f64 / secs,
        p50_ms: hist.value_at_quantile(0.5) as f64 / 1000.0,
        p99_ms: hist.value_at_quantile(0.99) as f64 / 1000.0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_ticks_skip_a_command_name_with_spaces_and_parens() {
        let stat =
            "4242 (tokio (rt) 1) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 37 0 0 20 0 4 0 123 0 0";
        assert_eq!(parse_stat_ticks(stat), Some(287));
    }

    #[test]
    fn status_fields_are_read_in_kib() {
        let s = "Name:\tstrata-edge\nVmHWM:\t   83968 kB\nVmRSS:\t   80000 kB\n";
        assert_eq!(parse_status_kib(s, "VmHWM"), Some(83968));
        assert_eq!(parse_status_kib(s, "VmRSS"), Some(80000));
        assert_eq!(parse_status_kib(s, "VmSwap"), None);
    }

    #[test]
    fn machine_busy_excludes_idle_and_iowait() {
        let s = "cpu  10 1 5 1000 50 2 3 4 0 0\ncpu0 1 1 1 1 1 1 1 1 0 0\n";
        assert_eq!(parse_machine_busy_ticks(s), Some(10 + 1 + 5 + 2 + 3 + 4));
    }

    #[test]
    fn own_process_reads() {
        let r = read_proc(std::process::id()).unwrap();
        assert!(r.rss_kib > 0 && r.hwm_kib >= r.rss_kib);
    }
}
