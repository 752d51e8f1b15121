#!/usr/bin/env bash
# --workers 1 against --workers 2 (or WORKERS_B), in alternating rounds: echo over 50
# connections at depth 16 and broadcast 1 -> 100. The medians of the frames per
# second the bench received and of the daemon's CPU per frame (per delivery for
# broadcast), and B/A.
#
#   benches/workers.sh                 # RUNS (5), DURATION (4), WARMUP (1), THREADS (2)
#
# On a machine with fewer cores than workers plus bench threads, the load generator
# shares the cores with the workers: --workers 1 is run with the daemon pinned to CPU 0
# and the bench to CPU 1 (as benches/ab.sh does), --workers 2 with nothing pinned, as
# a deployment would run it. Say which in any figure quoted. Every process the script
# starts is killed by its PID when a run ends or the script exits.
set -euo pipefail
cd "$(dirname "$0")/.."

RUNS=${RUNS:-5}
DURATION=${DURATION:-4}
WARMUP=${WARMUP:-1}
THREADS=${THREADS:-2}
WORKERS_B=${WORKERS_B:-2}
LIMIT=$((DURATION + WARMUP + 30))
source benches/lib.sh

cargo build --release --quiet --bin framecast --bin framecast-bench
BIN=target/release/framecast
BENCH=target/release/framecast-bench

# run SIDE WORKERS MODE BENCH-FLAGS...: one run; appends "frames/s µs/frame" to $WORK/SIDE.
run() {
  local side=$1 workers=$2 mode=$3 port json server_pin bench_pin
  shift 3
  port=$(free_port)
  if [[ "$workers" == 1 ]]; then server_pin="taskset -c 0"; bench_pin="taskset -c 1"; else server_pin=""; bench_pin=""; fi
  $server_pin "$BIN" --listen "127.0.0.1:$port" --mode "$mode" --workers "$workers" >"$WORK/server.out" 2>&1 &
  SERVER_PID=$!
  for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done
  # shellcheck disable=SC2086 # the pins are words on purpose
  json=$(timeout "$LIMIT" $bench_pin "$BENCH" "127.0.0.1:$port" "$@" -t "$THREADS" \
    --duration "$DURATION" --warmup "$WARMUP" --server-pid "$SERVER_PID" --json 2>"$WORK/bench.err") || true
  kill "$SERVER_PID" 2>/dev/null || true
  wait "$SERVER_PID" 2>/dev/null || true
  SERVER_PID=""
  if [[ -z "$json" || "$(field "$json" total)" != 0 ]]; then
    echo "run failed or saw errors ($side): $(tail -1 "$WORK/bench.err")" >&2
    return 0
  fi
  echo "$(field "$json" frames_per_s) $(field "$json" server_us_per_frame)" >>"$WORK/$side"
}

printf '%-14s %14s %14s %7s %10s %10s %7s  (medians of %d alternating runs, bench -t %d)\n' \
  scenario "frames/s w=1" "w=$WORKERS_B" "B/A" "µs/f w=1" "w=$WORKERS_B" "B/A" "$RUNS" "$THREADS"
SCENARIOS=("echo depth 16|echo|-c 50 -P 16 --size 512"
  "bcast 1->100|broadcast|--scenario broadcast --publishers 1 --subscribers 100 --depth 16 --size 128")
for scenario in "${SCENARIOS[@]}"; do
  IFS='|' read -r label mode flags <<<"$scenario"
  [[ -z "${ONLY:-}" || "$label" == *"$ONLY"* ]] || continue
  rm -f "$WORK/A" "$WORK/B"
  for _ in $(seq "$RUNS"); do
    # shellcheck disable=SC2086 # flags are words on purpose
    run A 1 "$mode" $flags
    # shellcheck disable=SC2086
    run B "$WORKERS_B" "$mode" $flags
  done
  ra=$(cut -d' ' -f1 <"$WORK/A" | median) rb=$(cut -d' ' -f1 <"$WORK/B" | median)
  ca=$(cut -d' ' -f2 <"$WORK/A" | median) cb=$(cut -d' ' -f2 <"$WORK/B" | median)
  awk -v l="$label" -v ra="$ra" -v rb="$rb" -v ca="$ca" -v cb="$cb" 'BEGIN {
    printf "%-14s %14.0f %14.0f %7.3f %10.3f %10.3f %7.3f\n", l, ra, rb, (ra > 0 ? rb / ra : 0), ca, cb, (ca > 0 ? cb / ca : 0) }'
done
