//! The campaign's oracle, a pure function of what the producers were told,
//! what the consumers were handed and what the core holds at the end:
//!
//! - every acknowledged record is in the core (lost = 0), exactly once
//!   (duplicated = 0: an acknowledged `(record, attempt)` at two offsets);
//! - each key's acknowledged records come in the order they were sent;
//! - each shard's offsets run without gaps and every record is one the
//!   producers sent, under its key;
//! - nothing a consumer was handed differs from what the core ends up with
//!   at that position (no reader saw data that was later not committed);
//! - the consumers were handed every committed record (at least once).
//!
//! Records are the workload's (`tests/src/workload.rs`): record `i`,
//! attempt `a` has key `key-(i % keys)` and value `"i|a|payload-i:08"`. A
//! batch whose acknowledgement was lost is sent again as a new attempt
//! (producer to edge is at least once): those copies are counted, not
//! faults.

use std::collections::{HashMap, HashSet};

/// A record as the core holds it (or a consumer was handed it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Held {
    pub shard: u32,
    pub offset: u64,
    pub key: Option<String>,
    pub value: Vec<u8>,
}

/// `(record, attempt)` from a workload value, if it is one.
pub fn parse(value: &[u8]) -> Option<(u64, u32)> {
    let s = std::str::from_utf8(value).ok()?;
    let mut it = s.split('|');
    let i = it.next()?.parse().ok()?;
    let a = it.next()?.parse().ok()?;
    (s == format!("{i}|{a}|payload-{i:08}")).then_some((i, a))
}

/// The value of record `i`, attempt `a`.
pub fn value(i: u64, a: u32) -> String {
    format!("{i}|{a}|payload-{i:08}")
}

/// What the oracle found; [`Verdict::passed`] says whether it holds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Verdict {
    pub records_in_core: u64,
    pub acknowledged: u64,
    pub lost: u64,
    pub duplicated: u64,
    /// Copies from attempts never acknowledged (allowed).
    pub unacknowledged_copies: u64,
    pub order_violations: u64,
    /// Offsets missing inside a shard's range, or records that are not
    /// the workload's or not under their key.
    pub malformed: u64,
    /// Positions handed to consumers whose content differs from the core's
    /// at the end (or that the core does not hold).
    pub uncommitted_reads: u64,
    /// Committed records no consumer was handed.
    pub unconsumed: u64,
    pub consumer_deliveries: u64,
    pub consumer_redeliveries: u64,
    /// Up to ten lines naming what broke the oracle.
    pub examples: Vec<String>,
}

impl Verdict {
    pub fn passed(&self) -> bool {
        self.lost == 0
            && self.duplicated == 0
            && self.order_violations == 0
            && self.malformed == 0
            && self.uncommitted_reads == 0
            && self.unconsumed == 0
    }

    fn example(&mut self, line: String) {
        if self.examples.len() < 10 {
            self.examples.push(line);
        }
    }
}

/// What consumers were handed: per position, the value and how often.
pub type Deliveries = HashMap<(u32, u64), (Vec<u8>, u64)>;

