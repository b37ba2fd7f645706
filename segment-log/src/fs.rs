//! The file layer: the operations an append-only log performs on files and
//! directories, behind a trait so that tests can run the same code on
//! [`SimFs`](crate::sim::SimFs) and crash it.
//!
//! # What a log may rely on
//!
//! These are the guarantees of a POSIX file system after a power cut, and all
//! that [`SimFs`](crate::sim::SimFs) keeps when it crashes:
//!
//! * A file's bytes (and its length) are durable up to its last
//!   [`File::sync_data`] or [`File::sync_all`]; writes and `set_len` after
//!   that may be lost, or survive in part (a torn tail).
//! * Creating, removing or renaming a directory entry is durable only once the
//!   directory holding it was fsynced ([`Fs::sync_dir`]) after the change;
//!   fsyncing the file does not make its name durable. A new directory's own
//!   entry lives in its parent: see [`create_dir_all_durably`].
//! * Reads see everything written so far, synced or not (the page cache).
//!
//! Errors are plain [`io::Error`]s: callers add the path and the operation to
//! their own error types.

use std::ffi::OsString;
use std::fmt;
use std::io::{self, Read};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// How [`Fs::open`] opens a file; every mode opens for reading and writing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenMode {
    /// An existing file; `NotFound` if there is none.
    Existing,
    /// A new, empty file; `AlreadyExists` if the name is taken.
    CreateNew,
    /// Creates the file, or truncates it to zero bytes if it exists.
    CreateTruncate,
}

/// A shared handle to an open file: a log keeps one per segment and hands
/// clones to whoever fsyncs outside its lock.
pub type FileRef = Arc<dyn File>;

/// An open file. All offsets are absolute, so one handle can be shared.
pub trait File: Send + Sync + fmt::Debug {
    /// Reads up to `buf.len()` bytes at `offset`; 0 at or past the end.
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize>;

    /// Writes up to `buf.len()` bytes at `offset`, extending the file (with
    /// zeros before `offset` if it is past the end).
    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<usize>;

    /// The file's current length in bytes.
    fn size(&self) -> io::Result<u64>;

    /// Truncates or extends (with zeros) the file to `len` bytes.
    fn set_len(&self, len: u64) -> io::Result<()>;

    /// Makes the file's bytes and length durable (`fdatasync`).
    fn sync_data(&self) -> io::Result<()>;

    /// Makes the file's bytes and all its metadata durable (`fsync`).
    fn sync_all(&self) -> io::Result<()>;

    /// Fills `buf` from `offset`; `UnexpectedEof` if the file is shorter.
    fn read_exact_at(&self, mut buf: &mut [u8], mut offset: u64) -> io::Result<()> {
        while !buf.is_empty() {
            match self.read_at(buf, offset) {
                Ok(0) => {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        format!("file ends before byte {}", offset + buf.len() as u64),
                    ))
                }
                Ok(n) => {
                    buf = &mut buf[n..];
                    offset += n as u64;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Writes all of `buf` at `offset`.
    fn write_all_at(&self, mut buf: &[u8], mut offset: u64) -> io::Result<()> {
        while !buf.is_empty() {
            match self.write_at(buf, offset) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    buf = &buf[n..];
                    offset += n as u64;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

/// The file-system operations of a log. Object safe: logs hold an
/// `Arc<dyn Fs>`.
pub trait Fs: Send + Sync + fmt::Debug {
    /// Opens a file per `mode`, for reading and writing.
    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<FileRef>;

    /// The whole content of a file.
    fn read(&self, path: &Path) -> io::Result<Vec<u8>>;

    /// Creates a directory and any missing parents. Their entries are not
    /// durable until each parent is fsynced: see [`create_dir_all_durably`].
    fn create_dir_all(&self, path: &Path) -> io::Result<()>;

    /// Whether `path` is an existing directory (false on any error).
    fn is_dir(&self, path: &Path) -> bool;

    /// Names of the entries of a directory, in no particular order.
    fn list_dir(&self, path: &Path) -> io::Result<Vec<OsString>>;

    /// Removes a file's directory entry.
    fn remove_file(&self, path: &Path) -> io::Result<()>;

    /// Atomically replaces `to` (if any) with `from`. Both must be in the same
    /// directory: that is all a log needs, and what the simulation supports.
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;

    /// Makes the entries of a directory durable (fsync of the directory).
    fn sync_dir(&self, path: &Path) -> io::Result<()>;
}

/// Creates `path` and its missing parents, fsyncing the parent of each
/// directory created, so that the new directories survive a crash. Existing
/// directories are left as they are (nothing is fsynced if `path` exists).
pub fn create_dir_all_durably(fs: &dyn Fs, path: &Path) -> io::Result<()> {
    let missing: Vec<&Path> = path
        .ancestors()
        .take_while(|dir| !dir.as_os_str().is_empty() && !fs.is_dir(dir))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    fs.create_dir_all(path)?;
    // Top down: a child's entry is only reachable once its parent's is durable.
    for dir in missing.iter().rev() {
        let parent = match dir.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => parent,
            _ => Path::new("."),
        };
        fs.sync_dir(parent)?;
    }
    Ok(())
}

/// Sequential reads of a [`File`] from a start offset, for recovery scans
/// (wrap it in a `BufReader`).
#[derive(Debug)]
pub struct Reader<'a> {
    file: &'a dyn File,
    offset: u64,
}

impl<'a> Reader<'a> {
    pub fn new(file: &'a dyn File, offset: u64) -> Self {
        Self { file, offset }
    }
}

impl Read for Reader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.file.read_at(buf, self.offset)?;
        self.offset += n as u64;
        Ok(n)
    }
}

/// The real file system, over `std::fs`.
#[derive(Debug, Clone, Copy, Default)]
pub struct StdFs;

impl StdFs {
    /// A shared handle, as logs take it.
    pub fn shared() -> Arc<dyn Fs> {
        Arc::new(Self)
    }
}

/// A `std::fs::File` behind the [`File`] trait.
#[derive(Debug)]
pub struct StdFile {
    file: std::fs::File,
    path: PathBuf,
}

impl StdFile {
    /// The path the file was opened at.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl File for StdFile {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        self.file.read_at(buf, offset)
    }

    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<usize> {
        self.file.write_at(buf, offset)
    }

