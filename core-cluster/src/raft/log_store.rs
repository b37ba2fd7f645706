//! [`LogStore`]: openraft's `RaftLogStorage` and `RaftLogReader` over a
//! [`SegmentLog`], shared (it is `Clone`) with the consumer fetch path, which
//! reads a shard's data straight from its Raft log. A store is typed by its
//! group's type configuration ([`GroupConfig`]: metadata or shard), and
//! decodes only that group's commands.
//!
//! # Layout of a store directory
//!
//! ```text
//! <dir>/log/<first index, 20 digits>.log   the segment log (format: crate::log::segment)
//! <dir>/vote.json                          last saved Vote           (durable)
//! <dir>/purged.json                        last purged LogId         (durable)
//! <dir>/committed.json                     last saved committed LogId (atomic, not fsynced)
//! ```
//!
//! The JSON files are replaced atomically: written to `<name>.tmp`, renamed
//! over `<name>`. `vote.json` and `purged.json` are fsynced before the rename
//! and the directory after it. `committed.json` is written at most every
//! [`COMMITTED_SAVE_EVERY`] (the first commit after that writes it; the
//! others only update the store's memory) and skips both fsyncs: it is a
//! hint that may lag, never lead. Writing it on every commit cost a file
//! write and a rename per commit on every replica, on the path before the
//! entries are applied, and on ext4 a write-back of the new file at each
//! rename (`auto_da_alloc`): on a disk with few IOPS to spare that competed
//! with the log's own fsyncs. After a crash it may be older than the last
//! commit (or, on file systems that do not order the rename after the data,
//! unreadable, which is read as "none"). openraft then re-applies fewer
//! entries on startup and catches up when the leader next reports the commit
//! index (a restarted node's groups are awake and elect a leader).
//!
//! # Entries
//!
//! One Raft entry is one segment record: the record's `term`, `node_id` and
//! `index` are the entry's `LogId` (openraft's default, non-"single-term-leader"
//! `CommittedLeaderId` is `(term, node_id)`), and its `kind` says what the
//! payload is:
//!
//! | kind | entry      | payload                                   |
//! |------|------------|-------------------------------------------|
//! | 0    | blank      | empty                                     |
//! | 1    | normal     | `GroupCommand::encode` of the group's command (tags: `crate::raft::command`; a shard append's batch bytes last) |
//! | 2    | membership | serde_json of `Membership<NodeId, BasicNode>` |
//!
//! # Durability and blocking
//!
//! `append` writes all entries, fsyncs once, and only then calls the openraft
//! callback and returns. All file I/O runs on `tokio::task::spawn_blocking`; the fsync of
//! `append` runs after the write lock is released, so readers (replication,
//! fetch) are not blocked by it. openraft serializes the write calls, so no
//! truncate or purge can overtake an append's fsync. `purge` saves
//! `purged.json` before deleting segments; on open the purge point is applied
//! again because a partly purged segment keeps its old records on disk.
//!
//! # Damaged entries
//!
//! openraft runs its storage commands one after another, awaiting each, and
//! `append` returns only after its fsync; it saves a committed index (and
//! purges up to one) only after the appends that wrote those entries
//! returned, and never truncates at or below it. So the entries up to the
//! index in `committed.json` or `purged.json` had been fsynced here before
//! that file was written, whichever version of it a power cut leaves (an
//! older one names a smaller index). `open` passes the larger of the two to
//! the segment log as its durable bound: an invalid entry at or below it is
//! damage ([`StoreError::Damaged`], naming the segment file, the byte offset
//! and the index), not a torn tail, and the group does not start. Entries
//! past it (not yet known committed here, or committed after the last
//! `committed.json` that reached the disk) are still cut when invalid. If
//! `append` ever returned before its fsync, this bound would have to be the
//! flushed index instead.

use std::fmt::Debug;
use std::io;
use std::marker::PhantomData;
use std::ops::{Bound, RangeBounds};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{
    AnyError, CommittedLeaderId, EntryPayload, OptionalSend, RaftLogReader, StorageIOError,
};
use serde::de::DeserializeOwned;
use serde::Serialize;
use strata_segment_log::atomic::{write_file_atomic, Durability};
use strata_segment_log::fs::{Fs, StdFs};

