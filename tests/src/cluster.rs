//! A three-zone core cluster and an edge agent as real processes on loopback,
//! optionally with a relay in front of every node's peer port (see
//! [`crate::relay`]) so tests can partition a node.

use crate::relay::{self, Partition};
use crate::{free_udp_addr, wait_for, Proc};
use anyhow::{Context, Result};
use std::net::SocketAddr;
use std::time::Duration;
use strata_client::api;
use strata_client::cluster::Cluster;
use strata_client::tls::DevPki;
use strata_client::{Client, ClientError};

pub struct CoreNode {
    pub id: u64,
    pub zone: String,
    pub addr: SocketAddr,
    pub proc: Proc,
}

pub struct TestCluster {
    pub dir: tempfile::TempDir,
    pub pki: DevPki,
    pub nodes: Vec<CoreNode>,
    pub edge: Proc,
    pub edge_addr: SocketAddr,
    pub partition: Partition,
    /// The `[[peers]]` section every node's config carries (the initial cluster).
    peers: String,
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
            specs.push((id, zone, addr, bind, advertise));
        }
        // Top-level keys first: the [[peers]] tables end the TOML's top level.
        let mut peers = format!("{core_extra}\n");
        for (id, zone, addr, _, advertise) in &specs {
            peers += &format!("\n[[peers]]\nid = {id}\nzone = \"{zone}\"\naddr = \"{addr}\"\npeer_addr = \"{advertise}\"\n");
        }
        let mut nodes = Vec::new();
        for (id, zone, addr, bind, advertise) in &specs {
            let proc = spawn_core(&p, &pki, &peers, *id, zone, *addr, *bind, *advertise)?;
            nodes.push(CoreNode {
                id: *id,
                zone: zone.clone(),
                addr: *addr,
                proc,
            });
        }
        let edge_addr = free_udp_addr();
        let core_addrs: Vec<String> = nodes.iter().map(|n| format!("\"{}\"", n.addr)).collect();
        std::fs::write(
            p.join("edge.toml"),
            format!(
                "data_dir = {:?}\nlisten_addr = \"{edge_addr}\"\ntls_cert = {:?}\ntls_key = {:?}\ncore_addrs = [{}]\ncore_ca = {:?}\nretry_backoff_ms_max = 200\n",
                p.join("edge"),
                pki.cert,
                pki.key,
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
            peers,
        };
        c.wait_registered(n as usize).await?;
        Ok(c)
    }

    /// Starts node `id` in `zone` configured to join the running cluster
    /// (the initial cluster as its `peers`, without itself). Returns its
    /// client and peer addresses, for `add-node`.
    pub fn start_joining_node(&mut self, id: u64, zone: &str) -> Result<(SocketAddr, SocketAddr)> {
        let (addr, peer) = (free_udp_addr(), free_udp_addr());
        let p = self.dir.path().to_path_buf();
        let proc = spawn_core(&p, &self.pki, &self.peers, id, zone, addr, peer, peer)?;
        self.nodes.push(CoreNode {
            id,
            zone: zone.into(),
            addr,
            proc,
        });
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
        let targets: Vec<SocketAddr> = self.seeds();
        let ca = self.pki.ca.clone();
        wait_for(
            &format!("a leader of {stream}/{shard}"),
            Duration::from_secs(30),
            || {
                let (targets, ca) = (targets.clone(), ca.clone());
                async move {
                    for t in targets {
                        let c = Client::new(t, &ca)?;
                        let c2 = c;
                        let Ok(Ok(v)) =
                            tokio::time::timeout(Duration::from_secs(1), api::cluster_status(&c2))
                                .await
                        else {
                            continue;
                        };
                        if v.shards
                            .iter()
                            .any(|s| s.stream == stream && s.shard == shard)
                        {
                            return Ok(Some(v.node));
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
        let n = self.node(id);
        n.proc = Proc::spawn(
            "strata-core",
            &p.join(format!("core-{id}.toml")),
            &p.join(format!("core-{id}.log")),
        )
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
                        tokio::time::timeout(Duration::from_secs(1), api::cluster_status(&c)).await
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
}

/// Writes node `id`'s config and starts it.
#[allow(clippy::too_many_arguments)]
fn spawn_core(
    p: &std::path::Path,
    pki: &DevPki,
    peers: &str,
    id: u64,
    zone: &str,
    addr: SocketAddr,
    bind: SocketAddr,
    advertise: SocketAddr,
) -> Result<Proc> {
    let cfg = p.join(format!("core-{id}.toml"));
    std::fs::write(
        &cfg,
        format!(
            "node_id = {id}\nzone = \"{zone}\"\ndata_dir = {:?}\nlisten_addr = \"{addr}\"\npeer_addr = \"{bind}\"\npeer_advertise_addr = \"{advertise}\"\ntls_cert = {:?}\ntls_key = {:?}\ntls_ca = {:?}\n{peers}",
            p.join(format!("core-{id}")),
            pki.cert,
            pki.key,
            pki.ca
        ),
    )?;
    Proc::spawn("strata-core", &cfg, &p.join(format!("core-{id}.log")))
}