    fn size(&self) -> io::Result<u64> {
        Ok(self.file.metadata()?.len())
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.file.set_len(len)
    }

    fn sync_data(&self) -> io::Result<()> {
        self.file.sync_data()
    }

    fn sync_all(&self) -> io::Result<()> {
        self.file.sync_all()
    }

    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.file.read_exact_at(buf, offset)
    }

    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.file.write_all_at(buf, offset)
    }
}

impl Fs for StdFs {
    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<FileRef> {
        let mut opts = std::fs::OpenOptions::new();
        opts.read(true).write(true);
        match mode {
            OpenMode::Existing => {}
            OpenMode::CreateNew => {
                opts.create_new(true);
            }
            OpenMode::CreateTruncate => {
                opts.create(true).truncate(true);
            }
        }
        let file = opts.open(path)?;
        Ok(Arc::new(StdFile {
            file,
            path: path.to_owned(),
        }))
    }

    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        std::fs::read(path)
    }

    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        std::fs::create_dir_all(path)
    }

    fn is_dir(&self, path: &Path) -> bool {
        path.is_dir()
    }

    fn list_dir(&self, path: &Path) -> io::Result<Vec<OsString>> {
        std::fs::read_dir(path)?
            .map(|entry| entry.map(|e| e.file_name()))
            .collect()
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_file(path)
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        std::fs::rename(from, to)
    }

    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        std::fs::File::open(path)?.sync_all()
    }
}

/// Fault injection for tests: an [`Fs`] that passes every call to another
/// one (usually a [`SimFs`](crate::sim::SimFs)), except that fsyncs
/// ([`File::sync_data`], [`File::sync_all`], [`Fs::sync_dir`]) fail while
/// its [`SyncFaults`] say so.
///
/// A failed fsync does nothing underneath: what it was to make durable stays
/// as durable as it was, so a later power cut of the simulated file system
/// may lose it. That is the worst Linux allows: after an fsync error the
/// kernel may mark the dirty pages clean without having written them, so
/// the page cache shows bytes the disk does not hold and a later fsync does
/// not write them either. A log must therefore not trust anything past its
/// last successful fsync once one failed.
#[derive(Debug, Clone)]
pub struct FaultyFs {
    inner: Arc<dyn Fs>,
    faults: Arc<SyncFaults>,
}

/// Which fsyncs of a [`FaultyFs`] fail, and counts of them. Shared: keep a
/// clone to arm it while the code under test runs.
#[derive(Debug, Default)]
pub struct SyncFaults {
    fail_next: std::sync::atomic::AtomicU64,
    fail_all: std::sync::atomic::AtomicBool,
    attempts: std::sync::atomic::AtomicU64,
    failed: std::sync::atomic::AtomicU64,
}

impl SyncFaults {
    /// The next `n` fsyncs fail (a transient fault).
    pub fn fail_next(&self, n: u64) {
        self.fail_next.store(n, std::sync::atomic::Ordering::SeqCst);
    }

    /// Every fsync fails from now on (`true`: a dead disk) or none does
    /// beyond those of [`fail_next`](Self::fail_next) (`false`).
    pub fn fail_all(&self, on: bool) {
        self.fail_all.store(on, std::sync::atomic::Ordering::SeqCst);
    }

