//! Keeps the benchmark harness compiling and working: runs `strata-bench
//! smoke` (tiny counts, one run of Strata RF=1, RF=3 and the NATS peer at
//! R1 and R3; then a tiny tiering run) against the debug binaries and checks
//! that it wrote its table, CSV files and plot, with the NATS rows in them.
//! nats-server is required (deploy/scripts/setup-bench.sh; the test command
//! installs it): without it the test fails instead of skipping the peer. No
//! timing is asserted: figures from a smoke run mean nothing.

mod support;

use std::path::{Path, PathBuf};
use std::time::Duration;

/// `nats-server` where `strata-bench` looks for it (the tools venv under
/// the target directory, then PATH). Panics naming the setup script when
/// it is missing: the smoke test checks the NATS rows, it does not skip them.
fn require_nats_server() -> PathBuf {
    let bench = Path::new(env!("CARGO_BIN_EXE_strata-bench"));
    let target = bench
        .parent()
        .and_then(Path::parent)
        .expect("strata-bench lives in target/<profile>");
    let venv = target.join("tools/venv/bin/nats-server");
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join("nats-server"))
            .find(|p| p.is_file())
    });
    match (venv.is_file(), on_path) {
        (true, _) => venv,
        (false, Some(p)) => p,
        (false, None) => panic!(
            "nats-server is missing ({} and PATH): run deploy/scripts/setup-bench.sh",
            venv.display()
        ),
    }
}

#[test]
fn smoke_run_writes_table_csv_and_plot() {
    let nats = require_nats_server();
    let out = tempfile::tempdir().unwrap();
    let (status, table) = support::run_bench(
        &["smoke".as_ref(), "--out".as_ref(), out.path().as_os_str()],
        Duration::from_secs(240),
    );
    assert!(status.success(), "strata-bench smoke failed:\n{table}");
    for f in [
        "table.md",
        "runs.csv",
        "summary.csv",
        "skipped.csv",
        "machine.csv",
        "plot.svg",
    ] {
        assert!(out.path().join(f).is_file(), "{f} missing");
    }
    assert!(
        table.contains("| (a) producer → edge | Strata RF=1 |"),
        "{table}"
    );
    // The tiny tiering run: its section, its CSV files and the core's log.
    assert!(
        table.contains("### Tiering to object storage") && table.contains("| **tier ÷ local** |"),
        "{table}"
    );
    for f in [
        "tier.csv",
        "tier-summary.csv",
        "tier-objects.csv",
        "tier-core-1.log",
    ] {
        assert!(out.path().join(f).is_file(), "{f} missing");
    }
    let tier = std::fs::read_to_string(out.path().join("tier.csv")).unwrap();
    for metric in [
        "1,tiering,payload_mb_per_s,",
        "1,tiering,payload_mb_per_core_s,",
        "1,compression,payload_over_parquet,",
        "1,replay_local,records_per_s,",
        "1,replay_tier,records_per_s,",
        "1,replay_tier,records_served_from_tier,",
    ] {
        assert!(
            tier.contains(metric),
            "{metric} missing from tier.csv:\n{tier}"
        );
    }
    let summary = std::fs::read_to_string(out.path().join("summary.csv")).unwrap();
    for metric in [
        "ack_rps",
        "e2e_rps",
        "p99_ms",
        "cpu_per_100k_edge",
        "hwm_mb_edge",
    ] {
        assert!(
            summary
                .lines()
                .any(|l| l.starts_with("strata-rf1,") && l.contains(&format!(",{metric},"))),
            "{metric} missing from summary.csv:\n{summary}"
        );
    }
    // The peer ran: its rows in the table and summary.csv, none skipped.
    assert!(
        !table.contains("NATS rows skipped"),
        "strata-bench did not find {}:\n{table}",
        nats.display()
    );
    for row in [
        "| peer | NATS R1 | stored (fsync every 2 min) |",
        "| peer | NATS R3 | stored on 2 of 3 |",
        "| NATS R1 | 100 B | 1k/s |",
        "| NATS R3 | 1 KiB | max |",
        "| (b) committed, RF=3 | NATS R3 |",
    ] {
        let line = table.lines().find(|l| l.starts_with(row));
        let line = line.unwrap_or_else(|| panic!("no row {row:?} in the table:\n{table}"));
        assert!(
            !line.contains("skipped") && !line.contains("not run") && !line.contains('—'),
            "NATS row without figures: {line}"
        );
    }
    for system in ["nats-r1-default", "nats-r3-default"] {
        for metric in [
            "throughput,,100,ack_rps",
            "throughput,,1024,ack_rps",
            "latency,1000,100,p99_ms",
            "latency,max,1024,p99_ms",
        ] {
            let row = format!("{system},{metric},");
            assert!(
                summary.lines().any(|l| l.starts_with(&row)),
                "{row} missing from summary.csv:\n{summary}"
            );
        }
    }
    let skipped = std::fs::read_to_string(out.path().join("skipped.csv")).unwrap();
    assert!(!skipped.contains("nats-"), "NATS cases skipped:\n{skipped}");
    let svg = std::fs::read_to_string(out.path().join("plot.svg")).unwrap();
    assert!(svg.starts_with("<svg") && svg.contains("Throughput"));
}
