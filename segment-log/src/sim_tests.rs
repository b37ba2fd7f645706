//! Unit tests of [`SimFs`]: one crash rule each.

use crate::fs::{create_dir_all_durably, FileRef, Fs, OpenMode};
use crate::sim::SimFs;
use std::ffi::OsString;
use std::io;
use std::path::Path;

/// A durable directory `/d` to work in.
fn setup() -> SimFs {
    let fs = SimFs::new();
    create_dir_all_durably(&fs, Path::new("/d")).unwrap();
    fs
}

fn create(fs: &SimFs, path: &str, bytes: &[u8]) -> FileRef {
    let file = fs.open(Path::new(path), OpenMode::CreateNew).unwrap();
    file.write_all_at(bytes, 0).unwrap();
    file
}

fn content(fs: &SimFs, path: &str) -> Option<Vec<u8>> {
    match fs.read(Path::new(path)) {
        Ok(bytes) => Some(bytes),
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => panic!("read {path}: {e}"),
    }
}

fn names(fs: &SimFs, dir: &str) -> Vec<OsString> {
    let mut names = fs.list_dir(Path::new(dir)).unwrap();
    names.sort();
    names
}

#[test]
fn an_unsynced_write_is_lost_and_a_synced_one_survives() {
    let fs = setup();
    let file = create(&fs, "/d/f", b"durable");
    file.sync_data().unwrap();
    fs.sync_dir(Path::new("/d")).unwrap();
    file.write_all_at(b" and lost", 7).unwrap();
    assert_eq!(
        content(&fs, "/d/f").unwrap(),
        b"durable and lost",
        "reads see unsynced writes"
    );
    fs.crash();
    assert_eq!(content(&fs, "/d/f").unwrap(), b"durable");
}

#[test]
fn an_overwrite_and_a_truncation_after_the_sync_are_undone() {
    let fs = setup();
    let file = create(&fs, "/d/f", b"abcdef");
    file.sync_all().unwrap();
    fs.sync_dir(Path::new("/d")).unwrap();
    file.write_all_at(b"XY", 1).unwrap();
    file.set_len(4).unwrap();
    fs.crash();
    assert_eq!(content(&fs, "/d/f").unwrap(), b"abcdef");

    let file = fs.open(Path::new("/d/f"), OpenMode::Existing).unwrap();
    file.set_len(2).unwrap();
    file.write_all_at(b"zz", 4).unwrap(); // a hole of zeros at 2..4
    file.sync_data().unwrap();
    assert_eq!(content(&fs, "/d/f").unwrap(), b"ab\0\0zz");
    fs.crash();
    assert_eq!(
        content(&fs, "/d/f").unwrap(),
        b"ab\0\0zz",
        "synced as written"
    );
}

#[test]
fn a_synced_file_whose_directory_was_not_synced_disappears() {
    let fs = setup();
    let file = create(&fs, "/d/new", b"synced bytes");
    file.sync_data().unwrap();
    fs.crash();
    assert_eq!(content(&fs, "/d/new"), None);
    assert!(names(&fs, "/d").is_empty());
}

#[test]
fn a_file_whose_directory_was_synced_survives_empty_until_its_data_is() {
    let fs = setup();
    let file = create(&fs, "/d/new", b"never synced");
    fs.sync_dir(Path::new("/d")).unwrap();
    drop(file);
    fs.crash();
    assert_eq!(content(&fs, "/d/new").unwrap(), b"");
}

#[test]
fn a_rename_not_followed_by_a_directory_sync_is_undone() {
    let fs = setup();
    let old = create(&fs, "/d/target", b"old");
    old.sync_data().unwrap();
    let tmp = create(&fs, "/d/target.tmp", b"new");
    tmp.sync_data().unwrap();
    fs.sync_dir(Path::new("/d")).unwrap();
    fs.rename(Path::new("/d/target.tmp"), Path::new("/d/target"))
        .unwrap();
    assert_eq!(content(&fs, "/d/target").unwrap(), b"new");
    assert_eq!(content(&fs, "/d/target.tmp"), None);
    fs.crash();
    assert_eq!(content(&fs, "/d/target").unwrap(), b"old");
    assert_eq!(content(&fs, "/d/target.tmp").unwrap(), b"new");

    fs.rename(Path::new("/d/target.tmp"), Path::new("/d/target"))
        .unwrap();
    fs.sync_dir(Path::new("/d")).unwrap();
    fs.crash();
    assert_eq!(content(&fs, "/d/target").unwrap(), b"new");
    assert_eq!(names(&fs, "/d"), ["target"]);
}

#[test]
fn a_removal_not_followed_by_a_directory_sync_is_undone() {
    let fs = setup();
    let file = create(&fs, "/d/f", b"kept");
    file.sync_data().unwrap();
    fs.sync_dir(Path::new("/d")).unwrap();
    fs.remove_file(Path::new("/d/f")).unwrap();
    assert_eq!(content(&fs, "/d/f"), None);
    assert_eq!(file.size().unwrap(), 4, "an open handle keeps the inode");
    fs.crash();
    assert_eq!(content(&fs, "/d/f").unwrap(), b"kept");
    fs.remove_file(Path::new("/d/f")).unwrap();
    fs.sync_dir(Path::new("/d")).unwrap();
    fs.crash();
    assert_eq!(content(&fs, "/d/f"), None);
}

