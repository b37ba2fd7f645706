//! The pure part of the simulation: what the network does to one message
//! ([`NetModel::fate`]) and the run's schedule of faults ([`plan`]), both
//! decided by the seed's random numbers and nothing else.
//!
//! Endpoints are numbered: the core nodes by their Raft node id, the
//! producers (edge forwarders) from [`CLIENT_BASE`] up. A cut drops every
//! message on the links it names until it is healed; outside cuts, a message
//! is dropped, delayed (sometimes by more than the sender waits, so it
//! arrives after a retry: reordering) or delivered twice (the copy later).

use super::rng::Rng;
use crate::raft::types::NodeId;
use std::collections::BTreeMap;

/// Producers are endpoints `CLIENT_BASE + i`.
pub const CLIENT_BASE: NodeId = 100;

fn is_core(n: NodeId) -> bool {
    n < CLIENT_BASE
}

/// How lossy the network of one run is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetParams {
    pub drop_per_mille: u32,
    pub dup_per_mille: u32,
    /// Ordinary messages take `[0, delay_ms_max]`.
    pub delay_ms_max: u64,
    /// Messages that take 100 ms to 1.5 s (past most senders' timeouts).
    pub slow_per_mille: u32,
}

impl NetParams {
    /// The network of a run, drawn from its seed: from clean to 10 % loss.
    pub fn draw(rng: &mut Rng) -> Self {
        NetParams {
            drop_per_mille: rng.range(0, 100) as u32,
            dup_per_mille: rng.range(0, 50) as u32,
            delay_ms_max: rng.range(1, 40),
            slow_per_mille: rng.range(0, 20) as u32,
        }
    }

    /// The network once healed: no loss, short delays.
    pub fn calm() -> Self {
        NetParams {
            drop_per_mille: 0,
            dup_per_mille: 0,
            delay_ms_max: 5,
            slow_per_mille: 0,
        }
    }
}

/// Links cut by a partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cut {
    /// `node` hears no other core node (and no producer if `clients`).
    Isolate { node: NodeId, clients: bool },
    /// The two nodes do not hear each other (each still hears the rest).
    Link { a: NodeId, b: NodeId },
    /// Messages from `from` to `to` are lost; the other way works.
    OneWay { from: NodeId, to: NodeId },
}

impl Cut {
    pub fn cuts(&self, from: NodeId, to: NodeId) -> bool {
        match *self {
            Cut::Isolate { node, clients } => {
                let other = if from == node {
                    to
                } else if to == node {
                    from
                } else {
                    return false;
                };
                other != node && (is_core(other) || clients)
            }
            Cut::Link { a, b } => (from, to) == (a, b) || (from, to) == (b, a),
            Cut::OneWay { from: f, to: t } => (from, to) == (f, t),
        }
    }
}

/// What happens to one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fate {
    /// Lost: `cut` if a partition took it, else random loss.
    Drop { cut: bool },
    /// Arrives after `delay_ms`; `duplicate_ms`: a copy arrives that much
    /// later again.
    Deliver {
        delay_ms: u64,
        duplicate_ms: Option<u64>,
    },
}

/// The network's state: its parameters and the cuts in force.
#[derive(Debug, Clone)]
pub struct NetModel {
    pub params: NetParams,
    cuts: BTreeMap<u32, Cut>,
}

impl NetModel {
    pub fn new(params: NetParams) -> Self {
        NetModel {
            params,
            cuts: BTreeMap::new(),
        }
    }

    pub fn cut(&mut self, id: u32, cut: Cut) {
        self.cuts.insert(id, cut);
    }

    pub fn heal(&mut self, id: u32) {
        self.cuts.remove(&id);
    }

    /// Heals every cut and calms the network (the run's liveness phase).
    pub fn heal_all(&mut self) {
        self.cuts.clear();
        self.params = NetParams::calm();
    }

