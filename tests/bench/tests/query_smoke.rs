//! Keeps `strata-bench query` working: a 2 MB archive, one run of every
//! query against the debug `strata` binary (and DuckDB when
//! deploy/scripts/setup-s3.sh has installed it; the peer is skipped with a
//! note otherwise). Every answer is checked by the harness itself; this test
//! checks that it finished and wrote its files. No timing is asserted.

use std::process::Command;
use std::time::{Duration, Instant};

#[test]
fn query_smoke_writes_table_and_csv() {
    let out = tempfile::tempdir().unwrap();
    let archives = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_strata-bench"))
        .args([
            "query",
            "--smoke",
            "--archive-mb",
            "2",
            "--warmup",
            "0",
            "--no-build",
        ])
        .arg("--out")
        .arg(out.path())
        .arg("--archive-root")
        .arg(archives.path())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("start strata-bench");
    // Bounded: a hung harness fails the test instead of hanging CI.
    let deadline = started + Duration::from_secs(240);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("strata-bench query --smoke did not finish within 240 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let mut table = String::new();
    std::io::Read::read_to_string(&mut child.stdout.take().unwrap(), &mut table).unwrap();
    assert!(
        status.success(),
        "strata-bench query --smoke failed:\n{table}"
    );
    for f in [
        "table.md",
        "query.csv",
        "query-summary.csv",
        "machine.csv",
        "strata-explain-hour_timestamp.txt",
    ] {
        assert!(out.path().join(f).is_file(), "{f} missing");
    }
    assert!(
        table.contains("### SQL over the archive") && table.contains("| **compression** |"),
        "{table}"
    );
    let csv = std::fs::read_to_string(out.path().join("query.csv")).unwrap();
    for metric in [
        "1,strata,scan,archive_mb_per_s,",
        "1,strata,json_agg,rows_per_s,",
        "1,strata,hour_timestamp,objects_scanned,",
        "1,strata,hour_partition,query_s,",
    ] {
        assert!(
            csv.contains(metric),
            "{metric} missing from query.csv:\n{csv}"
        );
    }
    // The pruned query reads the hour's objects only: 4 shards × 6.
    assert!(
        csv.contains("1,strata,hour_timestamp,objects_scanned,24,"),
        "{csv}"
    );
    if !table.contains("DuckDB peer skipped") {
        assert!(csv.contains("1,ratio,json_agg,query_s,"), "{csv}");
    }
}
