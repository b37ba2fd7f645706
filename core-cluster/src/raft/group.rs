//! One Raft group as a node runs it: the openraft handle with its state
//! machine and log store, opened from a directory, initialized once, and
//! watched for a leader. Every shard is one [`ShardGroup`]
//! (`Group<ShardState>`, type configuration `ShardTypes`); the metadata
//! catalog is one [`MetaGroup`] (`Group<Catalog>`, `MetaTypes`).

use crate::catalog::Catalog;
use crate::log::segment::SegmentLogOptions;
use crate::raft::log_store::LogStore;
use crate::raft::log_store::StoreError;
use crate::raft::net::Network;
use crate::raft::peer::QuiesceRequest;
use crate::raft::quiesce::{self, GroupView, Quiet};
use crate::raft::shard::ShardState;
use crate::raft::sm::{GroupSm, GroupState, Timers};
use crate::raft::types::{NodeId, Raft};
use openraft::error::{InitializeError, RaftError};
use openraft::BasicNode;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use strata_segment_log::fs::{Fs, StdFs};

/// Why a Raft group could not be opened, initialized or elect a leader.
#[derive(Debug, thiserror::Error)]
pub enum GroupError {
    #[error("{what} of Raft group {group} at {}: {source}", dir.display())]
    Store {
        group: String,
        what: &'static str,
        dir: std::path::PathBuf,
        source: Box<StoreError>,
    },
    #[error("{what} Raft group {group}: {detail}")]
    Raft {
        group: String,
        what: &'static str,
        detail: String,
    },
    #[error("Raft group {group} elected no leader within {timeout:?}")]
    NoLeader { group: String, timeout: Duration },
}

fn store_error(name: &str, dir: &Path, what: &'static str, source: StoreError) -> GroupError {
    GroupError::Store {
        group: name.to_string(),
        what,
        dir: dir.to_path_buf(),
        source: Box::new(source),
    }
}

/// One Raft group: its Raft handle, state machine and log, all of the
/// type configuration of its state.
pub struct Group<S: GroupState> {
    pub raft: Raft<S::Config>,
    pub sm: GroupSm<S>,
    pub log: LogStore<S::Config>,
    /// Set while this leader hands leadership to the preferred replica:
    /// writes are refused (UNAVAILABLE, clients retry) for that moment.
    pub handing_over: std::sync::atomic::AtomicBool,
    /// Whether the group's timers are stopped while it is idle
    /// ([`crate::raft::quiesce`]).
    pub quiet: std::sync::Mutex<Quiet>,
}

/// Entries kept behind a metadata snapshot, so a briefly lagging follower
/// catches up from the log instead of installing the snapshot.
const KEEP_BEHIND_SNAPSHOT: u64 = 1_000;

pub(crate) fn raft_config(
    name: &str,
    snapshot_every: Option<u64>,
    timers: Timers,
) -> Result<Arc<openraft::Config>, GroupError> {
    let (snapshot_policy, max_in_snapshot_log_to_keep) = match snapshot_every {
        Some(n) => (
            openraft::SnapshotPolicy::LogsSinceLast(n),
            KEEP_BEHIND_SNAPSHOT,
        ),
        // The shard's log is its data: it is never purged behind a snapshot.
        // Tiering to object storage decides what leaves local disk.
        None => (openraft::SnapshotPolicy::Never, u64::MAX),
    };
    let c = openraft::Config {
        cluster_name: name.to_string(),
        heartbeat_interval: timers.heartbeat_ms,
        election_timeout_min: timers.election_min_ms,
        election_timeout_max: timers.election_max_ms,
        snapshot_policy,
        max_in_snapshot_log_to_keep,
        // Bounds one AppendEntries so it fits in a heartbeat interval.
        max_payload_entries: 4,
        ..Default::default()
    };
    c.validate().map(Arc::new).map_err(|e| GroupError::Raft {
        group: name.to_string(),
        what: "raft config",
        detail: e.to_string(),
    })
}

impl<S: GroupState> Group<S> {
    pub(crate) async fn open(
        name: &str,
        dir: &Path,
        node_id: NodeId,
        seg: SegmentLogOptions,
        net: Network,
    ) -> Result<Self, GroupError> {
        let config = raft_config(name, S::SNAPSHOT_EVERY, S::TIMERS)?;
        Self::open_in(StdFs::shared(), config, name, dir, node_id, seg, net).await
    }

    /// [`Self::open`] on the file system `fs` with the Raft configuration
    /// `config` (the simulation passes a simulated disk, and draws each
    /// node's election timeout from its seed).
    pub(crate) async fn open_in(
        fs: Arc<dyn Fs>,
        config: Arc<openraft::Config>,
        name: &str,
        dir: &Path,
        node_id: NodeId,
        seg: SegmentLogOptions,
        net: Network,
    ) -> Result<Self, GroupError> {
        let store_err = |what, source| store_error(name, dir, what, source);
        let log = LogStore::open_in(fs.clone(), dir, seg)
            .map_err(|e| store_err("opening the Raft log", e))?;
        let sm = GroupSm::<S>::open_in(fs.clone(), dir)
            .map_err(|e| store_err("reading the snapshot", e))?;
        Self::start(log, sm, config, name, node_id, net).await
    }

    /// Opens the group again after its Raft stopped on an error (openraft
    /// stops a group on any storage error, e.g. a full disk): the log is
    /// read again from `dir` (a torn tail cut), the state machine is this
    /// group's own, so whoever watches it keeps watching.
    pub(crate) async fn reopen(
        &self,
        name: &str,
        dir: &Path,
        node_id: NodeId,
        seg: SegmentLogOptions,
        net: Network,
    ) -> Result<Self, GroupError> {
        let log = LogStore::open_in(StdFs::shared(), dir, seg)
            .map_err(|e| store_error(name, dir, "opening the Raft log", e))?;
        let config = raft_config(name, S::SNAPSHOT_EVERY, S::TIMERS)?;
        Self::start(log, self.sm.clone(), config, name, node_id, net).await
    }