    /// The fate of one message from `from` to `to`.
    pub fn fate(&self, rng: &mut Rng, from: NodeId, to: NodeId) -> Fate {
        if self.cuts.values().any(|c| c.cuts(from, to)) {
            return Fate::Drop { cut: true };
        }
        let p = &self.params;
        if rng.chance(p.drop_per_mille) {
            return Fate::Drop { cut: false };
        }
        let delay_ms = if rng.chance(p.slow_per_mille) {
            rng.range(100, 1_500)
        } else {
            rng.range(0, p.delay_ms_max)
        };
        let duplicate_ms = rng.chance(p.dup_per_mille).then(|| rng.range(1, 300));
        Fate::Deliver {
            delay_ms,
            duplicate_ms,
        }
    }
}

/// One scheduled fault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    Cut {
        id: u32,
        cut: Cut,
    },
    Heal {
        id: u32,
    },
    /// A power cut of `node`: its Raft stops, its disk keeps only what was
    /// fsynced (`torn`: a seed for a cut where the disk got further).
    Crash {
        node: NodeId,
        torn: Option<u64>,
    },
    Restart {
        node: NodeId,
    },
}

/// A fault and when it happens (virtual ms after the cluster started).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    pub at_ms: u64,
    pub fault: Fault,
}

/// The faults of a run of `chaos_ms` over `nodes`: every cut is healed and
/// every crashed node restarted by `chaos_ms`; a node is never crashed
/// while it is down. Sorted by time.
pub fn plan(rng: &mut Rng, nodes: &[NodeId], chaos_ms: u64) -> Vec<Step> {
    let mut steps = Vec::new();
    let mut down_until: BTreeMap<NodeId, u64> = nodes.iter().map(|&n| (n, 0)).collect();
    let mut next_cut = 0u32;
    let mut t = rng.range(100, 800);
    while t < chaos_ms {
        let roll = rng.below(100);
        if roll < 45 {
            let cut = draw_cut(rng, nodes);
            let end = (t + rng.range(100, 2_500)).min(chaos_ms);
            steps.push(Step {
                at_ms: t,
                fault: Fault::Cut { id: next_cut, cut },
            });
            steps.push(Step {
                at_ms: end,
                fault: Fault::Heal { id: next_cut },
            });
            next_cut += 1;
        } else if roll < 80 {
            let up: Vec<NodeId> = nodes
                .iter()
                .copied()
                .filter(|n| down_until[n] < t)
                .collect();
            if !up.is_empty() {
                let node = *rng.pick(&up);
                let torn = rng.chance(500).then(|| rng.next_u64());
                let end = (t + rng.range(10, 2_500)).min(chaos_ms);
                down_until.insert(node, end);
                steps.push(Step {
                    at_ms: t,
                    fault: Fault::Crash { node, torn },
                });
                steps.push(Step {
                    at_ms: end,
                    fault: Fault::Restart { node },
                });
            }
        }
        t += rng.range(100, 1_200);
    }
    steps.sort_by_key(|s| s.at_ms);
    steps
}

