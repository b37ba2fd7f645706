//! Segment file names and directory listing: a log is a directory of
//! segment files named `<first position, 20 decimal digits>.<extension>`
//! (e.g. `00000000000000004096.buf`), so the names sort like the positions
//! (`u64::MAX` has 20 digits). Other files in the directory are left to the
//! log.

use std::ffi::OsString;
use std::io;
use std::path::{Path, PathBuf};

use crate::fs::Fs;

/// Digits of a segment's first position in its file name.
pub const SEGMENT_NAME_DIGITS: usize = 20;

/// File name of the segment starting at `first`.
pub fn segment_file_name(first: u64, extension: &str) -> String {
    format!("{first:0SEGMENT_NAME_DIGITS$}.{extension}")
}

/// Path of the segment starting at `first` inside `dir`.
pub fn segment_path(dir: &Path, first: u64, extension: &str) -> PathBuf {
    dir.join(segment_file_name(first, extension))
}

/// The first position in a segment file name, or `None` for other names.
pub fn parse_segment_file_name(name: &str, extension: &str) -> Option<u64> {
    let digits = name.strip_suffix(extension)?.strip_suffix('.')?;
    if digits.len() != SEGMENT_NAME_DIGITS || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// What [`list_segments`] found in a directory.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Listing {
    /// Segment files, ascending by first position.
    pub segments: Vec<(u64, PathBuf)>,
    /// Names of the other entries, in no particular order.
    pub other_files: Vec<OsString>,
}

/// The segment files with `extension` in `dir`, and the other entries.
pub fn list_segments(fs: &dyn Fs, dir: &Path, extension: &str) -> io::Result<Listing> {
    let mut listing = Listing::default();
    for name in fs.list_dir(dir)? {
        match name
            .to_str()
            .and_then(|n| parse_segment_file_name(n, extension))
        {
            Some(first) => listing.segments.push((first, dir.join(&name))),
            None => listing.other_files.push(name),
        }
    }
    listing.segments.sort_unstable();
    Ok(listing)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fs::OpenMode;
    use crate::sim::SimFs;

    #[test]
    fn names_round_trip_and_sort_numerically() {
        assert_eq!(segment_file_name(42, "buf"), "00000000000000000042.buf");
        assert_eq!(segment_file_name(1, "log"), "00000000000000000001.log");
        assert_eq!(
            segment_file_name(u64::MAX, "log"),
            "18446744073709551615.log"
        );
        for first in [0, 1, 999, u64::MAX] {
            let name = segment_file_name(first, "log");
            assert_eq!(parse_segment_file_name(&name, "log"), Some(first));
            assert_eq!(parse_segment_file_name(&name, "buf"), None);
        }
        for name in [
            "acked",
            "1.log",
            "0000000000000000004x.log",
            "99999999999999999999.log",
            "00000000000000000042log",
            "00000000000000000042.log.tmp",
        ] {
            assert_eq!(parse_segment_file_name(name, "log"), None, "{name}");
        }
    }

    #[test]
    fn listing_sorts_segments_and_keeps_the_other_names() {
        let fs = SimFs::new();
        let dir = Path::new("/d");
        fs.create_dir_all(dir).unwrap();
        for name in [
            "00000000000000000010.log",
            "00000000000000000002.log",
            "vote.json",
        ] {
            fs.open(&dir.join(name), OpenMode::CreateNew).unwrap();
        }
        let listing = list_segments(&fs, dir, "log").unwrap();
        assert_eq!(
            listing.segments,
            vec![
                (2, dir.join("00000000000000000002.log")),
                (10, dir.join("00000000000000000010.log")),
            ]
        );
        assert_eq!(listing.other_files, vec![OsString::from("vote.json")]);
    }
}
