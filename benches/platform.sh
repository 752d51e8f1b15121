#!/usr/bin/env bash
# What this machine's scheduler charges, for reading the open-loop figures (issue 17):
#   1. wake cost: the CPU a sender spends per 512-byte loopback TCP send when the peer
#      sleeps in recv, against a peer spinning on a non-blocking recv (the receiver
#      pinned to SERVER_CPU, the sender to BENCH_CPU, one send every 0.5 ms); the
#      difference is what waking a sleeping peer costs, and the sender pays it;
#   2. late wakes: how late a thread sleeping 100 µs (timer slack 1 ns) wakes on each
#      CPU (p50, and the wakes more than 1 ms late), the floor under any server that sleeps between events;
#   3. C10K split: framecast (u32be) on SERVER_CPU and framecast-bench on BENCH_CPU at
#      C10K_CONNS connections and RATE, over 3 s of the run: each side's CPU per frame
#      (/proc/PID/task/*/schedstat, nanoseconds) and how often per frame the daemon went
#      to sleep (voluntary context switches: each one a wake-up a frame from the bench
#      paid for), and the bench's CPU less those wake-ups at the measured wake cost;
#   4. the same split with the floor for an open-loop client as the generator
#      (benches/relay-floor --pace: a timerfd, one write per message, replies read and
#      dropped, nothing checked or timed): what any paced client pays beside the daemon.
#
#   benches/platform.sh                  # RUNS=3 DURATION=5 C10K_CONNS=10000 RATE=20k
#
# Environment: RUNS, DURATION (seconds, part 2), C10K_CONNS, RATE, SERVER_CPU (0),
# BENCH_CPU (1). Every process the script starts is killed by its PID when it exits.
set -euo pipefail
cd "$(dirname "$0")/.."

RUNS=${RUNS:-3}
DURATION=${DURATION:-5}
C10K_CONNS=${C10K_CONNS:-10000}
RATE=${RATE:-20k}
SERVER_CPU=${SERVER_CPU:-0}
BENCH_CPU=${BENCH_CPU:-1}
source benches/lib.sh

cargo build --release --quiet --bin framecast --bin framecast-bench
cargo build --release --quiet --manifest-path benches/relay-floor/Cargo.toml --target-dir target/relay-floor
RATE_PER_S=$(awk -v r="$RATE" 'BEGIN { m = 1; if (r ~ /k$/) { m = 1000; sub(/k$/, "", r) } print r * m }')

# wake_cost MODE: µs of sender CPU per send, the receiver sleeping or spinning.
wake_cost() {
  timeout 60 python3 -c '
import os, socket, sys, time
mode, rcpu, scpu, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), 4000
ls = socket.socket(); ls.bind(("127.0.0.1", 0)); ls.listen(1)
pid = os.fork()
if pid == 0:
    os.sched_setaffinity(0, {rcpu}); c, _ = ls.accept(); got = 0
    if mode == "spin":
        c.setblocking(False)
    while got < n * 512:
        try:
            b = c.recv(65536)
        except BlockingIOError:
            continue
        if not b:
            break
        got += len(b)
    os._exit(0)
os.sched_setaffinity(0, {scpu})
s = socket.create_connection(ls.getsockname()); s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
msg = b"x" * 512; time.sleep(0.2); spent = 0.0
for _ in range(n):
    time.sleep(0.0005)
    t = time.thread_time(); s.send(msg); spent += time.thread_time() - t
s.close(); os.waitpid(pid, 0)
print(f"{spent / n * 1e6:.2f}")
' "$1" "$SERVER_CPU" "$BENCH_CPU"
}

# late_wakes CPU: "p50-µs over-1ms largest-ms" for 100 µs sleeps over DURATION s.
late_wakes() {
  timeout $((DURATION + 30)) taskset -c "$1" python3 -c '
import ctypes, sys, time
ctypes.CDLL(None).prctl(29, 1, 0, 0, 0)  # PR_SET_TIMERSLACK: 1 ns, not the default 50 µs
end = time.perf_counter() + float(sys.argv[1]); late = []
while time.perf_counter() < end:
    t = time.perf_counter(); time.sleep(0.0001); late.append(time.perf_counter() - t - 0.0001)
late.sort()
print(f"{late[len(late) // 2] * 1e6:.1f} {sum(1 for x in late if x > 0.001)} {late[-1] * 1e3:.2f} {len(late)}")
' "$DURATION"
}

# schedstat_ns PID: CPU time of all its threads, in ns.
schedstat_ns() { cat /proc/"$1"/task/*/schedstat 2>/dev/null | awk '{s += $1} END {printf "%.0f\n", s}'; }
# sleeps PID: voluntary context switches of all its threads.
sleeps() { cat /proc/"$1"/task/*/status 2>/dev/null | awk '/^voluntary_ctxt_switches/ {s += $2} END {printf "%.0f\n", s}'; }

