#!/usr/bin/env bash
# Side-by-side figures for issues 5 and 17: framecast (u32be, --framing raw, and raw with
# --splice) against the tokio reference echo server and the echo floor (relay-floor
# --echo: one read and one write per batch), server pinned to CPU 0 and framecast-bench to CPU 1, for
# the standard scenarios (512-byte messages; 50 connections at depth 1, 16 and 256; one
# connection at depth 1), each run RUNS times, medians printed in one table; and the
# loopback round-trip floor from sockperf, if installed. Then broadcast 1 -> 100 against
# benches/relay-floor (the least a relay can do: one plain write per recipient per read)
# and ncat --broker, if installed. Then C10K: the servers' RSS per connection over
# C10K_CONNS connections, idle and quiet after one frame each, and open-loop
# p50/p99/p99.9 at the rates in C10K_RATES over as many connections, framecast (u32be,
# and raw: the same bytes and bench work as against tokio-echo) against tokio-echo,
# with the hypervisor's steal during each run.
#
#   benches/compare.sh                      # RUNS=3 DURATION=5 WARMUP=1
#   RUNS=5 DURATION=10 benches/compare.sh
#
# Environment: RUNS, DURATION, WARMUP (seconds), C10K_CONNS (10000), C10K_RATES
# ("20k 50k"), STEAL_MAX (a C10K round with more steal than this %, on either CPU, is
# run again, up to C10K_RETRIES (3) times; unset: every round kept), SKIP_STANDARD (1:
# only the C10K part), TOKIO_ECHO_DIR (default ../shared/peers/tokio-echo, relative to
# the repository), SERVER_CPU (0), BENCH_CPU (1).
# Every run is bounded by `timeout`, and every process the script starts is killed by
# its PID when the run ends or the script exits.
set -euo pipefail
cd "$(dirname "$0")/.."

RUNS=${RUNS:-3}
DURATION=${DURATION:-5}
WARMUP=${WARMUP:-1}
SERVER_CPU=${SERVER_CPU:-0}
BENCH_CPU=${BENCH_CPU:-1}
TOKIO_ECHO_DIR=${TOKIO_ECHO_DIR:-../shared/peers/tokio-echo}
C10K_CONNS=${C10K_CONNS:-10000}
C10K_RATES=${C10K_RATES:-20k 50k}
SKIP_STANDARD=${SKIP_STANDARD:-0}
STEAL_MAX=${STEAL_MAX:-}
C10K_RETRIES=${C10K_RETRIES:-3}
LIMIT=$(awk -v d="$DURATION" -v w="$WARMUP" 'BEGIN { printf "%d", d + w + 30 }')
source benches/lib.sh

cargo build --release --quiet --bin framecast --bin framecast-bench
FRAMECAST=target/release/framecast
BENCH=target/release/framecast-bench
RELAY_FLOOR=target/relay-floor/release/relay-floor
cargo build --release --quiet --manifest-path benches/relay-floor/Cargo.toml --target-dir target/relay-floor ||
  RELAY_FLOOR=""
TOKIO_ECHO=""
if [[ -f "$TOKIO_ECHO_DIR/Cargo.toml" ]]; then
  cargo build --release --quiet --manifest-path "$TOKIO_ECHO_DIR/Cargo.toml"
  TOKIO_ECHO="$TOKIO_ECHO_DIR/target/release/tokio-echo"
else
  echo "note: $TOKIO_ECHO_DIR not found; tokio-echo rows skipped" >&2
fi

