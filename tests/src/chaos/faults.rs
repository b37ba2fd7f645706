//! Injecting and healing the campaign's faults on the real cluster: SIGKILL
//! and restart (a core node, the edge), zone cuts in the kernel
//! ([`strata_tests::netns`]), a ballast file that fills a core node's data
//! disk (a tmpfs of its own), the S3 server killed and restarted, and a core
//! node's wall clock moved through libfaketime's timestamp file.

use super::schedule::{Kind, Plan, Resource};
use anyhow::{Context, Result};
use std::collections::HashMap;
use std::io::Write as _;
use std::path::PathBuf;
use std::time::Duration;
use strata_client::api;
use strata_tests::cluster::TestCluster;
use strata_tests::s3::S3Server;
use strata_tests::Proc;

/// A fault as injected: what it hit.
#[derive(Debug, Clone)]
pub struct Injected {
    pub kind: Kind,
    /// The core node it hit (kills, disk, clock, isolation, the cut's
    /// sender).
    pub node: Option<u64>,
    /// For a kill: the shard it leads (or follows).
    pub shard: Option<u32>,
    /// The cut's receiver.
    pub peer: Option<u64>,
    pub clock_offset_s: Option<i64>,
    pub resources: Vec<Resource>,
}

impl Injected {
    pub fn describe(&self) -> String {
        match (self.kind, self.node, self.peer, self.clock_offset_s) {
            (Kind::KillLeader | Kind::KillFollower, Some(n), _, _) => {
                let s = self.shard.unwrap_or(0);
                format!("{} node {n} (shard {s})", self.kind)
            }
            (Kind::CutOneWay, Some(n), Some(p), _) => format!("{} {n}->{p}", self.kind),
            (Kind::ClockJump, Some(n), _, Some(s)) => format!("{} node {n} {s:+}s", self.kind),
            (k, Some(n), _, _) => format!("{k} node {n}"),
            (k, _, _, _) => k.to_string(),
        }
    }
}

/// What the faults act on.
pub struct Targets {
    pub cluster: TestCluster,
    pub s3: S3Server,
    pub stream: String,
    pub shards: u32,
    /// Node `id`'s data dir (on its own tmpfs), index `id - 1`.
    pub data_dirs: Vec<PathBuf>,
    /// Node `id`'s libfaketime timestamp file, index `id - 1` (None: no
    /// libfaketime, no clock jumps).
    pub clock_files: Option<Vec<PathBuf>>,
    /// Length of node `id`'s log when its disk was filled.
    pub disk_log_marks: HashMap<u64, u64>,
    /// Nodes restarted after a disk-full episode because their metadata
    /// group stopped on the full disk (docs/architecture.md: it is not
    /// reopened yet, the node needs a restart).
    pub meta_restarts: u64,
}

impl Targets {
    /// Which node leads each shard of the stream, as each live node says
    /// of itself (0.5 s per node: a node cut off or down is skipped).
    async fn leaders(&self) -> HashMap<u32, u64> {
        let mut out = HashMap::new();
        for n in &self.cluster.nodes {
            let c = self.cluster.client(n.addr);
            let status = tokio::time::timeout(Duration::from_millis(500), api::cluster_status(&c));
            if let Ok(Ok(v)) = status.await {
                for s in v.shards.iter().filter(|s| s.stream == self.stream) {
                    out.insert(s.shard, v.node);
                }
            }
            c.close().await;
        }
        out
    }

    /// Resolves `plan` against the running cluster: a kill hits the leader
    /// of shard `plan.node % shards`, or a node that does not lead it (a
    /// follower); then the resources it needs. `busy` says which are held
    /// by running faults; None if one it needs is.
    pub async fn resolve(&self, plan: &Plan, busy: impl Fn(Resource) -> bool) -> Option<Injected> {
        let nodes = self.cluster.nodes.len() as u64;
        let shard = (plan.node % u64::from(self.shards)) as u32;
        let node = match plan.kind {
            Kind::KillLeader | Kind::KillFollower => {
                let leader = self.leaders().await.get(&shard).copied();
                let want_leader = plan.kind == Kind::KillLeader;
                let pick = (0..nodes)
                    .map(|k| (plan.node + k - 1) % nodes + 1)
                    .find(|n| (leader == Some(*n)) == want_leader && !busy(Resource::Node(*n)));
                Some(pick.unwrap_or(plan.node))
            }
            Kind::KillEdge | Kind::S3Outage => None,
            _ => Some(plan.node),
        };
        let mut resources: Vec<Resource> = node.map(Resource::Node).into_iter().collect();
        match plan.kind {
            Kind::KillEdge => resources.push(Resource::Edge),
            Kind::S3Outage => resources.push(Resource::S3),
            Kind::Isolate | Kind::CutOneWay => resources.push(Resource::Net),
            _ => {}
        }
        if resources.iter().any(|r| busy(*r)) {
            return None;
        }
        Some(Injected {
            kind: plan.kind,
            node,
            shard: matches!(plan.kind, Kind::KillLeader | Kind::KillFollower).then_some(shard),
            peer: (plan.kind == Kind::CutOneWay).then_some(plan.peer),
            clock_offset_s: (plan.kind == Kind::ClockJump).then_some(plan.clock_offset_s),
            resources,
        })
    }

