#!/usr/bin/env bash
# The final policy (a3070b11), throttled disk only, off then on then off then on, Strata only.
set -u
cd /work/main
R=tests/bench/results/2026-12-06-prefill
common="--no-build --runs 3 --sizes 100 --rates 10000 --systems strata-rf1,strata-rf3 --throttle-write-iops 3000"
run() { name=$1; shift; echo "== $name $(date -u +%T)"; env "$@" target/release/strata-bench all $common --out $R/$name > $R/$name.log 2>&1; echo "rc=$? $(date -u +%T)"; rm -rf /tmp/.tmp* 2>/dev/null; }
run final-ab-throttled-off-1 STRATA_CORE_SEGMENT_PREFILL=false STRATA_EDGE_SEGMENT_PREFILL=false
run final-ab-throttled-on-1 X=1
run final-ab-throttled-off-2 STRATA_CORE_SEGMENT_PREFILL=false STRATA_EDGE_SEGMENT_PREFILL=false
run final-ab-throttled-on-2 X=1
echo done
