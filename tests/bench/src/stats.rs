//! Results: one [`Sample`] per measured run and metric, grouped into
//! median / min / max over the repetitions.

use crate::load::Load;
use std::collections::BTreeMap;

/// The systems under test, in table order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum System {
    /// Producer -> strata-edge -> single-node strata-core.
    StrataRf1,
    /// Producer -> strata-edge -> three-node core (not available yet).
    StrataRf3,
    NatsR1Default,
    NatsR1Always,
    NatsR3Default,
    NatsR3Always,
}

impl System {
    pub const ALL: [System; 6] = [
        System::StrataRf1,
        System::StrataRf3,
        System::NatsR1Default,
        System::NatsR1Always,
        System::NatsR3Default,
        System::NatsR3Always,
    ];

    pub fn key(self) -> &'static str {
        match self {
            System::StrataRf1 => "strata-rf1",
            System::StrataRf3 => "strata-rf3",
            System::NatsR1Default => "nats-r1-default",
            System::NatsR1Always => "nats-r1-always",
            System::NatsR3Default => "nats-r3-default",
            System::NatsR3Always => "nats-r3-always",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            System::StrataRf1 => "Strata RF=1",
            System::StrataRf3 => "Strata RF=3",
            System::NatsR1Default => "NATS R1",
            System::NatsR1Always => "NATS R1 sync always",
            System::NatsR3Default => "NATS R3",
            System::NatsR3Always => "NATS R3 sync always",
        }
    }

    pub fn is_nats(self) -> bool {
        !matches!(self, System::StrataRf1 | System::StrataRf3)
    }
}

/// What a run measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Workload {
    /// Unpaced producer, no consumer: (a) and (b), and (d) at peak.
    Throughput,
    /// Producer at a load and a consumer: (c), and (d) at that load.
    Latency(Load),
}

impl Workload {
    pub fn key(self) -> String {
        match self {
            Workload::Throughput => "throughput".into(),
            Workload::Latency(l) => format!("latency-{}", l.key()),
        }
    }
}

/// Identifies a group of repetitions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Case {
    pub system: System,
    pub workload: Workload,
    pub size: usize,
}

/// Median, minimum and maximum over the repetitions.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Spread {
    pub median: f64,
    pub min: f64,
    pub max: f64,
    pub n: usize,
}

pub fn spread(values: &[f64]) -> Option<Spread> {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    let median = if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    };
    Some(Spread {
        median,
        min: v[0],
        max: v[n - 1],
        n,
    })
}

/// Everything one `strata-bench` invocation measured or skipped.
#[derive(Debug, Default)]
pub struct Results {
    /// (case, repetition, metric) -> value.
    pub samples: Vec<(Case, u32, String, f64)>,
    /// Cases not run, with the reason.
    pub skipped: BTreeMap<Case, String>,
    /// Notes for the table (e.g. a run that did not drain).
    pub notes: Vec<String>,
}

impl Results {
    pub fn push(&mut self, case: Case, rep: u32, metrics: &[(String, f64)]) {
        for (m, v) in metrics {
            self.samples.push((case, rep, m.clone(), *v));
        }
    }

    pub fn values(&self, case: Case, metric: &str) -> Vec<f64> {
        self.samples
            .iter()
            .filter(|(c, _, m, _)| *c == case && m == metric)
            .map(|s| s.3)
            .collect()
    }

    pub fn spread(&self, case: Case, metric: &str) -> Option<Spread> {
        spread(&self.values(case, metric))
    }

    /// Every (case, metric) that has samples, sorted.
    pub fn groups(&self) -> Vec<(Case, String)> {
        let mut g: Vec<(Case, String)> = self
            .samples
            .iter()
            .map(|(c, _, m, _)| (*c, m.clone()))
            .collect();
        g.sort();
        g.dedup();
        g
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spread_of_odd_and_even_counts() {
        let s = spread(&[3.0, 1.0, 2.0]).unwrap();
        assert_eq!((s.median, s.min, s.max, s.n), (2.0, 1.0, 3.0, 3));
        let s = spread(&[4.0, 1.0, 2.0, 3.0]).unwrap();
        assert_eq!(s.median, 2.5);
        assert!(spread(&[]).is_none());
        assert!(spread(&[f64::NAN]).is_none());
    }

    #[test]
    fn results_group_by_case_and_metric() {
        let case = Case {
            system: System::StrataRf1,
            workload: Workload::Throughput,
            size: 100,
        };
        let mut r = Results::default();
        for rep in 0..3 {
            r.push(case, rep, &[("ack_rps".into(), f64::from(rep) * 10.0)]);
        }
        assert_eq!(r.spread(case, "ack_rps").unwrap().median, 10.0);
        assert_eq!(r.groups().len(), 1);
    }
}
