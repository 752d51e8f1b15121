#!/usr/bin/env bash
# Broadcast at scale, the daemon pinned to CPU 0 and the load generators to CPU 1:
#   1. 1 -> 100 against 1 -> SUBS (10,000) subscribers, 128 B frames, the publisher at
#      most 16 frames ahead, alternating RUNS times: CPU per delivery (target: 1 -> 10,000
#      at most 1.2x of 1 -> 100) and the delivery latency p50/p99/p99.9 over every
#      subscriber (the p99 of the slowest subscribers is in it);
#   2. ROOMS (20) rooms x 50 members with 5 publishers each against `--rooms`: one
#      framecast-bench per room (`--room rN`), all at once; the daemon's CPU over the
#      run divided by the deliveries all benches counted, and each room's error count.
#
#   benches/rooms.sh                   # RUNS=3 DURATION=5
#
# Environment: RUNS, DURATION, SUBS, ROOMS, SERVER_CPU (0), BENCH_CPU (1). Every process
# the script starts is killed by its PID when it ends or the script exits.
set -euo pipefail
cd "$(dirname "$0")/.."

RUNS=${RUNS:-3}
DURATION=${DURATION:-5}
SUBS=${SUBS:-10000}
ROOMS=${ROOMS:-20}
SERVER_CPU=${SERVER_CPU:-0}
BENCH_CPU=${BENCH_CPU:-1}
LIMIT=$((DURATION + 60))
WORK=$(mktemp -d)
SERVER_PID=""
BENCH_PIDS=()

cleanup() {
  for pid in "${BENCH_PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  if [[ -n "$SERVER_PID" ]]; then kill "$SERVER_PID" 2>/dev/null || true; wait "$SERVER_PID" 2>/dev/null || true; fi
  rm -rf "$WORK"
}
trap cleanup EXIT INT TERM

cargo build --release --quiet --bin framecast --bin framecast-bench
FRAMECAST=target/release/framecast
BENCH=target/release/framecast-bench

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
field() { grep -o "\"$2\":[-0-9.e]*" <<<"$1" | head -1 | cut -d: -f2; }
median() { sort -g | awk '{v[NR]=$1} END {if (NR==0) print "nan"; else if (NR%2) print v[(NR+1)/2]; else print (v[NR/2]+v[NR/2+1])/2}'; }
# cpu_ticks PID: user + system time of a process, in clock ticks.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

# start_server ARGS...: the daemon on a free port, pinned; sets SERVER_PID and PORT.
start_server() {
  PORT=$(free_port)
  taskset -c "$SERVER_CPU" "$FRAMECAST" --listen "127.0.0.1:$PORT" --mode broadcast \
    --max-connections 20000 "$@" >"$WORK/server.out" 2>&1 &
  SERVER_PID=$!
  for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && return 0; sleep 0.1; done
  echo "error: the daemon did not start:" >&2
  cat "$WORK/server.out" >&2
  return 1
}

stop_server() {
  kill "$SERVER_PID" 2>/dev/null || true
  wait "$SERVER_PID" 2>/dev/null || true
  SERVER_PID=""
}

# fan SUBSCRIBERS: one 1 -> SUBSCRIBERS run; appends "µs/delivery p50 p99 p99.9 errors".
fan() {
  local subs=$1 json
  start_server
  json=$(timeout "$LIMIT" taskset -c "$BENCH_CPU" "$BENCH" "127.0.0.1:$PORT" --scenario broadcast \
    --publishers 1 --subscribers "$subs" --depth 16 --size 128 --duration "$DURATION" --warmup 1 \
    --server-pid "$SERVER_PID" --json 2>"$WORK/bench.err") || true
  stop_server
  if [[ -z "$json" ]]; then
    echo "run failed (1 -> $subs): $(tail -1 "$WORK/bench.err")" >&2
    return 0
  fi
  echo "$(field "$json" server_us_per_frame) $(field "$json" p50) $(field "$json" p99) $(field "$json" p99_9) $(field "$json" total)" >>"$WORK/fan.$subs"
}

echo "broadcast fan-out, 128 B, depth 16, medians of $RUNS alternating runs of ${DURATION}s:"
for _ in $(seq "$RUNS"); do
  fan 100
  fan "$SUBS"
done
printf '  %-12s %14s %9s %9s %10s %7s\n' fan-out "µs/delivery" "p50 µs" "p99 µs" "p99.9 µs" errors
for subs in 100 "$SUBS"; do
  col() { awk -v c="$1" '{print $c}' "$WORK/fan.$subs" | median; }
  errors=$(awk '{s+=$5} END {print s+0}' "$WORK/fan.$subs")
  printf '  %-12s %14.3f %9.1f %9.1f %10.1f %7s\n' "1 -> $subs" "$(col 1)" "$(col 2)" "$(col 3)" "$(col 4)" "$errors"
done
awk -v a="$(awk '{print $1}' "$WORK/fan.100" | median)" -v b="$(awk '{print $1}' "$WORK/fan.$SUBS" | median)" \
  -v s="$SUBS" 'BEGIN { if (a > 0) printf "  1 -> %s costs %.2fx of 1 -> 100 per delivery (target: at most 1.2)\n", s, b / a }'

echo
echo "$ROOMS rooms x 50 members, 5 publishers each, --rooms, 128 B, depth 16, ${DURATION}s:"
start_server --rooms
before=$(cpu_ticks "$SERVER_PID")
for r in $(seq "$ROOMS"); do
  timeout "$LIMIT" taskset -c "$BENCH_CPU" "$BENCH" "127.0.0.1:$PORT" --scenario broadcast \
    --publishers 5 --subscribers 45 --room "r$r" --depth 16 --size 128 --duration "$DURATION" \
    --warmup 0 --json >"$WORK/room.$r" 2>"$WORK/room.$r.err" &
  BENCH_PIDS+=($!)
done
for pid in "${BENCH_PIDS[@]}"; do wait "$pid" || true; done
BENCH_PIDS=()
after=$(cpu_ticks "$SERVER_PID")
stop_server
deliveries=0 errors=0
for r in $(seq "$ROOMS"); do
  json=$(cat "$WORK/room.$r")
  if [[ -z "$json" ]]; then
    echo "  room r$r failed: $(tail -1 "$WORK/room.$r.err")"
    continue
  fi
  deliveries=$(awk -v a="$deliveries" -v b="$(field "$json" frames_received)" 'BEGIN { printf "%d", a + b }')
  errors=$((errors + $(field "$json" total)))
done
hz=$(getconf CLK_TCK)
awk -v t=$((after - before)) -v hz="$hz" -v d="$deliveries" -v e="$errors" -v s="$DURATION" 'BEGIN {
  printf "  %d deliveries (%.2fM/s), daemon CPU %.2f s: %.3f µs per delivery (over the whole run, connecting included); errors %d\n",
    d, d / s / 1e6, t / hz, (d > 0 ? t / hz * 1e6 / d : 0), e }'
