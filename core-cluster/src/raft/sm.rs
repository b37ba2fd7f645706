//! A generic openraft state machine over a deterministic [`GroupState`]: the
//! shard state (offsets, dedup, batch index) or the metadata catalog. A state
//! names its group's type configuration ([`GroupState::Config`]), so it is
//! only ever given the commands of its own kind of group.
//!
//! The applied state lives behind an `Arc<RwLock>` shared with the read path
//! (fetch, describe), and a `watch` channel announces every apply so that
//! long-polling consumers wake without polling. A snapshot is the serialized
//! applied state: for a shard that is its manifest (offsets, dedup table,
//! batch index), never its data, which stays in the Raft log.

use super::types::{Entry, GroupConfig, LogId, NodeId, StorageError};
use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{
    BasicNode, EntryPayload, RaftSnapshotBuilder, RaftTypeConfig, SnapshotMeta, StorageIOError,
    StoredMembership,
};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::io::Cursor;
use std::sync::{Arc, Mutex, RwLock};
use strata_segment_log::fs::{Fs, StdFs};
use tokio::sync::watch;

/// A deterministic state fed by the committed commands of its kind of group.
pub trait GroupState:
    Default + Clone + Serialize + DeserializeOwned + Send + Sync + 'static
{
    /// The group's type configuration: its command and response types.
    type Config: GroupConfig;

    /// Snapshot the state and purge the log behind it every this many
    /// entries (None: never; a shard's log is its data, and tiering decides
    /// what leaves the disk).
    const SNAPSHOT_EVERY: Option<u64> = None;

    /// The group's Raft timers.
    const TIMERS: Timers = Timers::SHARD;

    /// Applies a committed command. `now_ms` is this replica's clock,
    /// read once per applied batch by [`GroupSm`]: a state never reads a
    /// clock itself, so applying is a function of its inputs.
    fn apply(
        &mut self,
        log_id: &LogId,
        cmd: &<Self::Config as RaftTypeConfig>::D,
        now_ms: i64,
    ) -> <Self::Config as RaftTypeConfig>::R;
}

/// A group's Raft timers, in milliseconds (openraft's heartbeat interval
/// and the range its election timeout is drawn from).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timers {
    pub heartbeat_ms: u64,
    pub election_min_ms: u64,
    pub election_max_ms: u64,
}

impl Timers {
    /// Shard groups: failover is on the write path. openraft 0.9 gives
    /// each AppendEntries one heartbeat interval to complete (follower
    /// fsync included), and a follower waits out the leader's lease
    /// (`election_max_ms`) plus its own timeout before a new election:
    /// together these put failover at roughly 0.6-0.8 s (the node-level
    /// failure detector, `raft::quiesce`, brings it to about 0.6 s).
    pub const SHARD: Timers = Timers {
        heartbeat_ms: 100,
        election_min_ms: 200,
        election_max_ms: 400,
    };

    /// The metadata group: one per cluster, its leader on a node that may
    /// run thousands of shard groups. With the shards' 200-400 ms election
    /// timeout its followers kept electing on nodes running ~8,900 groups
    /// each, their leader's heartbeats late (docs/benchmarks.md, "10,000
    /// shards"), and every election stalls stream changes and consumer
    /// groups. etcd's default election timeout (1 s) tolerates ten late
    /// heartbeats; a metadata failover takes about 1-1.5 s, well within
    /// consumer sessions (3 s). The heartbeat stays at 100 ms: followers
    /// learn that an entry (a new stream, say) committed with the next
    /// heartbeat, and a longer interval widened the window in which a node
    /// does not know a stream just created (a 250 ms heartbeat failed the
    /// cluster reshard test with UNKNOWN_STREAM once in CI).
    pub const META: Timers = Timers {
        heartbeat_ms: 100,
        election_min_ms: 1_000,
        election_max_ms: 1_500,
    };
}

/// The applied state plus Raft's bookkeeping.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Applied<S> {
    pub last_applied: Option<LogId>,
    pub membership: StoredMembership<NodeId, BasicNode>,
    pub state: S,
}

struct StoredSnapshot {
    meta: SnapshotMeta<NodeId, BasicNode>,
    data: Vec<u8>,
}

/// The openraft state machine; cheap to clone, all clones share state.
pub struct GroupSm<S: GroupState> {
    shared: Arc<RwLock<Applied<S>>>,
    applied_tx: Arc<watch::Sender<u64>>,
    snapshot: Arc<Mutex<Option<StoredSnapshot>>>,
    /// Where snapshots are kept (fsynced, replaced atomically), and on which
    /// file system. Once the log is purged behind a snapshot, the state
    /// restarts from it.
    dir: Option<(Arc<dyn Fs>, Arc<std::path::Path>)>,
}

const SNAPSHOT_FILE: &str = "snapshot.json";

impl<S: GroupState> Clone for GroupSm<S> {
    fn clone(&self) -> Self {
        Self {
            shared: self.shared.clone(),
            applied_tx: self.applied_tx.clone(),
            snapshot: self.snapshot.clone(),
            dir: self.dir.clone(),
        }
    }
}

impl<S: GroupState> Default for GroupSm<S> {
    fn default() -> Self {
        Self {
            shared: Arc::default(),
            applied_tx: Arc::new(watch::channel(0).0),
            snapshot: Arc::default(),
            dir: None,
        }
    }
}

impl<S: GroupState> GroupSm<S> {
    /// A state machine that keeps its snapshots in `dir` and starts from the
    /// last one there, if any.
    pub fn open(dir: &std::path::Path) -> Result<Self, crate::raft::log_store::StoreError> {
        Self::open_in(StdFs::shared(), dir)
    }