    /// fsyncs asked for so far, failed or not.
    pub fn attempts(&self) -> u64 {
        self.attempts.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// fsyncs failed so far.
    pub fn failed(&self) -> u64 {
        self.failed.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Counts one fsync of `path` and fails it if armed.
    fn check(&self, path: &Path) -> io::Result<()> {
        use std::sync::atomic::Ordering::SeqCst;
        self.attempts.fetch_add(1, SeqCst);
        let once = self
            .fail_next
            .fetch_update(SeqCst, SeqCst, |n| n.checked_sub(1))
            .is_ok();
        if once || self.fail_all.load(SeqCst) {
            self.failed.fetch_add(1, SeqCst);
            return Err(io::Error::other(format!(
                "{}: injected fsync failure (EIO)",
                path.display()
            )));
        }
        Ok(())
    }
}

impl FaultyFs {
    /// Wraps `inner`; no fault is armed yet.
    pub fn new(inner: Arc<dyn Fs>) -> Self {
        Self {
            inner,
            faults: Arc::default(),
        }
    }

    /// The switches and counters of this file system's faults.
    pub fn faults(&self) -> Arc<SyncFaults> {
        Arc::clone(&self.faults)
    }

    /// This file system as the code under test takes it.
    pub fn shared(&self) -> Arc<dyn Fs> {
        Arc::new(self.clone())
    }
}

/// A file of a [`FaultyFs`].
#[derive(Debug)]
struct FaultyFile {
    inner: FileRef,
    faults: Arc<SyncFaults>,
    path: PathBuf,
}

impl File for FaultyFile {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        self.inner.read_at(buf, offset)
    }

    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<usize> {
        self.inner.write_at(buf, offset)
    }

    fn size(&self) -> io::Result<u64> {
        self.inner.size()
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.inner.set_len(len)
    }

    fn sync_data(&self) -> io::Result<()> {
        self.faults.check(&self.path)?;
        self.inner.sync_data()
    }

    fn sync_all(&self) -> io::Result<()> {
        self.faults.check(&self.path)?;
        self.inner.sync_all()
    }
}

impl Fs for FaultyFs {
    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<FileRef> {
        let inner = self.inner.open(path, mode)?;
        Ok(Arc::new(FaultyFile {
            inner,
            faults: Arc::clone(&self.faults),
            path: path.to_owned(),
        }))
    }

    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        self.inner.read(path)
    }

    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        self.inner.create_dir_all(path)
    }

    fn is_dir(&self, path: &Path) -> bool {
        self.inner.is_dir(path)
    }

    fn list_dir(&self, path: &Path) -> io::Result<Vec<OsString>> {
        self.inner.list_dir(path)
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        self.inner.remove_file(path)
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.inner.rename(from, to)
    }

    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        self.faults.check(path)?;
        self.inner.sync_dir(path)
    }
}

#[cfg(test)]
mod faulty_tests {
    use super::*;
    use crate::sim::SimFs;

    #[test]
    fn a_failed_fsync_makes_nothing_durable_and_the_next_one_works() {
        let sim = SimFs::new();
        let fs = FaultyFs::new(sim.shared());
        let faults = fs.faults();
        let dir = Path::new("/d");
        create_dir_all_durably(&fs, dir).unwrap();
        let path = dir.join("f");
        let file = fs.open(&path, OpenMode::CreateNew).unwrap();
        fs.sync_dir(dir).unwrap();
        file.write_all_at(b"kept", 0).unwrap();
        file.sync_data().unwrap();
        file.write_all_at(b" lost", 4).unwrap();
        faults.fail_next(1);
        let err = file.sync_data().unwrap_err();
        assert!(err.to_string().contains("/d/f"), "{err}");
        assert_eq!(fs.read(&path).unwrap(), b"kept lost", "the page cache");
        assert_eq!((faults.attempts(), faults.failed()), (4, 1));
        sim.crash();
        assert_eq!(sim.read(&path).unwrap(), b"kept");

        let file = fs.open(&path, OpenMode::Existing).unwrap();
        file.write_all_at(b" again", 4).unwrap();
        file.sync_all().unwrap();
        sim.crash();
        assert_eq!(sim.read(&path).unwrap(), b"kept again");
    }

    #[test]
    fn fail_all_fails_file_and_directory_fsyncs_until_healed() {
        let fs = FaultyFs::new(SimFs::new().shared());
        let faults = fs.faults();
        fs.create_dir_all(Path::new("/d")).unwrap();
        let file = fs.open(Path::new("/d/f"), OpenMode::CreateNew).unwrap();
        faults.fail_all(true);
        for _ in 0..3 {
            assert!(file.sync_data().is_err());
            assert!(file.sync_all().is_err());
            assert!(fs.sync_dir(Path::new("/d")).is_err());
        }
        assert_eq!(faults.failed(), 9);
        faults.fail_all(false);
        file.sync_data().unwrap();
        fs.sync_dir(Path::new("/d")).unwrap();
        assert_eq!((faults.attempts(), faults.failed()), (11, 9));
    }
}
