//! Leader balancing, decided purely: when a leader that is not a shard's
//! preferred replica hands leadership back. `control::replicas` performs it.

use crate::raft::types::NodeId;
use std::time::{Duration, Instant};

/// How long a node leads a shard it is not the preferred leader of before it
/// hands leadership back (after a failover, once the preferred replica is
/// back and caught up).
pub const HAND_OVER_AFTER: Duration = Duration::from_secs(10);

/// Since when, and in which term, this node has led a shard whose preferred
/// replica is another node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Leading {
    pub term: u64,
    pub since: Instant,
}

/// What a leader does about a shard whose preferred replica may be another
/// node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandOver {
    /// This node is the preferred replica: nothing to hand over.
    Forget,
    /// Keep leading for now; remember `Leading`.
    Wait(Leading),
    /// Hand leadership to the preferred replica now; remember `Leading`
    /// (restarted, so a hand-over that does not take backs off).
    Now(Leading),
}

/// Leader balancing: a leader that is not the shard's preferred replica
/// (the first, placed so that leaders spread over nodes and zones) hands
/// leadership back once it has led for [`HAND_OVER_AFTER`] in the current
/// term and the preferred replica is fully caught up (`caught_up`), as
/// after a failover.
pub fn hand_over(
    me: NodeId,
    preferred: NodeId,
    leading: Option<Leading>,
    term: u64,
    caught_up: bool,
    now: Instant,
) -> HandOver {
    if preferred == me {
        return HandOver::Forget;
    }
    let l = match leading {
        Some(l) if l.term == term => l,
        _ => Leading { term, since: now },
    };
    if now.saturating_duration_since(l.since) < HAND_OVER_AFTER || !caught_up {
        return HandOver::Wait(l);
    }
    HandOver::Now(Leading { term, since: now })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_preferred_leader_has_nothing_to_hand_over() {
        let now = Instant::now();
        assert_eq!(hand_over(1, 1, None, 3, true, now), HandOver::Forget);
    }

    #[test]
    fn a_leader_hands_over_after_leading_long_enough_in_its_term_and_only_to_a_caught_up_replica() {
        let t0 = Instant::now();
        let first = hand_over(2, 1, None, 5, true, t0);
        let HandOver::Wait(l) = first else {
            panic!("a new leader waits first: {first:?}")
        };
        assert_eq!(l, Leading { term: 5, since: t0 });
        let just_before = t0 + HAND_OVER_AFTER - Duration::from_millis(1);
        assert_eq!(
            hand_over(2, 1, Some(l), 5, true, just_before),
            HandOver::Wait(l)
        );
        let due = t0 + HAND_OVER_AFTER;
        assert_eq!(
            hand_over(2, 1, Some(l), 5, false, due),
            HandOver::Wait(l),
            "not to a replica that is behind"
        );
        assert_eq!(
            hand_over(2, 1, Some(l), 5, true, due),
            HandOver::Now(Leading {
                term: 5,
                since: due
            }),
            "due, and the clock restarts so a failed try backs off"
        );
    }

    #[test]
    fn a_new_term_restarts_the_clock() {
        let t0 = Instant::now();
        let old = Leading { term: 5, since: t0 };
        let later = t0 + HAND_OVER_AFTER * 3;
        assert_eq!(
            hand_over(2, 1, Some(old), 6, true, later),
            HandOver::Wait(Leading {
                term: 6,
                since: later
            })
        );
    }
}
