//! A three-zone core cluster and an edge agent as real processes on loopback,
//! optionally with a relay in front of every node's peer port (see
//! [`crate::relay`]) so tests can partition a node; or, with
//! [`TestCluster::start_in_zones`], each node in its own zone network
//! namespace ([`crate::netns`]), partitioned in the kernel.
//!
//! Besides starting and stopping nodes, the harness reads each node on its
//! own (no routing, no fallback to another replica): its Prometheus
//! counters, its view of the shards it leads (with the Raft term), its
//! records ([`TestCluster::assert_replicas_identical`]) and, for the tiering
//! tests, the snapshot and purge point it keeps on disk.

use crate::netns::{self, ZoneNet};
use crate::relay::{self, Partition};
use crate::{free_udp_addr, wait_for, Proc};
use anyhow::{anyhow, bail, Context, Result};
use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use strata_client::api::{self, ConsumedRecord, Start};
use strata_client::cluster::Cluster;
use strata_client::tls::DevPki;
use strata_client::{Client, ClientError};

pub struct CoreNode {
    pub id: u64,
    pub zone: String,
    pub addr: SocketAddr,
    /// The node's Prometheus endpoint (`GET /metrics`).
    pub metrics: SocketAddr,
    pub proc: Proc,
    /// The network namespace it runs in (None: the test's own).
    pub netns: Option<String>,
}

pub struct TestCluster {
    pub dir: tempfile::TempDir,
    pub pki: DevPki,
    pub nodes: Vec<CoreNode>,
    pub edge: Proc,
    pub edge_addr: SocketAddr,
    pub partition: Partition,
    /// The top-level keys every node's config carries (`start_with`).
    core_extra: String,
    /// The `[[peers]]` section every node's config carries (the initial cluster).
    peers: String,
    /// Extra environment of node `id`'s process, also on restart
    /// ([`TestCluster::start_on`]).
    node_env: HashMap<u64, Vec<(String, String)>>,
    /// The zone namespaces (`start_in_zones`); zone `k` holds node `k + 1`.
    /// Last, so dropped after the processes in it are killed.
    pub net: Option<ZoneNet>,
}

impl TestCluster {
    /// Starts `n` core nodes in zones az-a, az-b, … and one edge agent.
    pub async fn start(n: u64, relays: bool) -> Result<Self> {
        Self::start_with(n, relays, "").await
    }

    /// [`TestCluster::start`] with top-level keys added to every core's config.
    pub async fn start_with(n: u64, relays: bool, core_extra: &str) -> Result<Self> {
        let dir = tempfile::tempdir()?;
        let p = dir.path().to_path_buf();
        let (pki, _) = DevPki::ensure(&p.join("tls"))?;
        let partition = Partition::default();
        let mut specs = Vec::new();
        for id in 1..=n {
            let zone = format!("az-{}", (b'a' + (id - 1) as u8) as char);
            let addr = free_udp_addr();
            let bind = free_udp_addr();
            let advertise = if relays {
                partition.register(bind, id);
                relay::start(bind, id, partition.clone()).await?
            } else {
                bind
            };
            specs.push(NodeSpec {
                id,
                zone,
                addr,
                bind,
                advertise,
                metrics: free_udp_addr(),
                netns: None,
            });
        }
        Self::launch(dir, pki, specs, core_extra, HashMap::new(), partition, None).await
    }

    /// Starts `n` core nodes, node `k + 1` in zone namespace `k` of a new
    /// [`ZoneNet`] with `latency_ms` between zones (0: none), and one edge
    /// agent in the test's namespace. `None` (after a `skipped:` line)
    /// where network namespaces cannot be made (not root, no `ip`).
    pub async fn start_in_zones(n: u64, core_extra: &str, latency_ms: u32) -> Result<Option<Self>> {
        if let Some(why) = netns::unavailable() {
            println!("skipped: {why}");
            return Ok(None);
        }
        let net = ZoneNet::create(n as usize, latency_ms)?;
        Self::start_on(net, tempfile::tempdir()?, core_extra, HashMap::new())
            .await
            .map(Some)
    }