use crate::log::frame::{count_fsync, create_dir_durably};
use crate::log::segment::{LogError, LogRecord, RecordId, Recovery, SegmentLog, SegmentLogOptions};
use crate::raft::command::{CodecError, GroupCommand};
use crate::raft::types::{Entry, GroupConfig, LogId, StorageError, Vote};

const LOG_DIR: &str = "log";
const VOTE_FILE: &str = "vote.json";
const PURGED_FILE: &str = "purged.json";
const COMMITTED_FILE: &str = "committed.json";
/// How often at most `committed.json` is written (module documentation).
pub const COMMITTED_SAVE_EVERY: Duration = Duration::from_millis(100);

const KIND_BLANK: u8 = 0;
const KIND_NORMAL: u8 = 1;
const KIND_MEMBERSHIP: u8 = 2;

/// Payload bytes returned by one `limited_get_log_entries` (at least one
/// entry is always returned), so a replication message stays bounded even
/// when entries are large batches.
pub const REPLICATION_READ_BYTES_MAX: usize = 16 << 20;

/// Errors of the log store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The segment log's errors, and the store's own file I/O
    /// (`LogError::Io`, naming the operation and the file).
    #[error(transparent)]
    Log(#[from] LogError),
    /// Durable records of the log are damaged (found when opening it).
    #[error("{source}. The Raft log in {} is damaged and this replica of the group does not start. Do not restart the node with that directory removed: openraft does not accept a member whose log went back (docs/operations.md). Repair from the other replicas: `strata cluster remove-node <this node's id>` moves its replicas to other nodes, copied from the healthy replicas; then wipe this node's data_dir and add it again. Keep the damaged file for inspection; a group with a single replica has no other copy", dir.display())]
    Damaged {
        dir: PathBuf,
        #[source]
        source: LogError,
    },
    #[error("{path} is not valid JSON of its type: {source}")]
    MetaFile {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("log entry {index}: {source}")]
    Codec {
        index: u64,
        #[source]
        source: CodecError,
    },
    #[error("log entry {index}: membership JSON: {source}")]
    Membership {
        index: u64,
        #[source]
        source: serde_json::Error,
    },
    #[error(
        "entry record of {0} bytes is shorter than its {ENTRY_RECORD_HEADER_BYTES}-byte header"
    )]
    ShortRecord(usize),
    #[error("log entry {index} has unknown kind {kind}")]
    UnknownKind { index: u64, kind: u8 },
    #[error("log entry {index} is a {what} entry, not an application command")]
    NotACommand { index: u64, what: &'static str },
    #[error("log starts at index {first} but the last purged index is {purged}: the entries between are missing")]
    Hole { first: u64, purged: u64 },
    #[error("log store task was cancelled: {0}")]
    Cancelled(String),
}

fn io_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> StoreError + 'a {
    let log_err = crate::log::io_err(op, path);
    move |source| StoreError::Log(log_err(source))
}

/// Damage found when opening the log is [`StoreError::Damaged`] (with the
/// repair advice); anything else stays a [`StoreError::Log`].
fn damaged_or_log_err(dir: &Path, e: LogError) -> StoreError {
    match e {
        LogError::DurableCorrupt { .. } | LogError::Corrupt { .. } | LogError::Gap { .. } => {
            StoreError::Damaged {
                dir: dir.to_path_buf(),
                source: e,
            }
        }
        e => StoreError::Log(e),
    }
}

fn write_logs_err(e: &StoreError) -> StorageError {
    StorageIOError::write_logs(AnyError::new(e)).into()
}

fn read_logs_err(e: &StoreError) -> StorageError {
    StorageIOError::read_logs(AnyError::new(e)).into()
}

fn write_vote_err(e: &StoreError) -> StorageError {
    StorageIOError::write_vote(AnyError::new(e)).into()
}

fn write_store_err(e: &StoreError) -> StorageError {
    StorageIOError::write(AnyError::new(e)).into()
}

#[cfg(test)]
thread_local! {
    /// Set by the simulation ([`crate::sim`]) on its runtime's thread:
    /// blocking I/O (on a simulated disk) runs inline, so that no thread
    /// timing decides the order of events and a seed replays its run.
    pub(crate) static INLINE_BLOCKING: std::cell::Cell<bool> =
        const { std::cell::Cell::new(false) };
}

