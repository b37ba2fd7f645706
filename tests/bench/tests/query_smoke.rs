//! Keeps `strata-bench query` working: a 2 MB archive, one run of every
//! query against the debug `strata` binary and against DuckDB, whose
//! answers the harness compares with Strata's. DuckDB is required
//! (deploy/scripts/setup-s3.sh; the test command installs it): the harness
//! skips a missing peer with a note, and this test then fails. This test
//! checks that it finished, ran both engines and wrote its files. No timing
//! is asserted.

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
    // The peer ran (its answers were checked against Strata's by the harness).
    assert!(
        !table.contains("DuckDB peer skipped"),
        "DuckDB did not run: install it with deploy/scripts/setup-s3.sh\n{table}"
    );
    for metric in [
        "1,duckdb,scan,query_s,",
        "1,duckdb,json_agg,query_s,",
        "1,ratio,json_agg,query_s,",
    ] {
        assert!(
            csv.contains(metric),
            "{metric} missing from query.csv:\n{csv}"
        );
    }
}
