#!/usr/bin/env bash
# Sets up the machine and runs every check and test: formatting, clippy, and the whole
# workspace's tests against real PostgreSQL (private throwaway clusters started by the test
# harness, or the server named by ALTO_TEST_DATABASE_URL).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
# The real tier-2 servers the tests start on 127.0.0.1 (Samba, s3s-fs, moto, Azurite); every
# test that needs one fails rather than skips when it is missing.
./scripts/test-services.sh install
# cargo-nextest runs the test binaries in parallel; installed once per machine into the tools
# cache (outside the clone, keyed by version) when the toolchain does not have it.
NEXTEST_VERSION=0.9.143
if ! cargo nextest --version >/dev/null 2>&1; then
  NEXTEST_ROOT="${ALTO_TOOLS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/alto/tools}/nextest-$NEXTEST_VERSION"
  if [ ! -x "$NEXTEST_ROOT/bin/cargo-nextest" ]; then
    echo "== installing cargo-nextest $NEXTEST_VERSION into $NEXTEST_ROOT" >&2
    CARGO_TARGET_DIR="$NEXTEST_ROOT/.build" \
      cargo install --quiet --locked --root "$NEXTEST_ROOT" "cargo-nextest@$NEXTEST_VERSION"
    rm -rf "$NEXTEST_ROOT/.build"
  fi
  export PATH="$NEXTEST_ROOT/bin:$PATH"
fi
export ALTO_REQUIRE_TEST_SERVICES=1
# Tests that need root (trusted.* attributes, leases) fail rather than skip when not root.
export ALTO_REQUIRE_ROOT=1
echo "== cargo fmt --check" >&2
cargo fmt --all -- --check
echo "== cargo clippy" >&2
cargo clippy --workspace --all-targets --locked -- -D warnings
# One build of every target of the workspace, with the features of the whole workspace: the
# benchmarks, the tests and the hostile-input suite all run these binaries (a `cargo run -p`
# per package would resolve other features and build the dependencies again).
echo "== cargo build (every target, dev profile)" >&2
cargo build --workspace --all-targets --locked
BIN="${CARGO_TARGET_DIR:-$PWD/target}/debug"
echo "== benchmarks, small mode (ratios only; nothing is asserted on time)" >&2
"$BIN/examples/ingest_bench" --small
"$BIN/examples/plan_bench" --small
"$BIN/alto-tier-bench" --small
"$BIN/examples/recall_bench" --small
# The dev profile's binaries from the build above: CI builds no release profile.
./scripts/bench.sh --small --clean --bin-dir "$BIN"
echo "== tests (cargo nextest: every binary's tests side by side)" >&2
# Every library sets doctest = false and the binaries have no doc tests, so nextest runs all
# of them; .config/nextest.toml has the parallelism and the groups.
cargo nextest run --workspace --locked --no-tests=fail
echo "== hostile-input suite (Schemathesis from the OpenAPI document; fails on any 5xx)" >&2
ALTO_SERVER_BIN="$BIN/alto-server" ./scripts/api-fuzz.sh --examples 20 --minutes 6
