//! The simulated core: three nodes, each running one real shard group
//! (`Group<ShardState>`: openraft, the segment-log `LogStore`, the shard
//! state machine) over its own [`SimFs`], and the two things a node does
//! for the edge that the simulation drives: append a forward's runs
//! ([`append`], `Node::append`'s path, `raft::append`) and read the
//! shard ([`read`], what the fetch path reads: the index, then the runs it
//! names through `RunReader`).
//!
//! A crash takes the node's group out of the network, shuts its Raft down
//! and drops it, then cuts the power of its disk: what was not fsynced is
//! lost (or, torn, partly kept). A restart opens the group again from that
//! disk, as a node process does.

use super::net::SimNet;
use super::rng::Rng;
use crate::log::segment::SegmentLogOptions;
use crate::raft::command::AppendCmd;
use crate::raft::group::{raft_config, Group, ShardGroup};
use crate::raft::net::Network;
use crate::raft::runs::RunReader;
use crate::raft::types::NodeId;
use bytes::Bytes;
use openraft::error::ClientWriteError;
use openraft::BasicNode;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use strata_segment_log::sim::SimFs;

/// The core nodes of every run.
pub const NODES: [NodeId; 3] = [1, 2, 3];

/// Nested, so that the store creates directories durably.
const DIR: &str = "/data/groups/sim-0";

fn seg_opts() -> SegmentLogOptions {
    // Small segments, so runs cross segment files.
    SegmentLogOptions {
        segment_bytes_max: 16 << 10,
        ..SegmentLogOptions::default()
    }
}

/// Crashes and restarts done.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CrashStats {
    pub crashes: u64,
    pub torn: u64,
}

pub struct Cluster {
    pub net: SimNet,
    /// Draws each node start's election timeout.
    rng: Mutex<Rng>,
    disks: BTreeMap<NodeId, SimFs>,
    live: Mutex<BTreeMap<NodeId, Arc<ShardGroup>>>,
    stats: Mutex<CrashStats>,
}

impl Cluster {
    pub fn new(net: SimNet, rng: Rng) -> Arc<Self> {
        Arc::new(Cluster {
            net,
            rng: Mutex::new(rng),
            disks: NODES.iter().map(|&n| (n, SimFs::new())).collect(),
            live: Mutex::default(),
            stats: Mutex::default(),
        })
    }

    /// The group of `node` if the node is up.
    pub fn group(&self, node: NodeId) -> Option<Arc<ShardGroup>> {
        self.live.lock().expect("live lock").get(&node).cloned()
    }

    pub fn is_up(&self, node: NodeId) -> bool {
        self.live.lock().expect("live lock").contains_key(&node)
    }

    pub fn crash_stats(&self) -> CrashStats {
        *self.stats.lock().expect("stats lock")
    }

    /// Starts `node` from its disk; a pristine group is initialized with the
    /// three nodes, as every initial member of a core cluster does.
    pub async fn start(&self, node: NodeId) -> Result<(), String> {
        let disk = &self.disks[&node];
        let group = Group::open_in(
            disk.shared(),
            self.raft_config()?,
            "sim-0",
            Path::new(DIR),
            node,
            seg_opts(),
            Network::Sim(self.net.network(node)),
        )
        .await
        .map_err(|e| format!("node {node} did not start: {e}"))?;
        let members = NODES
            .iter()
            .map(|&n| (n, BasicNode::new(format!("sim-{n}"))))
            .collect();
        group
            .initialize("sim-0", members)
            .await
            .map_err(|e| format!("node {node}: {e}"))?;
        self.net.register(node, group.raft.clone());
        self.live
            .lock()
            .expect("live lock")
            .insert(node, Arc::new(group));
        Ok(())
    }

    /// The core's Raft configuration, except that the election timeout,
    /// which openraft draws once per start from `[min, max)` with a thread
    /// RNG, is drawn here from the seed (the same distribution).
    fn raft_config(&self) -> Result<Arc<openraft::Config>, String> {
        let base = raft_config("sim-0", None, crate::raft::sm::Timers::SHARD)
            .map_err(|e| e.to_string())?;
        let (min, max) = (base.election_timeout_min, base.election_timeout_max);
        let timeout = self.rng.lock().expect("rng lock").range(min, max - 1);
        let c = openraft::Config {
            election_timeout_min: timeout,
            election_timeout_max: timeout + 1,
            ..(*base).clone()
        };
        c.validate().map(Arc::new).map_err(|e| e.to_string())
    }

    /// A power cut of `node` (`torn`: the seed of a torn one).
    pub async fn crash(&self, node: NodeId, torn: Option<u64>) {
        let Some(group) = self.live.lock().expect("live lock").remove(&node) else {
            return;
        };
        self.net.unregister(node);
        let _ = group.raft.shutdown().await;
        drop(group);
        let disk = &self.disks[&node];
        match torn {
            Some(seed) => disk.crash_torn(seed),
            None => disk.crash(),
        }
        let mut s = self.stats.lock().expect("stats lock");
        s.crashes += 1;
        s.torn += u64::from(torn.is_some());
    }

    /// Stops every node's Raft (end of a run).
    pub async fn shutdown(&self) {
        let groups: Vec<_> = std::mem::take(&mut *self.live.lock().expect("live lock"))
            .into_values()
            .collect();
        for g in groups {
            let _ = g.raft.shutdown().await;
        }
    }
}

/// Why a node did not take a forward.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AppendError {
    NotLeader(Option<NodeId>),
    Unavailable(String),
}

/// The batch bytes of a simulated run: its producer and positions, so a
/// reader can tell that the bytes it got belong to the run the index names.
pub fn batch_bytes(producer_id: u64, first_seq: u64, records: u32) -> Bytes {
    let mut b = Vec::with_capacity(20);
    b.extend_from_slice(&producer_id.to_le_bytes());
    b.extend_from_slice(&first_seq.to_le_bytes());
    b.extend_from_slice(&records.to_le_bytes());
    Bytes::from(b)
}

/// A node's handling of a forward to its shard: the append path of
/// `Node::append` (`raft::append`). Returns the records appended.
pub async fn append(g: &ShardGroup, cmds: Vec<AppendCmd>) -> Result<u64, AppendError> {
    use crate::raft::append::AppendError as E;
    match crate::raft::append::append(g, cmds).await {
        Ok(a) => Ok(a.appended),
        Err(E::Write(ClientWriteError::ForwardToLeader(f))) => {
            Err(AppendError::NotLeader(f.leader_id))
        }
        Err(e) => Err(AppendError::Unavailable(e.to_string())),
    }
}

/// One record a read returned: its offset, producer and position.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Rec {
    pub offset: u64,
    pub producer: u64,
    pub seq: u64,
}

/// Reads every record of the shard on this replica, as the fetch path
/// does: the applied index, then the runs it names in the Raft log.
pub fn read(g: &ShardGroup) -> Result<Vec<Rec>, String> {
    let index = g.sm.read(|s| s.index.clone());
    let mut reader = RunReader::new(&g.log);
    let mut out = Vec::new();
    for e in &index {
        let run = reader.run(e).map_err(|err| err.to_string())?;
        if run.batch != batch_bytes(run.producer_id, run.first_seq, run.records) {
            return Err(format!(
                "log entry {} part {}: the batch bytes are not those of producer {} at seq {}",
                e.log_index, e.part, run.producer_id, run.first_seq
            ));
        }
        for i in 0..e.count {
            out.push(Rec {
                offset: e.base_offset + u64::from(i),
                producer: run.producer_id,
                seq: run.seq((e.skip + i) as usize),
            });
        }
    }
    Ok(out)
}
