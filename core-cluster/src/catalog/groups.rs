//! Consumer groups: the members of a group share a stream's shards, each
//! shard owned by one member at a time, with leases and checkpoints.
//!
//! A group lives in the metadata catalog and changes only through committed
//! metadata commands, so every replica holds the same groups and a new
//! metadata leader continues where the old one stopped. Time enters only as
//! the proposer's clock carried in the command ([`Heartbeat::now_ms`]), so
//! applying is deterministic.
//!
//! A member joins and keeps its lease with heartbeats; one that sends none for
//! its session time loses its shards at the next heartbeat of any member.
//! Every change of the member set (or of the stream's shards) starts a new
//! generation and rebalances: members hold `⌊shards/members⌋` or one more,
//! and a shard stays with its owner when the balance allows (sticky).
//!
//! A shard that moves between two live members is revoked before it is
//! assigned: the old owner keeps it until its next heartbeat, which commits
//! everything it handled, and only then does the new owner get it, from that
//! checkpoint. So a rebalance re-delivers nothing; only a member that dies
//! (or whose lease runs out) leaves records to be read again, those it
//! handled after its last heartbeat. A checkpoint (the next offset to read)
//! is accepted only from the shard's owner, and only once that member has
//! seen the assignment (its heartbeat's generation is at least the one that
//! gave it the shard), so a member that lost a shard cannot move its
//! checkpoint.
//!
//! Resharding: a group reads a closed shard to its end before any of its
//! children. A shard is assigned only while it is not *finished* (closed,
//! with the group's checkpoint at its end offset) and once all its parents
//! are finished; a child the group has no checkpoint in starts at its
//! oldest record, as it holds exactly what followed its parents. So per-key
//! order holds across a split or merge.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Session time when a member asks for none.
pub const SESSION_MS_DEFAULT: u64 = 10_000;
/// Allowed session times.
pub const SESSION_MS_MIN: u64 = 500;
pub const SESSION_MS_MAX: u64 = 300_000;

pub use strata_protocol::{Assignment, Checkpoint};

/// A shard as a group sees it: its parents and, once sealed, where it ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardLineage {
    pub id: u32,
    pub parents: Vec<u32>,
    pub end_offset: Option<u64>,
}

/// One consumer group of one stream.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Group {
    /// Raised on every rebalance.
    pub generation: u64,
    /// Member → lease expiry (milliseconds since the epoch).
    pub members: BTreeMap<String, i64>,
    /// Shard → owning member.
    pub owners: BTreeMap<u32, String>,
    /// Shard → the generation in which its owner got it.
    #[serde(default)]
    pub assigned_at: BTreeMap<u32, u64>,
    /// Shard → the member it goes to once its owner hands it over.
    #[serde(default)]
    pub revoking: BTreeMap<u32, String>,
    pub checkpoints: BTreeMap<u32, Checkpoint>,
}

/// A member's heartbeat: join, keep the lease, commit checkpoints, or leave.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Heartbeat {
    pub member: String,
    /// The proposer's clock.
    pub now_ms: i64,
    pub session_ms: u64,
    /// The generation the member's assignment came from.
    pub generation: u64,
    pub commits: Vec<(u32, Checkpoint)>,
    pub leave: bool,
}

impl Group {
    /// Whether the group has read `sh` to its end.
    fn finished(&self, sh: &ShardLineage) -> bool {
        sh.end_offset.is_some_and(|end| {
            end == 0
                || self
                    .checkpoints
                    .get(&sh.id)
                    .is_some_and(|c| c.offset >= end)
        })
    }

    /// The shards the group reads now: not finished, parents finished.
    pub fn readable(&self, lineage: &[ShardLineage]) -> Vec<u32> {
        let finished: Vec<u32> = lineage
            .iter()
            .filter(|sh| self.finished(sh))
            .map(|sh| sh.id)
            .collect();
        lineage
            .iter()
            .filter(|sh| !finished.contains(&sh.id))
            .filter(|sh| sh.parents.iter().all(|p| finished.contains(p)))
            .map(|sh| sh.id)
            .collect()
    }

