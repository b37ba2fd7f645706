#!/usr/bin/env bash
# The final policy (a3070b11: zero-fill as far ahead as the segment holds, up to 1 MiB).
set -u
cd /work/main
R=tests/bench/results/2026-12-06-prefill
common="--no-build --runs 3 --sizes 100 --rates 10000 --systems strata-rf1,strata-rf3,nats-r1-default,nats-r3-default"
run() { name=$1; shift; echo "== $name $(date -u +%T)"; env "$@" target/release/strata-bench all $common $EXTRA --out $R/$name > $R/$name.log 2>&1; echo "rc=$? $(date -u +%T)"; rm -rf /tmp/.tmp* 2>/dev/null; }
EXTRA="--throttle-write-iops 3000"
run final-throttled-3000-prefill-on X=1
EXTRA=""
run final-prefill-on X=1
echo done