#[test]
fn a_new_directory_needs_its_parent_synced() {
    let fs = setup();
    fs.create_dir_all(Path::new("/d/a/b")).unwrap();
    let file = create(&fs, "/d/a/b/f", b"x");
    file.sync_data().unwrap();
    fs.sync_dir(Path::new("/d/a/b")).unwrap();
    fs.sync_dir(Path::new("/d/a")).unwrap();
    fs.crash();
    assert!(
        !fs.is_dir(Path::new("/d/a")),
        "/d was not synced after mkdir a"
    );

    create_dir_all_durably(&fs, Path::new("/d/a/b")).unwrap();
    let file = create(&fs, "/d/a/b/f", b"x");
    file.sync_data().unwrap();
    fs.sync_dir(Path::new("/d/a/b")).unwrap();
    let syncs = fs.stats().dir_syncs;
    create_dir_all_durably(&fs, Path::new("/d/a/b")).unwrap();
    assert_eq!(
        fs.stats().dir_syncs,
        syncs,
        "nothing to do for an existing directory"
    );
    fs.crash();
    assert_eq!(content(&fs, "/d/a/b/f").unwrap(), b"x");
}

#[test]
fn handles_opened_before_a_crash_are_dead() {
    let fs = setup();
    let file = create(&fs, "/d/f", b"x");
    file.sync_data().unwrap();
    fs.sync_dir(Path::new("/d")).unwrap();
    fs.crash();
    assert!(file.write_all_at(b"y", 1).is_err());
    assert!(file.sync_data().is_err());
    assert_eq!(content(&fs, "/d/f").unwrap(), b"x");
    assert_eq!(fs.stats().crashes, 1);
}

#[test]
fn torn_crashes_keep_every_durable_byte_and_entry_and_a_prefix_of_the_rest() {
    let mut kept_some_tail = false;
    let mut kept_an_entry = false;
    let mut lost_an_entry = false;
    for seed in 0..200 {
        let fs = setup();
        let file = create(&fs, "/d/log", b"synced|");
        file.sync_data().unwrap();
        fs.sync_dir(Path::new("/d")).unwrap();
        file.write_all_at(b"unsynced tail", 7).unwrap();
        create(&fs, "/d/unsynced-name", b"");
        fs.crash_torn(seed);

        let log = content(&fs, "/d/log").unwrap();
        assert!(log.starts_with(b"synced|"), "seed {seed}: {log:?}");
        assert!(log.len() <= b"synced|unsynced tail".len(), "seed {seed}");
        kept_some_tail |= log.len() > 7;
        match content(&fs, "/d/unsynced-name") {
            Some(_) => kept_an_entry = true,
            None => lost_an_entry = true,
        }
        // What a torn crash kept is durable from then on.
        fs.crash();
        assert_eq!(content(&fs, "/d/log").unwrap(), log, "seed {seed}");
    }
    assert!(kept_some_tail && kept_an_entry && lost_an_entry);
}

#[test]
fn torn_crashes_are_deterministic_per_seed() {
    let run = |seed| {
        let fs = setup();
        let file = create(&fs, "/d/f", &[7; 64]);
        fs.sync_dir(Path::new("/d")).unwrap();
        file.write_all_at(&[9; 64], 64).unwrap();
        fs.crash_torn(seed);
        content(&fs, "/d/f")
    };
    for seed in 0..20 {
        assert_eq!(run(seed), run(seed));
    }
}

#[test]
fn bad_requests_are_errors_not_panics() {
    let fs = setup();
    let err = |res: io::Result<FileRef>| res.unwrap_err().kind();
    assert_eq!(
        err(fs.open(Path::new("/d/missing"), OpenMode::Existing)),
        io::ErrorKind::NotFound
    );
    assert_eq!(
        err(fs.open(Path::new("/nodir/f"), OpenMode::CreateNew)),
        io::ErrorKind::NotFound
    );
    assert_eq!(
        err(fs.open(Path::new("/d"), OpenMode::Existing)),
        io::ErrorKind::IsADirectory
    );
    create(&fs, "/d/f", b"");
    assert_eq!(
        err(fs.open(Path::new("/d/f"), OpenMode::CreateNew)),
        io::ErrorKind::AlreadyExists
    );
    assert_eq!(
        err(fs.open(Path::new("/d/f/g"), OpenMode::CreateNew)),
        io::ErrorKind::NotADirectory
    );
    assert!(fs.create_dir_all(Path::new("/d/f")).is_err());
    assert!(fs.open(Path::new("/d/../f"), OpenMode::CreateNew).is_err());
    fs.create_dir_all(Path::new("/e")).unwrap();
    let cross = fs.rename(Path::new("/d/f"), Path::new("/e/f")).unwrap_err();
    assert_eq!(cross.kind(), io::ErrorKind::Unsupported);
    assert_eq!(
        fs.remove_file(Path::new("/d")).unwrap_err().kind(),
        io::ErrorKind::IsADirectory
    );
    assert!(fs.sync_dir(Path::new("/d/f")).is_err());
    assert!(fs.list_dir(Path::new("/d/f")).is_err());
    let file = fs.open(Path::new("/d/f"), OpenMode::Existing).unwrap();
    assert!(file.write_all_at(b"x", u64::MAX).is_err());
    let mut buf = [0; 4];
    assert_eq!(file.read_at(&mut buf, u64::MAX).unwrap(), 0);
}
