#!/usr/bin/env bash
# committed.json on every commit (A: 18b1077a) against at most every 100 ms (B),
# same edge; throttled disk first (3000 write IOPS), then unthrottled; A, B, A, B.
set -u
cd /work/main
R=tests/bench/results/2026-12-06-committed-hint
A=/work/notes/s11/core-A
B=/work/notes/s11/core-B
common="--no-build --runs 3 --sizes 100 --rates 10000 --systems strata-rf1,strata-rf3"
run() {
  name=$1 core=$2; shift 2
  cp "$core" target/release/strata-core
  echo "== $name $(date -u +%T) core $(sha256sum target/release/strata-core | cut -c1-12)"
  target/release/strata-bench all $common "$@" --out $R/$name > $R/$name.log 2>&1
  echo "rc=$? $(date -u +%T)"
  rm -rf /tmp/.tmp* 2>/dev/null
}
run throttled-A-1 $A --throttle-write-iops 3000
run throttled-B-1 $B --throttle-write-iops 3000
run throttled-A-2 $A --throttle-write-iops 3000
run throttled-B-2 $B --throttle-write-iops 3000
run unthrottled-A-1 $A
run unthrottled-B-1 $B
cp $B target/release/strata-core
echo done
