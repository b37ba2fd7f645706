//! Keeps the benchmark harness compiling and working: runs `strata-bench
//! smoke` (tiny counts, one run; NATS rows skipped when nats-server is not
//! installed; then a tiny tiering run) against the debug binaries and checks
//! that it wrote its table, CSV files and plot. No timing is asserted:
//! figures from a smoke run mean nothing.

mod support;

use std::time::Duration;

#[test]
fn smoke_run_writes_table_csv_and_plot() {
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
    let svg = std::fs::read_to_string(out.path().join("plot.svg")).unwrap();
    assert!(svg.starts_with("<svg") && svg.contains("Throughput"));
}
