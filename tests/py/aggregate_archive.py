#!/usr/bin/env python3
"""Aggregates one stream of a Strata Parquet archive with pyarrow and plain
Python, independently of Strata and DataFusion, for tests of `strata query`.

    aggregate_archive.py DIR STREAM FROM_MS TO_MS

Reads every Parquet object under DIR/stream=STREAM (Hive partitions), parses
each record's `data` as JSON, and prints:

    {"rows": N, "objects": M,
     "groups": [{"device", "hour_s", "n", "avg_temp"}...],   # by device, hour
     "window_rows": K}          # rows with FROM_MS <= timestamp < TO_MS

groups are ordered by device, then hour. Needs deploy/scripts/setup-s3.sh
(pyarrow in target/tools/venv).
"""

import json
import sys

import pyarrow as pa
import pyarrow.dataset as ds


def main():
    location, stream, lo, hi = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    dataset = ds.dataset(f"{location}/stream={stream}", format="parquet", partitioning="hive")
    table = dataset.to_table(columns=["timestamp", "partition_key", "data"])
    ts = table.column("timestamp").cast(pa.int64()).to_pylist()
    keys = table.column("partition_key").to_pylist()
    data = table.column("data").to_pylist()
    groups = {}
    window = 0
    for t, k, d in zip(ts, keys, data):
        temp = json.loads(d)["temp"]
        g = groups.setdefault((k, t // 3_600_000 * 3600), [0, 0.0])
        g[0] += 1
        g[1] += temp
        if lo <= t < hi:
            window += 1
    out = {
        "rows": table.num_rows,
        "objects": len(dataset.files),
        "groups": [
            {"device": k, "hour_s": h, "n": n, "avg_temp": s / n}
            for (k, h), (n, s) in sorted(groups.items())
        ],
        "window_rows": window,
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
