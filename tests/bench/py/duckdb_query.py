#!/usr/bin/env python3
"""Runs one SQL query with DuckDB and prints its rows and timing as JSON,
for `strata-bench query` (the peer of `strata query` on the same files).

    duckdb_query.py SQL

The SQL names its files itself (read_parquet('<dir>/stream=x/**/*.parquet',
hive_partitioning = true)). Every call is a fresh process and a fresh
in-memory connection, as every `strata query` is a fresh process: nothing is
cached between runs but the operating system's page cache.

Output: {"secs": S, "cpu_secs": C, "threads": T, "version": V,
"columns": [...], "rows": [[...], ...]} where S is the wall time from
connect() to the last row fetched and C the process's CPU time (user +
system, every thread) over the same span: Python's start and the import of
duckdb are outside both. Needs deploy/scripts/setup-s3.sh (duckdb in
target/tools/venv). DuckDB's json and parquet extensions are built into the
wheel: nothing is downloaded.
"""

import json
import resource
import sys
import time

import duckdb


def cpu_secs():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def main():
    sql = sys.argv[1]
    cpu0, t0 = cpu_secs(), time.perf_counter()
    con = duckdb.connect(config={"autoinstall_known_extensions": False})
    cur = con.execute(sql)
    rows = cur.fetchall()
    secs, cpu = time.perf_counter() - t0, cpu_secs() - cpu0
    columns = [d[0] for d in cur.description]
    threads = con.execute("SELECT current_setting('threads')").fetchone()[0]
    out = {
        "secs": secs,
        "cpu_secs": cpu,
        "threads": threads,
        "version": duckdb.__version__,
        "columns": columns,
        "rows": [list(r) for r in rows],
    }
    print(json.dumps(out, default=str))


if __name__ == "__main__":
    main()