# start_server NAME PORT: starts the server pinned to SERVER_CPU, sets SERVER_PID, and
# waits (at most 10 s) until the port accepts connections.
start_server() {
  local name=$1 port=$2
  case $name in
    framecast-c10k) taskset -c "$SERVER_CPU" "$FRAMECAST" --listen "127.0.0.1:$port" --framing u32be --max-connections $((C10K_CONNS + 100)) >"$WORK/server.out" 2>&1 & ;;
    framecast-c10k-raw) taskset -c "$SERVER_CPU" "$FRAMECAST" --listen "127.0.0.1:$port" --framing raw --max-connections $((C10K_CONNS + 100)) >"$WORK/server.out" 2>&1 & ;;
    framecast-u32be) taskset -c "$SERVER_CPU" "$FRAMECAST" --listen "127.0.0.1:$port" --framing u32be >"$WORK/server.out" 2>&1 & ;;
    framecast-raw) taskset -c "$SERVER_CPU" "$FRAMECAST" --listen "127.0.0.1:$port" --framing raw >"$WORK/server.out" 2>&1 & ;;
    framecast-splice) taskset -c "$SERVER_CPU" "$FRAMECAST" --listen "127.0.0.1:$port" --framing raw --splice >"$WORK/server.out" 2>&1 & ;;
    echo-floor) taskset -c "$SERVER_CPU" "$RELAY_FLOOR" --echo "127.0.0.1:$port" >"$WORK/server.out" 2>&1 & ;;
    tokio-echo) taskset -c "$SERVER_CPU" "$TOKIO_ECHO" "127.0.0.1:$port" >"$WORK/server.out" 2>&1 & ;;
    framecast-broadcast) taskset -c "$SERVER_CPU" "$FRAMECAST" --listen "127.0.0.1:$port" --mode broadcast >"$WORK/server.out" 2>&1 & ;;
    relay-floor) taskset -c "$SERVER_CPU" "$RELAY_FLOOR" "127.0.0.1:$port" >"$WORK/server.out" 2>&1 & ;;
    ncat-broker) taskset -c "$SERVER_CPU" ncat --broker --max-conns 1000 -l 127.0.0.1 "$port" >"$WORK/server.out" 2>&1 & ;;
    sockperf) taskset -c "$SERVER_CPU" sockperf server --tcp -i 127.0.0.1 -p "$port" >"$WORK/server.out" 2>&1 & ;;
  esac
  SERVER_PID=$!
  for _ in $(seq 100); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  echo "error: $name did not start on port $port:" >&2
  cat "$WORK/server.out" >&2
  return 1
}

# field JSON KEY: a number from the bench's one-line JSON summary.

SCENARIOS=("depth 1|-c 50 -P 1" "depth 16|-c 50 -P 16" "streaming 256|-c 50 -P 256" "single conn d1|-c 1 -P 1")
SERVERS=(framecast-u32be framecast-raw framecast-splice)
[[ -n "$TOKIO_ECHO" ]] && SERVERS+=(tokio-echo)
[[ -n "$RELAY_FLOOR" ]] && SERVERS+=(echo-floor)

[[ "$SKIP_STANDARD" == 1 ]] ||
  printf '%-15s %-16s %12s %9s %9s %9s %10s %10s %6s\n' scenario server frames/s "MB/s" "p50 µs" "p99 µs" "srv µs/f" "bench µs/f" errors
declare -A CPU
# run_bench SERVER LABEL FLAGS...: one run against a fresh server; appends a line of
# figures to $WORK/runs.SERVER.
run_bench() {
  local server=$1 label=$2
  shift 2
  local framing=u32be port json
  # Raw servers get fixed-size messages; ncat relays raw bytes but carries u32be frames.
  case $server in framecast-raw | framecast-splice | tokio-echo | echo-floor) framing=raw ;; esac
  port=$(free_port)
  start_server "$server" "$port"
  json=$(timeout "$LIMIT" taskset -c "$BENCH_CPU" "$BENCH" "127.0.0.1:$port" "$@" \
    --framing "$framing" --duration "$DURATION" --warmup "$WARMUP" --server-pid "$SERVER_PID" --json \
    2>"$WORK/bench.err") || true
  stop_server
  if [[ -z "$json" ]]; then
    echo "run failed: $label $server: $(tail -1 "$WORK/bench.err")" >&2
    return 0
  fi
  echo "$(field "$json" frames_per_s) $(field "$json" mb_in_per_s) $(field "$json" p50) $(field "$json" p99) $(field "$json" server_us_per_frame) $(field "$json" bench_us_per_frame) $(field "$json" total)" >>"$WORK/runs.$server"
}

# report LABEL SERVER: the medians of the runs of SERVER, one table row.
report() {
  local label=$1 server=$2 rate mb p50 p99 srv bench errors
  col() { awk -v c="$1" '{print $c}' "$WORK/runs.$server" | median; }
  rate=$(col 1) mb=$(col 2) p50=$(col 3) p99=$(col 4) srv=$(col 5) bench=$(col 6)
  errors=$(awk '{s+=$7} END {print s+0}' "$WORK/runs.$server")
  CPU["$label/$server"]=$srv
  printf '%-15s %-16s %12.0f %9.1f %9.1f %9.1f %10.3f %10.3f %6s\n' "$label" "$server" "$rate" "$mb" "$p50" "$p99" "$srv" "$bench" "$errors"
}