    pub async fn inject(&mut self, f: &Injected) -> Result<()> {
        let node = f.node.unwrap_or(0);
        match f.kind {
            Kind::KillLeader | Kind::KillFollower => self.cluster.kill9(node),
            Kind::KillEdge => self.cluster.edge.kill9(),
            Kind::Isolate => self.net()?.isolate(node as usize - 1)?,
            Kind::CutOneWay => {
                let peer = f.peer.context("a cut without a receiver")?;
                self.net()?
                    .cut_one_way(node as usize - 1, peer as usize - 1)?;
            }
            Kind::DiskFull => {
                let len = std::fs::metadata(self.log_of(node)).map_or(0, |m| m.len());
                self.disk_log_marks.insert(node, len);
                fill(&self.ballast(node))?;
            }
            Kind::S3Outage => self.s3.stop(),
            Kind::ClockJump => {
                let s = f.clock_offset_s.context("a clock jump without an offset")?;
                self.set_clock(node, &format!("{s:+}"))?;
            }
        }
        Ok(())
    }

    pub async fn heal(&mut self, f: &Injected) -> Result<()> {
        let node = f.node.unwrap_or(0);
        match f.kind {
            Kind::KillLeader | Kind::KillFollower => self.cluster.restart(node)?,
            Kind::KillEdge => {
                let dir = self.cluster.dir.path().to_path_buf();
                self.cluster.edge =
                    Proc::spawn("strata-edge", &dir.join("edge.toml"), &dir.join("edge.log"))?;
            }
            Kind::Isolate | Kind::CutOneWay => self.net()?.heal()?,
            Kind::DiskFull => {
                let b = self.ballast(node);
                std::fs::remove_file(&b).with_context(|| format!("removing {}", b.display()))?;
                if self.meta_hit_full_disk(node) {
                    self.cluster.kill9(node);
                    self.cluster.restart(node)?;
                    self.meta_restarts += 1;
                }
            }
            Kind::S3Outage => self.s3.restart().await?,
            Kind::ClockJump => self.set_clock(node, "+0")?,
        }
        Ok(())
    }

    fn net(&mut self) -> Result<&mut strata_tests::netns::ZoneNet> {
        self.cluster
            .net
            .as_mut()
            .context("the cluster runs without zone namespaces")
    }

    fn log_of(&self, node: u64) -> PathBuf {
        self.cluster.dir.path().join(format!("core-{node}.log"))
    }

    /// Whether node `node` logged a failed write of its metadata group
    /// since its disk was filled.
    fn meta_hit_full_disk(&self, node: u64) -> bool {
        use std::io::{Read as _, Seek as _};
        let mark = self.disk_log_marks.get(&node).copied().unwrap_or(0);
        let Ok(mut f) = std::fs::File::open(self.log_of(node)) else {
            return false;
        };
        let mut text = Vec::new();
        if f.seek(std::io::SeekFrom::Start(mark)).is_err() || f.read_to_end(&mut text).is_err() {
            return false;
        }
        String::from_utf8_lossy(&text)
            .lines()
            .any(|l| l.contains("/meta/") && l.contains("No space left on device"))
    }

    fn ballast(&self, node: u64) -> PathBuf {
        self.data_dirs[node as usize - 1].join("chaos-ballast")
    }

    /// Writes libfaketime's offset for node `node` (`+600`, `-30`, `+0`).
    fn set_clock(&self, node: u64, offset: &str) -> Result<()> {
        let files = self.clock_files.as_ref().context("no libfaketime")?;
        write_clock(&files[node as usize - 1], offset)
    }
}

/// Writes a libfaketime timestamp file (`+600`, `-30`, `+0`: seconds),
/// atomically (a new file renamed over it): the library re-reads it while
/// the node runs and must never see it half written.
pub fn write_clock(path: &std::path::Path, offset: &str) -> Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, format!("{offset}\n"))
        .with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("renaming to {}", path.display()))
}

/// Fills the filesystem holding `path` with the file `path`: writes until
/// the disk refuses (ENOSPC), in 1 MiB, then 4 KiB pieces.
fn fill(path: &std::path::Path) -> Result<()> {
    let mut f =
        std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
    for size in [1 << 20, 4 << 10] {
        let chunk = vec![0u8; size];
        loop {
            match f.write_all(&chunk) {
                Ok(()) => {}
                Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => break,
                Err(e) => return Err(e).with_context(|| format!("filling {}", path.display())),
            }
        }
    }
    Ok(())
}
