//! `strata-chaos`: the chaos campaign against real binaries (issue 16).
//!
//! Starts three core nodes, each in its own zone network namespace with its
//! data dir on a tmpfs of its own, tiering to a real S3 server (SeaweedFS),
//! and an edge agent; producers write keyed records through the edge and a
//! consumer group of two members reads the core and commits. For
//! `--duration-secs` a schedule drawn from `--seed` injects faults (SIGKILL
//! of a shard leader, of a follower, of the edge; a zone cut off; a one-way
//! cut; a full data disk; an S3 outage; a wall-clock jump through
//! libfaketime), each held a few seconds and healed. Then everything is
//! healed, producers stop, and the oracle ([`oracle`]) checks the core
//! against what was acknowledged and what consumers were handed, and the
//! replicas against each other. Writes `summary.json`, `summary.md`,
//! `faults.jsonl` and the daemons' logs to `--out`; exits 1 if the oracle
//! fails, 2 if the campaign could not run.
//!
//! Needs root (namespaces, tmpfs mounts), `weed` from
//! `deploy/scripts/setup-s3.sh`, and for clock jumps libfaketime
//! (`deploy/scripts/chaos.sh` sets all of it up).

mod faults;
mod load;
mod oracle;
mod phases;
mod proxy;
mod reader;
mod run;
mod schedule;
mod summary;

use anyhow::{bail, Context, Result};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use strata_tests::cluster::TestCluster;
use strata_tests::netns::{self, ZoneNet};
use strata_tests::s3::{self, S3Server};
use strata_tests::tmpfs::SmallDisk;
use strata_tests::wait_for;

const STREAM: &str = "chaos";
const SHARDS: u32 = 4;
const GROUP: &str = "auditors";
const NODES: usize = 3;
/// Each core node's data disk.
const DISK_MIB: u64 = 1024;
const FAKETIME_LIB: &str = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1";
/// Tier sealed segments soon and keep little locally, so tiering and log
/// purging run all through the campaign.
const CORE_EXTRA: &str =
    "object_store = \"s3://strata/chaos\"\nsegment_age_max_ms = 3000\nlocal_retention_ms = 5000\n";

/// Command-line settings.
#[derive(Debug, Clone)]
pub struct Args {
    pub duration_secs: u64,
    pub seed: u64,
    pub fault_every_ms: u64,
    pub out: PathBuf,
    pub max_active: usize,
    pub lanes: u64,
    pub clock_jumps: bool,
    /// The fault kinds drawn (`--kinds a,b`; default: all).
    pub kinds: Vec<schedule::Kind>,
}

const USAGE: &str = "usage: strata-chaos [--duration-secs N] [--seed N] [--fault-every-ms N] [--out DIR] [--max-active N] [--lanes N] [--kinds k1,k2] [--no-clock-jumps]";

fn parse_args(argv: &[String]) -> Result<Args> {
    let mut a = Args {
        duration_secs: 300,
        seed: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_secs()),
        fault_every_ms: 1_500,
        out: PathBuf::new(),
        max_active: 3,
        lanes: 4,
        clock_jumps: true,
        kinds: schedule::Kind::ALL.to_vec(),
    };
    let mut it = argv.iter();
    while let Some(flag) = it.next() {
        if flag == "--no-clock-jumps" {
            a.clock_jumps = false;
            continue;
        }
        if flag == "-h" || flag == "--help" {
            bail!("{USAGE}");
        }
        let value = it
            .next()
            .with_context(|| format!("{flag} needs a value\n{USAGE}"))?;
        let num = || {
            value
                .parse::<u64>()
                .with_context(|| format!("{flag} {value:?}: not a whole number"))
        };
        match flag.as_str() {
            "--duration-secs" => a.duration_secs = num()?,
            "--seed" => a.seed = num()?,
            "--fault-every-ms" => a.fault_every_ms = num()?.max(100),
            "--out" => a.out = PathBuf::from(value),
            "--max-active" => a.max_active = num()?.max(1) as usize,
            "--lanes" => a.lanes = num()?.max(1),
            "--kinds" => {
                a.kinds = value
                    .split(',')
                    .map(str::parse)
                    .collect::<Result<_, String>>()
                    .map_err(|e| anyhow::anyhow!("--kinds: {e}"))?;
            }
            other => bail!("unknown flag {other}\n{USAGE}"),
        }
    }
    if a.out.as_os_str().is_empty() {
        a.out = PathBuf::from(format!("target/chaos/seed-{}", a.seed));
    }
    Ok(a)
}