/// Runs blocking file I/O off the async workers. A panic (a broken
/// invariant) is propagated, not turned into an error.
async fn run_blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    #[cfg(test)]
    if INLINE_BLOCKING.with(|c| c.get()) {
        return f();
    }
    match tokio::task::spawn_blocking(f).await {
        Ok(res) => res,
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(e) => Err(StoreError::Cancelled(e.to_string())),
    }
}

/// Replaces `dir/name` with `value` atomically; `durable` adds the fsyncs.
pub(crate) fn write_json_atomic<T: Serialize>(
    fs: &dyn Fs,
    dir: &Path,
    name: &str,
    value: &T,
    durable: bool,
) -> Result<(), StoreError> {
    let path = dir.join(name);
    let tmp = dir.join(format!("{name}.tmp"));
    let bytes = serde_json::to_vec(value).map_err(|source| StoreError::MetaFile {
        path: path.clone(),
        source,
    })?;
    let durability = if durable {
        Durability::All
    } else {
        Durability::None
    };
    let fsyncs = write_file_atomic(fs, &path, &tmp, &bytes, durability)
        .map_err(|e| io_err(e.op, &e.path)(e.source))?;
    (0..fsyncs).for_each(|_| count_fsync());
    Ok(())
}

pub(crate) fn read_json<T: DeserializeOwned>(
    fs: &dyn Fs,
    dir: &Path,
    name: &str,
) -> Result<Option<T>, StoreError> {
    let path = dir.join(name);
    let bytes = match fs.read(&path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_err("read", &path)(e)),
    };
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|source| StoreError::MetaFile { path, source })
}

fn log_id(id: RecordId) -> LogId {
    LogId::new(CommittedLeaderId::new(id.term, id.node_id), id.index)
}

/// Appends the payload encoding of `entry` to `out`; returns its kind.
fn encode_entry<C: GroupConfig>(entry: &Entry<C>, out: &mut Vec<u8>) -> Result<u8, StoreError> {
    match &entry.payload {
        EntryPayload::Blank => Ok(KIND_BLANK),
        EntryPayload::Normal(cmd) => {
            cmd.encode(out);
            Ok(KIND_NORMAL)
        }
        EntryPayload::Membership(m) => {
            serde_json::to_writer(&mut *out, m).map_err(|source| StoreError::Membership {
                index: entry.log_id.index,
                source,
            })?;
            Ok(KIND_MEMBERSHIP)
        }
    }
}

fn decode_entry<C: GroupConfig>(rec: LogRecord) -> Result<Entry<C>, StoreError> {
    let index = rec.index;
    let payload = match rec.kind {
        KIND_BLANK => EntryPayload::Blank,
        KIND_NORMAL => EntryPayload::Normal(
            C::D::decode(rec.payload).map_err(|source| StoreError::Codec { index, source })?,
        ),
        KIND_MEMBERSHIP => EntryPayload::Membership(
            serde_json::from_slice(&rec.payload)
                .map_err(|source| StoreError::Membership { index, source })?,
        ),
        kind => return Err(StoreError::UnknownKind { index, kind }),
    };
    Ok(Entry {
        log_id: LogId::new(CommittedLeaderId::new(rec.term, rec.node_id), index),
        payload,
    })
}

/// Bytes before the payload in an entry record ([`encode_entry_record`]).
pub const ENTRY_RECORD_HEADER_BYTES: usize = 25;

/// Appends one entry to `out` as the body of its segment record (format:
/// [`crate::log::segment`]): `term u64 LE, node_id u64 LE, index u64 LE, kind u8,
/// payload`, i.e. the on-disk record without its length and CRC. The Raft
/// network ships entries in this form, so batch bytes are never re-encoded.
pub fn encode_entry_record<C: GroupConfig>(
    entry: &Entry<C>,
    out: &mut Vec<u8>,
) -> Result<(), StoreError> {
    let id = &entry.log_id;
    out.extend_from_slice(&id.leader_id.term.to_le_bytes());
    out.extend_from_slice(&id.leader_id.node_id.to_le_bytes());
    out.extend_from_slice(&id.index.to_le_bytes());
    let kind_at = out.len();
    out.push(KIND_BLANK);
    let kind = encode_entry(entry, out)?;
    out[kind_at] = kind;
    Ok(())
}

