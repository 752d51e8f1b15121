#!/usr/bin/env bash
# Broadcast at scale, the daemon pinned to CPU 0 and the load generators to CPU 1:
#   1. 1 -> 100 against 1 -> SUBS (10,000) subscribers, 128 B frames, the publisher at
#      most 16 frames ahead, alternating RUNS times: CPU per delivery (target: 1 -> 10,000
#      at most 1.2x of 1 -> 100) and the delivery latency p50/p99/p99.9 over every
#      subscriber (the p99 of the slowest subscribers is in it); the same runs against
#      benches/relay-floor (one plain write per recipient per read, nothing else), in the
#      same rounds, show how much of the growth is the kernel's own;
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
source benches/lib.sh

cargo build --release --quiet --bin framecast --bin framecast-bench
FRAMECAST=target/release/framecast
BENCH=target/release/framecast-bench
RELAY_FLOOR=target/relay-floor/release/relay-floor
ulimit -n 20000 2>/dev/null || true  # relay-floor does not raise its own limit
cargo build --release --quiet --manifest-path benches/relay-floor/Cargo.toml --target-dir target/relay-floor ||
  RELAY_FLOOR=""

# cpu_ticks PID: user + system time of a process, in clock ticks.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

# start_server ARGS...: the daemon on a free port, pinned; sets SERVER_PID and PORT.
# With FLOOR=1, relay-floor instead (no arguments).
start_server() {
  PORT=$(free_port)
  if [[ "${FLOOR:-0}" == 1 ]]; then
    taskset -c "$SERVER_CPU" "$RELAY_FLOOR" "127.0.0.1:$PORT" >"$WORK/server.out" 2>&1 &
  else
    taskset -c "$SERVER_CPU" "$FRAMECAST" --listen "127.0.0.1:$PORT" --mode broadcast \
      --max-connections 20000 "$@" >"$WORK/server.out" 2>&1 &
  fi
  SERVER_PID=$!
  for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && return 0; sleep 0.1; done
  echo "error: the daemon did not start:" >&2
  cat "$WORK/server.out" >&2
  return 1
}

# fan SUBSCRIBERS [SERVER]: one 1 -> SUBSCRIBERS run against framecast (or
# relay-floor); appends "µs/delivery p50 p99 p99.9 errors" to fan.SERVER.SUBSCRIBERS.
fan() {
  local subs=$1 server=${2:-framecast} json
  if [[ "$server" == floor ]]; then FLOOR=1 start_server; else start_server; fi
  json=$(timeout "$LIMIT" taskset -c "$BENCH_CPU" "$BENCH" "127.0.0.1:$PORT" --scenario broadcast \
    --publishers 1 --subscribers "$subs" --depth 16 --size 128 --duration "$DURATION" --warmup 1 \
    --server-pid "$SERVER_PID" --json 2>"$WORK/bench.err") || true
  stop_server
  if [[ -z "$json" ]]; then
    echo "run failed (1 -> $subs): $(tail -1 "$WORK/bench.err")" >&2
    return 0
  fi
  echo "$(field "$json" server_us_per_frame) $(field "$json" p50) $(field "$json" p99) $(field "$json" p99_9) $(field "$json" total)" >>"$WORK/fan.$server.$subs"
}

echo "broadcast fan-out, 128 B, depth 16, medians of $RUNS alternating runs of ${DURATION}s:"
SERVERS=(framecast)
[[ -n "$RELAY_FLOOR" ]] && SERVERS+=(floor)
for _ in $(seq "$RUNS"); do
  for server in "${SERVERS[@]}"; do
    fan 100 "$server"
    fan "$SUBS" "$server"
  done
done
printf '  %-12s %-10s %14s %9s %9s %10s %7s\n' fan-out server "µs/delivery" "p50 µs" "p99 µs" "p99.9 µs" errors
for server in "${SERVERS[@]}"; do
  for subs in 100 "$SUBS"; do
    file="$WORK/fan.$server.$subs"
    [[ -f "$file" ]] || continue
    col() { awk -v c="$1" '{print $c}' "$file" | median; }
    errors=$(awk '{s+=$5} END {print s+0}' "$file")
    printf '  %-12s %-10s %14.3f %9.1f %9.1f %10.1f %7s\n' "1 -> $subs" "$server" "$(col 1)" "$(col 2)" "$(col 3)" "$(col 4)" "$errors"
  done
done
for server in "${SERVERS[@]}"; do
  [[ -f "$WORK/fan.$server.100" && -f "$WORK/fan.$server.$SUBS" ]] || continue
  awk -v a="$(awk '{print $1}' "$WORK/fan.$server.100" | median)" -v b="$(awk '{print $1}' "$WORK/fan.$server.$SUBS" | median)" \
    -v s="$SUBS" -v who="$server" 'BEGIN { if (a > 0) printf "  %s: 1 -> %s costs %.2fx of 1 -> 100 per delivery (target for framecast: at most 1.2)\n", who, s, b / a }'
done
[[ -n "$RELAY_FLOOR" ]] || echo "  benches/relay-floor did not build: no floor rows"

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
