//! The high-water check, as pure decisions: is a stream's buffer behind what
//! the core already holds under this agent's producer id, and what does
//! `--retire-producer` do with the records it buffers.
//!
//! The core drops a forwarded record as a duplicate when its position is at
//! or below the last position it applied from the same producer id in the
//! same shard. An agent whose data directory was restored from a backup or
//! cloned numbers its next records from where the copy ended; if the core
//! holds positions beyond that (the original went on forwarding), those new
//! records would vanish as duplicates. The check compares the position the
//! buffer's not-yet-checked records start at with each shard's high-water
//! mark and refuses when any shard is ahead: nothing is forwarded under
//! positions the core would drop.

use std::fmt;

/// One shard's high-water mark under one producer id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShardMark {
    pub shard: u32,
    /// The position after the producer's last record the shard applied
    /// (0: none).
    pub core_next_seq: u64,
}

/// A stream whose buffer is behind the core.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Behind {
    pub stream: String,
    /// Where the buffer's unchecked records start (the buffer's next
    /// position when the agent started, or when the stream was opened).
    pub buffer_from: u64,
    /// The shards whose high-water mark is beyond `buffer_from`.
    pub shards: Vec<ShardMark>,
}

/// Decides one stream: `Err` names the shards whose marks are beyond
/// `buffer_from`, the first position of records this agent numbered without
/// knowing what the core holds.
pub fn check(stream: &str, buffer_from: u64, marks: &[ShardMark]) -> Result<(), Behind> {
    let ahead: Vec<ShardMark> = marks
        .iter()
        .copied()
        .filter(|m| m.core_next_seq > buffer_from)
        .collect();
    if ahead.is_empty() {
        return Ok(());
    }
    Err(Behind {
        stream: stream.to_string(),
        buffer_from,
        shards: ahead,
    })
}

/// Where the docs explain the check and the fix.
pub const DOCS: &str = "docs/operations.md#restored-or-cloned-edge-data-directories";

/// Why the agent does not go on: the buffers of `streams` are behind the
/// core under `producer_id`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BehindCore {
    pub producer_id: u64,
    pub streams: Vec<Behind>,
}

impl fmt::Display for BehindCore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "this agent's buffers are behind what the core already holds under producer id {} (was the data directory restored from a backup or cloned?): ",
            self.producer_id
        )?;
        for (i, b) in self.streams.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(
                f,
                "stream {:?}: the buffer numbers new records from position {}, but the core holds this producer's records up to position",
                b.stream, b.buffer_from
            )?;
            for (j, m) in b.shards.iter().enumerate() {
                let sep = if j == 0 { " " } else { ", " };
                write!(
                    f,
                    "{sep}{} in shard {}",
                    m.core_next_seq.saturating_sub(1),
                    m.shard
                )?;
            }
        }
        write!(
            f,
            ". Records numbered from there would be dropped by the core as duplicates, so nothing is forwarded. Fix: start the agent once with `strata-edge --retire-producer`: it continues under a new producer id without losing or duplicating what is buffered (see {DOCS}). If another agent runs from a copy of this directory, each copy needs its own id: retire it on the copy."
        )
    }
}

/// What `--retire-producer` does with one stream's buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetirePlan {
    /// Records below this go under the retired id, those at or above it
    /// under the new one.
    pub switch_at: u64,
    /// Acknowledge the buffer up to here at once: the core holds every
    /// buffered record below it under the retired id. `None`: the retired
    /// id forwards `[acked, switch_at)` again and the core keeps only what it
    /// lacks (its dedup drops the rest).
    pub ack_to: Option<u64>,
}

