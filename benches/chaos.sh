#!/usr/bin/env bash
# The chaos run, kept: for every framing and both modes, verified traffic beside hostile
# clients (garbage of the framing, oversize declarations, resets mid-frame and mid-write,
# slowloris, clients that never read, connect/close churn) for DURATION seconds, the
# daemon pinned to CPU 0 and the bench to CPU 1. One row per run: the verified traffic's
# rate and errors (any error fails the script), the daemon's peak RSS against the bound
# its flags promise (framecast-bench derives it from /proc/PID/cmdline), its CPU.
#
#   benches/chaos.sh                        # every framing, echo and broadcast, 10 s each
#   FRAMINGS="u32be line" MODES=echo DURATION=3 benches/chaos.sh
#
# Environment: DURATION (10), FRAMINGS, MODES (echo broadcast), HOSTILE (8),
# SERVER_CPU (0), BENCH_CPU (1). Every process the script starts is killed by its PID
# when it ends or the script exits; nothing is written outside a temporary directory.
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-10}
FRAMINGS=${FRAMINGS:-"u8 u16be u16le u32be u32le u64be u64le line fixed:64 raw"}
MODES=${MODES:-"echo broadcast"}
HOSTILE=${HOSTILE:-8}
SERVER_CPU=${SERVER_CPU:-0}
BENCH_CPU=${BENCH_CPU:-1}
LIMIT=$((DURATION + 60))
source benches/lib.sh

cargo build --release --quiet --bin framecast --bin framecast-bench
FRAMECAST=target/release/framecast
BENCH=target/release/framecast-bench

# start_server ARGS...: the daemon on a free port, pinned; sets SERVER_PID and PORT.
start_server() {
  PORT=$(free_port)
  taskset -c "$SERVER_CPU" "$FRAMECAST" --listen "127.0.0.1:$PORT" "$@" >"$WORK/server.out" 2>&1 &
  SERVER_PID=$!
  for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && return 0; sleep 0.1; done
  echo "error: the daemon did not start:" >&2
  cat "$WORK/server.out" >&2
  return 1
}

failed=0
printf '%-9s %-9s %7s %12s %6s %9s %9s %9s %8s %5s %4s\n' \
  framing mode hostile "verified/s" errors "rss MiB" "hwm MiB" "bound" "cpu s" "cpu%" exit
for framing in $FRAMINGS; do
  # A u8 header declares at most 255 bytes: --max-frame below it makes oversize real.
  case $framing in
    u8) max_frame=240; size=200 ;;
    fixed:*) max_frame=1KiB; size=${framing#fixed:} ;;
    *) max_frame=1KiB; size=512 ;;
  esac
  for mode in $MODES; do
    limits=(--framing "$framing" --max-frame "$max_frame" --max-output 256KiB --max-connections 1000)
    if [[ $mode == broadcast ]]; then
      start_server --mode broadcast --rooms "${limits[@]}"
      traffic=(--traffic broadcast --publishers 2 --subscribers 20)
    else
      start_server "${limits[@]}"
      traffic=(-c 20)
    fi
    code=0
    json=$(timeout "$LIMIT" taskset -c "$BENCH_CPU" "$BENCH" "127.0.0.1:$PORT" --scenario chaos \
      "${traffic[@]}" --framing "$framing" --size "$size" --depth 8 --hostile "$HOSTILE" \
      --duration "$DURATION" --warmup 1 --server-pid "$SERVER_PID" --json 2>"$WORK/bench.err") || code=$?
    stop_server
    if [[ $code -ne 0 ]]; then
      failed=1
      echo "error: $framing $mode exited $code:" >&2
      tail -5 "$WORK/bench.err" >&2
    fi
    mib() { awk -v b="${1:-0}" 'BEGIN {printf "%.1f", b / 1048576}'; }
    printf '%-9s %-9s %7s %12.0f %6s %9s %9s %9s %8s %5.0f %4s\n' "$framing" "$mode" "$HOSTILE" \
      "$(field "$json" frames_per_s)" "$(field "$json" verified_errors)" \
      "$(mib "$(field "$json" rss_peak_bytes)")" "$(mib "$(field "$json" rss_hwm_bytes)")" \
      "$(mib "$(field "$json" rss_bound_bytes)")" "$(field "$json" server_cpu_run_s)" \
      "$(awk -v s="$(field "$json" server_cpu_share)" 'BEGIN {print s * 100}')" "$code"
  done
done
exit "$failed"
