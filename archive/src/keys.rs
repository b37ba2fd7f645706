//! Object key layout.
//!
//! Data objects live under Hive-style partitions so that
//! `read_parquet('<prefix>/stream=x/**/*.parquet', hive_partitioning=true)`
//! in DuckDB, or an external table over `<prefix>` in Spark or Athena, reads
//! a stream with no glue:
//!
//! ```text
//! <prefix>/stream=<name>/date=<YYYY-MM-DD>/hour=<HH>/shard-<id>-<first offset>-<next offset>-<term>.parquet
//! <prefix>/_strata/manifests/stream=<name>/shard-<id>.json
//! ```
//!
//! Date and hour are UTC, from the first record's timestamp. Offsets are
//! zero-padded to 20 digits so that a listing sorts objects of a shard by
//! offset. `term` is the Raft term of the shard leader that wrote the
//! object: every upload has a key of its own, so an upload by a leader that
//! was deposed meanwhile (its commit of the manifest entry then fails) can
//! never replace an object a manifest names. With keys made of the first
//! offset alone, a deposed leader's late upload of a shorter range replaced
//! the new leader's committed object, whose records were then unreadable
//! (found by the chaos campaign, docs/reliability.md). An upload that is
//! not committed leaves an orphan under its own key; the leader that commits
//! the range deletes the other objects of the same first offset
//! ([`same_start_prefix`]). Manifest
//! copies sit outside the `stream=` trees so that query engines only ever see
//! Parquet files there.

use chrono::{DateTime, Datelike, Timelike};
use object_store::path::Path;
use std::ops::Range;

/// Millisecond bounds of years 0000..=9999: outside them a date would not
/// format as `YYYY-MM-DD`. Producer timestamps are untrusted, so they are
/// clamped into this range for the key (the records keep their own value).
const TIMESTAMP_MS_MIN: i64 = -62_167_219_200_000; // 0000-01-01T00:00:00Z
const TIMESTAMP_MS_MAX: i64 = 253_402_300_799_999; // 9999-12-31T23:59:59.999Z

/// `<prefix>/stream=<name>`: everything tiered for one stream.
pub fn stream_prefix(prefix: &Path, stream: &str) -> Path {
    prefix.clone().join(format!("stream={stream}"))
}

/// The key of the data object holding offsets `offsets` (first to one
/// past the last), whose first record has timestamp `first_timestamp_ms`,
/// written by the shard leader of Raft term `term`.
pub fn data_key(
    prefix: &Path,
    stream: &str,
    shard: u32,
    offsets: Range<u64>,
    term: u64,
    first_timestamp_ms: i64,
) -> Path {
    let (dir, start) = same_start_prefix(prefix, stream, shard, offsets.start, first_timestamp_ms);
    dir.join(format!("{start}{:020}-{term}.parquet", offsets.end))
}

/// The partition directory of the objects of `shard` starting at
/// `first_offset` (first record at `first_timestamp_ms`), and the start of
/// their file names: every upload of a range from that offset, whatever its
/// end and writer, is in that directory with a name starting so.
pub fn same_start_prefix(
    prefix: &Path,
    stream: &str,
    shard: u32,
    first_offset: u64,
    first_timestamp_ms: i64,
) -> (Path, String) {
    let ms = first_timestamp_ms.clamp(TIMESTAMP_MS_MIN, TIMESTAMP_MS_MAX);
    let t = DateTime::from_timestamp_millis(ms).unwrap_or_default();
    let dir = stream_prefix(prefix, stream)
        .join(format!(
            "date={:04}-{:02}-{:02}",
            t.year(),
            t.month(),
            t.day()
        ))
        .join(format!("hour={:02}", t.hour()));
    (dir, format!("shard-{shard}-{first_offset:020}-"))
}

/// Where the JSON copies of a stream's shard manifests are.
pub fn manifest_dir(prefix: &Path, stream: &str) -> Path {
    prefix
        .clone()
        .join("_strata")
        .join("manifests")
        .join(format!("stream={stream}"))
}

/// The key of the JSON copy of a shard's manifest.
pub fn manifest_key(prefix: &Path, stream: &str, shard: u32) -> Path {
    manifest_dir(prefix, stream).join(format!("shard-{shard}.json"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_keys_are_hive_partitioned_in_utc() {
        // 2026-11-23T05:06:07.089Z
        let ts = 1_795_410_367_089;
        let k = data_key(&Path::from("archive/v1"), "orders", 3, 42..50, 7, ts);
        assert_eq!(
            k.as_ref(),
            "archive/v1/stream=orders/date=2026-11-23/hour=05/shard-3-00000000000000000042-00000000000000000050-7.parquet"
        );
        let k = data_key(
            &Path::default(),
            "a.b-c_d",
            0,
            u64::MAX..u64::MAX,
            u64::MAX,
            0,
        );
        assert_eq!(
            k.as_ref(),
            "stream=a.b-c_d/date=1970-01-01/hour=00/shard-0-18446744073709551615-18446744073709551615-18446744073709551615.parquet"
        );
        assert!(k
            .as_ref()
            .starts_with(stream_prefix(&Path::default(), "a.b-c_d").as_ref()));
    }

    #[test]
    fn hostile_timestamps_still_give_a_well_formed_key() {
        let p = Path::default();
        assert_eq!(
            data_key(&p, "s", 1, 7..8, 1, -1).as_ref(),
            "stream=s/date=1969-12-31/hour=23/shard-1-00000000000000000007-00000000000000000008-1.parquet"
        );
        assert!(data_key(&p, "s", 1, 7..8, 1, i64::MIN)
            .as_ref()
            .contains("/date=0000-01-01/hour=00/"));
        assert!(data_key(&p, "s", 1, 7..8, 1, i64::MAX)
            .as_ref()
            .contains("/date=9999-12-31/hour=23/"));
    }

    #[test]
    fn uploads_of_one_start_by_other_leaders_or_ends_get_keys_of_their_own() {
        let p = Path::default();
        let committed = data_key(&p, "s", 0, 4497..7625, 3, 0);
        let stale = data_key(&p, "s", 0, 4497..5766, 2, 0);
        let same_end_older_term = data_key(&p, "s", 0, 4497..7625, 2, 0);
        assert_ne!(committed, stale);
        assert_ne!(committed, same_end_older_term);
        let (dir, start) = same_start_prefix(&p, "s", 0, 4497, 0);
        for k in [&committed, &stale, &same_end_older_term] {
            let name = k.filename().unwrap();
            assert!(name.starts_with(&start), "{name}");
            assert_eq!(k.as_ref(), dir.clone().join(name).as_ref());
        }
        // Another start (or shard) never shares the prefix.
        let (_, other) = same_start_prefix(&p, "s", 0, 44970, 0);
        assert!(!committed.filename().unwrap().starts_with(&other));
        let (_, other_shard) = same_start_prefix(&p, "s", 10, 4497, 0);
        assert!(!committed.filename().unwrap().starts_with(&other_shard));
    }

    #[test]
    fn manifest_keys_sit_outside_the_stream_tree() {
        assert_eq!(
            manifest_key(&Path::from("p"), "orders", 12).as_ref(),
            "p/_strata/manifests/stream=orders/shard-12.json"
        );
        assert_eq!(
            manifest_key(&Path::default(), "orders", 0).as_ref(),
            "_strata/manifests/stream=orders/shard-0.json"
        );
    }
}