/// Decodes what [`encode_entry_record`] wrote; the payload (a batch) is a
/// slice of `body`, not a copy. Bad bytes (a command of the other kind of
/// group among them) are an error, never a panic.
pub fn decode_entry_record<C: GroupConfig>(mut body: bytes::Bytes) -> Result<Entry<C>, StoreError> {
    use bytes::Buf;
    if body.len() < ENTRY_RECORD_HEADER_BYTES {
        return Err(StoreError::ShortRecord(body.len()));
    }
    let term = body.get_u64_le();
    let node_id = body.get_u64_le();
    let index = body.get_u64_le();
    let kind = body.get_u8();
    decode_entry(LogRecord {
        term,
        node_id,
        index,
        kind,
        payload: body,
    })
}

/// `[start, end)` of a range of indexes.
fn bounds(range: &impl RangeBounds<u64>) -> (u64, u64) {
    let start = match range.start_bound() {
        Bound::Included(&s) => s,
        Bound::Excluded(&s) => s.saturating_add(1),
        Bound::Unbounded => 0,
    };
    let end = match range.end_bound() {
        Bound::Included(&e) => e.saturating_add(1),
        Bound::Excluded(&e) => e,
        Bound::Unbounded => u64::MAX,
    };
    (start, end)
}

#[derive(Debug, Default, Clone, Copy)]
struct Meta {
    vote: Option<Vote>,
    committed: Option<LogId>,
    /// When `committed.json` was last written by this process.
    committed_saved_at: Option<Instant>,
    purged: Option<LogId>,
}

/// Whether a commit at `now` writes `committed.json`, given when this
/// process last wrote it: the first time, then at most every
/// [`COMMITTED_SAVE_EVERY`].
fn committed_save_due(saved_at: Option<Instant>, now: Instant) -> bool {
    saved_at.is_none_or(|t| now.saturating_duration_since(t) >= COMMITTED_SAVE_EVERY)
}

#[derive(Debug)]
struct Inner {
    fs: Arc<dyn Fs>,
    dir: PathBuf,
    log: RwLock<SegmentLog>,
    meta: Mutex<Meta>,
    recovery: Recovery,
}

/// The Raft log of one group of type configuration `C`; see the module
/// documentation. Cloning is cheap and every clone is the same store.
pub struct LogStore<C> {
    inner: Arc<Inner>,
    group: PhantomData<fn() -> C>,
}

impl<C> Clone for LogStore<C> {
    fn clone(&self) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
            group: PhantomData,
        }
    }
}

impl<C> Debug for LogStore<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogStore")
            .field("inner", &self.inner)
            .finish()
    }
}

impl<C: GroupConfig> LogStore<C> {
    /// Opens (creating if needed) the store in `dir` and recovers its log.
    /// Blocking.
    pub fn open(dir: &Path, opts: SegmentLogOptions) -> Result<Self, StoreError> {
        Self::open_in(StdFs::shared(), dir, opts)
    }

    /// [`Self::open`] on the file system `fs` (tests pass a simulated one).
    pub fn open_in(
        fs: Arc<dyn Fs>,
        dir: &Path,
        opts: SegmentLogOptions,
    ) -> Result<Self, StoreError> {
        create_dir_durably(&*fs, dir)?;
        let vote = read_json(&*fs, dir, VOTE_FILE)?;
        let purged: Option<LogId> = read_json(&*fs, dir, PURGED_FILE)?;
        let committed = match read_json(&*fs, dir, COMMITTED_FILE) {
            Err(e @ StoreError::MetaFile { .. }) => {
                tracing::warn!(error = %e, "ignoring unreadable committed log id");
                None
            }
            other => other?,
        };
        // Entries up to the saved committed or purge point were fsynced
        // here (module documentation): an invalid one is damage, not a torn
        // tail.
        let synced = committed
            .map(|c: LogId| c.index)
            .max(purged.map(|p| p.index));
        let log_dir = dir.join(LOG_DIR);
        let (mut log, recovery) =
            SegmentLog::open_synced_in(Arc::clone(&fs), &log_dir, opts, synced)
                .map_err(|e| damaged_or_log_err(dir, e))?;
        if let Some(purged) = purged {
            log.purge_to(purged.index)?;
            if let Some(first) = log.first_index() {
                if first > purged.index + 1 {
                    return Err(StoreError::Hole {
                        first,
                        purged: purged.index,
                    });
                }
            }
        }
        Ok(Self {
            inner: Arc::new(Inner {
                fs,
                dir: dir.to_path_buf(),
                log: RwLock::new(log),
                meta: Mutex::new(Meta {
                    vote,
                    committed,
                    committed_saved_at: None,
                    purged,
                }),
                recovery,
            }),
            group: PhantomData,
        })
    }

