#!/usr/bin/env bash
# Runs Strata locally: builds the release binaries (first time ≈ 8 min on 2
# cores, then seconds) and starts `strata dev` in the foreground. Arguments
# are passed on, e.g. `deploy/scripts/dev.sh --data-dir /tmp/strata`.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"
cargo build --release --bins --locked
exec "$root/target/release/strata" dev "$@"