    async fn start(
        log: LogStore<S::Config>,
        sm: GroupSm<S>,
        config: Arc<openraft::Config>,
        name: &str,
        node_id: NodeId,
        net: Network,
    ) -> Result<Self, GroupError> {
        let raft = Raft::new(node_id, config, net, log.clone(), sm.clone())
            .await
            .map_err(|e| GroupError::Raft {
                group: name.to_string(),
                what: "starting",
                detail: e.to_string(),
            })?;
        Ok(Self {
            raft,
            sm,
            log,
            handing_over: Default::default(),
            quiet: Default::default(),
        })
    }

    /// Initializes a pristine group with `members` (id → peer address).
    pub(crate) async fn initialize(
        &self,
        name: &str,
        members: BTreeMap<NodeId, BasicNode>,
    ) -> Result<(), GroupError> {
        let raft_err = |detail: String| GroupError::Raft {
            group: name.to_string(),
            what: "initializing",
            detail,
        };
        if self
            .raft
            .is_initialized()
            .await
            .map_err(|e| raft_err(e.to_string()))?
        {
            return Ok(());
        }
        match self.raft.initialize(members).await {
            Ok(()) => Ok(()),
            // Another member's log reached us first: already part of a cluster.
            Err(RaftError::APIError(InitializeError::NotAllowed(_))) => Ok(()),
            Err(e) => Err(raft_err(e.to_string())),
        }
    }

    /// What the quiescence check reads of this group's Raft metrics.
    pub fn view(&self) -> GroupView {
        let m = self.raft.metrics();
        let m = m.borrow();
        let cfg = m.membership_config.membership();
        let followers = cfg.voter_ids().filter(|n| *n != m.id).collect();
        GroupView {
            me: m.id,
            leader: m.current_leader,
            term: m.current_term,
            last_log_index: m.last_log_index,
            applied_index: m.last_applied.map(|l| l.index),
            followers,
            changing: cfg.learner_ids().next().is_some() || cfg.get_joint_config().len() > 1,
            matched: m
                .replication
                .as_ref()
                .map(|r| r.iter().map(|(n, l)| (*n, l.map(|l| l.index))).collect())
                .unwrap_or_default(),
        }
    }

    /// This node, the leader it knows and its last log index: what a
    /// quiesced group's check needs (cheaper than [`Self::view`]).
    pub fn brief(&self) -> (NodeId, Option<NodeId>, Option<u64>) {
        let m = self.raft.metrics();
        let m = m.borrow();
        (m.id, m.current_leader, m.last_log_index)
    }

    /// Starts the group's timers again if they were stopped.
    pub fn wake(&self) {
        let mut q = self.quiet.lock().expect("quiet lock");
        if q.quiesced {
            self.raft.runtime_config().tick(true);
            q.quiesced = false;
            q.at_index = None;
            q.absent.clear();
        }
    }

    /// Stops the group's timers, the log being at `at_index`; `absent`:
    /// followers that were down (a leader wakes when one is back).
    pub fn quiesce(&self, at_index: u64, absent: BTreeSet<NodeId>) {
        let mut q = self.quiet.lock().expect("quiet lock");
        self.raft.runtime_config().tick(false);
        q.quiesced = true;
        q.at_index = Some(at_index);
        q.absent = absent;
    }

    /// A follower's answer to its leader's [`QuiesceRequest`].
    pub fn follower_quiesce(&self, req: &QuiesceRequest) -> bool {
        let agrees = quiesce::follower_agrees(&self.view(), req);
        if agrees {
            self.quiesce(req.last_log_index, BTreeSet::new());
        }
        agrees
    }

    /// Whether the group's timers are stopped.
    pub fn is_quiesced(&self) -> bool {
        self.quiet.lock().expect("quiet lock").quiesced
    }

    /// The error the group's Raft stopped on, if it stopped on one
    /// (openraft quits a group on any storage error, e.g. a full disk); not
    /// a shutdown on purpose (`Fatal::Stopped`: the node is stopping).
    pub fn failure(&self) -> Option<openraft::error::Fatal<NodeId>> {
        let err = self.raft.metrics().borrow().running_state.clone().err()?;
        (!matches!(err, openraft::error::Fatal::Stopped)).then_some(err)
    }

    /// Current leader as this member sees it.
    pub fn leader(&self) -> Option<NodeId> {
        self.raft.metrics().borrow().current_leader
    }

    pub(crate) async fn wait_leader(
        &self,
        name: &str,
        timeout: Duration,
    ) -> Result<NodeId, GroupError> {
        let m = self
            .raft
            .wait(Some(timeout))
            .metrics(|m| m.current_leader.is_some(), name)
            .await
            .map_err(|_| GroupError::NoLeader {
                group: name.to_string(),
                timeout,
            })?;
        Ok(m.current_leader.expect("waited for a leader"))
    }
}

pub type ShardGroup = Group<ShardState>;
pub type MetaGroup = Group<Catalog>;

/// Whether the leader whose metrics are `m` has replicated its log up to
/// `upto` on node `id`.
pub(crate) fn replica_holds(
    m: &openraft::RaftMetrics<NodeId, BasicNode>,
    id: u64,
    upto: Option<u64>,
) -> bool {
    m.replication
        .as_ref()
        .and_then(|r| r.get(&id))
        .is_some_and(|l| l.as_ref().map(|l| l.index) >= upto)
}

#[cfg(test)]
#[path = "group_tests.rs"]
mod tests;