fn main() {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    if argv.first().is_some_and(|a| a == "forward") {
        if let Err(e) = proxy::forward_main(&argv[1..]) {
            eprintln!("strata-chaos forward: {e:#}");
            std::process::exit(2);
        }
        return;
    }
    let args = match parse_args(&argv) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e:#}");
            std::process::exit(2);
        }
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let code = match rt.block_on(campaign(&args)) {
        Ok(true) => 0,
        Ok(false) => 1,
        Err(e) => {
            eprintln!("strata-chaos: the campaign could not run: {e:#}");
            2
        }
    };
    // Processes, mounts and namespaces are released by the guards dropped
    // inside `campaign`.
    drop(rt);
    std::process::exit(code);
}

/// Where the runner keeps each node's disk and clock.
struct Rig {
    /// Held for their unmount on drop.
    _disks: Vec<SmallDisk>,
    data_dirs: Vec<PathBuf>,
    clock_files: Option<Vec<PathBuf>>,
}

/// Mounts a tmpfs per node as `dir/core-ID` (a symlink: the cluster
/// writes each node's `data_dir` there) and writes each node's
/// libfaketime file.
fn rig(dir: &Path, clock_jumps: bool) -> Result<Rig> {
    let mut disks = Vec::new();
    let mut data_dirs = Vec::new();
    for id in 1..=NODES {
        let disk = SmallDisk::mount(DISK_MIB).context("mounting a node's data disk")?;
        std::os::unix::fs::symlink(disk.path(), dir.join(format!("core-{id}")))?;
        data_dirs.push(disk.path().to_path_buf());
        disks.push(disk);
    }
    let clock_files = if clock_jumps && Path::new(FAKETIME_LIB).exists() {
        let files: Vec<PathBuf> = (1..=NODES)
            .map(|id| dir.join(format!("faketime-{id}")))
            .collect();
        for f in &files {
            faults::write_clock(f, "+0")?;
        }
        Some(files)
    } else {
        if clock_jumps {
            println!("clock jumps left out: {FAKETIME_LIB} is missing (apt-get install faketime)");
        }
        None
    };
    Ok(Rig {
        _disks: disks,
        data_dirs,
        clock_files,
    })
}

/// Each node's environment: the S3 settings and, with clock jumps,
/// libfaketime reading the node's own offset file (re-read each second;
/// monotonic clocks untouched, as a wall-clock step leaves them).
fn node_env(
    s3_endpoint: &str,
    clock_files: Option<&[PathBuf]>,
) -> HashMap<u64, Vec<(String, String)>> {
    (1..=NODES as u64)
        .map(|id| {
            let mut env: Vec<(String, String)> = vec![
                ("AWS_ENDPOINT_URL".into(), s3_endpoint.into()),
                ("AWS_ACCESS_KEY_ID".into(), s3::ACCESS_KEY_ID.into()),
                ("AWS_SECRET_ACCESS_KEY".into(), s3::SECRET_ACCESS_KEY.into()),
                ("AWS_REGION".into(), s3::REGION.into()),
                ("AWS_ALLOW_HTTP".into(), "true".into()),
            ];
            if let Some(files) = clock_files {
                let file = files[id as usize - 1].to_string_lossy().into_owned();
                env.extend([
                    ("LD_PRELOAD".into(), FAKETIME_LIB.into()),
                    ("FAKETIME_TIMESTAMP_FILE".into(), file),
                    ("FAKETIME_CACHE_DURATION".into(), "1".into()),
                    ("FAKETIME_DONT_FAKE_MONOTONIC".into(), "1".into()),
                ]);
            }
            (id, env)
        })
        .collect()
}