/// Checks the core's records (every shard, any order) against the
/// acknowledged `(record, attempt)` pairs and the consumers' deliveries.
pub fn check(
    core: &[Held],
    acked: &HashSet<(u64, u32)>,
    keys: u64,
    deliveries: &Deliveries,
) -> Verdict {
    let mut v = Verdict {
        records_in_core: core.len() as u64,
        acknowledged: acked.len() as u64,
        ..Verdict::default()
    };
    let mut sorted: Vec<&Held> = core.iter().collect();
    sorted.sort_by_key(|h| (h.shard, h.offset));
    let mut copies: HashMap<(u64, u32), u64> = HashMap::new();
    let mut last_of_key: HashMap<u64, u64> = HashMap::new();
    let mut prev: Option<(u32, u64)> = None;
    for h in &sorted {
        if let Some((s, o)) = prev.filter(|p| p.0 == h.shard) {
            if h.offset != o + 1 {
                v.malformed += 1;
                v.example(format!("shard {s}: offset {} follows {o}", h.offset));
            }
        }
        prev = Some((h.shard, h.offset));
        let Some((i, a)) = parse(&h.value) else {
            v.malformed += 1;
            v.example(format!(
                "{}/{}: value {:?} is not a workload record",
                h.shard,
                h.offset,
                String::from_utf8_lossy(&h.value)
            ));
            continue;
        };
        if h.key.as_deref() != Some(&format!("key-{}", i % keys)) {
            v.malformed += 1;
            v.example(format!(
                "{}/{}: record {i} has key {:?}",
                h.shard, h.offset, h.key
            ));
        }
        *copies.entry((i, a)).or_default() += 1;
        if !acked.contains(&(i, a)) {
            v.unacknowledged_copies += 1;
            continue;
        }
        let key = i % keys;
        if let Some(&before) = last_of_key.get(&key).filter(|&&before| before >= i) {
            v.order_violations += 1;
            v.example(format!(
                "key-{key}: record {i} at {}/{} after record {before}",
                h.shard, h.offset
            ));
        }
        last_of_key.insert(key, i);
    }
    for (&(i, a), &n) in &copies {
        if n > 1 && acked.contains(&(i, a)) {
            v.duplicated += n - 1;
            v.example(format!("record {i} attempt {a} committed {n} times"));
        }
    }
    let mut missing: Vec<_> = acked.iter().filter(|k| !copies.contains_key(k)).collect();
    missing.sort_unstable();
    v.lost = missing.len() as u64;
    for (i, a) in missing.iter().take(3) {
        v.example(format!(
            "acknowledged record {i} attempt {a} is not in the core"
        ));
    }
    let at: HashMap<(u32, u64), &Held> = core.iter().map(|h| ((h.shard, h.offset), h)).collect();
    for (&(s, o), (value, n)) in deliveries {
        v.consumer_deliveries += n;
        v.consumer_redeliveries += n.saturating_sub(1);
        if at.get(&(s, o)).is_none_or(|h| h.value != *value) {
            v.uncommitted_reads += 1;
            v.example(format!(
                "a consumer was handed {:?} at {s}/{o}; the core holds {:?}",
                String::from_utf8_lossy(value),
                at.get(&(s, o))
                    .map(|h| String::from_utf8_lossy(&h.value).into_owned())
            ));
        }
    }
    v.unconsumed = at.keys().filter(|p| !deliveries.contains_key(p)).count() as u64;
    if v.unconsumed > 0 {
        v.example(format!(
            "{} committed records were never handed to a consumer",
            v.unconsumed
        ));
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(shard: u32, offset: u64, i: u64, a: u32) -> Held {
        Held {
            shard,
            offset,
            key: Some(format!("key-{}", i % 4)),
            value: value(i, a).into_bytes(),
        }
    }

    fn delivered(core: &[Held]) -> Deliveries {
        core.iter()
            .map(|h| ((h.shard, h.offset), (h.value.clone(), 1)))
            .collect()
    }

    #[test]
    fn a_clean_run_passes_and_counts_retried_copies() {
        // Record 1's first attempt was committed but its ack was lost.
        let core = vec![
            rec(0, 0, 0, 0),
            rec(0, 1, 1, 0),
            rec(0, 2, 1, 1),
            rec(1, 0, 2, 0),
        ];
        let acked: HashSet<_> = [(0, 0), (1, 1), (2, 0)].into();
        let mut d = delivered(&core);
        d.get_mut(&(0, 1)).unwrap().1 = 3;
        let v = check(&core, &acked, 4, &d);
        assert!(v.passed(), "{v:?}");
        assert_eq!(v.unacknowledged_copies, 1);
        assert_eq!((v.consumer_deliveries, v.consumer_redeliveries), (6, 2));
    }

    #[test]
    fn a_lost_record_fails() {
        let core = vec![rec(0, 0, 0, 0)];
        let acked: HashSet<_> = [(0, 0), (4, 0)].into();
        let v = check(&core, &acked, 4, &delivered(&core));
        assert_eq!(v.lost, 1);
        assert!(!v.passed());
    }

    #[test]
    fn an_acknowledged_record_twice_fails() {
        let core = vec![rec(0, 0, 0, 0), rec(0, 1, 0, 0)];
        let acked: HashSet<_> = [(0, 0)].into();
        let v = check(&core, &acked, 4, &delivered(&core));
        assert_eq!(v.duplicated, 1);
        assert!(!v.passed());
    }

    #[test]
    fn a_key_out_of_order_fails() {
        // key-0: records 4 then 0.
        let core = vec![rec(0, 0, 4, 0), rec(0, 1, 0, 0)];
        let acked: HashSet<_> = [(0, 0), (4, 0)].into();
        let v = check(&core, &acked, 4, &delivered(&core));
        assert_eq!(v.order_violations, 1);
        assert!(!v.passed());
    }

    #[test]
    fn a_gap_or_a_foreign_record_fails() {
        let mut core = vec![rec(0, 0, 0, 0), rec(0, 2, 1, 0)];
        let acked: HashSet<_> = [(0, 0), (1, 0)].into();
        assert_eq!(check(&core, &acked, 4, &delivered(&core)).malformed, 1);
        core[1].offset = 1;
        core[1].key = Some("key-3".into());
        assert_eq!(check(&core, &acked, 4, &delivered(&core)).malformed, 1);
        core[1].key = Some("key-1".into());
        core[1].value = b"nope".to_vec();
        assert_eq!(check(&core, &acked, 4, &delivered(&core)).malformed, 1);
    }

    #[test]
    fn a_read_of_what_was_not_committed_fails() {
        let core = vec![rec(0, 0, 0, 0)];
        let acked: HashSet<_> = [(0, 0)].into();
        let mut d = delivered(&core);
        d.insert((0, 1), (value(9, 0).into_bytes(), 1));
        let v = check(&core, &acked, 4, &d);
        assert_eq!(v.uncommitted_reads, 1);
        d.remove(&(0, 1));
        d.insert((0, 0), (value(8, 0).into_bytes(), 1));
        assert_eq!(check(&core, &acked, 4, &d).uncommitted_reads, 1);
    }

    #[test]
    fn a_record_no_consumer_saw_fails() {
        let core = vec![rec(0, 0, 0, 0), rec(0, 1, 1, 0)];
        let acked: HashSet<_> = [(0, 0), (1, 0)].into();
        let mut d = delivered(&core);
        d.remove(&(0, 1));
        let v = check(&core, &acked, 4, &d);
        assert_eq!(v.unconsumed, 1);
        assert!(!v.passed());
    }
}
