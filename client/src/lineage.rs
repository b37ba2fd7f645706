//! Reading a whole stream across reshards (pure logic): which shards to
//! read now, and where to start in each.
//!
//! A split or merge closes shards and creates children that list them as
//! parents. Per-key order holds if a reader reads a parent to its end before
//! any of its children, so a shard becomes readable only once all its
//! parents are finished. Where to start in it:
//! - from the oldest record or a time: the same start in every shard, in
//!   lineage order;
//! - from the latest record: closed shards have nothing new and are skipped,
//!   the others start at their end; but a child of a shard this reader read
//!   (one closed while it read) starts at its oldest record, since all of it
//!   came after what the reader saw.

use crate::api::{Start, StreamInfo};
use std::collections::{BTreeMap, BTreeSet};

/// Which shards of a stream to read (see the module docs).
#[derive(Debug, Clone)]
pub struct Lineage {
    start: Start,
    /// Shard → its parents.
    parents: BTreeMap<u32, Vec<u32>>,
    /// Read to their end (or skipped).
    finished: BTreeSet<u32>,
    /// Closed before the reader started at `Start::Latest`: never read.
    skipped: BTreeSet<u32>,
    started: BTreeSet<u32>,
}

impl Lineage {
    pub fn new(info: &StreamInfo, start: Start) -> Self {
        let mut l = Self {
            start,
            parents: BTreeMap::new(),
            finished: BTreeSet::new(),
            skipped: BTreeSet::new(),
            started: BTreeSet::new(),
        };
        if matches!(start, Start::Latest) {
            l.skipped = info
                .shards
                .iter()
                .filter(|s| s.is_closed())
                .map(|s| s.id)
                .collect();
            l.finished = l.skipped.clone();
        }
        l.update(info);
        l
    }

    /// Learns shards created since (a newer description of the stream).
    pub fn update(&mut self, info: &StreamInfo) {
        for s in &info.shards {
            self.parents
                .entry(s.id)
                .or_insert_with(|| s.parents.clone());
        }
    }

    /// `shard` was read to its end (its fetch said `end_of_shard`).
    pub fn finished(&mut self, shard: u32) {
        self.finished.insert(shard);
    }

    /// Whether every known shard is finished.
    pub fn all_finished(&self) -> bool {
        self.parents.keys().all(|s| self.finished.contains(s))
    }

    /// Shards that became readable, with where to start in each; each is
    /// returned once.
    pub fn ready(&mut self) -> Vec<(u32, Start)> {
        let ready: Vec<(u32, Start)> = self
            .parents
            .iter()
            .filter(|(s, _)| !self.started.contains(s) && !self.finished.contains(s))
            .filter(|(_, ps)| ps.iter().all(|p| self.finished.contains(p)))
            .map(|(s, ps)| {
                let read_a_parent = ps.iter().any(|p| !self.skipped.contains(p));
                let start = match self.start {
                    Start::Latest if read_a_parent => Start::Oldest,
                    other => other,
                };
                (*s, start)
            })
            .collect();
        self.started.extend(ready.iter().map(|(s, _)| *s));
        ready
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::ShardInfo;

    fn info(shards: &[(u32, &[u32], &str)]) -> StreamInfo {
        StreamInfo {
            shards: shards
                .iter()
                .map(|(id, parents, state)| ShardInfo {
                    id: *id,
                    parents: parents.to_vec(),
                    state: state.to_string(),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }
    }

    #[test]
    fn parents_are_read_to_their_end_before_children() {
        // 0 and 1; 0 split into 2 and 3; 3 and 1 merged into 4.
        let i = info(&[
            (0, &[], "closed"),
            (1, &[], "closed"),
            (2, &[0], "open"),
            (3, &[0], "closed"),
            (4, &[3, 1], "open"),
        ]);
        let mut l = Lineage::new(&i, Start::Oldest);
        assert_eq!(l.ready(), vec![(0, Start::Oldest), (1, Start::Oldest)]);
        assert_eq!(l.ready(), vec![]);
        l.finished(0);
        assert_eq!(l.ready(), vec![(2, Start::Oldest), (3, Start::Oldest)]);
        l.finished(3);
        assert_eq!(l.ready(), vec![]);
        l.finished(1);
        assert_eq!(l.ready(), vec![(4, Start::Oldest)]);
        assert!(!l.all_finished());

        let t = Start::TimestampMs(5);
        let mut l = Lineage::new(&i, t);
        assert_eq!(l.ready(), vec![(0, t), (1, t)]);
    }

    #[test]
    fn from_latest_closed_shards_are_skipped_and_new_children_start_at_their_oldest() {
        let i = info(&[(0, &[], "closed"), (1, &[0], "open"), (2, &[0], "open")]);
        let mut l = Lineage::new(&i, Start::Latest);
        assert_eq!(l.ready(), vec![(1, Start::Latest), (2, Start::Latest)]);
        // 1 is split while the reader reads it.
        l.finished(1);
        l.update(&info(&[
            (0, &[], "closed"),
            (1, &[0], "closed"),
            (2, &[0], "open"),
            (3, &[1], "open"),
            (4, &[1], "open"),
        ]));
        assert_eq!(l.ready(), vec![(3, Start::Oldest), (4, Start::Oldest)]);
    }
}
