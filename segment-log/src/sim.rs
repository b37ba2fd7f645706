//! [`SimFs`]: an in-memory [`Fs`] for tests that can lose power.
//!
//! # Crash semantics
//!
//! [`SimFs::crash`] is a power cut: everything not made durable is lost, and
//! nothing else.
//!
//! * **File contents** go back to what they were at the file's last
//!   [`File::sync_data`]/[`File::sync_all`] (both make the bytes and the
//!   length durable); a file never synced is empty. Writes and `set_len`
//!   since then are gone.
//! * **Directory entries** (a file or directory created, a file removed, a
//!   rename) go back to what they were at the directory's last
//!   [`Fs::sync_dir`]. A file whose name was never made durable disappears with
//!   its synced bytes; a removed file whose removal was not synced comes back;
//!   an unsynced rename is undone. A directory's entry lives in its parent, so
//!   a new directory needs its parent fsynced.
//! * Handles opened before the crash fail from then on: the process that held
//!   them is gone.
//!
//! [`SimFs::crash_torn`] is the same cut where the disk got further, drawn
//! from a seed: each unsynced directory change (in its directory's order) is
//! kept or lost independently, and a file that was only appended to since its
//! last sync keeps a random prefix of the unsynced bytes, sometimes ending in
//! zeros or garbage (a length that reached the disk before the data). Synced
//! bytes and synced entries are never touched.
//!
//! What it does not model: one file's data reaching the disk before another's
//! (all of a file's unsynced bytes are lost together, or a prefix is kept),
//! failing I/O calls, hard links, `..` in paths, or renames across
//! directories (refused with `Unsupported`).
//!
//! A [`SimFs`] is a cheap handle (`Arc<Mutex<..>>` inside): clone it into the
//! code under test ([`SimFs::shared`]) and keep a clone to crash it and to read
//! its [`SimStats`].

use crate::fs::{File, FileRef, Fs, OpenMode};
use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsString;
use std::fmt;
use std::io;
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

type Ino = u64;
const ROOT: Ino = 0;
/// Largest file a test may grow: a bigger offset is a bug in the caller, not
/// a reason to allocate that much.
const FILE_BYTES_MAX: usize = 1 << 32;

/// Counts of what the code under test did, since the [`SimFs`] was made.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SimStats {
    /// `sync_data` and `sync_all` calls on files.
    pub file_syncs: u64,
    /// `sync_dir` calls.
    pub dir_syncs: u64,
    /// Crashes so far (strict or torn).
    pub crashes: u64,
}

/// The simulated file system; see the module doc.
#[derive(Clone, Default)]
pub struct SimFs {
    state: Arc<Mutex<State>>,
}

impl fmt::Debug for SimFs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.lock();
        f.debug_struct("SimFs")
            .field("nodes", &state.nodes.len())
            .field("stats", &state.stats)
            .finish()
    }
}

struct State {
    nodes: BTreeMap<Ino, Node>,
    next_ino: Ino,
    /// Bumped by every crash; handles of older generations are dead.
    generation: u64,
    stats: SimStats,
}

impl Default for State {
    fn default() -> Self {
        Self {
            nodes: BTreeMap::from([(ROOT, Node::Dir(DirNode::default()))]),
            next_ino: ROOT + 1,
            generation: 0,
            stats: SimStats::default(),
        }
    }
}

enum Node {
    File(FileNode),
    Dir(DirNode),
}

#[derive(Default)]
struct FileNode {
    /// What reads see (the page cache).
    data: Vec<u8>,
    /// What survives a crash.
    durable: Vec<u8>,
    /// `data` and `durable` agree below this offset; `None`: they are equal.
    dirty_from: Option<usize>,
}

#[derive(Default)]
struct DirNode {
    live: BTreeMap<OsString, Ino>,
    durable: BTreeMap<OsString, Ino>,
    /// Changes since the last sync, in order: applied to `durable` they give
    /// `live`.
    pending: Vec<DirOp>,
}

#[derive(Debug, Clone)]
enum DirOp {
    Link(OsString, Ino),
    Unlink(OsString),
    Rename(OsString, OsString),
}

impl DirOp {
    fn apply(&self, entries: &mut BTreeMap<OsString, Ino>) {
        match self {
            Self::Link(name, ino) => {
                entries.insert(name.clone(), *ino);
            }
            Self::Unlink(name) => {
                entries.remove(name);
            }
            Self::Rename(from, to) => {
                if let Some(ino) = entries.remove(from) {
                    entries.insert(to.clone(), ino);
                }
            }
        }
    }
}