# Runs alternate between servers (run 1 of each, then run 2 of each...), so drift in
# the machine's load spreads over all of them rather than favouring one.
[[ "$SKIP_STANDARD" == 1 ]] && SCENARIOS=()
for scenario in "${SCENARIOS[@]}"; do
  label=${scenario%%|*}
  flags=${scenario#*|}
  rm -f "$WORK"/runs.*
  for _ in $(seq "$RUNS"); do
    for server in "${SERVERS[@]}"; do
      # shellcheck disable=SC2086 # flags are words on purpose
      run_bench "$server" "$label" $flags --size 512
    done
  done
  for server in "${SERVERS[@]}"; do
    report "$label" "$server"
  done
done

if [[ -n "$TOKIO_ECHO" && "$SKIP_STANDARD" != 1 ]]; then
  echo
  echo "server CPU per frame relative to tokio-echo (target: at most 0.85):"
  for scenario in "${SCENARIOS[@]}"; do
    label=${scenario%%|*}
    for server in framecast-u32be framecast-raw framecast-splice echo-floor; do
      [[ -n "${CPU[$label/$server]:-}" ]] || continue
      awk -v a="${CPU[$label/$server]}" -v b="${CPU[$label/tokio-echo]}" -v l="$label" -v s="$server" \
        'BEGIN { if (b > 0) printf "  %-15s %-16s %.2f\n", l, s, a / b; else printf "  %-15s %-16s n/a\n", l, s }'
    done
  done
fi

# Broadcast, one publisher to 100 subscribers, 128-byte frames, the publisher at most 16
# frames ahead of its slowest subscriber: framecast --mode broadcast against relay-floor
# and ncat --broker (raw relays), if built and installed. Frames/s here are deliveries;
# µs/f is per delivery.
C10K_SERVERS=(framecast-c10k framecast-c10k-raw)
[[ -n "$TOKIO_ECHO" ]] && C10K_SERVERS+=(tokio-echo)
[[ -n "$RELAY_FLOOR" ]] && C10K_SERVERS+=(echo-floor)

# framing_of SERVER: what the bench speaks to it (raw bytes to all but framecast u32be).
framing_of() { case $1 in framecast-c10k) echo u32be ;; *) echo raw ;; esac; }

# rss_kib PID: the resident set of a process, in KiB.
rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }

# held_rss SERVER KIND: starts SERVER and holds C10K_CONNS connections to it; KIND idle
# sends nothing, quiet sends one 512-byte frame on each and reads its echo. Then, 2.5 s
# later (past the daemon's 2 s release of quiet buffers), appends the server's RSS growth
# per connection (bytes) to $WORK/KIND.SERVER.
held_rss() {
  local server=$1 kind=$2 port before after holder
  port=$(free_port)
  start_server "$server" "$port"
  before=$(rss_kib "$SERVER_PID")
  taskset -c "$BENCH_CPU" python3 -c '
import socket, struct, sys, time
port, n, kind, framing = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
held = [socket.create_connection(("127.0.0.1", port)) for _ in range(n)]
if kind == "quiet":
    frame = (struct.pack(">I", 512) if framing == "u32be" else b"") + b"q" * 512
    for s in held:
        s.sendall(frame)
    for s in held:
        got = b""
        while len(got) < len(frame):
            chunk = s.recv(len(frame) - len(got))
            if not chunk:
                sys.exit("closed before the echo came back")
            got += chunk
        if got != frame:
            sys.exit("the echo differs")
print("up", flush=True)
time.sleep(30)
' "$port" "$C10K_CONNS" "$kind" "$(framing_of "$server")" >"$WORK/holder.out" 2>&1 &
  holder=$!
  for _ in $(seq 600); do grep -q up "$WORK/holder.out" 2>/dev/null && break; sleep 0.1; done
  sleep 2.5
  after=$(rss_kib "$SERVER_PID")
  kill "$holder" 2>/dev/null || true
  wait "$holder" 2>/dev/null || true
  stop_server
  if grep -q up "$WORK/holder.out"; then
    awk -v a="$after" -v b="$before" -v n="$C10K_CONNS" 'BEGIN { printf "%.0f\n", (a - b) * 1024 / n }' >>"$WORK/$kind.$server"
  else
    echo "$kind connections to $server failed: $(tail -1 "$WORK/holder.out")" >&2
  fi
}