    /// [`TestCluster::start_in_zones`] on a zone network and in a directory
    /// the caller made (so it can, say, mount a node's data dir `core-ID`
    /// first, or serve the zones at the network's root address), one node
    /// per zone; node `id` runs with the extra environment `node_env[id]`,
    /// also when restarted.
    pub async fn start_on(
        net: ZoneNet,
        dir: tempfile::TempDir,
        core_extra: &str,
        node_env: HashMap<u64, Vec<(String, String)>>,
    ) -> Result<Self> {
        let n = net.layout().zones as u64;
        let p = dir.path().to_path_buf();
        let (pki, _) = DevPki::ensure(&p.join("tls"))?;
        let ids: Vec<u64> = (1..=n).collect();
        let ips: Vec<_> = (0..n as usize).map(|k| net.node_addr(k)).collect();
        netns::issue_zone_certs(&pki, &ids, &ips)?;
        let specs = ids
            .iter()
            .zip(&ips)
            .map(|(&id, &ip)| NodeSpec {
                id,
                zone: format!("az-{}", (b'a' + (id - 1) as u8) as char),
                addr: SocketAddr::new(ip.into(), 7500),
                bind: SocketAddr::new(ip.into(), 7501),
                advertise: SocketAddr::new(ip.into(), 7501),
                metrics: SocketAddr::new(ip.into(), 9464),
                netns: Some(net.netns(id as usize - 1)),
            })
            .collect();
        let partition = Partition::default();
        Self::launch(dir, pki, specs, core_extra, node_env, partition, Some(net)).await
    }

    /// Starts the nodes of `specs` and an edge agent, and waits until the
    /// cluster registered them all.
    async fn launch(
        dir: tempfile::TempDir,
        pki: DevPki,
        specs: Vec<NodeSpec>,
        core_extra: &str,
        node_env: HashMap<u64, Vec<(String, String)>>,
        partition: Partition,
        net: Option<ZoneNet>,
    ) -> Result<Self> {
        let p = dir.path().to_path_buf();
        let n = specs.len();
        let mut peers = String::new();
        for s in &specs {
            let (id, zone, addr, advertise) = (s.id, &s.zone, s.addr, s.advertise);
            peers += &format!("\n[[peers]]\nid = {id}\nzone = \"{zone}\"\naddr = \"{addr}\"\npeer_addr = \"{advertise}\"\n");
        }
        let mut nodes = Vec::new();
        for spec in &specs {
            let env = node_env.get(&spec.id).map_or(&[][..], Vec::as_slice);
            nodes.push(spawn_core(&p, &pki, core_extra, &peers, spec, env)?);
        }
        let edge_addr = free_udp_addr();
        let core_addrs: Vec<String> = nodes.iter().map(|n| format!("\"{}\"", n.addr)).collect();
        std::fs::write(
            p.join("edge.toml"),
            format!(
                "data_dir = {:?}\nlisten_addr = \"{edge_addr}\"\ntls_cert = {:?}\ntls_key = {:?}\ncore_addrs = [{}]\ncore_ca = {:?}\nretry_backoff_ms_max = 200\nsuperusers = [\"admin\"]\n",
                p.join("edge"),
                pki.edge.cert,
                pki.edge.key,
                core_addrs.join(", "),
                pki.ca
            ),
        )?;
        let edge = Proc::spawn("strata-edge", &p.join("edge.toml"), &p.join("edge.log"))?;
        let c = Self {
            dir,
            pki,
            nodes,
            edge,
            edge_addr,
            partition,
            core_extra: core_extra.to_string(),
            peers,
            node_env,
            net,
        };
        c.wait_registered(n).await?;
        let core = c.cluster();
        strata_client::access::ensure_rule(&core, &strata_client::access::edge_agent_rule("edge"))
            .await?;
        Ok(c)
    }

    /// Starts node `id` in `zone` configured to join the running cluster
    /// (the initial cluster as its `peers`, without itself). Returns its
    /// client and peer addresses, for `add-node`.
    pub fn start_joining_node(&mut self, id: u64, zone: &str) -> Result<(SocketAddr, SocketAddr)> {
        let extra = self.core_extra.clone();
        self.start_joining_node_with(id, zone, &extra)
    }

