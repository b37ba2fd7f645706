#!/usr/bin/env bash
# The test command (README, .ci/run): installs what the tests need
# (idempotently, under target/tools: flatc, SeaweedFS, DuckDB, and
# nats-server for the benchmark smoke test, which fails rather than skip a
# missing peer), checks the generated schema code, formatting and lints
# (and the dependency checks once deploy/scripts/check-deps.sh exists),
# builds the binaries the integration tests start, then runs every test.
# Bounded: each test has its own deadline.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"
started=$SECONDS
step() { printf '\n== [%dm%02ds] %s\n' $(((SECONDS - started) / 60)) $(((SECONDS - started) % 60)) "$*"; }

step "setup"
./deploy/scripts/setup.sh
./deploy/scripts/setup-s3.sh
./deploy/scripts/setup-bench.sh
step "schema: generated code matches schema/fbs"
./deploy/scripts/gen-schema.sh --check
step "cargo fmt --check"
cargo fmt --all -- --check
step "cargo clippy -D warnings"
cargo clippy --workspace --all-targets --locked -- -D warnings
step "dependency checks (no heavy crates in the edge and the SDK, no core in the CLI)"
./deploy/scripts/check-deps.sh
step "build binaries for the integration tests"
cargo build --workspace --bins --locked
step "tests"
cargo test --workspace --locked -- --test-threads 2
step "done"