impl DirNode {
    fn change(&mut self, op: DirOp) {
        op.apply(&mut self.live);
        self.pending.push(op);
    }

    fn sync(&mut self) {
        self.durable.clone_from(&self.live);
        self.pending.clear();
    }

    fn crash(&mut self, rng: Option<&mut Rng>) {
        if let Some(rng) = rng {
            for op in std::mem::take(&mut self.pending) {
                if rng.coin() {
                    op.apply(&mut self.durable);
                }
            }
        }
        self.pending.clear();
        self.live.clone_from(&self.durable);
    }
}

impl FileNode {
    fn mark_dirty(&mut self, from: usize) {
        self.dirty_from = Some(self.dirty_from.map_or(from, |d| d.min(from)));
    }

    fn write(&mut self, buf: &[u8], offset: u64) -> io::Result<usize> {
        let start = usize::try_from(offset).map_err(|_| too_big(offset))?;
        let end = start
            .checked_add(buf.len())
            .filter(|end| *end <= FILE_BYTES_MAX)
            .ok_or_else(|| too_big(offset))?;
        self.mark_dirty(start.min(self.data.len()));
        if self.data.len() < end {
            self.data.resize(end, 0);
        }
        self.data[start..end].copy_from_slice(buf);
        Ok(buf.len())
    }

    fn set_len(&mut self, len: u64) -> io::Result<()> {
        let len = usize::try_from(len)
            .ok()
            .filter(|len| *len <= FILE_BYTES_MAX)
            .ok_or_else(|| too_big(len))?;
        self.mark_dirty(len.min(self.data.len()));
        self.data.resize(len, 0);
        Ok(())
    }

    fn sync(&mut self) {
        if let Some(from) = self.dirty_from.take() {
            let from = from.min(self.data.len()).min(self.durable.len());
            self.durable.truncate(from);
            self.durable.extend_from_slice(&self.data[from..]);
        }
    }

    fn crash(&mut self, rng: Option<&mut Rng>) {
        let synced = self.durable.len();
        let appended_only = self.dirty_from.is_some_and(|d| d >= synced);
        match rng {
            Some(rng) if appended_only && self.data.len() > synced => {
                let unsynced = (self.data.len() - synced) as u64;
                let keep = synced + rng.below(unsynced + 1) as usize;
                self.data.truncate(keep);
                if keep > synced && rng.below(3) == 0 {
                    let from = synced + rng.below((keep - synced) as u64) as usize;
                    let zeros = rng.coin();
                    for byte in &mut self.data[from..] {
                        *byte = if zeros { 0 } else { rng.next() as u8 };
                    }
                }
                self.durable.clone_from(&self.data);
            }
            _ => self.data.clone_from(&self.durable),
        }
        self.dirty_from = None;
    }
}

/// splitmix64: deterministic draws for torn crashes, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform-ish in `0..n`; `n > 0`.
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn coin(&mut self) -> bool {
        self.next() & 1 == 1
    }
}

fn too_big(offset: u64) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!("offset {offset} is beyond the {FILE_BYTES_MAX} bytes a SimFs file holds"),
    )
}

fn not_found(path: &Path) -> io::Error {
    io::Error::new(
        io::ErrorKind::NotFound,
        format!("{}: no such file or directory", path.display()),
    )
}

fn is_a_directory(path: &Path) -> io::Error {
    io::Error::new(
        io::ErrorKind::IsADirectory,
        format!("{}: is a directory", path.display()),
    )
}

fn not_a_directory(path: &Path) -> io::Error {
    io::Error::new(
        io::ErrorKind::NotADirectory,
        format!("{}: not a directory", path.display()),
    )
}

/// The names along `path` from the root; relative paths start at the root.
fn names(path: &Path) -> io::Result<Vec<OsString>> {
    let mut out = Vec::new();
    for component in path.components() {
        match component {
            Component::RootDir | Component::CurDir => {}
            Component::Normal(name) => out.push(name.to_owned()),
            Component::ParentDir | Component::Prefix(_) => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("{}: SimFs takes no `..` in paths", path.display()),
                ))
            }
        }
    }
    Ok(out)
}

impl State {
    fn dir(&self, ino: Ino) -> Option<&DirNode> {
        match self.nodes.get(&ino) {
            Some(Node::Dir(dir)) => Some(dir),
            _ => None,
        }
    }