    /// openraft's `save_committed` at `now`: remembers `committed`, and
    /// writes `committed.json` when [`committed_save_due`].
    pub(crate) async fn save_committed_at(
        &self,
        committed: Option<LogId>,
        now: Instant,
    ) -> Result<(), StoreError> {
        let due = {
            let mut meta = self.inner.meta();
            meta.committed = committed;
            let due = committed_save_due(meta.committed_saved_at, now);
            if due {
                meta.committed_saved_at = Some(now);
            }
            due
        };
        if !due {
            return Ok(());
        }
        let inner = Arc::clone(&self.inner);
        run_blocking(move || {
            write_json_atomic(&*inner.fs, &inner.dir, COMMITTED_FILE, &committed, false)
        })
        .await
    }

    /// What opening the segment log found.
    pub fn recovery(&self) -> Recovery {
        self.inner.recovery
    }

    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// First readable log index.
    pub fn first_index(&self) -> Option<u64> {
        self.inner.read_log().first_index()
    }

    pub fn last_index(&self) -> Option<u64> {
        self.inner.read_log().last_index()
    }

    /// Bytes of the segment files.
    pub fn bytes(&self) -> u64 {
        self.inner.read_log().bytes()
    }

    /// The entry at `index`, `None` if it is not in the log. Blocking (one
    /// positioned read).
    pub fn read_entry(&self, index: u64) -> Result<Option<Entry<C>>, StoreError> {
        let rec = self.inner.read_log().read(index)?;
        rec.map(decode_entry).transpose()
    }

    /// The next append starts a new segment file (see `SegmentLog::roll_next`).
    pub fn roll_next(&self) {
        self.inner.write_log().roll_next();
    }

    /// Index of the last entry purged (tiered and deleted locally).
    pub fn purged_index(&self) -> Option<u64> {
        self.inner.meta().purged.map(|p| p.index)
    }

    /// The application command at `index`, `None` if `index` is not in the
    /// log; a blank or membership entry is [`StoreError::NotACommand`].
    /// Blocking (one positioned read). The batch bytes are not copied.
    pub fn read_command(&self, index: u64) -> Result<Option<C::D>, StoreError> {
        let Some(entry) = self.read_entry(index)? else {
            return Ok(None);
        };
        match entry.payload {
            EntryPayload::Normal(cmd) => Ok(Some(cmd)),
            EntryPayload::Blank => Err(StoreError::NotACommand {
                index,
                what: "blank",
            }),
            EntryPayload::Membership(_) => Err(StoreError::NotACommand {
                index,
                what: "membership",
            }),
        }
    }

    /// Entries in `[start, end)` that are in the log, stopping after the one
    /// that brings the payload total to `bytes_max`. Blocking.
    pub fn read_entries(
        &self,
        start: u64,
        end: u64,
        bytes_max: usize,
    ) -> Result<Vec<Entry<C>>, StoreError> {
        self.inner.read_entries(start, end, bytes_max)
    }

    async fn read_entries_async(
        &self,
        start: u64,
        end: u64,
        bytes_max: usize,
    ) -> Result<Vec<Entry<C>>, StorageError> {
        let inner = Arc::clone(&self.inner);
        run_blocking(move || inner.read_entries(start, end, bytes_max))
            .await
            .map_err(|e| read_logs_err(&e))
    }
}