    /// [`TestCluster::start_joining_node`] with `core_extra` as the node's
    /// top-level keys instead of the ones the cluster started with.
    pub fn start_joining_node_with(
        &mut self,
        id: u64,
        zone: &str,
        core_extra: &str,
    ) -> Result<(SocketAddr, SocketAddr)> {
        let (addr, peer) = (free_udp_addr(), free_udp_addr());
        let spec = NodeSpec {
            id,
            zone: zone.to_string(),
            addr,
            bind: peer,
            advertise: peer,
            metrics: free_udp_addr(),
            netns: None,
        };
        let p = self.dir.path().to_path_buf();
        let node = spawn_core(&p, &self.pki, core_extra, &self.peers, &spec, &[])?;
        self.nodes.push(node);
        Ok((addr, peer))
    }

    /// Last lines of every daemon's log, for failure messages.
    /// The tail of every process's log; with `STRATA_TEST_LOG_DIR` set, the
    /// whole logs are also copied there (one folder per call).
    pub fn logs(&self) -> String {
        let mut out = String::new();
        if let Some(dir) = std::env::var_os("STRATA_TEST_LOG_DIR") {
            let stamp = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis());
            let dest = std::path::Path::new(&dir).join(format!("{}-{stamp}", std::process::id()));
            let procs = self.nodes.iter().map(|n| &n.proc).chain([&self.edge]);
            for p in procs {
                let copied = std::fs::create_dir_all(&dest).and_then(|_| {
                    let name = p.log.file_name().unwrap_or_default();
                    std::fs::copy(&p.log, dest.join(name))
                });
                if let Err(e) = copied {
                    out += &format!("(copying {} failed: {e})\n", p.log.display());
                }
            }
            out += &format!("whole logs: {}\n", dest.display());
        }
        for n in &self.nodes {
            out += &format!("--- core node {} ---\n{}\n", n.id, n.proc.log_tail());
        }
        out += &format!("--- edge ---\n{}\n", self.edge.log_tail());
        out
    }

    pub fn seeds(&self) -> Vec<SocketAddr> {
        self.nodes.iter().map(|n| n.addr).collect()
    }

    /// Node `id`'s client address.
    pub fn addr_of(&self, id: u64) -> Result<SocketAddr> {
        self.nodes
            .iter()
            .find(|n| n.id == id)
            .map(|n| n.addr)
            .ok_or_else(|| anyhow!("no node {id} in this cluster"))
    }

    pub fn cluster(&self) -> Cluster {
        Cluster::new(self.seeds(), &self.pki.ca).expect("cluster client")
    }

    pub fn client(&self, addr: SocketAddr) -> Client {
        Client::new(addr, &self.pki.ca).expect("client")
    }

    pub fn node(&mut self, id: u64) -> &mut CoreNode {
        self.nodes.iter_mut().find(|n| n.id == id).expect("node id")
    }

    /// Waits until a metadata leader has registered `n` nodes.
    pub async fn wait_registered(&self, n: usize) -> Result<()> {
        let seeds = self.seeds();
        let ca = self.pki.ca.clone();
        wait_for(
            "the metadata group to register every node",
            Duration::from_secs(60),
            || {
                let (seeds, ca) = (seeds.clone(), ca.clone());
                async move {
                    for s in seeds {
                        let c = Client::new(s, &ca)?;
                        if let Ok(v) = api::cluster_status(&c).await {
                            if v.meta_leader != 0 && v.nodes.len() == n {
                                return Ok(Some(()));
                            }
                        }
                    }
                    Ok(None)
                }
            },
        )
        .await
    }

    /// The node that currently leads `stream/shard` (asks every live node).
    pub async fn leader_of(&self, stream: &str, shard: u32) -> Result<u64> {
        Ok(self.leadership(stream, shard, &[]).await?.0)
    }

    /// The node that leads `stream/shard` and its Raft term, as that node
    /// itself reports them; nodes in `except` are not asked (a node cut off
    /// by a partition may still believe it leads).
    pub async fn leadership(&self, stream: &str, shard: u32, except: &[u64]) -> Result<(u64, u64)> {
        let targets: Vec<SocketAddr> = self
            .nodes
            .iter()
            .filter(|n| !except.contains(&n.id))
            .map(|n| n.addr)
            .collect();
        let ca = self.pki.ca.clone();
        wait_for(
            &format!("a leader of {stream}/{shard}"),
            Duration::from_secs(30),
            || {
                let (targets, ca) = (targets.clone(), ca.clone());
                async move {
                    for t in targets {
                        let c = Client::new(t, &ca)?;
                        let Ok(Ok(v)) =
                            tokio::time::timeout(Duration::from_secs(1), api::cluster_status(&c))
                                .await
                        else {
                            continue;
                        };
                        if let Some(s) = v
                            .shards
                            .iter()
                            .find(|s| s.stream == stream && s.shard == shard)
                        {
                            return Ok(Some((v.node, s.term)));
                        }
                    }
                    Ok(None)
                }
            },
        )
        .await
    }

    /// The metadata leader as some live node sees it.
    pub async fn meta_leader(&self) -> Result<u64> {
        wait_for("a metadata leader", Duration::from_secs(30), || async {
            Ok(self.meta_leader_view().await?.map(|v| v.node))
        })
        .await
    }

    /// The cluster status as the metadata leader itself reports it (a node
    /// that joined a moment ago may not have the catalog yet), if a live
    /// node says it leads.
    pub async fn meta_leader_view(&self) -> Result<Option<api::NodeView>> {
        for t in self.seeds() {
            let c = Client::new(t, &self.pki.ca)?;
            if let Ok(Ok(v)) =
                tokio::time::timeout(Duration::from_secs(1), api::cluster_status(&c)).await
            {
                if v.meta_leader != 0 && v.meta_leader == v.node {
                    return Ok(Some(v));
                }
            }
        }
        Ok(None)
    }

    pub fn kill9(&mut self, id: u64) {
        self.node(id).proc.kill9();
    }

    pub fn restart(&mut self, id: u64) -> Result<()> {
        let p = self.dir.path().to_path_buf();
        let env = self.node_env.get(&id).cloned().unwrap_or_default();
        let n = self.node(id);
        let (cfg, log) = (
            p.join(format!("core-{id}.toml")),
            p.join(format!("core-{id}.log")),
        );
        n.proc = spawn_core_proc(n.netns.as_deref(), &cfg, &log, &env)
            .with_context(|| format!("restarting node {id}"))?;
        Ok(())
    }

    /// Waits until every replica of every shard of `stream` has caught up
    /// (lag 0 as the shard leaders see it).
    pub async fn wait_caught_up(&self, stream: &str, shards: u32) -> Result<()> {
        let targets = self.seeds();
        let ca = self.pki.ca.clone();
        wait_for("replicas to catch up", Duration::from_secs(120), || {
            let (targets, ca) = (targets.clone(), ca.clone());
            async move {
                let mut ok = 0;
                for t in targets {
                    let c = Client::new(t, &ca)?;
                    if let Ok(Ok(v)) =
                        // A node holding thousands of shards takes a while to describe them.
                        tokio::time::timeout(Duration::from_secs(5), api::cluster_status(&c))
                                .await
                    {
                        ok += v
                            .shards
                            .iter()
                            .filter(|s| {
                                s.stream == stream
                                    && s.replicas.len() == 3
                                    && s.replicas.iter().all(|r| r.lag == 0)
                            })
                            .count();
                    }
                }
                Ok((ok == shards as usize).then_some(()))
            }
        })
        .await
    }

    pub async fn create_stream(&self, name: &str, shards: u32, replication: u32) -> Result<()> {
        let c = self.cluster();
        c.any(|cl| async move {
            match api::create_stream(&cl, name, shards, replication).await {
                Err(ClientError::Remote(e))
                    if e.code == strata_schema::fb::ErrorCode::StreamExists =>
                {
                    Ok(())
                }
                other => other.map(|_| ()),
            }
        })
        .await?;
        for s in 0..shards {
            self.leader_of(name, s).await?;
        }
        Ok(())
    }

    /// Value of the unlabelled Prometheus counter or gauge `name` on node
    /// `id` (0 when the node has not registered it yet: a counter appears on
    /// its first increment).
    pub async fn metric(&self, id: u64, name: &str) -> Result<f64> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let addr = self
            .nodes
            .iter()
            .find(|n| n.id == id)
            .map(|n| n.metrics)
            .ok_or_else(|| anyhow!("no node {id} in this cluster"))?;
        let text = tokio::time::timeout(Duration::from_secs(5), async {
            let mut s = tokio::net::TcpStream::connect(addr).await?;
            s.write_all(b"GET /metrics HTTP/1.0\r\nHost: core\r\n\r\n")
                .await?;
            let mut text = String::new();
            s.read_to_string(&mut text).await?;
            anyhow::Ok(text)
        })
        .await
        .map_err(|_| anyhow!("node {id}'s metrics endpoint {addr} did not answer in 5 s"))??;
        if !text.starts_with("HTTP/1.") || !text.lines().next().is_some_and(|l| l.contains(" 200"))
        {
            bail!(
                "node {id}'s metrics endpoint answered {:?}",
                text.lines().next()
            );
        }
        let Some(line) = text
            .lines()
            .find(|l| l.split_whitespace().next() == Some(name))
        else {
            return Ok(0.0);
        };
        line.split_whitespace()
            .nth(1)
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| anyhow!("node {id}: bad metrics line {line:?}"))
    }

    /// Node `id`'s directory of `stream/shard` (its Raft log and snapshot).
    pub fn shard_dir(&self, id: u64, stream: &str, shard: u32) -> PathBuf {
        self.dir
            .path()
            .join(format!("core-{id}/shards/{stream}/{shard:05}"))
    }

    /// Index of the last entry node `id` purged from the Raft log of
    /// `stream/shard` (its `purged.json`, an openraft `LogId`), if any.
    pub fn purged_index(&self, id: u64, stream: &str, shard: u32) -> Result<Option<u64>> {
        let Some(v) = read_json(&self.shard_dir(id, stream, shard).join("purged.json"))? else {
            return Ok(None);
        };
        let index = v["index"].as_u64();
        index
            .map(Some)
            .ok_or_else(|| anyhow!("node {id}: purged.json without an index: {v}"))
    }

    /// The shard state in node `id`'s snapshot of `stream/shard` (its
    /// `snapshot.json`), if it has one: `next_offset`, `index` (one entry per
    /// data batch, with its `log_index`), the manifest.
    pub fn snapshot_state(
        &self,
        id: u64,
        stream: &str,
        shard: u32,
    ) -> Result<Option<serde_json::Value>> {
        let path = self.shard_dir(id, stream, shard).join("snapshot.json");
        Ok(read_json(&path)?.map(|mut v| v["state"].take()))
    }

    /// Every record of `stream/shard` that node `id` holds, read from that
    /// node alone (no routing: an error if it cannot serve them).
    pub async fn read_replica(
        &self,
        id: u64,
        stream: &str,
        shard: u32,
    ) -> Result<Vec<ConsumedRecord>> {
        let c = self.client(self.addr_of(id)?);
        let first = api::seek(&c, stream, shard, Start::Oldest).await?;
        let end = api::seek(&c, stream, shard, Start::Latest).await?;
        let mut out = Vec::new();
        let mut offset = first;
        while offset < end {
            let f = api::fetch(&c, stream, shard, offset, 10_000, Duration::ZERO).await?;
            if f.records.is_empty() {
                bail!("node {id}: fetch of {stream}/{shard} at {offset} returned nothing before {end}");
            }
            offset = f.next_offset;
            out.extend(f.records);
        }
        c.close().await;
        Ok(out)
    }

    /// Fetches every shard of `stream` from each of its replicas directly
    /// and fails unless they hold identical records (offsets, keys, values,
    /// timestamps, headers) over identical ranges. For a cluster that has
    /// caught up with no writes going on. Returns the records compared per
    /// replica.
    pub async fn assert_replicas_identical(&self, stream: &str) -> Result<u64> {
        // Records per fetch: a page of small records stays under the
        // fetch's 8 MiB.
        const PAGE: u32 = 50_000;
        let info = self.cluster().describe(stream).await?;
        let mut compared = 0;
        for sh in &info.shards {
            let (shard, replicas) = (sh.id, sh.replicas.clone());
            if replicas.len() < 2 {
                bail!("{stream}/{shard} has replicas {replicas:?}: nothing to compare");
            }
            let mut clients = Vec::new();
            for &id in &replicas {
                clients.push((id, Arc::new(self.client(self.addr_of(id)?))));
            }
            // Followers apply a commit a heartbeat after the leader: wait
            // until every replica reports the same range.
            let clients = &clients;
            let (first, end) = wait_for(
                &format!("every replica of {stream}/{shard} to apply the same records"),
                Duration::from_secs(60),
                || async move {
                    let mut ranges = Vec::new();
                    for (id, c) in clients {
                        let first = api::seek(c, stream, shard, Start::Oldest).await?;
                        let end = api::seek(c, stream, shard, Start::Latest).await?;
                        ranges.push((*id, first, end));
                    }
                    let (_, first, end) = ranges[0];
                    let same = ranges.iter().all(|r| (r.1, r.2) == (first, end));
                    if !same {
                        // Shown in the timeout's message if they never agree.
                        bail!("replica ranges (node, first, end): {ranges:?}");
                    }
                    Ok(Some((first, end)))
                },
            )
            .await?;
            // Compared page by page so a long stream is never held whole;
            // the replicas are read in parallel.
            let mut offset = first;
            while offset < end {
                let mut reads = tokio::task::JoinSet::new();
                for (k, (id, c)) in clients.iter().enumerate() {
                    let (id, c, stream) = (*id, c.clone(), stream.to_string());
                    reads.spawn(async move {
                        let f = api::fetch(&c, &stream, shard, offset, PAGE, Duration::ZERO)
                            .await
                            .with_context(|| {
                                format!("node {id}: fetch {stream}/{shard} at {offset}")
                            })?;
                        anyhow::Ok((k, id, f.records))
                    });
                }
                let mut pages = Vec::new();
                while let Some(r) = reads.join_next().await {
                    pages.push(r??);
                }
                pages.sort_unstable_by_key(|p| p.0);
                let n = pages.iter().map(|(_, _, r)| r.len()).min().unwrap_or(0);
                if n == 0 {
                    bail!("a replica of {stream}/{shard} returned nothing at {offset} (end {end})");
                }
                let (_, id0, base) = &pages[0];
                for (_, id, recs) in &pages[1..] {
                    if let Some(k) = (0..n).find(|&k| recs[k] != base[k]) {
                        bail!(
                            "replicas of {stream}/{shard} diverge: node {id0} has {:?}, node {id} has {:?}",
                            base[k],
                            recs[k]
                        );
                    }
                }
                if base[n - 1].offset != offset + n as u64 - 1 {
                    bail!("{stream}/{shard}: offsets from {offset} are not contiguous");
                }
                offset += n as u64;
                compared += n as u64;
            }
            for (_, c) in clients {
                c.close().await;
            }
        }
        Ok(compared)
    }
}