    fn dir_mut(&mut self, ino: Ino) -> &mut DirNode {
        match self.nodes.get_mut(&ino) {
            Some(Node::Dir(dir)) => dir,
            _ => unreachable!("inode {ino} was checked to be a directory"),
        }
    }

    fn file_mut(&mut self, ino: Ino) -> Option<&mut FileNode> {
        match self.nodes.get_mut(&ino) {
            Some(Node::File(file)) => Some(file),
            _ => None,
        }
    }

    /// The inode at `path`, following the live entries.
    fn lookup(&self, path: &Path) -> io::Result<Ino> {
        let mut ino = ROOT;
        for name in names(path)? {
            let dir = self.dir(ino).ok_or_else(|| not_a_directory(path))?;
            ino = *dir.live.get(&name).ok_or_else(|| not_found(path))?;
        }
        Ok(ino)
    }

    /// The directory holding `path`'s entry, and the entry's name.
    fn parent_of(&self, path: &Path) -> io::Result<(Ino, OsString)> {
        let mut names = names(path)?;
        let name = names
            .pop()
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "the root has no entry"))?;
        let parent: PathBuf = names.iter().collect();
        let ino = self.lookup(&parent)?;
        self.dir(ino).ok_or_else(|| not_a_directory(path))?;
        Ok((ino, name))
    }

    fn new_node(&mut self, node: Node) -> Ino {
        let ino = self.next_ino;
        self.next_ino += 1;
        self.nodes.insert(ino, node);
        ino
    }

    fn crash(&mut self, mut rng: Option<Rng>) {
        for node in self.nodes.values_mut() {
            match node {
                Node::Dir(dir) => dir.crash(rng.as_mut()),
                Node::File(file) => file.crash(rng.as_mut()),
            }
        }
        // Whatever no durable entry reaches is gone for good.
        let mut reachable = BTreeSet::from([ROOT]);
        let mut todo = vec![ROOT];
        while let Some(ino) = todo.pop() {
            if let Some(dir) = self.dir(ino) {
                for child in dir.live.values() {
                    if reachable.insert(*child) {
                        todo.push(*child);
                    }
                }
            }
        }
        self.nodes.retain(|ino, _| reachable.contains(ino));
        self.generation += 1;
        self.stats.crashes += 1;
    }
}

impl SimFs {
    /// An empty file system: only the root directory, which always exists.
    pub fn new() -> Self {
        Self::default()
    }

    /// This file system as the code under test takes it.
    pub fn shared(&self) -> Arc<dyn Fs> {
        Arc::new(self.clone())
    }

    /// A power cut: keeps exactly what was made durable (module doc).
    pub fn crash(&self) {
        self.lock().crash(None);
    }

    /// A power cut after which some unsynced changes reached the disk anyway,
    /// drawn from `seed` (module doc). Never loses anything [`crash`](Self::crash)
    /// would keep.
    pub fn crash_torn(&self, seed: u64) {
        self.lock().crash(Some(Rng(seed)));
    }

