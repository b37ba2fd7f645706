//! Atomic replacement of a small file (a log's metadata: the edge buffer's
//! `acked`, the core's `vote.json`, the edge's stream cache): write a
//! sibling temporary file, fsync it, rename it over the target, fsync the
//! directory. After a crash the target holds the old content or the new
//! one, never a mix.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use crate::fs::{Fs, OpenMode};

/// How much [`write_file_atomic`] makes durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// No fsync: cheap, for a value saved often whose loss is harmless.
    /// After a crash the file may hold an older value or, on file systems
    /// that do not order the rename after the data, be unreadable.
    None,
    /// `fdatasync` the temporary file before the rename, fsync the
    /// directory after it.
    Data,
    /// `fsync` (data and metadata) the temporary file before the rename,
    /// fsync the directory after it.
    All,
}

/// An I/O failure, with the operation and the file it happened on.
#[derive(Debug)]
pub struct FileError {
    pub op: &'static str,
    pub path: PathBuf,
    pub source: io::Error,
}

impl FileError {
    fn at<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> Self + 'a {
        move |source| Self {
            op,
            path: path.to_owned(),
            source,
        }
    }
}

impl fmt::Display for FileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}: {}", self.op, self.path.display(), self.source)
    }
}

impl std::error::Error for FileError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

/// Replaces `path` with `bytes` through the temporary file `tmp` (in the
/// same directory); see the module documentation. Returns the number of
/// fsyncs done, for callers that count them.
pub fn write_file_atomic(
    fs: &dyn Fs,
    path: &Path,
    tmp: &Path,
    bytes: &[u8],
    durability: Durability,
) -> Result<u32, FileError> {
    let file = fs
        .open(tmp, OpenMode::CreateTruncate)
        .map_err(FileError::at("create", tmp))?;
    file.write_all_at(bytes, 0)
        .map_err(FileError::at("write", tmp))?;
    let synced = match durability {
        Durability::None => Ok(()),
        Durability::Data => file.sync_data(),
        Durability::All => file.sync_all(),
    };
    synced.map_err(FileError::at("fsync", tmp))?;
    drop(file);
    fs.rename(tmp, path)
        .map_err(FileError::at("rename to", path))?;
    if durability == Durability::None {
        return Ok(0);
    }
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    fs.sync_dir(dir)
        .map_err(FileError::at("fsync directory", dir))?;
    Ok(2)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::SimFs;

    #[test]
    fn a_crash_keeps_the_old_or_the_new_content() {
        let fs = SimFs::new();
        let dir = Path::new("/d");
        fs.create_dir_all(dir).unwrap();
        fs.sync_dir(Path::new("/")).unwrap();
        let (path, tmp) = (dir.join("f"), dir.join("f.tmp"));
        assert_eq!(
            write_file_atomic(&fs, &path, &tmp, b"old", Durability::Data).unwrap(),
            2
        );
        write_file_atomic(&fs, &path, &tmp, b"new", Durability::All).unwrap();
        fs.crash();
        assert_eq!(fs.read(&path).unwrap(), b"new");
        assert!(fs.open(&tmp, OpenMode::Existing).is_err());

        assert_eq!(
            write_file_atomic(&fs, &path, &tmp, b"newer", Durability::None).unwrap(),
            0
        );
        assert_eq!(fs.read(&path).unwrap(), b"newer");
        fs.crash();
        let after = fs.read(&path).unwrap_or_default();
        assert!(after == b"new" || after == b"newer", "{after:?}");
    }

    #[test]
    fn failures_name_the_operation_and_file() {
        let fs = SimFs::new();
        let err = write_file_atomic(
            &fs,
            Path::new("/missing/f"),
            Path::new("/missing/f.tmp"),
            b"x",
            Durability::All,
        )
        .unwrap_err();
        assert_eq!(err.op, "create");
        assert!(
            err.to_string().starts_with("create /missing/f.tmp: "),
            "{err}"
        );
    }
}
