//! Quiescent shard groups: an idle Raft group costs nothing.
//!
//! Every shard is its own openraft group, and an awake group ticks (every
//! 150 ms) and, as leader, heartbeats its followers. A node holding
//! thousands of idle shards would spend its CPU on timers. So a group that
//! has had no new entry for a while goes quiet:
//!
//! 1. **Quiesce.** Its leader, once every follower holds the whole log and
//!    the leader applied it, sends a heartbeat (followers learn the commit
//!    index), then asks each follower to quiesce (peer RPC `Quiesce`). A
//!    follower agrees only if it follows that leader in that term, holds
//!    exactly the leader's log and applied the leader's commit index; it
//!    then stops its timers (`tick(false)`: no election timeout). When all
//!    agreed, the leader stops its own (no heartbeats). A refusal leaves
//!    the leader awake: its next heartbeat wakes the followers that agreed.
//! 2. **Wake.** A Raft message for the group that is not a heartbeat (an
//!    append with entries, a vote, a snapshot, an elect) wakes the
//!    receiver; a heartbeat does not (the quiesce heartbeat may arrive
//!    after the follower agreed, and a woken follower of a silent leader
//!    would start an election). A quiesced leader wakes when its log grows
//!    (a write, a seal, a tier command: checked every [`CHECK_EVERY`], well
//!    within a follower's election timeout after the first append woke it)
//!    or when it stops being the leader.
//! 3. **Liveness.** One ping per pair of nodes every [`PING_EVERY`]
//!    replaces the per-group heartbeats as the failure detector; any
//!    request a node sends counts as a sign of life too, so a node busy
//!    with traffic is not suspected because a ping was slow. When a
//!    node has not been heard from for [`DOWN_AFTER`], each group it led wakes on
//!    the first live voter (by node id) among its followers there, which
//!    campaigns at once; its vote request wakes the other followers. A
//!    quiesced leader cut off from its followers stays quiet until a
//!    message reaches it; it cannot commit anything meanwhile (no quorum),
//!    and the higher term it meets then makes it step down.
//!
//! The decisions are pure functions over explicit inputs (this module);
//! `control::quiesce` drives them.

use crate::raft::peer::QuiesceRequest;
use crate::raft::types::NodeId;
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

/// How often a node checks its groups for quiescing and waking.
pub const CHECK_EVERY: Duration = Duration::from_millis(200);
/// How often a node looks at who is down (and takes over their groups).
pub const DETECT_EVERY: Duration = Duration::from_millis(50);
/// How often a node pings each other node.
pub const PING_EVERY: Duration = Duration::from_millis(100);
/// How long a node may go unheard (no request, no answer to a ping)
/// before it counts as down: five pings. Past openraft's leader lease
/// (400 ms), so the other voters grant the first live voter's campaign.
pub const DOWN_AFTER: Duration = Duration::from_millis(500);

/// A group's quiescence, as its node keeps it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Quiet {
    /// Timers stopped (openraft's tick disabled).
    pub quiesced: bool,
    /// The last log index when it quiesced: a leader wakes when its log
    /// grows past it.
    pub at_index: Option<u64>,
    /// The last log index seen by the check, and since when.
    pub seen: Option<(Option<u64>, Instant)>,
    /// Followers that were down when this leader quiesced (not asked): the
    /// leader wakes when one is back, so it catches up.
    pub absent: BTreeSet<NodeId>,
}

impl Quiet {
    /// A quiesce attempt failed: the group must be idle for the whole idle
    /// time again before the next (no retry storm on a busy node).
    pub fn postpone(&mut self, now: Instant) {
        if let Some((_, since)) = &mut self.seen {
            *since = now;
        }
    }
}

/// What the check reads of a group from its Raft metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupView {
    pub me: NodeId,
    pub leader: Option<NodeId>,
    pub term: u64,
    pub last_log_index: Option<u64>,
    pub applied_index: Option<u64>,
    /// Voters other than this node.
    pub followers: BTreeSet<NodeId>,
    /// Whether the configuration has learners or is joint (a move runs).
    pub changing: bool,
    /// Each follower's matched log index (leader only).
    pub matched: BTreeMap<NodeId, Option<u64>>,
}

/// What the check does with a group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    Nothing,
    /// Start the timers again.
    Wake,
    /// Ask the live followers to quiesce with this request, then stop;
    /// `absent` are the followers that are down (not asked).
    Quiesce {
        req: QuiesceRequest,
        asked: BTreeSet<NodeId>,
        absent: BTreeSet<NodeId>,
    },
}

