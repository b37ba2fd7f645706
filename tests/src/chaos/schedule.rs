//! The campaign's fault schedule, drawn from one seed: which fault comes
//! next, on what, for how long, and when the one after it starts. Pure
//! (a seeded generator in, plans out), so a seed names a schedule; what the
//! schedule meets at run time (which node leads, what is already broken)
//! is decided by the runner and recorded with each fault.

use std::fmt;

use rand::{Rng as _, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// The schedule's random numbers: ChaCha8 (`rand_chacha`, as the
/// simulation uses), whose output for a seed is fixed across platforms and
/// versions, so a seed names the same schedule everywhere.
#[derive(Debug, Clone)]
pub struct Rng(ChaCha8Rng);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(ChaCha8Rng::seed_from_u64(seed))
    }

    /// Uniform in `0..n` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        assert!(n > 0, "below(0)");
        self.0.random_range(0..n)
    }

    /// Uniform in `lo..=hi`.
    pub fn between(&mut self, lo: u64, hi: u64) -> u64 {
        assert!(lo <= hi, "between({lo}, {hi})");
        self.0.random_range(lo..=hi)
    }

    /// Uniform in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        self.0.random::<f64>()
    }

    /// Exponentially distributed with mean `mean_ms`, kept within
    /// `[mean/10, 4 * mean]` so one gap never swallows the run.
    pub fn gap_ms(&mut self, mean_ms: u64) -> u64 {
        let x = -(1.0 - self.unit()).ln() * mean_ms as f64;
        (x as u64).clamp(mean_ms / 10, mean_ms * 4)
    }
}

/// What a fault does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    /// SIGKILL the leader of a shard, restart it when the fault ends.
    KillLeader,
    /// SIGKILL a node that leads no shard we picked (a follower).
    KillFollower,
    /// SIGKILL the edge agent, restart it when the fault ends.
    KillEdge,
    /// Cut a zone off from the others and from the edge, both ways.
    Isolate,
    /// Drop what one zone sends to another (the reverse still arrives).
    CutOneWay,
    /// Fill a core node's data disk, then free it.
    DiskFull,
    /// Kill the S3 server, restart it when the fault ends.
    S3Outage,
    /// Move a core node's wall clock, then move it back.
    ClockJump,
}

impl Kind {
    pub const ALL: [Kind; 8] = [
        Kind::KillLeader,
        Kind::KillFollower,
        Kind::KillEdge,
        Kind::Isolate,
        Kind::CutOneWay,
        Kind::DiskFull,
        Kind::S3Outage,
        Kind::ClockJump,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Kind::KillLeader => "kill_leader",
            Kind::KillFollower => "kill_follower",
            Kind::KillEdge => "kill_edge",
            Kind::Isolate => "isolate_zone",
            Kind::CutOneWay => "cut_one_way",
            Kind::DiskFull => "disk_full",
            Kind::S3Outage => "s3_outage",
            Kind::ClockJump => "clock_jump",
        }
    }

    /// Relative weight in the draw.
    fn weight(self) -> u64 {
        match self {
            Kind::KillLeader => 14,
            Kind::KillFollower => 10,
            Kind::KillEdge => 10,
            Kind::Isolate => 14,
            Kind::CutOneWay => 14,
            Kind::DiskFull => 12,
            Kind::S3Outage => 10,
            Kind::ClockJump => 16,
        }
    }

    /// How long the fault is held, milliseconds (inclusive range).
    fn hold_ms(self) -> (u64, u64) {
        match self {
            Kind::KillLeader | Kind::KillFollower | Kind::KillEdge => (500, 5_000),
            Kind::Isolate | Kind::CutOneWay => (1_000, 8_000),
            Kind::DiskFull => (1_000, 6_000),
            Kind::S3Outage => (2_000, 15_000),
            Kind::ClockJump => (2_000, 10_000),
        }
    }
}

impl std::str::FromStr for Kind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        Kind::ALL
            .into_iter()
            .find(|k| k.name() == s)
            .ok_or_else(|| {
                let names: Vec<&str> = Kind::ALL.iter().map(|k| k.name()).collect();
                format!("unknown fault kind {s:?} (kinds: {})", names.join(", "))
            })
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Wall-clock offsets a clock jump draws from, seconds.
pub const CLOCK_OFFSETS_S: [i64; 8] = [-86_400, -3_600, -600, -30, 30, 600, 3_600, 86_400];