/// Plans the retirement of one stream's producer id. `acked` is the
/// buffer's acknowledged position, `unchecked_from` where its records
/// numbered without a check start (the buffer's next position if all were
/// checked), `marks` the retired id's high-water marks in every shard of the
/// stream.
///
/// Records below `unchecked_from` were numbered when the core's marks were
/// known to be below them or came with a restored copy; the core's dedup
/// keeps exactly those of them it lacks, so they stay under the retired id.
/// Records from `unchecked_from` on may collide with the core's positions,
/// so they go under the new id. When every shard's mark is at or beyond
/// `switch_at`, the core holds every record below it (a shard applies one
/// producer's records in order), and they are acknowledged without being
/// sent again.
pub fn plan_retire(acked: u64, unchecked_from: u64, marks: &[ShardMark]) -> RetirePlan {
    let switch_at = unchecked_from.max(acked);
    let all_held = !marks.is_empty() && marks.iter().all(|m| m.core_next_seq >= switch_at);
    RetirePlan {
        switch_at,
        ack_to: (all_held && switch_at > acked).then_some(switch_at),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn marks(v: &[(u32, u64)]) -> Vec<ShardMark> {
        v.iter()
            .map(|&(shard, core_next_seq)| ShardMark {
                shard,
                core_next_seq,
            })
            .collect()
    }

    #[test]
    fn a_buffer_at_or_beyond_every_mark_is_ok() {
        assert_eq!(check("s", 0, &marks(&[(0, 0), (1, 0)])), Ok(()));
        assert_eq!(check("s", 100, &marks(&[(0, 100), (1, 40)])), Ok(()));
        assert_eq!(check("s", 100, &[]), Ok(()));
    }

    #[test]
    fn a_mark_beyond_the_buffer_is_behind_and_named() {
        let b = check("s", 100, &marks(&[(0, 101), (1, 100), (2, 150)])).unwrap_err();
        assert_eq!(b.buffer_from, 100);
        assert_eq!(b.shards, marks(&[(0, 101), (2, 150)]));
        // One past the boundary is already behind: position 100 would be a duplicate.
        assert!(check("s", 100, &marks(&[(0, 101)])).is_err());
        // A fresh buffer (a stream directory moved away) under a used id.
        assert!(check("s", 0, &marks(&[(3, 1)])).is_err());
    }

    #[test]
    fn the_message_names_streams_shards_positions_and_the_fix() {
        let e = BehindCore {
            producer_id: 77,
            streams: vec![
                check("telemetry", 100, &marks(&[(0, 150), (2, 120)])).unwrap_err(),
                check("billing", 5, &marks(&[(1, 9)])).unwrap_err(),
            ],
        };
        let m = e.to_string();
        for want in [
            "producer id 77",
            "stream \"telemetry\": the buffer numbers new records from position 100",
            "up to position 149 in shard 0, 119 in shard 2",
            "stream \"billing\"",
            "8 in shard 1",
            "strata-edge --retire-producer",
            DOCS,
        ] {
            assert!(m.contains(want), "{want:?} not in {m}");
        }
    }

    #[test]
    fn retiring_switches_ids_where_unchecked_records_start() {
        // Restored copy checked at start: the core holds everything below
        // the switch in every shard, so it is acknowledged at once.
        let p = plan_retire(40, 100, &marks(&[(0, 150), (1, 100)]));
        assert_eq!(
            p,
            RetirePlan {
                switch_at: 100,
                ack_to: Some(100)
            }
        );
        // A shard below the switch: the retired id sends [40, 100) again and
        // the core keeps what it lacks.
        let p = plan_retire(40, 100, &marks(&[(0, 150), (1, 99)]));
        assert_eq!(p.ack_to, None);
        assert_eq!(p.switch_at, 100);
        // Records numbered before the check failed (core down at start) go
        // under the new id: the switch is where they start, not the buffer's end.
        assert_eq!(plan_retire(40, 70, &marks(&[(0, 150)])).switch_at, 70);
        // Nothing buffered: nothing to acknowledge.
        assert_eq!(
            plan_retire(100, 100, &marks(&[(0, 150)])),
            RetirePlan {
                switch_at: 100,
                ack_to: None
            }
        );
        // A stream without shards (no marks) is never acknowledged blindly.
        assert_eq!(plan_retire(0, 10, &[]).ack_to, None);
        // The switch never lies below what is acknowledged.
        assert_eq!(plan_retire(50, 30, &marks(&[(0, 10)])).switch_at, 50);
    }
}
