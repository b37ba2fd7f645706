//! The one oracle every run is checked by, after healing: pure functions of
//! what the producers sent and were told, what readers saw during the run,
//! and what each replica holds at the end.
//!
//! * the replicas hold the same records (same offsets, producers, positions);
//! * offsets are dense from 0; no record (producer, position) is there twice,
//!   and each was sent;
//! * each producer's records are in the order of their positions (all of a
//!   key's records come from one producer, so this is per-key order);
//! * every acknowledged record is there;
//! * every read returned records that are in the final log at the same
//!   offsets: a read never saw a record that was not (then or later)
//!   committed there.

use super::cluster::Rec;
use crate::raft::types::NodeId;
use std::collections::{BTreeMap, BTreeSet};

/// The records every replica holds, if they all hold the same.
pub fn same_on_every_replica(replicas: &[(NodeId, Vec<Rec>)]) -> Result<Vec<Rec>, String> {
    let (first_node, first) = replicas.first().ok_or("no replica")?;
    for (node, recs) in &replicas[1..] {
        if recs != first {
            let at = first
                .iter()
                .zip(recs)
                .position(|(a, b)| a != b)
                .unwrap_or(first.len().min(recs.len()));
            return Err(format!(
                "replicas differ: node {first_node} holds {} records, node {node} {}; first difference at position {at}: {:?} vs {:?}",
                first.len(),
                recs.len(),
                first.get(at),
                recs.get(at)
            ));
        }
    }
    Ok(first.clone())
}

/// Exactly once, in order, nothing unsent, nothing acknowledged missing.
pub fn check_log(
    log: &[Rec],
    sent: &BTreeMap<u64, BTreeSet<u64>>,
    acked: &BTreeMap<u64, BTreeSet<u64>>,
) -> Result<(), String> {
    let mut last: BTreeMap<u64, u64> = BTreeMap::new();
    let mut present: BTreeMap<u64, BTreeSet<u64>> = BTreeMap::new();
    for (i, r) in log.iter().enumerate() {
        if r.offset != i as u64 {
            return Err(format!("offset {} found at position {i}", r.offset));
        }
        if !sent.get(&r.producer).is_some_and(|s| s.contains(&r.seq)) {
            return Err(format!(
                "offset {}: producer {} seq {} was never sent",
                r.offset, r.producer, r.seq
            ));
        }
        if !present.entry(r.producer).or_default().insert(r.seq) {
            return Err(format!(
                "producer {} seq {} is in the log twice (again at offset {})",
                r.producer, r.seq, r.offset
            ));
        }
        if let Some(prev) = last.insert(r.producer, r.seq) {
            if prev > r.seq {
                return Err(format!(
                    "producer {} out of order: seq {} at offset {} after seq {prev}",
                    r.producer, r.seq, r.offset
                ));
            }
        }
    }
    for (producer, seqs) in acked {
        let have = present.get(producer);
        let missing: Vec<u64> = seqs
            .iter()
            .filter(|s| !have.is_some_and(|h| h.contains(s)))
            .copied()
            .collect();
        if !missing.is_empty() {
            return Err(format!(
                "producer {producer}: {} acknowledged records are not in the log (seqs {:?}{})",
                missing.len(),
                &missing[..missing.len().min(8)],
                if missing.len() > 8 { ", ..." } else { "" }
            ));
        }
    }
    Ok(())
}

/// Every read saw records of the final log, at their offsets.
pub fn check_reads(log: &[Rec], reads: &[(NodeId, Vec<Rec>)]) -> Result<(), String> {
    for (k, (node, recs)) in reads.iter().enumerate() {
        for r in recs {
            let committed = usize::try_from(r.offset).ok().and_then(|o| log.get(o));
            if committed != Some(r) {
                return Err(format!(
                    "read {k} on node {node} returned {r:?}, but the committed log holds {committed:?} there"
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(offset: u64, producer: u64, seq: u64) -> Rec {
        Rec {
            offset,
            producer,
            seq,
        }
    }

    fn sets(v: &[(u64, &[u64])]) -> BTreeMap<u64, BTreeSet<u64>> {
        v.iter()
            .map(|(p, s)| (*p, s.iter().copied().collect()))
            .collect()
    }

    fn good() -> Vec<Rec> {
        vec![rec(0, 1, 0), rec(1, 2, 0), rec(2, 1, 1), rec(3, 1, 4)]
    }

    #[test]
    fn a_good_log_passes() {
        let sent = sets(&[(1, &[0, 1, 4, 5]), (2, &[0])]);
        let acked = sets(&[(1, &[0, 1, 4]), (2, &[0])]);
        check_log(&good(), &sent, &acked).unwrap();
        check_reads(&good(), &[(1, good()[..2].to_vec()), (2, vec![])]).unwrap();
        assert_eq!(
            same_on_every_replica(&[(1, good()), (2, good()), (3, good())]).unwrap(),
            good()
        );
    }

    #[test]
    fn losses_duplicates_reorders_and_phantoms_fail() {
        let sent = sets(&[(1, &[0, 1, 4]), (2, &[0])]);
        let acked = sets(&[(1, &[0, 1, 4, 5]), (2, &[0])]);
        let sent5 = sets(&[(1, &[0, 1, 4, 5]), (2, &[0])]);
        let e = check_log(&good(), &sent5, &acked).unwrap_err();
        assert!(e.contains("acknowledged records are not in the log"), "{e}");
        let mut dup = good();
        dup.push(rec(4, 1, 1));
        let e = check_log(&dup, &sent, &sets(&[])).unwrap_err();
        assert!(e.contains("twice"), "{e}");
        let reordered = vec![rec(0, 1, 1), rec(1, 1, 0)];
        let e = check_log(&reordered, &sent, &sets(&[])).unwrap_err();
        assert!(e.contains("out of order"), "{e}");
        let e = check_log(&[rec(0, 3, 0)], &sent, &sets(&[])).unwrap_err();
        assert!(e.contains("never sent"), "{e}");
        let e = check_log(&[rec(1, 1, 0)], &sent, &sets(&[])).unwrap_err();
        assert!(e.contains("offset 1 found at position 0"), "{e}");
    }

    #[test]
    fn a_read_of_what_was_not_committed_fails() {
        let e = check_reads(&good(), &[(2, vec![rec(1, 1, 1)])]).unwrap_err();
        assert!(e.contains("node 2"), "{e}");
        let e = check_reads(&good(), &[(3, vec![rec(9, 1, 9)])]).unwrap_err();
        assert!(e.contains("None"), "{e}");
    }

    #[test]
    fn diverging_replicas_fail() {
        let mut other = good();
        other[3].seq = 5;
        let e = same_on_every_replica(&[(1, good()), (2, other)]).unwrap_err();
        assert!(e.contains("position 3"), "{e}");
        let e = same_on_every_replica(&[(1, good()), (2, good()[..3].to_vec())]).unwrap_err();
        assert!(e.contains("node 2 3"), "{e}");
    }
}