    /// [`Self::open`] on the file system `fs` (tests pass a simulated one).
    pub fn open_in(
        fs: Arc<dyn Fs>,
        dir: &std::path::Path,
    ) -> Result<Self, crate::raft::log_store::StoreError> {
        let found = crate::raft::log_store::read_json::<Applied<S>>(&*fs, dir, SNAPSHOT_FILE)?;
        let sm = Self {
            dir: Some((fs, dir.into())),
            ..Self::default()
        };
        if let Some(applied) = found {
            let data = serde_json::to_vec(&applied).expect("state serializes");
            *sm.snapshot.lock().expect("snapshot lock") = Some(StoredSnapshot {
                meta: snapshot_meta(&applied),
                data,
            });
            *sm.shared.write().expect("state lock") = applied;
        }
        Ok(sm)
    }

    // openraft's own error type, as its storage traits require.
    #[allow(clippy::result_large_err)]
    fn persist(&self, applied: &Applied<S>) -> Result<(), StorageError> {
        if let Some((fs, dir)) = &self.dir {
            crate::raft::log_store::write_json_atomic(&**fs, dir, SNAPSHOT_FILE, applied, true)
                .map_err(|e| StorageError::from(StorageIOError::write_snapshot(None, &e)))?;
        }
        Ok(())
    }

    /// Reads the applied state.
    pub fn read<T>(&self, f: impl FnOnce(&S) -> T) -> T {
        f(&self.shared.read().expect("state lock").state)
    }

    /// Changes the state outside `apply`: only for what this replica alone
    /// may drop (the shard index of offsets it purged from its log, which
    /// every replica reads from the object store), never for anything
    /// replicas must agree on. Persisted with the next snapshot.
    pub fn trim<T>(&self, f: impl FnOnce(&mut S) -> T) -> T {
        f(&mut self.shared.write().expect("state lock").state)
    }

    /// A receiver that changes after every apply (value: entries applied).
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.applied_tx.subscribe()
    }

    fn io_err(e: impl std::error::Error + 'static) -> StorageError {
        StorageIOError::read_state_machine(&e).into()
    }
}

fn snapshot_meta<S>(applied: &Applied<S>) -> SnapshotMeta<NodeId, BasicNode> {
    SnapshotMeta {
        last_log_id: applied.last_applied,
        last_membership: applied.membership.clone(),
        snapshot_id: format!(
            "{}-{}",
            applied.last_applied.map_or(0, |l| l.leader_id.term),
            applied.last_applied.map_or(0, |l| l.index)
        ),
    }
}

pub struct GroupSnapshotBuilder<S: GroupState>(GroupSm<S>);

impl<S: GroupState> RaftSnapshotBuilder<S::Config> for GroupSnapshotBuilder<S> {
    async fn build_snapshot(&mut self) -> Result<Snapshot<S::Config>, StorageError> {
        let applied = self.0.shared.read().expect("state lock").clone();
        let data = serde_json::to_vec(&applied).map_err(GroupSm::<S>::io_err)?;
        self.0.persist(&applied)?;
        let meta = snapshot_meta(&applied);
        *self.0.snapshot.lock().expect("snapshot lock") = Some(StoredSnapshot {
            meta: meta.clone(),
            data: data.clone(),
        });
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        })
    }
}

impl<S: GroupState> RaftStateMachine<S::Config> for GroupSm<S> {
    type SnapshotBuilder = GroupSnapshotBuilder<S>;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogId>, StoredMembership<NodeId, BasicNode>), StorageError> {
        let a = self.shared.read().expect("state lock");
        Ok((a.last_applied, a.membership.clone()))
    }

    async fn apply<I>(
        &mut self,
        entries: I,
    ) -> Result<Vec<<S::Config as RaftTypeConfig>::R>, StorageError>
    where
        I: IntoIterator<Item = Entry<S::Config>> + Send,
        I::IntoIter: Send,
    {
        let mut out = Vec::new();
        {
            let now_ms = crate::clock::now_ms();
            let mut a = self.shared.write().expect("state lock");
            for entry in entries {
                a.last_applied = Some(entry.log_id);
                let resp = match &entry.payload {
                    EntryPayload::Blank => S::Config::no_command(),
                    EntryPayload::Normal(cmd) => a.state.apply(&entry.log_id, cmd, now_ms),
                    EntryPayload::Membership(m) => {
                        a.membership = StoredMembership::new(Some(entry.log_id), m.clone());
                        S::Config::no_command()
                    }
                };
                out.push(resp);
            }
        }
        let n = out.len() as u64;
        self.applied_tx.send_modify(|c| *c += n);
        Ok(out)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        GroupSnapshotBuilder(self.clone())
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, StorageError> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<NodeId, BasicNode>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError> {
        let data = snapshot.into_inner();
        let applied: Applied<S> = serde_json::from_slice(&data).map_err(|e| {
            StorageError::from(StorageIOError::read_snapshot(Some(meta.signature()), &e))
        })?;
        self.persist(&applied)?;
        *self.shared.write().expect("state lock") = applied;
        *self.snapshot.lock().expect("snapshot lock") = Some(StoredSnapshot {
            meta: meta.clone(),
            data,
        });
        self.applied_tx.send_modify(|c| *c += 1);
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<S::Config>>, StorageError> {
        Ok(self
            .snapshot
            .lock()
            .expect("snapshot lock")
            .as_ref()
            .map(|s| Snapshot {
                meta: s.meta.clone(),
                snapshot: Box::new(Cursor::new(s.data.clone())),
            }))
    }
}