/// Where and how one core node listens.
struct NodeSpec {
    id: u64,
    zone: String,
    addr: SocketAddr,
    bind: SocketAddr,
    advertise: SocketAddr,
    metrics: SocketAddr,
    /// The network namespace to start it in (None: the test's own).
    netns: Option<String>,
}

/// Writes node `n.id`'s config and starts it.
fn spawn_core(
    p: &std::path::Path,
    pki: &DevPki,
    core_extra: &str,
    peers: &str,
    n: &NodeSpec,
    env: &[(String, String)],
) -> Result<CoreNode> {
    let id = n.id;
    let cfg = p.join(format!("core-{id}.toml"));
    // Its own peer certificate (SAN URI strata:node/ID): the peer ports
    // serve members only.
    let peer = pki.peer(id)?;
    // Top-level keys first: the [[peers]] tables end the TOML's top level.
    std::fs::write(
        &cfg,
        format!(
            "node_id = {id}\nzone = \"{}\"\ndata_dir = {:?}\nlisten_addr = \"{}\"\npeer_addr = \"{}\"\npeer_advertise_addr = \"{}\"\nmetrics_addr = \"{}\"\ntls_cert = {:?}\ntls_key = {:?}\npeer_cert = {:?}\npeer_key = {:?}\ntls_ca = {:?}\nsuperusers = [\"admin\"]\n{core_extra}\n{peers}",
            n.zone,
            p.join(format!("core-{id}")),
            n.addr,
            n.bind,
            n.advertise,
            n.metrics,
            pki.cert,
            pki.key,
            peer.cert,
            peer.key,
            pki.ca
        ),
    )?;
    let log = p.join(format!("core-{id}.log"));
    let proc = spawn_core_proc(n.netns.as_deref(), &cfg, &log, env)?;
    Ok(CoreNode {
        id,
        zone: n.zone.clone(),
        addr: n.addr,
        metrics: n.metrics,
        proc,
        netns: n.netns.clone(),
    })
}