# cpu_ticks CPU: "steal total" jiffies of one CPU since boot, from /proc/stat.
cpu_ticks() { awk -v c="cpu$1" '$1 == c { t = 0; for (i = 2; i <= 9; i++) t += $i; print $9, t }' /proc/stat; }

# steal_pct BEFORE AFTER: the share of a CPU's time its hypervisor took (steal), in %.
steal_pct() { awk -v b="$1" -v a="$2" 'BEGIN { split(b, x, " "); split(a, y, " "); t = y[2] - x[2]; printf "%.1f", (t > 0 ? 100 * (y[1] - x[1]) / t : 0) }'; }

# run_c10k SERVER RATE: one open-loop run over C10K_CONNS connections; appends p50,
# p99, p99.9 (µs), the bench's pacing p99 (µs), both CPU figures and errors.
run_c10k() {
  local server=$1 rate=$2 framing port json s0 b0 row steal try
  framing=$(framing_of "$server")
  for try in $(seq $((C10K_RETRIES + 1))); do
    port=$(free_port)
    start_server "$server" "$port"
    s0=$(cpu_ticks "$SERVER_CPU")
    b0=$(cpu_ticks "$BENCH_CPU")
    json=$(timeout "$((LIMIT + 60))" taskset -c "$BENCH_CPU" "$BENCH" "$port" -c "$C10K_CONNS" -R "$rate" \
      --framing "$framing" --size 512 --duration "$DURATION" --warmup "$WARMUP" --server-pid "$SERVER_PID" --json \
      2>"$WORK/bench.err") || true
    steal="$(steal_pct "$s0" "$(cpu_ticks "$SERVER_CPU")") $(steal_pct "$b0" "$(cpu_ticks "$BENCH_CPU")")"
    stop_server
    if [[ -z "$json" ]]; then
      echo "run failed: c10k $rate $server: $(tail -1 "$WORK/bench.err")" >&2
      return 0
    fi
    row="$(field "$json" p50) $(field "$json" p99) $(field "$json" p99_9) $(field "$json" error_p99) $(field "$json" server_us_per_frame) $(field "$json" bench_us_per_frame) $(field "$json" total) $steal"
    # A round the hypervisor took more than STEAL_MAX % of (either CPU) is run again.
    if [[ -z "$STEAL_MAX" ]] || awk -v s="$steal" -v m="$STEAL_MAX" 'BEGIN { split(s, x, " "); exit !(x[1] <= m && x[2] <= m) }'; then
      break
    fi
    if ((try <= C10K_RETRIES)); then
      echo "  (c10k $rate $server: steal $steal % over STEAL_MAX=$STEAL_MAX: run again)" >&2
    else
      echo "  (c10k $rate $server: steal $steal % over STEAL_MAX=$STEAL_MAX after $C10K_RETRIES reruns: kept)" >&2
    fi
  done
  echo "$row" >>"$WORK/c10k.$rate.$server"
}

echo
echo "C10K: $C10K_CONNS connections, 512-byte frames"
rm -f "$WORK"/idle.* "$WORK"/quiet.* "$WORK"/c10k.*
for _ in $(seq "$RUNS"); do
  for server in "${C10K_SERVERS[@]}"; do
    held_rss "$server" idle
    held_rss "$server" quiet
  done
done
for kind in idle quiet; do
  for server in "${C10K_SERVERS[@]}"; do
    [[ -s "$WORK/$kind.$server" ]] || continue
    printf '  %-5s RSS per connection %-18s %8.0f B\n' "$kind" "$server" "$(median <"$WORK/$kind.$server")"
  done