/// Runs the campaign; Ok(passed).
async fn campaign(args: &Args) -> Result<bool> {
    std::fs::create_dir_all(&args.out)?;
    if let Some(why) = netns::unavailable() {
        bail!("{why}");
    }
    println!(
        "strata-chaos: seed {} for {} s, a fault every {} ms on average, output in {}",
        args.seed,
        args.duration_secs,
        args.fault_every_ms,
        args.out.display()
    );
    let net = ZoneNet::create(NODES, 0)?;
    let root = net.layout().root_addr();
    let dir = tempfile::Builder::new().prefix("strata-chaos").tempdir()?;
    let rig = rig(dir.path(), args.clock_jumps)?;
    if rig.clock_files.is_none() && args.kinds.iter().all(|k| *k == schedule::Kind::ClockJump) {
        bail!("--kinds allows clock jumps only, and they are left out");
    }
    let s3 = S3Server::start(&dir.path().join("s3")).await?;
    let upstream: SocketAddr = s3
        .endpoint()
        .trim_start_matches("http://")
        .parse()
        .context("the S3 server's endpoint")?;
    let reachable = proxy::start(SocketAddr::new(root.into(), 0), upstream).await?;
    let local = SocketAddr::from(([127, 0, 0, 1], reachable.port()));
    let forwarders = (0..NODES)
        .map(|k| proxy::ZoneForwarder::spawn(&net.netns(k), local, reachable))
        .collect::<Result<Vec<_>>>()?;
    let env = node_env(&format!("http://{local}"), rig.clock_files.as_deref());
    let cluster = TestCluster::start_on(net, dir, CORE_EXTRA, env).await?;
    cluster.create_stream(STREAM, SHARDS, 3).await?;
    let mut targets = faults::Targets {
        cluster,
        s3,
        stream: STREAM.into(),
        shards: SHARDS,
        data_dirs: rig.data_dirs.clone(),
        clock_files: rig.clock_files.clone(),
        disk_log_marks: HashMap::new(),
        meta_restarts: 0,
    };
    let r = phases::drive(args, &mut targets).await;
    summary::copy_logs(&targets, &args.out);
    // The processes first (dropping the cluster kills them and deletes the
    // namespaces), then their disks.
    drop(targets);
    drop(forwarders);
    drop(rig);
    r
}

/// Waits until `what` holds, for the final phase.
pub async fn settle<F, Fut>(what: &str, timeout: Duration, f: F) -> Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<Option<()>>>,
{
    wait_for(what, timeout, f).await
}

/// Seconds since `t0`, for progress lines.
pub fn since(t0: Instant) -> u64 {
    t0.elapsed().as_secs()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Result<Args> {
        parse_args(&s.split_whitespace().map(String::from).collect::<Vec<_>>())
    }

    #[test]
    fn flags_are_read_and_bad_ones_named() {
        let a = args("--duration-secs 60 --seed 9 --fault-every-ms 1500 --out x --no-clock-jumps")
            .unwrap();
        assert_eq!((a.duration_secs, a.seed, a.fault_every_ms), (60, 9, 1500));
        assert_eq!(a.out, PathBuf::from("x"));
        assert!(!a.clock_jumps);
        let a = args("--kinds isolate_zone,s3_outage").unwrap();
        assert_eq!(a.kinds, [schedule::Kind::Isolate, schedule::Kind::S3Outage]);
        assert!(format!("{:#}", args("--kinds nope").unwrap_err()).contains("unknown fault kind"));
        assert_eq!(
            args("--seed 5").unwrap().out,
            PathBuf::from("target/chaos/seed-5")
        );
        let e = format!("{:#}", args("--seed five").unwrap_err());
        assert!(e.contains("--seed \"five\""), "{e}");
        assert!(format!("{:#}", args("--bogus 1").unwrap_err()).contains("unknown flag --bogus"));
        assert!(format!("{:#}", args("--seed").unwrap_err()).contains("--seed needs a value"));
    }
}