impl Inner {
    fn read_log(&self) -> std::sync::RwLockReadGuard<'_, SegmentLog> {
        self.log.read().expect("segment log lock poisoned")
    }

    fn write_log(&self) -> std::sync::RwLockWriteGuard<'_, SegmentLog> {
        self.log.write().expect("segment log lock poisoned")
    }

    fn meta(&self) -> std::sync::MutexGuard<'_, Meta> {
        self.meta.lock().expect("log store meta lock poisoned")
    }

    fn read_entries<C: GroupConfig>(
        &self,
        start: u64,
        end: u64,
        bytes_max: usize,
    ) -> Result<Vec<Entry<C>>, StoreError> {
        let log = self.read_log();
        let (Some(first), Some(last)) = (log.first_index(), log.last_index()) else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        let mut bytes = 0usize;
        for index in start.max(first)..end.min(last.saturating_add(1)) {
            let Some(rec) = log.read(index)? else {
                break;
            };
            bytes = bytes.saturating_add(rec.payload.len());
            out.push(decode_entry(rec)?);
            if bytes >= bytes_max {
                break;
            }
        }
        Ok(out)
    }

    /// Writes `entries`, then fsyncs once with the lock released.
    fn append<C: GroupConfig>(&self, entries: &[Entry<C>]) -> Result<(), StoreError> {
        let pending = {
            let mut log = self.write_log();
            let mut buf = Vec::new();
            for entry in entries {
                buf.clear();
                let kind = encode_entry(entry, &mut buf)?;
                let id = &entry.log_id;
                log.append(
                    id.leader_id.term,
                    id.leader_id.node_id,
                    id.index,
                    kind,
                    &buf,
                )?;
            }
            log.begin_sync()?
        };
        pending.complete()?;
        Ok(())
    }

    fn purge(&self, upto: LogId) -> Result<(), StoreError> {
        if self.meta().purged.is_some_and(|p| p >= upto) {
            return Ok(());
        }
        // Save the purge point first: a partly purged segment keeps its old
        // records on disk, and open() hides them again from this file.
        write_json_atomic(&*self.fs, &self.dir, PURGED_FILE, &upto, true)?;
        self.meta().purged = Some(upto);
        self.write_log().purge_to(upto.index)?;
        Ok(())
    }
}

impl<C: GroupConfig> RaftLogReader<C> for LogStore<C> {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry<C>>, StorageError> {
        let (start, end) = bounds(&range);
        self.read_entries_async(start, end, usize::MAX).await
    }

    async fn limited_get_log_entries(
        &mut self,
        start: u64,
        end: u64,
    ) -> Result<Vec<Entry<C>>, StorageError> {
        self.read_entries_async(start, end, REPLICATION_READ_BYTES_MAX)
            .await
    }
}

impl<C: GroupConfig> RaftLogStorage<C> for LogStore<C> {
    type LogReader = LogStore<C>;

    async fn get_log_state(&mut self) -> Result<LogState<C>, StorageError> {
        let last_purged_log_id = self.inner.meta().purged;
        let last = self.inner.read_log().last_record_id().map(log_id);
        Ok(LogState {
            last_purged_log_id,
            last_log_id: last.or(last_purged_log_id),
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), StorageError> {
        let inner = Arc::clone(&self.inner);
        let vote = *vote;
        run_blocking(move || {
            write_json_atomic(&*inner.fs, &inner.dir, VOTE_FILE, &vote, true)?;
            inner.meta().vote = Some(vote);
            Ok(())
        })
        .await
        .map_err(|e| write_vote_err(&e))
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, StorageError> {
        Ok(self.inner.meta().vote)
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError> {
        self.save_committed_at(committed, Instant::now())
            .await
            .map_err(|e| write_store_err(&e))
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError> {
        Ok(self.inner.meta().committed)
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<C>) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry<C>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let entries: Vec<Entry<C>> = entries.into_iter().collect();
        let inner = Arc::clone(&self.inner);
        match run_blocking(move || inner.append(&entries)).await {
            Ok(()) => {
                callback.log_io_completed(Ok(()));
                Ok(())
            }
            Err(e) => {
                callback.log_io_completed(Err(io::Error::other(e.to_string())));
                Err(write_logs_err(&e))
            }
        }
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        let inner = Arc::clone(&self.inner);
        run_blocking(move || Ok(inner.write_log().truncate_from(log_id.index)?))
            .await
            .map_err(|e| write_logs_err(&e))
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        let inner = Arc::clone(&self.inner);
        run_blocking(move || inner.purge(log_id))
            .await
            .map_err(|e| write_logs_err(&e))
    }
}

#[cfg(test)]
#[path = "log_store_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "log_store_corruption_tests.rs"]
mod corruption_tests;
#[cfg(test)]
#[path = "log_store_crash_tests.rs"]
mod crash_tests;
#[cfg(test)]
#[path = "log_store_fixture_tests.rs"]
mod fixture_tests;
