#!/usr/bin/env python3
"""Reads one stream of a Strata Parquet archive the way a user would, and
prints what it found as JSON, so Rust tests can compare it with what they
wrote.

    read_archive.py LOCATION STREAM

LOCATION is the archive prefix: a local directory or s3://bucket/prefix.
For S3 the standard AWS_* variables apply (AWS_ENDPOINT_URL,
AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION).

DuckDB reads `read_parquet('<LOCATION>/stream=<STREAM>/**/*.parquet',
hive_partitioning=true)` (S3 through the httpfs extension shipped by the
`duckdb-ext-httpfs` wheel: nothing is downloaded at run time); pyarrow reads
the same files independently as a cross-check.

Output: {"duckdb": {...}, "columns": [...], "rows": N, "records": [...],
"pyarrow": {...}}, records ordered by shard, offset. Binary values are hex.
Headers are read with map_entries(): DuckDB refuses a MAP value with
duplicate keys ("Map keys must be unique") when the column is selected as a
whole, and Strata keeps duplicate header keys as the producer sent them.

Needs deploy/scripts/setup-s3.sh (duckdb, duckdb-ext-httpfs, pyarrow).
"""

import json
import os
import sys
from urllib.parse import urlparse


def s3_settings():
    endpoint = os.environ.get("AWS_ENDPOINT_URL", "")
    parsed = urlparse(endpoint) if endpoint else None
    return {
        "key": os.environ.get("AWS_ACCESS_KEY_ID", ""),
        "secret": os.environ.get("AWS_SECRET_ACCESS_KEY", ""),
        "region": os.environ.get("AWS_REGION", "us-east-1"),
        "endpoint": parsed.netloc if parsed else "",
        "scheme": parsed.scheme if parsed else "https",
    }


def read_duckdb(location, stream):
    import duckdb
    import duckdb_ext

    con = duckdb_ext.init(duckdb.connect())
    if location.startswith("s3://"):
        s = s3_settings()
        con.execute("LOAD httpfs")
        opts = [
            "TYPE s3",
            f"KEY_ID '{s['key']}'",
            f"SECRET '{s['secret']}'",
            f"REGION '{s['region']}'",
        ]
        if s["endpoint"]:
            opts += [
                f"ENDPOINT '{s['endpoint']}'",
                "URL_STYLE 'path'",
                f"USE_SSL {'true' if s['scheme'] == 'https' else 'false'}",
            ]
        con.execute(f"CREATE SECRET strata_s3 ({', '.join(opts)})")
    glob = f"{location.rstrip('/')}/stream={stream}/**/*.parquet"
    source = f"read_parquet('{glob}', hive_partitioning=true)"
    columns = [
        {"name": name, "type": typ}
        for name, typ, *_ in con.execute(f"DESCRIBE SELECT * FROM {source}").fetchall()
    ]
    rows = con.execute(
        f"""SELECT "offset", shard, partition_key, data, epoch_ms("timestamp"),
                   map_entries(headers), stream, CAST(date AS VARCHAR), hour
            FROM {source} ORDER BY shard, "offset" """
    ).fetchall()
    records = []
    for off, shard, key, data, ts, headers, stream_col, date, hour in rows:
        data = bytes(data)
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            text = None
        records.append(
            {
                "offset": off,
                "shard": shard,
                "partition_key": key,
                "data_hex": data.hex(),
                "data_utf8": text,
                "timestamp_ms": ts,
                "headers": [[h["key"], bytes(h["value"]).hex()] for h in headers],
                "stream": stream_col,
                "date": date,
                "hour": hour,
            }
        )
    return {"version": duckdb.__version__, "columns": columns, "records": records}


def read_pyarrow(location, stream):
    import pyarrow
    import pyarrow.dataset as ds
    import pyarrow.fs as pafs

    if location.startswith("s3://"):
        s = s3_settings()
        fs = pafs.S3FileSystem(
            access_key=s["key"] or None,
            secret_key=s["secret"] or None,
            region=s["region"],
            endpoint_override=s["endpoint"] or None,
            scheme=s["scheme"],
        )
        base = location[len("s3://"):].rstrip("/")
    else:
        fs = pafs.LocalFileSystem()
        base = location.rstrip("/")
    # No hive partitioning here: the file's own columns (incl. `stream`) only.
    table = ds.dataset(f"{base}/stream={stream}", filesystem=fs, format="parquet").to_table()
    table = table.sort_by([("shard", "ascending"), ("offset", "ascending")])
    return {
        "version": pyarrow.__version__,
        "rows": table.num_rows,
        "schema": [{"name": f.name, "type": str(f.type)} for f in table.schema],
        "offsets": table.column("offset").to_pylist(),
        "streams": sorted(set(table.column("stream").to_pylist())),
    }


def main():
    if len(sys.argv) != 3:
        sys.exit("usage: read_archive.py LOCATION STREAM")
    location, stream = sys.argv[1], sys.argv[2]
    try:
        duck = read_duckdb(location, stream)
        arrow = read_pyarrow(location, stream)
    except ImportError as e:
        sys.exit(f"read_archive.py: {e}; run deploy/scripts/setup-s3.sh")
    print(
        json.dumps(
            {
                "duckdb": duck["version"],
                "columns": duck["columns"],
                "rows": len(duck["records"]),
                "records": duck["records"],
                "pyarrow": arrow,
            }
        )
    )


if __name__ == "__main__":
    main()
