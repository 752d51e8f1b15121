#!/usr/bin/env bash
# The cost of each transport (issue 13), side by side in one run: one framecast daemon
# listening on TCP, a Unix socket and TLS (a throwaway self-signed certificate from
# openssl; the bench runs --insecure), pinned to CPU 0, and framecast-bench pinned to
# CPU 1 against each listener in turn, alternating, RUNS rounds, medians printed:
#   - echo, 50 connections at depth 16, 512-byte frames: CPU per frame (server, bench);
#   - streaming, 4 connections at depth 8, 64 KiB frames: MB/s and CPU per frame.
# Then UDP echo: framecast's udp:// listener against the floor (benches/relay-floor
# --udp: one blocking socket, recv_from and send_to), the same way: datagrams/s and CPU
# per datagram, 16 sockets at depth 16, 512-byte datagrams.
#
#   benches/transports.sh                 # RUNS=3 DURATION=3 WARMUP=1
#
# Environment: RUNS, DURATION, WARMUP (seconds), SERVER_CPU (0), BENCH_CPU (1),
# PERF (1: also record where the TLS server's time goes, with perf, if installed).
# Every process the script starts is killed by its PID when it exits.
set -euo pipefail
cd "$(dirname "$0")/.."

RUNS=${RUNS:-3}
DURATION=${DURATION:-3}
WARMUP=${WARMUP:-1}
SERVER_CPU=${SERVER_CPU:-0}
BENCH_CPU=${BENCH_CPU:-1}
PERF=${PERF:-0}
LIMIT=$(awk -v d="$DURATION" -v w="$WARMUP" 'BEGIN { printf "%d", d + w + 30 }')
source benches/lib.sh

cargo build --release --quiet --bin framecast --bin framecast-bench
cargo build --release --quiet --manifest-path benches/relay-floor/Cargo.toml --target-dir target/relay-floor
FRAMECAST=target/release/framecast
BENCH=target/release/framecast-bench
FLOOR=target/relay-floor/release/relay-floor

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
  -subj /CN=localhost -keyout "$WORK/key.pem" -out "$WORK/cert.pem" 2>/dev/null

# bench NAME TARGET ARGS...: one run, its JSON appended to $WORK/NAME.
bench() {
  local name=$1 target=$2
  shift 2
  timeout "$LIMIT" taskset -c "$BENCH_CPU" "$BENCH" "$target" --json --duration "$DURATION" \
    --warmup "$WARMUP" --server-pid "$SERVER_PID" "$@" >>"$WORK/$name" 2>"$WORK/bench.err" ||
    { echo "run $name failed:" >&2; cat "$WORK/bench.err" >&2; exit 1; }
}

# median_json NAME JQ: the median of a figure over the runs of NAME.
median_json() {
  jq -s "[.[] | $2] | sort | .[length / 2 | floor]" "$WORK/$1"
}

TCP=$(free_port SOCK_STREAM)
TLS=$(free_port SOCK_STREAM)
SOCK="$WORK/framecast.sock"
taskset -c "$SERVER_CPU" "$FRAMECAST" --listen "127.0.0.1:$TCP" --listen "unix:$SOCK" \
  --listen "tls://127.0.0.1:$TLS" --tls-cert "$WORK/cert.pem" --tls-key "$WORK/key.pem" \
  >"$WORK/server.out" 2>"$WORK/server.err" &
SERVER_PID=$!
for _ in $(seq 100); do [[ $(wc -l <"$WORK/server.out") -ge 3 ]] && break; sleep 0.05; done

for round in $(seq "$RUNS"); do
  echo "round $round/$RUNS" >&2
  for t in tcp unix tls; do
    case $t in
      tcp) target="127.0.0.1:$TCP" extra=() ;;
      unix) target="unix:$SOCK" extra=() ;;
      tls) target="tls://127.0.0.1:$TLS" extra=(--insecure) ;;
    esac
    bench "echo-$t" "$target" -c 50 --depth 16 --size 512 "${extra[@]}"
    bench "stream-$t" "$target" -c 4 --depth 8 --size 65536 "${extra[@]}"
  done
done

if [[ "$PERF" == 1 ]] && command -v perf >/dev/null; then
  perf record -q -g -p "$SERVER_PID" -o "$WORK/perf.data" -- sleep "$DURATION" 2>/dev/null &
  PERF_PID=$!
  bench "perf-tls" "tls://127.0.0.1:$TLS" -c 50 --depth 16 --size 512 --insecure
  wait "$PERF_PID" || true
  echo "TLS echo, where the server's time goes (perf, self time, top 15):"
  perf report -q -g none -i "$WORK/perf.data" --no-children --sort dso,symbol 2>/dev/null | grep -v '^$' | sed -n 1,15p | sed 's/ *$//'
  echo
fi
stop_server

UDP=$(free_port SOCK_DGRAM)
for round in $(seq "$RUNS"); do
  echo "udp round $round/$RUNS" >&2
  for s in framecast floor; do
    case $s in
      framecast) taskset -c "$SERVER_CPU" "$FRAMECAST" --listen "udp://127.0.0.1:$UDP" >"$WORK/server.out" 2>"$WORK/server.err" & ;;
      floor) taskset -c "$SERVER_CPU" "$FLOOR" --udp "127.0.0.1:$UDP" >"$WORK/server.out" 2>"$WORK/server.err" & ;;
    esac
    SERVER_PID=$!
    sleep 0.3 # a UDP server prints nothing to wait for; the bench counts what it misses
    bench "udp-$s" "udp://127.0.0.1:$UDP" -c 16 --depth 16 --size 512
    stop_server
  done
done

echo "medians of $RUNS runs, ${DURATION}s each after ${WARMUP}s warmup; server on CPU $SERVER_CPU, bench on CPU $BENCH_CPU"
printf '%-34s %14s %12s %16s %16s\n' scenario frames/s MB/s server_us/frame bench_us/frame
for t in tcp unix tls; do
  for kind in echo stream; do
    n="$kind-$t"
    printf '%-34s %14s %12s %16s %16s\n' "$kind over $t" \
      "$(median_json "$n" .frames_per_s)" "$(median_json "$n" .mb_in_per_s)" \
      "$(median_json "$n" .cpu.server_us_per_frame)" "$(median_json "$n" .cpu.bench_us_per_frame)"
  done
done
for s in framecast floor; do
  n="udp-$s"
  printf '%-34s %14s %12s %16s %16s   lost %s of %s\n' "udp echo, $s" \
    "$(median_json "$n" .frames_per_s)" "$(median_json "$n" .mb_in_per_s)" \
    "$(median_json "$n" .cpu.server_us_per_frame)" "$(median_json "$n" .cpu.bench_us_per_frame)" \
    "$(median_json "$n" .lost)" "$(median_json "$n" .sent)"
done