fn draw_cut(rng: &mut Rng, nodes: &[NodeId]) -> Cut {
    let a = *rng.pick(nodes);
    let others: Vec<NodeId> = nodes.iter().copied().filter(|&n| n != a).collect();
    match rng.below(4) {
        0 | 1 => Cut::Isolate {
            node: a,
            clients: rng.chance(500),
        },
        2 => Cut::Link {
            a,
            b: *rng.pick(&others),
        },
        _ => Cut::OneWay {
            from: a,
            to: *rng.pick(&others),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NODES: [NodeId; 3] = [1, 2, 3];

    #[test]
    fn an_isolated_node_hears_nobody_but_producers_unless_cut_too() {
        let c = Cut::Isolate {
            node: 1,
            clients: false,
        };
        assert!(c.cuts(1, 2) && c.cuts(3, 1));
        assert!(!c.cuts(2, 3));
        assert!(!c.cuts(1, CLIENT_BASE) && !c.cuts(CLIENT_BASE + 1, 1));
        let c = Cut::Isolate {
            node: 1,
            clients: true,
        };
        assert!(c.cuts(1, CLIENT_BASE) && c.cuts(CLIENT_BASE + 1, 1));
        assert!(!c.cuts(CLIENT_BASE, 2));
    }

    #[test]
    fn link_cuts_both_ways_and_one_way_only_one() {
        let l = Cut::Link { a: 1, b: 2 };
        assert!(l.cuts(1, 2) && l.cuts(2, 1) && !l.cuts(1, 3));
        let o = Cut::OneWay { from: 1, to: 2 };
        assert!(o.cuts(1, 2) && !o.cuts(2, 1));
    }

    #[test]
    fn cut_messages_drop_until_healed() {
        let mut m = NetModel::new(NetParams::calm());
        let mut rng = Rng::new(3);
        m.cut(
            0,
            Cut::Isolate {
                node: 2,
                clients: false,
            },
        );
        assert_eq!(m.fate(&mut rng, 1, 2), Fate::Drop { cut: true });
        m.heal(0);
        assert!(matches!(m.fate(&mut rng, 1, 2), Fate::Deliver { .. }));
    }

    #[test]
    fn a_calm_network_delivers_everything_once_and_soon() {
        let m = NetModel::new(NetParams::calm());
        let mut rng = Rng::new(9);
        for _ in 0..1000 {
            match m.fate(&mut rng, 1, 2) {
                Fate::Deliver {
                    delay_ms,
                    duplicate_ms: None,
                } => assert!(delay_ms <= 5),
                other => panic!("calm network: {other:?}"),
            }
        }
    }

    #[test]
    fn a_lossy_network_drops_delays_and_duplicates_by_seed() {
        let params = NetParams {
            drop_per_mille: 100,
            dup_per_mille: 100,
            delay_ms_max: 20,
            slow_per_mille: 50,
        };
        let m = NetModel::new(params);
        let fates = |seed| {
            let mut rng = Rng::new(seed);
            (0..2000)
                .map(|_| m.fate(&mut rng, 1, 2))
                .collect::<Vec<_>>()
        };
        let f = fates(5);
        assert_eq!(f, fates(5), "the same seed, the same fates");
        let drops = f.iter().filter(|f| matches!(f, Fate::Drop { .. })).count();
        let dups = f
            .iter()
            .filter(|f| {
                matches!(
                    f,
                    Fate::Deliver {
                        duplicate_ms: Some(_),
                        ..
                    }
                )
            })
            .count();
        let slow = f
            .iter()
            .filter(|f| matches!(f, Fate::Deliver { delay_ms, .. } if *delay_ms > 20))
            .count();
        assert!((100..300).contains(&drops), "{drops} drops");
        assert!((100..300).contains(&dups), "{dups} duplicates");
        assert!((30..150).contains(&slow), "{slow} slow");
    }

    #[test]
    fn plans_heal_every_cut_and_restart_every_crash_in_time() {
        for seed in 0..200 {
            let steps = plan(&mut Rng::new(seed), &NODES, 5_000);
            assert!(steps.windows(2).all(|w| w[0].at_ms <= w[1].at_ms));
            let mut cuts = BTreeMap::new();
            let mut down = BTreeMap::new();
            for s in &steps {
                assert!(s.at_ms <= 5_000, "seed {seed}: {s:?}");
                match &s.fault {
                    Fault::Cut { id, .. } => assert!(cuts.insert(*id, ()).is_none()),
                    Fault::Heal { id } => assert!(cuts.remove(id).is_some()),
                    Fault::Crash { node, .. } => {
                        assert!(
                            down.insert(*node, ()).is_none(),
                            "seed {seed}: crashed twice"
                        )
                    }
                    Fault::Restart { node } => assert!(down.remove(node).is_some()),
                }
            }
            assert!(cuts.is_empty() && down.is_empty(), "seed {seed}");
        }
    }

    #[test]
    fn plans_differ_by_seed_and_hold_both_kinds() {
        let a = plan(&mut Rng::new(1), &NODES, 10_000);
        assert_eq!(a, plan(&mut Rng::new(1), &NODES, 10_000));
        assert_ne!(a, plan(&mut Rng::new(2), &NODES, 10_000));
        let all: Vec<Step> = (0..20)
            .flat_map(|s| plan(&mut Rng::new(s), &NODES, 10_000))
            .collect();
        assert!(all.iter().any(|s| matches!(s.fault, Fault::Cut { .. })));
        assert!(all
            .iter()
            .any(|s| matches!(s.fault, Fault::Crash { torn: Some(_), .. })));
        assert!(all
            .iter()
            .any(|s| matches!(s.fault, Fault::Crash { torn: None, .. })));
    }
}
