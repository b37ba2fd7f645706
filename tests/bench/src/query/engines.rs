//! Running one query in one engine as a fresh process, and what it costs.
//!
//! Both engines run the same way: one process per query (`strata query`,
//! or Python running `py/duckdb_query.py`), stdout and stderr to files, the
//! process reaped with `wait4` so its own CPU time (user + system, every
//! thread) and peak RSS come from the kernel. Each engine also reports the
//! time of the query itself, without the process start: `strata query
//! --explain` in its `scanned …` line (planning, which reads the manifests,
//! and execution, without printing), DuckDB from `connect()` to the last
//! row fetched (after Python's start and `import duckdb`).
//!
//! Rows come back as JSON objects keyed by column name, so the caller can
//! check the answers of the two engines against each other and against
//! what was generated.

use anyhow::{bail, ensure, Context, Result};
use serde_json::{Map, Value};
use std::io::{Read, Seek};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

pub type Row = Map<String, Value>;

/// What the kernel says about a finished process.
#[derive(Debug, Clone)]
pub struct Exec {
    pub wall_s: f64,
    pub cpu_s: f64,
    pub maxrss_mb: f64,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `cmd` to its end (killed after `limit`), with no stdin; fails on a
/// non-zero exit, quoting the end of its stderr.
pub fn run_measured(cmd: &mut Command, limit: Duration) -> Result<Exec> {
    let mut out = tempfile::tempfile()?;
    let mut err = tempfile::tempfile()?;
    cmd.stdin(Stdio::null())
        .stdout(out.try_clone()?)
        .stderr(err.try_clone()?);
    // SAFETY: prctl is async-signal-safe. The child dies with this thread,
    // so an interrupted benchmark leaves no query running.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let started = Instant::now();
    let mut child = cmd
        .spawn()
        .with_context(|| format!("starting {:?}", cmd.get_program()))?;
    let pid = child.id() as libc::pid_t;
    let (status, ru) = loop {
        if let Some(done) = wait_exited(pid, Duration::from_millis(50))? {
            break done;
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            bail!("{:?} ran longer than {limit:?}: killed", cmd.get_program());
        }
    };
    let wall_s = started.elapsed().as_secs_f64();
    let read = |f: &mut std::fs::File| -> Result<String> {
        f.rewind()?;
        let mut s = String::new();
        f.read_to_string(&mut s)?;
        Ok(s)
    };
    let (stdout, stderr) = (read(&mut out)?, read(&mut err)?);
    if !(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0) {
        let tail: String = stderr
            .lines()
            .rev()
            .take(15)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect::<Vec<_>>()
            .join("\n");
        bail!(
            "{:?} failed (wait status {status:#x}):\n{tail}",
            cmd.get_program()
        );
    }
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    Ok(Exec {
        wall_s,
        cpu_s: secs(ru.ru_utime) + secs(ru.ru_stime),
        maxrss_mb: ru.ru_maxrss as f64 * 1024.0 / 1e6,
        stdout,
        stderr,
    })
}

/// Waits up to `timeout` for `pid` to exit, without a busy loop (a pidfd
/// becomes readable when the process exits), then reaps it with its usage.
fn wait_exited(pid: libc::pid_t, timeout: Duration) -> Result<Option<(i32, libc::rusage)>> {
    // SAFETY: plain syscalls on a child of this process that has not been
    // reaped yet (only this function reaps it), so the pid is still ours.
    unsafe {
        let fd = libc::syscall(libc::SYS_pidfd_open, pid, 0) as i32;
        if fd >= 0 {
            let mut p = libc::pollfd {
                fd,
                events: libc::POLLIN,
                revents: 0,
            };
            libc::poll(&mut p, 1, timeout.as_millis() as i32);
            libc::close(fd);
        } else {
            // No pidfd (kernel before 5.3): poll the exit status instead.
            std::thread::sleep(Duration::from_millis(1).min(timeout));
        }
        let mut status = 0;
        let mut ru: libc::rusage = std::mem::zeroed();
        match libc::wait4(pid, &mut status, libc::WNOHANG, &mut ru) {
            0 => Ok(None),
            r if r == pid => Ok(Some((status, ru))),
            _ => {
                let e = std::io::Error::last_os_error();
                if e.kind() == std::io::ErrorKind::Interrupted {
                    Ok(None)
                } else {
                    Err(e).context("wait4")
                }
            }
        }
    }
}

/// The summary line `strata query --explain` prints.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Scanned {
    pub objects_scanned: u64,
    pub objects: u64,
    pub object_bytes_scanned: u64,
    pub row_groups_matched: u64,
    pub row_groups: u64,
    pub bytes_read: u64,
    pub result_rows: u64,
    pub secs: f64,
}