# c10k_split GENERATOR: "server-µs/f generator-µs/f daemon-sleeps/f" over 3 s in the
# middle of a run; GENERATOR is bench (framecast-bench) or floor (relay-floor --pace).
c10k_split() {
  local port bench bpid s0 b0 w0 s1 b1 w1 frames
  port=$(free_port)
  taskset -c "$SERVER_CPU" target/release/framecast --listen "127.0.0.1:$port" --framing u32be \
    --max-connections $((C10K_CONNS + 100)) >"$WORK/server.out" 2>&1 &
  SERVER_PID=$!
  for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done
  if [[ $1 == floor ]]; then
    timeout 120 taskset -c "$BENCH_CPU" target/relay-floor/release/relay-floor --pace "$C10K_CONNS" "$RATE_PER_S" 9 \
      "127.0.0.1:$port" >"$WORK/bench.json" 2>"$WORK/bench.err" &
  else
    timeout 120 taskset -c "$BENCH_CPU" target/release/framecast-bench "$port" -c "$C10K_CONNS" -R "$RATE" \
      --size 512 --duration 8s --warmup 1s --json >"$WORK/bench.json" 2>"$WORK/bench.err" &
  fi
  bench=$!
  BENCH_PIDS+=("$bench")
  for _ in $(seq 600); do
    (($(ls /proc/"$SERVER_PID"/fd 2>/dev/null | wc -l) > C10K_CONNS)) && break
    sleep 0.1
  done
  sleep 2
  bpid=$(pgrep -P "$bench" | head -1)
  s0=$(schedstat_ns "$SERVER_PID") b0=$(schedstat_ns "$bpid") w0=$(sleeps "$SERVER_PID")
  sleep 3
  s1=$(schedstat_ns "$SERVER_PID") b1=$(schedstat_ns "$bpid") w1=$(sleeps "$SERVER_PID")
  wait "$bench" || true
  stop_server
  frames=$((RATE_PER_S * 3))
  awk -v s="$((s1 - s0))" -v b="$((b1 - b0))" -v w="$((w1 - w0))" -v f="$frames" \
    'BEGIN { printf "%.2f %.2f %.3f\n", s / 1e3 / f, b / 1e3 / f, w / f }'
}

echo "1. wake cost: µs of CPU per 512-byte send, receiver on CPU $SERVER_CPU, sender on CPU $BENCH_CPU"
for _ in $(seq "$RUNS"); do
  wake_cost sleep >>"$WORK/sleep"
  wake_cost spin >>"$WORK/spin"
done
asleep=$(median <"$WORK/sleep") spinning=$(median <"$WORK/spin")
wake=$(awk -v a="$asleep" -v b="$spinning" 'BEGIN { printf "%.2f", a - b }')
echo "   peer asleep $asleep µs ($(paste -sd' ' "$WORK/sleep")), peer spinning $spinning µs ($(paste -sd' ' "$WORK/spin")): a wake-up costs the sender $wake µs"

echo "2. late wakes: 100 µs sleeps for $DURATION s"
for cpu in "$SERVER_CPU" "$BENCH_CPU"; do
  for _ in $(seq "$RUNS"); do
    read -r p50 over largest n <<<"$(late_wakes "$cpu")"
    echo "   CPU $cpu: $n sleeps, late by p50 $p50 µs; $over more than 1 ms late, the latest $largest ms"
  done
done

echo "3. C10K split: framecast u32be, $C10K_CONNS connections, $RATE frames/s, 512 B"
for _ in $(seq "$RUNS"); do
  read -r srv bench per <<<"$(c10k_split bench)"
  awk -v s="$srv" -v b="$bench" -v p="$per" -v w="$wake" 'BEGIN {
    printf "   daemon %.2f µs/frame, bench %.2f (%.2fx); the daemon slept %.3f times per frame: bench less %.3f x %.2f µs of wake-ups = %.2f µs (%.2fx)\n",
      s, b, b / s, p, p, w, b - p * w, (b - p * w) / s }'
done

echo "4. C10K split with the floor for a paced client (relay-floor --pace), the same way"
for _ in $(seq "$RUNS"); do
  read -r srv gen per <<<"$(c10k_split floor)"
  awk -v s="$srv" -v g="$gen" -v p="$per" 'BEGIN {
    printf "   daemon %.2f µs/frame, paced floor client %.2f (%.2fx); the daemon slept %.3f times per frame\n", s, g, g / s, p }'
done