    /// Applies a heartbeat for a stream whose shards are `lineage`.
    pub fn heartbeat(&mut self, lineage: &[ShardLineage], hb: &Heartbeat) -> Assignment {
        let known: Vec<u32> = lineage.iter().map(|sh| sh.id).collect();
        let mut refused = 0;
        for (shard, cp) in &hb.commits {
            let owns = self.owners.get(shard) == Some(&hb.member);
            let seen = self
                .assigned_at
                .get(shard)
                .is_some_and(|g| hb.generation >= *g);
            if owns && seen && known.contains(shard) {
                self.checkpoints.insert(*shard, *cp);
            } else {
                refused += 1;
            }
        }
        // After the commits: a shard they finished gives way to its children.
        let readable = self.readable(lineage);
        let shards = readable.as_slice();
        let before: Vec<String> = self.members.keys().cloned().collect();
        self.members
            .retain(|m, expires| *m == hb.member || *expires >= hb.now_ms);
        if hb.leave {
            self.members.remove(&hb.member);
        } else {
            let session = hb.session_ms.clamp(SESSION_MS_MIN, SESSION_MS_MAX);
            self.members
                .insert(hb.member.clone(), hb.now_ms.saturating_add(session as i64));
        }
        let changed = !self.members.keys().eq(before.iter())
            || !self.owners.keys().eq(shards.iter())
            || self.owners.values().any(|o| !self.members.contains_key(o));
        if changed {
            self.generation += 1;
            let members: Vec<&String> = self.members.keys().collect();
            let target = rebalance(&members, shards, &self.owners);
            self.owners.retain(|s, _| shards.contains(s));
            self.revoking.clear();
            for (s, t) in target {
                match self.owners.get(&s) {
                    // A live owner other than the target hands it over first.
                    Some(o) if *o != t && self.members.contains_key(o) => {
                        self.revoking.insert(s, t);
                    }
                    Some(o) if *o == t => {}
                    _ => {
                        self.owners.insert(s, t);
                        self.assigned_at.insert(s, self.generation);
                    }
                }
            }
        }
        // This heartbeat committed what the member handled: its revoked
        // shards go to their new owners now.
        let handed: Vec<u32> = self
            .revoking
            .keys()
            .copied()
            .filter(|s| self.owners.get(s) == Some(&hb.member))
            .collect();
        for s in handed {
            if let Some(t) = self.revoking.remove(&s) {
                self.owners.insert(s, t);
                self.assigned_at.insert(s, self.generation);
            }
        }
        if self.members.is_empty() {
            self.owners.clear();
        }
        self.assigned_at.retain(|s, _| self.owners.contains_key(s));
        self.checkpoints.retain(|s, _| known.contains(s));
        let has_parents = |s: &u32| {
            lineage
                .iter()
                .any(|sh| sh.id == *s && !sh.parents.is_empty())
        };
        Assignment {
            generation: self.generation,
            shards: self
                .owners
                .iter()
                .filter(|(_, o)| **o == hb.member)
                .map(|(s, _)| {
                    // A child continues its parents: from its first record.
                    let cp = self.checkpoints.get(s).copied();
                    (*s, cp.or_else(|| has_parents(s).then(Checkpoint::default)))
                })
                .collect(),
            members: self.members.len() as u32,
            refused_commits: refused,
        }
    }
}

/// Balanced, sticky assignment of `shards` to `members` (sorted names).
fn rebalance(
    members: &[&String],
    shards: &[u32],
    old: &BTreeMap<u32, String>,
) -> BTreeMap<u32, String> {
    let mut out = BTreeMap::new();
    if members.is_empty() {
        return out;
    }
    let (base, extra) = (shards.len() / members.len(), shards.len() % members.len());
    // Members that already own the most keep the extra shards, so a change
    // moves as few shards as it can.
    let mut by_load: Vec<(usize, &String)> = members
        .iter()
        .map(|m| (old.values().filter(|o| o == m).count(), *m))
        .collect();
    by_load.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(b.1)));
    let mut quota: BTreeMap<&String, usize> = by_load
        .iter()
        .enumerate()
        .map(|(i, (_, m))| (*m, base + usize::from(i < extra)))
        .collect();
    let mut free = Vec::new();
    for &s in shards {
        match old.get(&s).and_then(|o| quota.get_mut(o).map(|q| (o, q))) {
            Some((o, q)) if *q > 0 => {
                *q -= 1;
                out.insert(s, o.clone());
            }
            _ => free.push(s),
        }
    }
    for s in free {
        let (m, q) = quota
            .iter_mut()
            .filter(|(_, q)| **q > 0)
            .max_by(|a, b| (*a.1).cmp(&*b.1).then(b.0.cmp(a.0)))
            .expect("quotas add up to the shard count");
        *q -= 1;
        out.insert(s, (*m).clone());
    }
    out
}

/// Checks a group or member name (the rules of every Strata name:
/// [`strata_schema::validate_name`]).
pub fn validate_name(what: &'static str, name: &str) -> Result<(), strata_schema::NameError> {
    strata_schema::validate_name(what, name)
}

#[cfg(test)]
#[path = "groups_tests.rs"]
mod tests;
