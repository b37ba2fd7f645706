//! Keeps `strata-bench query` working: a 2 MB archive, one run of every
//! query against the debug `strata` binary (and DuckDB when
//! deploy/scripts/setup-s3.sh has installed it; the peer is skipped with a
//! note otherwise). Every answer is checked by the harness itself; this test
//! checks that it finished and wrote its files. No timing is asserted.

mod support;

use std::time::Duration;

#[test]
fn query_smoke_writes_table_and_csv() {
    let out = tempfile::tempdir().unwrap();
    let archives = tempfile::tempdir().unwrap();
    let (status, table) = support::run_bench(
        &[
            "query".as_ref(),
            "--smoke".as_ref(),
            "--archive-mb".as_ref(),
            "2".as_ref(),
            "--warmup".as_ref(),
            "0".as_ref(),
            "--no-build".as_ref(),
            "--out".as_ref(),
            out.path().as_os_str(),
            "--archive-root".as_ref(),
            archives.path().as_os_str(),
        ],
        Duration::from_secs(240),
    );
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