/// Parses `scanned X of Y objects (P pruned by the manifests, B bytes), R
/// of T row groups (Q pruned by statistics), Z bytes read; hot tail: H
/// records; N result rows in S s` by the position of its numbers.
pub fn parse_scanned(line: &str) -> Option<Scanned> {
    let rest = line.trim().strip_prefix("scanned ")?;
    let nums: Vec<f64> = rest
        .split(|c: char| !(c.is_ascii_digit() || c == '.'))
        .filter(|t| !t.is_empty() && *t != ".")
        .map(str::parse)
        .collect::<Result<_, _>>()
        .ok()?;
    let [objects_scanned, objects, _pruned, object_bytes_scanned, row_groups_matched, row_groups, _rg_pruned, bytes_read, _hot, result_rows, secs] =
        nums[..]
    else {
        return None;
    };
    Some(Scanned {
        objects_scanned: objects_scanned as u64,
        objects: objects as u64,
        object_bytes_scanned: object_bytes_scanned as u64,
        row_groups_matched: row_groups_matched as u64,
        row_groups: row_groups as u64,
        bytes_read: bytes_read as u64,
        result_rows: result_rows as u64,
        secs,
    })
}

/// One query's run in one engine.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub exec: Exec,
    /// The query alone, as the engine timed it.
    pub engine_s: f64,
    /// CPU of the query alone, when the engine reports it.
    pub engine_cpu_s: Option<f64>,
    pub rows: Vec<Row>,
    /// Strata only.
    pub scanned: Option<Scanned>,
}

/// `strata query --object-store file://<dir> --format json --explain SQL`.
pub fn strata(bin: &Path, dir: &Path, sql: &str, limit: Duration) -> Result<Outcome> {
    let exec = run_measured(
        Command::new(bin)
            .arg("query")
            .arg("--object-store")
            .arg(format!("file://{}", dir.display()))
            .args(["--format", "json", "--explain"])
            .arg(sql),
        limit,
    )
    .with_context(|| format!("strata query {sql:?}"))?;
    let scanned = exec
        .stderr
        .lines()
        .find_map(parse_scanned)
        .with_context(|| {
            format!(
                "no `scanned …` line in the stderr of --explain:\n{}",
                exec.stderr
            )
        })?;
    let rows = exec
        .stdout
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str::<Row>(l).with_context(|| format!("result row {l:?}")))
        .collect::<Result<Vec<_>>>()?;
    ensure!(
        rows.len() as u64 == scanned.result_rows,
        "strata printed {} rows, its summary says {}",
        rows.len(),
        scanned.result_rows
    );
    Ok(Outcome {
        engine_s: scanned.secs,
        engine_cpu_s: None,
        exec,
        rows,
        scanned: Some(scanned),
    })
}

/// The DuckDB peer: Python from the venv of deploy/scripts/setup-s3.sh.
#[derive(Debug, Clone)]
pub struct Duckdb {
    pub python: PathBuf,
    pub script: PathBuf,
}

impl Duckdb {
    /// The peer if its venv is installed, else why not.
    pub fn find() -> Result<Self, String> {
        let python = strata_tests::s3::venv_bin("python").map_err(|e| format!("{e:#}"))?;
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("py/duckdb_query.py");
        if !script.is_file() {
            return Err(format!("{} is missing", script.display()));
        }
        Ok(Self { python, script })
    }