/// The check of one group at `now`: updates `q.seen` and decides.
/// `idle_after` is how long the log must not have grown (None: never
/// quiesce). Followers on `down` nodes do not keep a group awake (they
/// receive nothing anyway; with a node down, every group it holds would
/// otherwise stay awake on the others), and their return wakes it.
pub fn check(
    q: &mut Quiet,
    v: &GroupView,
    now: Instant,
    idle_after: Option<Duration>,
    down: &BTreeSet<NodeId>,
) -> Step {
    let grew = q.seen.as_ref().is_none_or(|(i, _)| *i != v.last_log_index);
    if grew {
        q.seen = Some((v.last_log_index, now));
    }
    let leads = v.leader == Some(v.me);
    if q.quiesced {
        return if wakes(q, v.me, v.leader, v.last_log_index, down) {
            Step::Wake
        } else {
            Step::Nothing
        };
    }
    let Some(idle_after) = idle_after else {
        return Step::Nothing;
    };
    let since = q.seen.as_ref().map_or(now, |(_, t)| *t);
    let Some(last) = v.last_log_index else {
        return Step::Nothing;
    };
    let (absent, asked): (BTreeSet<NodeId>, BTreeSet<NodeId>) =
        v.followers.iter().partition(|f| down.contains(f));
    let caught_up = asked
        .iter()
        .all(|f| v.matched.get(f).copied().flatten() == Some(last));
    if leads
        && !v.changing
        && now.saturating_duration_since(since) >= idle_after
        && v.applied_index == Some(last)
        && caught_up
    {
        Step::Quiesce {
            req: QuiesceRequest {
                leader: v.me,
                term: v.term,
                last_log_index: last,
                committed_index: last,
            },
            asked,
            absent,
        }
    } else {
        Step::Nothing
    }
}

/// Whether quiesced group `q` wakes by itself: a follower wakes on
/// messages only; a leader (`me == leader`) when its log grew past where
/// it quiesced, or a follower that was down when it quiesced is back (it
/// must catch up). (The cheap check of a quiesced group, without a full
/// view.)
pub fn wakes(
    q: &Quiet,
    me: NodeId,
    leader: Option<NodeId>,
    last_log_index: Option<u64>,
    down: &BTreeSet<NodeId>,
) -> bool {
    q.quiesced
        && leader == Some(me)
        && (last_log_index != q.at_index || q.absent.iter().any(|f| !down.contains(f)))
}

/// Whether a follower in the state `v` agrees to quiesce on `req`.
pub fn follower_agrees(v: &GroupView, req: &QuiesceRequest) -> bool {
    v.leader == Some(req.leader)
        && req.leader != v.me
        && v.term == req.term
        && v.last_log_index == Some(req.last_log_index)
        && v.applied_index >= Some(req.committed_index)
}

/// Which of the groups due for a takeover (`(quiesced, key)`) to elect in
/// this check: awake ones (they carry traffic) before quiesced ones, then
/// by key, at most `max`.
pub fn take_over_first<K: Ord>(mut due: Vec<(bool, K)>, max: usize) -> Vec<K> {
    due.sort();
    due.into_iter().take(max).map(|(_, k)| k).collect()
}

/// Whether this node (`v.me`) wakes group `v` to replace its leader: the
/// leader's node is `down`, and this node is the first voter (by id) of
/// the group that is not down.
pub fn takes_over(v: &GroupView, down: &BTreeSet<NodeId>) -> bool {
    let Some(leader) = v.leader else {
        return false;
    };
    if leader == v.me || !down.contains(&leader) {
        return false;
    }
    let first_live = v
        .followers
        .iter()
        .chain(std::iter::once(&v.me))
        .filter(|n| !down.contains(n))
        .min();
    first_live == Some(&v.me)
}

/// When each other node last answered a ping.
#[derive(Debug, Clone)]
pub struct Liveness {
    started: Instant,
    answered: BTreeMap<NodeId, Instant>,
}

impl Liveness {
    pub fn new(now: Instant) -> Self {
        Self {
            started: now,
            answered: BTreeMap::new(),
        }
    }

    pub fn answered(&mut self, node: NodeId, at: Instant) {
        self.answered.insert(node, at);
    }

    /// The nodes among `nodes` that answered no ping for [`DOWN_AFTER`]
    /// (counted from this detector's start for one never heard from).
    pub fn down(&self, nodes: impl IntoIterator<Item = NodeId>, now: Instant) -> BTreeSet<NodeId> {
        nodes
            .into_iter()
            .filter(|n| {
                let last = self.answered.get(n).copied().unwrap_or(self.started);
                now.saturating_duration_since(last) >= DOWN_AFTER
            })
            .collect()
    }
}

#[cfg(test)]
#[path = "quiesce_tests.rs"]
mod tests;