/// Starts `strata-core --config cfg` (in `netns`, if any) with `env` added
/// to the environment, its output appended to `log`.
fn spawn_core_proc(
    netns: Option<&str>,
    cfg: &std::path::Path,
    log: &std::path::Path,
    env: &[(String, String)],
) -> Result<Proc> {
    if env.is_empty() {
        return match netns {
            Some(ns) => Proc::spawn_in(ns, "strata-core", cfg, log),
            None => Proc::spawn("strata-core", cfg, log),
        };
    }
    let out = crate::append_to(log)?;
    let config = cfg.to_string_lossy();
    let mut vars = vec![("RUST_LOG", "info,openraft=warn".to_string())];
    vars.extend(env.iter().map(|(k, v)| (k.as_str(), v.clone())));
    let args = ["--config", &*config];
    Proc::start(
        netns,
        "strata-core",
        &args,
        &vars,
        out.try_clone()?,
        out,
        log,
    )
}

/// A JSON file, if it exists.
fn read_json(path: &std::path::Path) -> Result<Option<serde_json::Value>> {
    match std::fs::read(path) {
        Ok(b) => Ok(Some(
            serde_json::from_slice(&b).with_context(|| format!("parsing {}", path.display()))?,
        )),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

/// Checks `records` (one replica's copy of a shard, from offset 0) against
/// what the producers of [`crate::workload`] had acknowledged: offsets run
/// from 0 without gaps, each record carries exactly what was sent (record
/// `i`, attempt `a`: key `key-(i % keys)`, value `"i|a|payload-i:08"`,
/// timestamp `i`), and each acknowledged `(i, a)` is there exactly once.
/// Unacknowledged attempts may be there too (producer to edge is at least
/// once).
pub fn check_acked_contents(
    records: &[ConsumedRecord],
    acked: &HashSet<(u64, u32)>,
    keys: u64,
) -> Result<()> {
    let mut seen: HashMap<(u64, u32), u64> = HashMap::new();
    for (n, r) in records.iter().enumerate() {
        if r.offset != n as u64 {
            bail!("record {n} has offset {}", r.offset);
        }
        let value = std::str::from_utf8(&r.data)
            .map_err(|_| anyhow!("offset {}: value is not UTF-8", r.offset))?;
        let mut it = value.split('|');
        let (Some(Ok(i)), Some(Ok(a))) = (
            it.next().map(str::parse::<u64>),
            it.next().map(str::parse::<u32>),
        ) else {
            bail!(
                "offset {}: value {value:?} is not a workload record",
                r.offset
            );
        };
        let sent = format!("{i}|{a}|payload-{i:08}");
        let key = format!("key-{}", i % keys);
        if value != sent || r.key.as_deref() != Some(&key) || r.timestamp_ms != i as i64 {
            bail!(
                "offset {}: read key {:?} value {value:?} timestamp {}; sent key {key} value {sent:?} timestamp {i}",
                r.offset,
                r.key,
                r.timestamp_ms
            );
        }
        if let Some(prev) = seen.insert((i, a), r.offset) {
            bail!("record {i} attempt {a} at offsets {prev} and {}", r.offset);
        }
    }
    let missing: Vec<_> = acked
        .iter()
        .filter(|k| !seen.contains_key(k))
        .take(5)
        .collect();
    if !missing.is_empty() {
        bail!(
            "{} of {} acknowledged records are missing, e.g. (record, attempt) {missing:?}",
            acked.iter().filter(|k| !seen.contains_key(k)).count(),
            acked.len()
        );
    }
    Ok(())
}