    /// `import duckdb` works; returns its version.
    pub fn version(&self) -> Result<String> {
        let out = Command::new(&self.python)
            .args(["-c", "import duckdb; print(duckdb.__version__)"])
            .output()
            .context("starting the venv's python")?;
        ensure!(
            out.status.success(),
            "import duckdb failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    }

    /// The FROM clause reading the stream's files.
    pub fn table(dir: &Path, stream: &str) -> String {
        format!(
            "read_parquet('{}/stream={stream}/**/*.parquet', hive_partitioning = true)",
            dir.display()
        )
    }

    pub fn run(&self, sql: &str, limit: Duration) -> Result<Outcome> {
        let exec = run_measured(Command::new(&self.python).arg(&self.script).arg(sql), limit)
            .with_context(|| format!("duckdb {sql:?}"))?;
        let v: Value = serde_json::from_str(exec.stdout.trim())
            .with_context(|| format!("duckdb_query.py printed {:?}", exec.stdout))?;
        let columns: Vec<String> = v["columns"]
            .as_array()
            .context("no columns")?
            .iter()
            .map(|c| c.as_str().unwrap_or_default().to_string())
            .collect();
        let rows = v["rows"]
            .as_array()
            .context("no rows")?
            .iter()
            .map(|r| {
                let vals = r.as_array().context("a row is not a list")?;
                Ok(columns.iter().cloned().zip(vals.iter().cloned()).collect())
            })
            .collect::<Result<Vec<Row>>>()?;
        Ok(Outcome {
            engine_s: v["secs"].as_f64().context("no secs")?,
            engine_cpu_s: v["cpu_secs"].as_f64(),
            exec,
            rows,
            scanned: None,
        })
    }
}

/// A numeric cell (JSON number, or a number in a string: DuckDB's HUGEINT
/// sums come back as strings).
pub fn num(row: &Row, col: &str) -> Option<f64> {
    match row.get(col)? {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_explain_summary_parses() {
        let l = "scanned 2 of 12 objects (10 pruned by the manifests, 9604 bytes), 2 of 2 row \
                 groups (0 pruned by statistics), 10480 bytes read; hot tail: 0 records; 1 result \
                 rows in 0.041 s";
        assert_eq!(
            parse_scanned(l),
            Some(Scanned {
                objects_scanned: 2,
                objects: 12,
                object_bytes_scanned: 9604,
                row_groups_matched: 2,
                row_groups: 2,
                bytes_read: 10480,
                result_rows: 1,
                secs: 0.041,
            })
        );
        assert_eq!(
            parse_scanned("DataSourceExec: file_groups={2 groups}"),
            None
        );
        assert_eq!(parse_scanned("scanned 2 of 12 objects"), None);
    }

    #[test]
    fn a_process_is_measured_and_a_failure_quotes_stderr() {
        let e = run_measured(
            Command::new("sh").args(["-c", "echo out; echo err >&2"]),
            Duration::from_secs(10),
        )
        .unwrap();
        assert_eq!((e.stdout.as_str(), e.stderr.as_str()), ("out\n", "err\n"));
        assert!(e.wall_s > 0.0 && e.maxrss_mb > 0.0);
        let f = run_measured(
            Command::new("sh").args(["-c", "echo why >&2; exit 3"]),
            Duration::from_secs(10),
        )
        .unwrap_err();
        assert!(format!("{f:#}").contains("why"), "{f:#}");
        let t = Instant::now();
        let k =
            run_measured(Command::new("sleep").arg("5"), Duration::from_millis(200)).unwrap_err();
        assert!(format!("{k:#}").contains("killed") && t.elapsed() < Duration::from_secs(3));
    }

    #[test]
    fn numbers_come_from_numbers_and_strings() {
        let r: Row =
            serde_json::from_str(r#"{"n": 3, "s": "12345678901234567890", "k": "dev"}"#).unwrap();
        assert_eq!(num(&r, "n"), Some(3.0));
        assert_eq!(num(&r, "s"), Some(12_345_678_901_234_567_890.0));
        assert_eq!(num(&r, "k"), None);
        assert_eq!(num(&r, "x"), None);
    }
}
