#!/usr/bin/env bash
# Benchmarks `alto-agent scan` against `find` on a generated tree.
#
#   scripts/bench.sh [--small] [--files N] [--seed S] [--scratch DIR] [--clean] [--bin-dir D]
#
# Builds the release binaries (--bin-dir: use alto-agent and alto-gen-tree from D instead, as the
# test command does with its dev build: ratios of unoptimised code, proving only that the
# benchmark runs), generates a deterministic tree once under the scratch directory (default
# /tmp/alto-bench; reused when it exists for the same N and seed), then times
#   find ROOT -printf '%s\n' >/dev/null
#   alto-agent scan --root ROOT --output X.parquet
# warm (one warm-up each, then best of 3) and cold (caches dropped before each run, when
# permitted). Reports wall times, the ratio alto/find, rows/s and alto-agent's peak RSS.
# Never asserts absolute times. --small: 20,000 files. Default: 1,000,000 files.
# --clean deletes the tree afterwards.
set -euo pipefail

FILES=1000000
SEED=1
SCRATCH=/tmp/alto-bench
CLEAN=0
BIN_DIR=""
while [ $# -gt 0 ]; do
  case "$1" in
    --small) FILES=20000 ;;
    --files) FILES="$2"; shift ;;
    --seed) SEED="$2"; shift ;;
    --scratch) SCRATCH="$2"; shift ;;
    --clean) CLEAN=1 ;;
    --bin-dir) BIN_DIR="$2"; shift ;;
    -h|--help) sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done

REPO="$(cd "$(dirname "$0")/.." && pwd)"
cd "$REPO"
if [ -n "$BIN_DIR" ]; then
  TARGET="$BIN_DIR"
else
  echo "== building release binaries" >&2
  cargo build --release -q -p alto-agent -p alto-bench
  TARGET="${CARGO_TARGET_DIR:-$REPO/target}/release"
fi
AGENT="$TARGET/alto-agent"
GEN="$TARGET/alto-gen-tree"

mkdir -p "$SCRATCH"
ROOT="$SCRATCH/tree-$FILES-s$SEED"
OUT="$SCRATCH/scan-$FILES.parquet"
if [ ! -f "$ROOT.done" ]; then
  echo "== generating $FILES files under $ROOT" >&2
  rm -rf "$ROOT"
  gen_start=$(date +%s.%N)
  "$GEN" --root "$ROOT" --files "$FILES" --seed "$SEED"
  gen_end=$(date +%s.%N)
  touch "$ROOT.done"
  echo "   generated in $(awk "BEGIN{printf \"%.1f\", $gen_end-$gen_start}")s" >&2
else
  echo "== reusing $ROOT" >&2
fi

HAVE_TIME=0
if [ -x /usr/bin/time ]; then HAVE_TIME=1; fi

# Runs one command, prints its wall time in seconds.
run_find() {
  local s e
  s=$(date +%s.%N)
  find "$ROOT" -printf '%s\n' >/dev/null
  e=$(date +%s.%N)
  awk "BEGIN{printf \"%.3f\", $e-$s}"
}
run_alto() {
  local s e kb
  rm -f "$OUT"
  s=$(date +%s.%N)
  if [ "$HAVE_TIME" = 1 ]; then
    /usr/bin/time -f %M -o "$SCRATCH/rss" \
      "$AGENT" scan --quiet --summary-format json --root "$ROOT" --output "$OUT" >"$SCRATCH/summary.json"
  else
    "$AGENT" scan --quiet --summary-format json --root "$ROOT" --output "$OUT" >"$SCRATCH/summary.json"
  fi
  e=$(date +%s.%N)
  if [ "$HAVE_TIME" = 1 ]; then
    # Runs in a subshell ($(run_alto)): keep every run's peak in a file.
    kb=$(tail -1 "$SCRATCH/rss")
    echo "$kb" >>"$SCRATCH/rss.all"
  fi
  awk "BEGIN{printf \"%.3f\", $e-$s}"
}
min() { printf '%s\n' "$@" | sort -g | head -1; }
drop_caches() { sync && echo 3 >/proc/sys/vm/drop_caches 2>/dev/null; }

: >"$SCRATCH/rss.all"
echo "== warm cache: one warm-up each, then best of 3" >&2
run_find >/dev/null
run_alto >/dev/null
F=(); A=()
for _ in 1 2 3; do
  F+=("$(run_find)")
  A+=("$(run_alto)")
done
FIND_WARM=$(min "${F[@]}")
ALTO_WARM=$(min "${A[@]}")
ROWS=$(grep -o '"rows": *[0-9]*' "$SCRATCH/summary.json" | grep -o '[0-9]*$')
ERRORS=$(tr -d '\n ' <"$SCRATCH/summary.json" | grep -o '"errors":{[^}]*}')

COLD="not measured"
FIND_COLD=""; ALTO_COLD=""
if drop_caches; then
  echo "== cold cache: caches dropped before each run, best of 3" >&2
  F=(); A=()
  for _ in 1 2 3; do
    drop_caches; F+=("$(run_find)")
    drop_caches; A+=("$(run_alto)")
  done
  FIND_COLD=$(min "${F[@]}")
  ALTO_COLD=$(min "${A[@]}")
  COLD="measured"
else
  echo "== cold cache could not be measured: cannot write /proc/sys/vm/drop_caches (needs root, not in a container)" >&2
fi

ratio() { awk "BEGIN{printf \"%.2f\", $1/$2}"; }
rate() { awk "BEGIN{printf \"%.0f\", $1/$2}"; }
{
  echo "machine:      $(nproc) cores, $(awk '/MemTotal/{printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(uname -r), $(df -T "$SCRATCH" | awk 'NR==2{print $2}') on $(df "$SCRATCH" | awk 'NR==2{print $1}')"
  echo "tree:         $FILES files (seed $SEED) at $ROOT"
  echo "rows:         $ROWS"
  echo "errors:       $ERRORS"
  echo "warm find:    ${FIND_WARM}s"
  echo "warm alto:    ${ALTO_WARM}s   ($(rate "$ROWS" "$ALTO_WARM") rows/s)"
  echo "warm ratio:   $(ratio "$ALTO_WARM" "$FIND_WARM") (alto/find)"
  if [ "$COLD" = measured ]; then
    echo "cold find:    ${FIND_COLD}s"
    echo "cold alto:    ${ALTO_COLD}s   ($(rate "$ROWS" "$ALTO_COLD") rows/s)"
    echo "cold ratio:   $(ratio "$ALTO_COLD" "$FIND_COLD") (alto/find)"
  else
    echo "cold:         not measured (cannot drop caches)"
  fi
  if [ "$HAVE_TIME" = 1 ]; then
    PEAK_KB=$(sort -n "$SCRATCH/rss.all" | tail -1)
    echo "peak RSS:     $(awk "BEGIN{printf \"%.1f\", $PEAK_KB/1024}") MiB (max over all alto-agent runs)"
  else
    echo "peak RSS:     not measured (/usr/bin/time missing)"
  fi
  echo "batch size:   $(du -h "$OUT" | cut -f1)"
} | tee "$SCRATCH/results-$FILES.txt"

if [ "$CLEAN" = 1 ]; then
  echo "== deleting $ROOT" >&2
  # The marker first, so an interrupted delete is never taken for a complete tree.
  rm -f "$ROOT.done" "$OUT"
  rm -rf "$ROOT"
fi
