//! The chaos phase: faults drawn from the seed start at exponentially
//! spread times (at most `max_active` at once, never two on one resource),
//! each is held for its drawn time and healed; every fault is logged with
//! its start and end. Then [`heal_all`] ends whatever still runs.

use super::faults::{Injected, Targets};
use super::schedule::{self, Kind, Resource, Rng};
use anyhow::Result;
use std::collections::BTreeMap;
use std::io::Write as _;
use std::time::{Duration, Instant};

/// One fault as it happened (seconds since the campaign started).
#[derive(Debug, Clone)]
pub struct FaultRecord {
    pub n: usize,
    pub kind: Kind,
    pub what: String,
    pub start_s: f64,
    pub end_s: Option<f64>,
    pub error: Option<String>,
}

impl FaultRecord {
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "n": self.n,
            "kind": self.kind.name(),
            "what": self.what,
            "start_s": round3(self.start_s),
            "end_s": self.end_s.map(round3),
            "error": self.error,
        })
    }
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// Settings of the chaos phase.
pub struct ChaosCfg {
    pub duration: Duration,
    pub fault_every_ms: u64,
    pub max_active: usize,
    pub clock_jumps: bool,
    pub kinds: Vec<Kind>,
}

/// What the chaos phase did.
#[derive(Default)]
pub struct ChaosLog {
    pub faults: Vec<FaultRecord>,
    /// Draws that found their resource busy (not injected, not counted).
    pub skipped: u64,
    pub heal_retries: u64,
}

impl ChaosLog {
    pub fn injected(&self) -> impl Iterator<Item = &FaultRecord> {
        self.faults.iter().filter(|f| f.error.is_none())
    }

    pub fn by_kind(&self) -> BTreeMap<&'static str, u64> {
        let mut m: BTreeMap<&'static str, u64> = Kind::ALL.iter().map(|k| (k.name(), 0)).collect();
        for f in self.injected() {
            *m.entry(f.kind.name()).or_default() += 1;
        }
        m
    }
}

struct Active {
    n: usize,
    fault: Injected,
    end: Instant,
}

/// Runs faults against `t` for `cfg.duration`, calling `progress` about
/// every 30 s; every fault is healed before it returns.
pub async fn chaos(
    t: &mut Targets,
    cfg: &ChaosCfg,
    seed: u64,
    t0: Instant,
    log_file: &mut std::fs::File,
    mut progress: impl FnMut(&ChaosLog),
) -> Result<ChaosLog> {
    let mut rng = Rng::new(seed);
    let mut log = ChaosLog::default();
    let mut active: Vec<Active> = Vec::new();
    let deadline = Instant::now() + cfg.duration;
    let mut next = Instant::now() + Duration::from_millis(rng.gap_ms(cfg.fault_every_ms));
    let mut report_at = Instant::now() + Duration::from_secs(30);
    let nodes = t.cluster.nodes.len() as u64;
    loop {
        let now = Instant::now();
        if now >= deadline {
            break;
        }
        let wake = active
            .iter()
            .map(|a| a.end)
            .chain([next, deadline, report_at])
            .min()
            .unwrap_or(deadline);
        // The schedule's own clock: wait for the next fault's start or end.
        tokio::time::sleep_until(wake.into()).await;
        let now = Instant::now();
        heal_due(t, &mut active, &mut log, t0, now, log_file).await?;
        if now >= report_at {
            progress(&log);
            report_at = now + Duration::from_secs(30);
        }
        if now < next {
            continue;
        }
        next = now + Duration::from_millis(rng.gap_ms(cfg.fault_every_ms));
        // Drawn even when it cannot run, so the schedule does not depend
        // on how long the cluster took to answer.
        let plan = schedule::draw(&mut rng, nodes, |k| {
            cfg.kinds.contains(&k) && (k != Kind::ClockJump || cfg.clock_jumps)
        });
        if active.len() >= cfg.max_active {
            log.skipped += 1;
            continue;
        }
        let busy = |r: Resource| active.iter().any(|a| a.fault.resources.contains(&r));
        let Some(fault) = t.resolve(&plan, busy).await else {
            log.skipped += 1;
            continue;
        };
        let n = log.faults.len() + 1;
        let start = Instant::now();
        let error = t.inject(&fault).await.err().map(|e| format!("{e:#}"));
        let rec = FaultRecord {
            n,
            kind: fault.kind,
            what: fault.describe(),
            start_s: (start - t0).as_secs_f64(),
            end_s: None,
            error: error.clone(),
        };
        if error.is_some() {
            writeln!(log_file, "{}", rec.to_json())?;
            log.faults.push(rec);
            continue;
        }
        log.faults.push(rec);
        active.push(Active {
            n,
            fault,
            end: start + Duration::from_millis(plan.hold_ms),
        });
    }
    heal_all(t, &mut active, &mut log, t0, log_file).await?;
    Ok(log)
}

/// Heals the faults whose time is up; one whose heal fails stays active
/// and is tried again in 2 s.
async fn heal_due(
    t: &mut Targets,
    active: &mut Vec<Active>,
    log: &mut ChaosLog,
    t0: Instant,
    now: Instant,
    log_file: &mut std::fs::File,
) -> Result<()> {
    let (due, rest): (Vec<Active>, Vec<Active>) = active.drain(..).partition(|a| a.end <= now);
    *active = rest;
    for mut a in due {
        match t.heal(&a.fault).await {
            Ok(()) => {
                let rec = &mut log.faults[a.n - 1];
                rec.end_s = Some((Instant::now() - t0).as_secs_f64());
                writeln!(log_file, "{}", rec.to_json())?;
            }
            Err(e) => {
                eprintln!(
                    "healing fault {} ({}) failed, retrying: {e:#}",
                    a.n,
                    a.fault.describe()
                );
                log.heal_retries += 1;
                a.end = Instant::now() + Duration::from_secs(2);
                active.push(a);
            }
        }
    }
    Ok(())
}

/// Heals every active fault, retrying for up to two minutes.
async fn heal_all(
    t: &mut Targets,
    active: &mut Vec<Active>,
    log: &mut ChaosLog,
    t0: Instant,
    log_file: &mut std::fs::File,
) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(120);
    while !active.is_empty() {
        if Instant::now() > deadline {
            let left: Vec<String> = active.iter().map(|a| a.fault.describe()).collect();
            anyhow::bail!("could not heal {left:?} within 120 s");
        }
        for a in active.iter_mut() {
            a.end = a.end.min(Instant::now());
        }
        heal_due(t, active, log, t0, Instant::now(), log_file).await?;
        if !active.is_empty() {
            // Back off before trying a failed heal again.
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
    }
    Ok(())
}
