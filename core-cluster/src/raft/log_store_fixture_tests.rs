//! The on-disk format is stable: Raft logs written by Strata 0.1 before the
//! file layer moved into `strata-segment-log` (`tests/fixtures/dev-data-v0.1`,
//! see its `generate.sh`) open with today's code. The stream `fixture` has
//! two shards holding, together, the records `v-0`..`v-99` (key `k{i % 10}`);
//! the metadata group's log holds the stream.

use super::*;
use crate::catalog::MetaCommand;
use crate::raft::command::ShardCommand;
use crate::raft::types::{MetaTypes, ShardTypes};
use std::path::PathBuf;

fn fixture(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures/dev-data-v0.1/core")
        .join(rel)
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &to.join(e.file_name()));
        } else {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

/// Every entry of the log in `rel`, opened from a copy as a log of group
/// type `C`.
fn entries<C: GroupConfig>(rel: &str) -> Vec<Entry<C>> {
    let tmp = tempfile::tempdir().unwrap();
    copy_dir(&fixture(rel), tmp.path());
    let store = LogStore::<C>::open(tmp.path(), SegmentLogOptions::default()).unwrap();
    let (first, last) = (store.first_index().unwrap(), store.last_index().unwrap());
    (first..=last)
        .map(|i| store.read_entry(i).unwrap().expect("no gap in the log"))
        .collect()
}

#[test]
fn shard_logs_written_by_v0_1_open_and_hold_every_record() {
    let mut values = Vec::new();
    for shard in ["shards/fixture/00000", "shards/fixture/00001"] {
        for e in entries::<ShardTypes>(shard) {
            let EntryPayload::Normal(ShardCommand::Append(a)) = e.payload else {
                continue;
            };
            let batch = strata_schema::batch::open(&a.batch).unwrap();
            assert_eq!(batch.records().len(), a.records as usize);
            for r in batch.records() {
                let value = String::from_utf8(r.value().unwrap().bytes().to_vec()).unwrap();
                let i: u32 = value.strip_prefix("v-").unwrap().parse().unwrap();
                assert_eq!(r.key(), Some(format!("k{}", i % 10).as_str()));
                values.push(i);
            }
        }
    }
    values.sort_unstable();
    assert_eq!(values, (0..100).collect::<Vec<_>>());
}

#[test]
fn the_metadata_log_written_by_v0_1_opens_and_holds_the_stream() {
    let created: Vec<String> = entries::<MetaTypes>("meta")
        .into_iter()
        .filter_map(|e| match e.payload {
            EntryPayload::Normal(MetaCommand::CreateStream(s)) => Some(s.name),
            _ => None,
        })
        .collect();
    assert_eq!(created, vec!["fixture".to_string()]);
}
