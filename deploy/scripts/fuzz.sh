#!/usr/bin/env bash
# Runs the cargo-fuzz targets of tests/fuzz longer than CI does (CI only
# replays the committed corpora, in tests/tests/fuzz_replay.rs).
#
#   deploy/scripts/fuzz.sh [SECONDS] [TARGET...]
#
# SECONDS per target (default 600); TARGETs default to every target
# (`cargo fuzz list`). Installs cargo-fuzz (and a nightly toolchain) if
# missing. Targets run one after the other, one libFuzzer process each
# (FUZZ_JOBS=N runs N workers per target instead). New inputs are added to
# tests/fuzz/corpus/TARGET; with FUZZ_CMIN=1 the corpus is minimized
# afterwards (`cargo fuzz cmin`). A crash leaves its input in
# tests/fuzz/artifacts/TARGET/ and makes the script exit 1 (after the other
# targets ran). One summary line per target at the end, e.g.
#
#   fuzz: wire_request  600 s  1843211 execs  0 crashes  corpus 412 files
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root/tests/fuzz"

seconds="${1:-600}"
if ! [[ "$seconds" =~ ^[0-9]+$ ]] || [ "$seconds" -eq 0 ]; then
  echo "fuzz.sh: SECONDS must be a positive integer, got '$seconds'" >&2
  echo "usage: deploy/scripts/fuzz.sh [SECONDS] [TARGET...]" >&2
  exit 2
fi
shift || true
jobs="${FUZZ_JOBS:-1}"

if ! rustup toolchain list | grep -q '^nightly'; then
  echo "fuzz.sh: installing the nightly toolchain (cargo fuzz needs it)" >&2
  rustup toolchain install nightly --profile minimal
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "fuzz.sh: installing cargo-fuzz" >&2
  cargo install cargo-fuzz --locked
fi

known="$(cargo +nightly fuzz list)"
if [ "$#" -gt 0 ]; then
  targets=("$@")
  for t in "${targets[@]}"; do
    if ! grep -qx "$t" <<<"$known"; then
      echo "fuzz.sh: unknown target '$t'; the targets are:" >&2
      echo "$known" >&2
      exit 2
    fi
  done
else
  mapfile -t targets <<<"$known"
fi

# One build for all targets (release, debug assertions, AddressSanitizer).
cargo +nightly fuzz build

logs="$(mktemp -d)"
trap 'rm -rf "$logs"' EXIT
summary=()
failed=0
for t in "${targets[@]}"; do
  mkdir -p "corpus/$t"
  log="$logs/$t.log"
  echo "fuzz.sh: $t for ${seconds} s (log: tests/fuzz/artifacts/$t.log)" >&2
  args=(-max_total_time="$seconds" -timeout=30 -print_final_stats=1)
  if [ "$jobs" -gt 1 ]; then
    args+=(-jobs="$jobs" -workers="$jobs")
  fi
  status=0
  cargo +nightly fuzz run "$t" -- "${args[@]}" >"$log" 2>&1 || status=$?
  mkdir -p artifacts
  cp "$log" "artifacts/$t.log"
  # With -jobs > 1 the workers log to fuzz-N.log in the current directory.
  if [ "$jobs" -gt 1 ]; then
    cat fuzz-*.log >>"artifacts/$t.log" 2>/dev/null || true
    rm -f fuzz-*.log
  fi
  execs="$(grep -ho 'stat::number_of_executed_units: [0-9]*' "artifacts/$t.log" |
    awk '{s += $2} END {print s + 0}')"
  crashes="$(find "artifacts/$t" -maxdepth 1 -type f \
    \( -name 'crash-*' -o -name 'leak-*' -o -name 'timeout-*' -o -name 'oom-*' \) 2>/dev/null |
    wc -l)"
  if [ "$status" -ne 0 ] && [ "$crashes" -eq 0 ]; then
    crashes="?"
  fi
  if [ "$status" -ne 0 ]; then
    failed=1
  fi
  if [ "${FUZZ_CMIN:-0}" = 1 ] && [ "$status" -eq 0 ]; then
    cargo +nightly fuzz cmin "$t" >>"artifacts/$t.log" 2>&1
  fi
  files="$(find "corpus/$t" -type f | wc -l)"
  summary+=("$(printf 'fuzz: %-18s %5s s  %10s execs  %s crashes  corpus %s files' \
    "$t" "$seconds" "$execs" "$crashes" "$files")")
done

printf '%s\n' "${summary[@]}"
if [ "$failed" -ne 0 ]; then
  echo "fuzz.sh: a target failed: its input is in tests/fuzz/artifacts/TARGET/," \
    "the output in tests/fuzz/artifacts/TARGET.log;" \
    "reproduce with: cd tests/fuzz && cargo +nightly fuzz run TARGET artifacts/TARGET/FILE" >&2
fi
exit "$failed"
