//! The campaign's record: `summary.json` (every figure), `summary.md` (the
//! table docs/reliability.md shows) and a copy of the daemons' logs.

use crate::faults::Targets;
use crate::oracle::Verdict;
use crate::Args;
use anyhow::Result;
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

/// Everything one campaign measured.
pub struct Summary {
    pub args: Args,
    pub commit: String,
    pub chaos_secs: f64,
    pub by_kind: BTreeMap<&'static str, u64>,
    pub faults: u64,
    /// Faults whose injection failed (not counted in `faults`).
    pub fault_errors: u64,
    /// Draws not injected because what they hit was busy.
    pub skipped: u64,
    pub heal_retries: u64,
    pub producer_retries: u64,
    pub longest_no_ack: Duration,
    pub longest_core_stall: Duration,
    pub consumer_rejoins: u64,
    pub clock_jumps: bool,
    /// Restarts after a disk-full episode stopped the metadata group.
    pub meta_restarts: u64,
    /// Ranges the core could not serve at the end, one line each.
    pub unreadable: Vec<String>,
    pub unreadable_records: u64,
    pub verdict: Verdict,
    pub replicas: String,
    pub passed: bool,
}

fn secs(d: Duration) -> f64 {
    (d.as_secs_f64() * 100.0).round() / 100.0
}

impl Summary {
    pub fn to_json(&self) -> serde_json::Value {
        let v = &self.verdict;
        serde_json::json!({
            "passed": self.passed,
            "seed": self.args.seed,
            "commit": self.commit,
            "duration_secs": self.args.duration_secs,
            "chaos_secs": (self.chaos_secs * 10.0).round() / 10.0,
            "fault_every_ms": self.args.fault_every_ms,
            "max_active": self.args.max_active,
            "producer_lanes": self.args.lanes,
            "clock_jumps": self.clock_jumps,
            "kinds": self.args.kinds.iter().map(|k| k.name()).collect::<Vec<_>>(),
            "faults": self.faults,
            "faults_by_kind": self.by_kind,
            "fault_injection_errors": self.fault_errors,
            "draws_skipped_busy": self.skipped,
            "heal_retries": self.heal_retries,
            "records_acknowledged": v.acknowledged,
            "records_in_core": v.records_in_core,
            "lost": v.lost,
            "duplicated": v.duplicated,
            "unacknowledged_copies": v.unacknowledged_copies,
            "order_violations": v.order_violations,
            "malformed": v.malformed,
            "uncommitted_reads": v.uncommitted_reads,
            "unconsumed": v.unconsumed,
            "consumer_deliveries": v.consumer_deliveries,
            "consumer_redeliveries": v.consumer_redeliveries,
            "consumer_rejoins": self.consumer_rejoins,
            "producer_retries": self.producer_retries,
            "longest_without_ack_secs": secs(self.longest_no_ack),
            "longest_core_commit_stall_secs": secs(self.longest_core_stall),
            "replicas": self.replicas,
            "restarts_after_metadata_disk_full": self.meta_restarts,
            "unreadable_records": self.unreadable_records,
            "unreadable_ranges": self.unreadable,
            "examples": v.examples,
        })
    }

    pub fn markdown(&self) -> String {
        let v = &self.verdict;
        let mut s = String::new();
        s += &format!(
            "## Chaos campaign: seed {}, commit {}: {}\n\n",
            self.args.seed,
            self.commit,
            if self.passed { "PASSED" } else { "FAILED" }
        );
        s += "| fault | injected |\n| --- | ---: |\n";
        for (k, n) in &self.by_kind {
            s += &format!("| {k} | {n} |\n");
        }
        s += &format!("| **total** | **{}** |\n\n", self.faults);
        s += "| figure | value |\n| --- | ---: |\n";
        let rows: Vec<(&str, String)> = vec![
            ("chaos phase", format!("{:.0} s", self.chaos_secs)),
            (
                "mean time between fault starts",
                format!("{} ms", self.args.fault_every_ms),
            ),
            ("records acknowledged", v.acknowledged.to_string()),
            ("records in the core", v.records_in_core.to_string()),
            ("lost (must be 0)", v.lost.to_string()),
            (
                "duplicated in the core (must be 0)",
                v.duplicated.to_string(),
            ),
            (
                "per-key order violations (must be 0)",
                v.order_violations.to_string(),
            ),
            (
                "uncommitted reads (must be 0)",
                v.uncommitted_reads.to_string(),
            ),
            (
                "gaps / foreign records (must be 0)",
                v.malformed.to_string(),
            ),
            (
                "committed records no consumer got (must be 0)",
                v.unconsumed.to_string(),
            ),
            (
                "copies of unacknowledged attempts (allowed)",
                v.unacknowledged_copies.to_string(),
            ),
            (
                "producer requests retried",
                self.producer_retries.to_string(),
            ),
            ("consumer deliveries", v.consumer_deliveries.to_string()),
            ("consumer redeliveries", v.consumer_redeliveries.to_string()),
            ("consumer member rejoins", self.consumer_rejoins.to_string()),
            (
                "longest time without an acknowledgement",
                format!("{:.2} s", secs(self.longest_no_ack)),
            ),
            (
                "longest time without a core commit",
                format!("{:.2} s", secs(self.longest_core_stall)),
            ),
            ("replicas", self.replicas.clone()),
            (
                "records the core cannot serve (must be 0)",
                self.unreadable_records.to_string(),
            ),
            (
                "restarts after the metadata group hit a full disk",
                self.meta_restarts.to_string(),
            ),
            (
                "fault injections that failed",
                self.fault_errors.to_string(),
            ),
            ("draws skipped (target busy)", self.skipped.to_string()),
        ];
        for (k, val) in rows {
            s += &format!("| {k} | {val} |\n");
        }
        if !self.unreadable.is_empty() {
            s += "\nRanges the core could not serve:\n\n";
            for u in &self.unreadable {
                s += &format!("- {u}\n");
            }
        }
        if !v.examples.is_empty() {
            s += "\nWhat broke the oracle:\n\n";
            for e in &v.examples {
                s += &format!("- {e}\n");
            }
        }
        s
    }

    pub fn write(&self, out: &Path) -> Result<()> {
        std::fs::write(
            out.join("summary.json"),
            serde_json::to_string_pretty(&self.to_json())? + "\n",
        )?;
        std::fs::write(out.join("summary.md"), self.markdown())?;
        Ok(())
    }
}

/// Copies every daemon's log (and the S3 server's) to `out/logs`.
pub fn copy_logs(t: &Targets, out: &Path) {
    let dest = out.join("logs");
    if let Err(e) = std::fs::create_dir_all(&dest) {
        eprintln!("cannot create {}: {e}", dest.display());
        return;
    }
    let dir = t.cluster.dir.path();
    let logs = (1..=t.cluster.nodes.len())
        .map(|id| dir.join(format!("core-{id}.log")))
        .chain([dir.join("edge.log"), dir.join("s3/weed.log")]);
    for log in logs {
        let name = log.file_name().unwrap_or_default().to_owned();
        if let Err(e) = std::fs::copy(&log, dest.join(name)) {
            eprintln!("copying {}: {e}", log.display());
        }
    }
}
