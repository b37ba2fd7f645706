//! One conformance check of the [`Fs`] trait, run against every
//! implementation ([`StdFs`] and [`SimFs`]): what a log sees before any
//! crash is the same on both. It lives beside, not inside, `fs` because it
//! needs both implementations.

use crate::fs::{create_dir_all_durably, Fs, OpenMode, Reader, StdFs};
use crate::sim::SimFs;
use std::ffi::OsString;
use std::io::{self, Read};
use std::path::Path;

/// One conformance check, run against every implementation: what a
/// log sees before any crash is the same on both.
fn conformance(fs: &dyn Fs, root: &Path) {
    let dir = root.join("a/b");
    create_dir_all_durably(fs, &dir).unwrap();
    assert!(fs.is_dir(&dir));
    let path = dir.join("f");
    let file = fs.open(&path, OpenMode::CreateNew).unwrap();
    let again = fs.open(&path, OpenMode::CreateNew).unwrap_err();
    assert_eq!(again.kind(), io::ErrorKind::AlreadyExists);
    file.write_all_at(b"hello world", 0).unwrap();
    file.sync_data().unwrap();
    file.set_len(5).unwrap();
    file.sync_all().unwrap();
    assert_eq!(file.size().unwrap(), 5);
    let mut buf = [0; 5];
    file.read_exact_at(&mut buf, 0).unwrap();
    assert_eq!(&buf, b"hello");
    let mut read = String::new();
    Reader::new(&*file, 1).read_to_string(&mut read).unwrap();
    assert_eq!(read, "ello");
    let err = file.read_exact_at(&mut buf, 3).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
    file.write_all_at(b"!", 7).unwrap();
    assert_eq!(
        fs.read(&path).unwrap(),
        b"hello\0\0!",
        "a hole reads as zeros"
    );
    file.set_len(5).unwrap();

    fs.rename(&path, &dir.join("g")).unwrap();
    fs.sync_dir(&dir).unwrap();
    assert_eq!(fs.list_dir(&dir).unwrap(), vec![OsString::from("g")]);
    assert_eq!(fs.read(&dir.join("g")).unwrap(), b"hello");
    let missing = fs.open(&path, OpenMode::Existing).unwrap_err();
    assert_eq!(missing.kind(), io::ErrorKind::NotFound);
    let truncated = fs.open(&dir.join("g"), OpenMode::CreateTruncate).unwrap();
    assert_eq!(truncated.size().unwrap(), 0);
    fs.remove_file(&dir.join("g")).unwrap();
    let gone = fs.open(&dir.join("g"), OpenMode::Existing).unwrap_err();
    assert_eq!(gone.kind(), io::ErrorKind::NotFound);
    assert!(fs.list_dir(&dir).unwrap().is_empty());
    assert!(!fs.is_dir(&dir.join("g")));
}

#[test]
fn std_fs_conforms() {
    let root = tempfile::TempDir::new().unwrap();
    conformance(&StdFs, root.path());
}

#[test]
fn sim_fs_conforms() {
    conformance(&SimFs::new(), Path::new("/root"));
}
