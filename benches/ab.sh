#!/usr/bin/env bash
# A change to the data path, measured against the commit before it: builds framecast at
# two revisions (each in a `git worktree` of its own, under target/ab/), then runs the
# same scenarios against both in alternating rounds (A, B, A, B, ...), the daemon pinned
# to CPU 0 and the load generator (this checkout's framecast-bench) to CPU 1, and prints
# the medians of the daemon's CPU per frame (per delivery for broadcast) and B/A.
#
#   benches/ab.sh BASE [HEAD]          # HEAD defaults to the working tree
#   RUNS=7 DURATION=5 benches/ab.sh 4d11efa main
#
# Scenarios: echo u32be 512 B over 50 connections at depth 1, 16 and 256, and broadcast
# 1 -> 100 subscribers with 128 B frames at depth 16. Environment: RUNS (5), DURATION
# (4), WARMUP (1), ONLY (run only the scenarios whose label contains it), SERVER_CPU (0),
# BENCH_CPU (1). Every process the script starts is
# killed by its PID when a run ends or the script exits.
set -euo pipefail
cd "$(dirname "$0")/.."

BASE=${1:?usage: benches/ab.sh BASE [HEAD]}
HEAD=${2:-}
RUNS=${RUNS:-5}
DURATION=${DURATION:-4}
WARMUP=${WARMUP:-1}
SERVER_CPU=${SERVER_CPU:-0}
BENCH_CPU=${BENCH_CPU:-1}
LIMIT=$((DURATION + WARMUP + 30))
source benches/lib.sh

# build REV: builds the daemon at REV in target/ab/REV and prints the binary's path.
build() {
  local rev=$1 dir
  dir=target/ab/$(git rev-parse --short "$rev")
  [[ -d "$dir" ]] || git worktree add --detach --quiet "$dir" "$rev"
  cargo build --release --quiet --manifest-path "$dir/Cargo.toml" --target-dir target/ab/build-"$(basename "$dir")" --bin framecast >&2
  echo "target/ab/build-$(basename "$dir")/release/framecast"
}

cargo build --release --quiet --bin framecast --bin framecast-bench
BENCH=target/release/framecast-bench
A=$(build "$BASE")
if [[ -n "$HEAD" ]]; then B=$(build "$HEAD"); else B=target/release/framecast; fi

# run SIDE BINARY MODE BENCH-FLAGS...: one run against a fresh daemon; appends the
# daemon's µs per frame to $WORK/SIDE.
run() {
  local side=$1 bin=$2 mode=$3 port json
  shift 3
  port=$(free_port)
  taskset -c "$SERVER_CPU" "$bin" --listen "127.0.0.1:$port" --framing u32be --mode "$mode" >"$WORK/server.out" 2>&1 &
  SERVER_PID=$!
  for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done
  json=$(timeout "$LIMIT" taskset -c "$BENCH_CPU" "$BENCH" "127.0.0.1:$port" "$@" --framing u32be \
    --duration "$DURATION" --warmup "$WARMUP" --server-pid "$SERVER_PID" --json 2>"$WORK/bench.err") || true
  kill "$SERVER_PID" 2>/dev/null || true
  wait "$SERVER_PID" 2>/dev/null || true
  SERVER_PID=""
  if [[ -z "$json" || "$(field "$json" total)" != 0 ]]; then
    echo "run failed or saw errors ($side): $(tail -1 "$WORK/bench.err")" >&2
    return 0
  fi
  field "$json" server_us_per_frame >>"$WORK/$side"
}

printf '%-14s %12s %12s %8s   (daemon µs per frame, medians of %d alternating runs)\n' scenario "A $BASE" "B ${HEAD:-worktree}" "B/A" "$RUNS"
SCENARIOS=("echo depth 1|echo|-c 50 -P 1 --size 512"
  "echo depth 16|echo|-c 50 -P 16 --size 512"
  "echo depth 256|echo|-c 50 -P 256 --size 512"
  "bcast 1->100|broadcast|--scenario broadcast --publishers 1 --subscribers 100 --depth 16 --size 128")
for scenario in "${SCENARIOS[@]}"; do
  IFS='|' read -r label mode flags <<<"$scenario"
  [[ -z "${ONLY:-}" || "$label" == *"$ONLY"* ]] || continue
  rm -f "$WORK/A" "$WORK/B"
  for _ in $(seq "$RUNS"); do
    # shellcheck disable=SC2086 # flags are words on purpose
    run A "$A" "$mode" $flags
    # shellcheck disable=SC2086
    run B "$B" "$mode" $flags
  done
  a=$(median <"$WORK/A") b=$(median <"$WORK/B")
  awk -v l="$label" -v a="$a" -v b="$b" 'BEGIN { printf "%-14s %12.3f %12.3f %8.3f\n", l, a, b, (a > 0 ? b / a : 0) }'
done
