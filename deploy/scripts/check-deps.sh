#!/usr/bin/env bash
# Dependency hygiene (run by test.sh, so by CI): the edge agent must stay
# small enough for a Raspberry-class device, and the CLI must not link the
# core. Fails naming the crate that got in and the path that pulled it.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"
status=0

# forbid PACKAGE CRATE...: fails if PACKAGE's normal dependency tree has CRATE.
forbid() {
  local package="$1"
  shift
  local tree
  tree="$(cargo tree --locked -p "$package" -e normal --prefix none --format '{p}')"
  for crate in "$@"; do
    if grep -Eq "^${crate}(-[a-z0-9-]+)? v" <<<"$tree"; then
      echo "check-deps: $package must not depend on $crate; it is pulled in by:" >&2
      cargo tree --locked -p "$package" -e normal -i "$crate" >&2 || true
      status=1
    fi
  done
}

forbid strata-edge arrow parquet openraft object_store datafusion
forbid strata-cli openraft
forbid strata-client openraft arrow parquet object_store datafusion

if [ "$status" -eq 0 ]; then
  echo "check-deps: ok (strata-edge and strata-client: no arrow, parquet, openraft, object_store, datafusion; strata-cli: no openraft)"
fi
exit "$status"