done
echo "  (idle: connected, nothing sent; quiet: one 512-byte frame echoed on each, then 2.5 s quiet)"
printf '  %-5s %-18s %9s %9s %9s %9s %9s %10s %6s %7s\n' rate server "p50 µs" "p99 µs" "p99.9 µs" "pace p99" "srv µs/f" "bench µs/f" errors "steal %"
for rate in $C10K_RATES; do
  for _ in $(seq "$RUNS"); do
    for server in "${C10K_SERVERS[@]}"; do run_c10k "$server" "$rate"; done
  done
  for server in "${C10K_SERVERS[@]}"; do
    f="$WORK/c10k.$rate.$server"
    [[ -s "$f" ]] || continue
    col() { awk -v c="$1" '{print $c}' "$f" | median; }
    printf '  %-5s %-18s %9.1f %9.1f %9.1f %9.1f %9.3f %10.3f %6s %3s/%-3s\n' "$rate" "$server" "$(col 1)" "$(col 2)" "$(col 3)" "$(col 4)" \
      "$(col 5)" "$(col 6)" "$(awk '{s+=$7} END {print s+0}' "$f")" "$(col 8)" "$(col 9)"
  done
  # Round by round against tokio-echo (the rounds alternate, so round i of each server ran
  # side by side): the spread a median hides, and in how many rounds the server was at or below.
  peer="$WORK/c10k.$rate.tokio-echo"
  [[ -s "$peer" ]] || continue
  for server in "${C10K_SERVERS[@]}"; do
    f="$WORK/c10k.$rate.$server"
    [[ "$server" != tokio-echo && -s "$f" ]] || continue
    if [[ $(wc -l <"$f") != $(wc -l <"$peer") ]]; then
      echo "  $rate $server: a round failed, so its rounds do not pair with tokio-echo's: no per-round ratios"
      continue
    fi
    for c in 1 2 3; do
      paste -d ' ' "$f" "$peer" | awk -v c="$c" -v w="$(awk '{print NF; exit}' "$f")" '{ if ($(w + c) > 0) print $c / $(w + c) }' >"$WORK/ratios"
      printf '  %-5s %-18s / tokio-echo %-5s per round: %s; median %.2f, at or below in %d of %d\n' "$rate" "$server" \
        "$(echo "p50 p99 p99.9" | awk -v c="$c" '{print $c}')" "$(awk '{printf "%s%.2f", (NR > 1 ? " " : ""), $1}' "$WORK/ratios")" \
        "$(median <"$WORK/ratios")" "$(awk '$1 <= 1' "$WORK/ratios" | wc -l)" "$(wc -l <"$WORK/ratios")"
    done
  done
done
echo "  (open loop: latency from the earlier of each frame's intended and actual send times; 'pace p99':"
echo "   how far from its intended time the bench sent a frame, its own error; a bench µs/f far above"
echo "   the server's means the bench measures itself;"
echo "   steal %: the hypervisor's share of the server's / the bench's CPU during the run, from /proc/stat)"

echo
BROADCAST_SERVERS=(framecast-broadcast)
[[ -n "$RELAY_FLOOR" ]] && BROADCAST_SERVERS+=(relay-floor)
command -v ncat >/dev/null && BROADCAST_SERVERS+=(ncat-broker)
rm -f "$WORK"/runs.*
[[ "$SKIP_STANDARD" == 1 ]] && BROADCAST_SERVERS=()
for _ in $(seq "$RUNS"); do
  for server in "${BROADCAST_SERVERS[@]}"; do
    run_bench "$server" "bcast 1->100" --scenario broadcast --publishers 1 --subscribers 100 --depth 16 --size 128
  done
done
for server in "${BROADCAST_SERVERS[@]}"; do
  report "bcast 1->100" "$server"
done
[[ -n "$RELAY_FLOOR" ]] || echo "benches/relay-floor did not build: no relay-floor row"
command -v ncat >/dev/null || echo "ncat not installed (apt-get install ncat): no ncat --broker row"

echo
if command -v sockperf >/dev/null; then
  : >"$WORK/rtt"
  for _ in $(seq "$RUNS"); do
    port=$(free_port)
    start_server sockperf "$port"
    timeout "$LIMIT" taskset -c "$BENCH_CPU" sockperf ping-pong --tcp -i 127.0.0.1 -p "$port" -m 512 \
      -t "$DURATION" --full-rtt >"$WORK/sockperf.out" 2>&1 || true
    stop_server
    grep -o 'percentile 50.000 = *[0-9.]*' "$WORK/sockperf.out" | awk '{print $NF}' >>"$WORK/rtt" || true
  done
  echo "sockperf ping-pong, 512 B, full RTT, median of $RUNS: p50 $(median <"$WORK/rtt") µs (the loopback floor for 'single conn d1' p50)"
else
  echo "sockperf not installed (apt-get install sockperf): no RTT floor"
fi
echo "(medians of $RUNS runs of ${DURATION} s after ${WARMUP} s warmup, per column; server on CPU $SERVER_CPU, bench on CPU $BENCH_CPU;"
echo " MB/s: echoed wire bytes; µs/f: CPU time (utime+stime) per echoed frame over the measured window)"