/// One planned fault, before the runner picks its victim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub kind: Kind,
    /// A core node (1-based) for the kinds that hit one (kills pick theirs
    /// at run time from who leads; this is the fallback).
    pub node: u64,
    /// The other zone's node for a one-way cut (never `node`).
    pub peer: u64,
    /// For a clock jump: the offset, seconds.
    pub clock_offset_s: i64,
    pub hold_ms: u64,
}

/// Draws the next fault for a cluster of `nodes` core nodes; kinds for
/// which `allowed` is false are never drawn (e.g. clock jumps where
/// libfaketime is missing).
pub fn draw(rng: &mut Rng, nodes: u64, allowed: impl Fn(Kind) -> bool) -> Plan {
    assert!(nodes >= 2, "a campaign needs at least two core nodes");
    let kinds: Vec<Kind> = Kind::ALL.into_iter().filter(|k| allowed(*k)).collect();
    assert!(!kinds.is_empty(), "no fault kind is allowed");
    let total: u64 = kinds.iter().map(|k| k.weight()).sum();
    let mut pick = rng.below(total);
    let mut kind = kinds[0];
    for k in kinds {
        if pick < k.weight() {
            kind = k;
            break;
        }
        pick -= k.weight();
    }
    let node = rng.between(1, nodes);
    let peer = (node + rng.between(0, nodes - 2)) % nodes + 1;
    let clock_offset_s = CLOCK_OFFSETS_S[rng.below(CLOCK_OFFSETS_S.len() as u64) as usize];
    let (lo, hi) = kind.hold_ms();
    Plan {
        kind,
        node,
        peer,
        clock_offset_s,
        hold_ms: rng.between(lo, hi),
    }
}

/// What a running fault holds: no second fault may hold it at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Resource {
    /// A core node's process, disk or clock.
    Node(u64),
    Edge,
    /// The zone network (healing removes every cut at once).
    Net,
    S3,
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn a_seed_names_one_schedule() {
        let plans = |seed| {
            let mut r = Rng::new(seed);
            (0..50)
                .map(|_| draw(&mut r, 3, |_| true))
                .collect::<Vec<_>>()
        };
        assert_eq!(plans(7), plans(7));
        assert_ne!(plans(7), plans(8));
    }

    #[test]
    fn every_kind_is_drawn_and_targets_are_valid() {
        let mut r = Rng::new(1);
        let mut seen: HashMap<Kind, u32> = HashMap::new();
        for _ in 0..5_000 {
            let p = draw(&mut r, 3, |_| true);
            *seen.entry(p.kind).or_default() += 1;
            assert!((1..=3).contains(&p.node), "{p:?}");
            assert!((1..=3).contains(&p.peer) && p.peer != p.node, "{p:?}");
            let (lo, hi) = p.kind.hold_ms();
            assert!((lo..=hi).contains(&p.hold_ms), "{p:?}");
            assert!(CLOCK_OFFSETS_S.contains(&p.clock_offset_s));
        }
        assert_eq!(seen.len(), Kind::ALL.len(), "{seen:?}");
        assert!(seen.values().all(|&n| n > 300), "{seen:?}");
    }

    #[test]
    fn a_kind_not_allowed_is_never_drawn() {
        let mut r = Rng::new(3);
        for _ in 0..2_000 {
            assert_ne!(
                draw(&mut r, 3, |k| k != Kind::ClockJump).kind,
                Kind::ClockJump
            );
        }
    }

    #[test]
    fn kinds_parse_by_name() {
        for k in Kind::ALL {
            assert_eq!(k.name().parse::<Kind>(), Ok(k));
        }
        let e = "kill_all".parse::<Kind>().unwrap_err();
        assert!(e.contains("unknown fault kind \"kill_all\""), "{e}");
    }

    #[test]
    fn gaps_average_near_the_mean_and_stay_bounded() {
        let mut r = Rng::new(11);
        let gaps: Vec<u64> = (0..20_000).map(|_| r.gap_ms(2_000)).collect();
        let mean = gaps.iter().sum::<u64>() as f64 / gaps.len() as f64;
        assert!((1_800.0..2_200.0).contains(&mean), "mean {mean}");
        assert!(gaps.iter().all(|&g| (200..=8_000).contains(&g)));
    }
}