    pub fn stats(&self) -> SimStats {
        self.lock().stats
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // No code panics while holding it; a panicking test thread must not
        // hide the real failure behind a poisoned lock.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Fs for SimFs {
    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<FileRef> {
        let mut state = self.lock();
        let (parent, name) = state.parent_of(path)?;
        let existing = state.dir(parent).and_then(|d| d.live.get(&name)).copied();
        let ino = match (existing, mode) {
            (Some(ino), _) if state.dir(ino).is_some() => return Err(is_a_directory(path)),
            (Some(_), OpenMode::CreateNew) => {
                return Err(io::Error::new(
                    io::ErrorKind::AlreadyExists,
                    format!("{}: file exists", path.display()),
                ))
            }
            (Some(ino), OpenMode::Existing) => ino,
            (Some(ino), OpenMode::CreateTruncate) => {
                state.file_mut(ino).expect("a file").set_len(0)?;
                ino
            }
            (None, OpenMode::Existing) => return Err(not_found(path)),
            (None, OpenMode::CreateNew | OpenMode::CreateTruncate) => {
                let ino = state.new_node(Node::File(FileNode::default()));
                state.dir_mut(parent).change(DirOp::Link(name, ino));
                ino
            }
        };
        Ok(Arc::new(SimFile {
            fs: self.clone(),
            ino,
            generation: state.generation,
            path: path.to_owned(),
        }))
    }

    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        let mut state = self.lock();
        let ino = state.lookup(path)?;
        match state.file_mut(ino) {
            Some(file) => Ok(file.data.clone()),
            None => Err(is_a_directory(path)),
        }
    }

    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        let mut state = self.lock();
        let mut ino = ROOT;
        for name in names(path)? {
            let existing = state.dir(ino).and_then(|d| d.live.get(&name)).copied();
            ino = match existing {
                Some(child) if state.dir(child).is_some() => child,
                Some(_) => {
                    return Err(io::Error::new(
                        io::ErrorKind::AlreadyExists,
                        format!("{}: a file is in the way", path.display()),
                    ))
                }
                None => {
                    let child = state.new_node(Node::Dir(DirNode::default()));
                    state.dir_mut(ino).change(DirOp::Link(name, child));
                    child
                }
            };
        }
        Ok(())
    }

    fn is_dir(&self, path: &Path) -> bool {
        let state = self.lock();
        state.lookup(path).is_ok_and(|ino| state.dir(ino).is_some())
    }

    fn list_dir(&self, path: &Path) -> io::Result<Vec<OsString>> {
        let state = self.lock();
        let ino = state.lookup(path)?;
        let dir = state.dir(ino).ok_or_else(|| not_a_directory(path))?;
        Ok(dir.live.keys().cloned().collect())
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        let mut state = self.lock();
        let ino = state.lookup(path)?;
        if state.dir(ino).is_some() {
            return Err(is_a_directory(path));
        }
        let (parent, name) = state.parent_of(path)?;
        state.dir_mut(parent).change(DirOp::Unlink(name));
        Ok(())
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut state = self.lock();
        state.lookup(from)?;
        let (from_parent, from_name) = state.parent_of(from)?;
        let (to_parent, to_name) = state.parent_of(to)?;
        if from_parent != to_parent {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                format!(
                    "SimFs renames only within a directory: {} to {}",
                    from.display(),
                    to.display()
                ),
            ));
        }
        if let Ok(target) = state.lookup(to) {
            if state.dir(target).is_some() {
                return Err(is_a_directory(to));
            }
        }
        if from_name != to_name {
            state
                .dir_mut(from_parent)
                .change(DirOp::Rename(from_name, to_name));
        }
        Ok(())
    }

    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        let mut state = self.lock();
        let ino = state.lookup(path)?;
        state.dir(ino).ok_or_else(|| not_a_directory(path))?;
        state.dir_mut(ino).sync();
        state.stats.dir_syncs += 1;
        Ok(())
    }
}

/// An open file of a [`SimFs`]; it keeps its inode after the name is removed,
/// and dies with a crash.
struct SimFile {
    fs: SimFs,
    ino: Ino,
    generation: u64,
    path: PathBuf,
}

impl fmt::Debug for SimFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SimFile").field("path", &self.path).finish()
    }
}

impl SimFile {
    fn with<R>(
        &self,
        op: impl FnOnce(&mut FileNode, &mut SimStats) -> io::Result<R>,
    ) -> io::Result<R> {
        let mut state = self.fs.lock();
        if state.generation != self.generation {
            return Err(io::Error::other(format!(
                "{}: handle opened before a simulated crash",
                self.path.display()
            )));
        }
        let State { nodes, stats, .. } = &mut *state;
        match nodes.get_mut(&self.ino) {
            Some(Node::File(file)) => op(file, stats),
            _ => unreachable!("an open handle keeps its inode until a crash"),
        }
    }
}

impl File for SimFile {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        self.with(|file, _| {
            let start = usize::try_from(offset).unwrap_or(usize::MAX);
            let Some(available) = file.data.get(start..) else {
                return Ok(0);
            };
            let n = available.len().min(buf.len());
            buf[..n].copy_from_slice(&available[..n]);
            Ok(n)
        })
    }

    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<usize> {
        self.with(|file, _| file.write(buf, offset))
    }

    fn size(&self) -> io::Result<u64> {
        self.with(|file, _| Ok(file.data.len() as u64))
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.with(|file, _| file.set_len(len))
    }

    fn sync_data(&self) -> io::Result<()> {
        self.with(|file, stats| {
            file.sync();
            stats.file_syncs += 1;
            Ok(())
        })
    }

    fn sync_all(&self) -> io::Result<()> {
        self.sync_data()
    }
}
