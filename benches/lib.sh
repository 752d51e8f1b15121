# Sourced by the scripts in benches/ (from the repository root): a scratch directory
# ($WORK), the server a script starts ($SERVER_PID) and any background benches
# ($BENCH_PIDS) killed by their PIDs when it exits, and the helpers they share.
# shellcheck shell=bash

WORK=$(mktemp -d)
SERVER_PID=""
BENCH_PIDS=()

# stop_server: kills the server started last, if any, and waits for it.
stop_server() {
  if [[ -n "$SERVER_PID" ]]; then kill "$SERVER_PID" 2>/dev/null || true; wait "$SERVER_PID" 2>/dev/null || true; fi
  SERVER_PID=""
}

cleanup() {
  for pid in "${BENCH_PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  stop_server
  rm -rf "$WORK"
}
trap cleanup EXIT INT TERM

# free_port [SOCK_STREAM|SOCK_DGRAM]: a free loopback port (bound and released; the
# server binds it right after).
free_port() {
  python3 -c 'import socket,sys; s=socket.socket(socket.AF_INET, getattr(socket, sys.argv[1])); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])' "${1:-SOCK_STREAM}" 2>/dev/null ||
    echo $((20000 + RANDOM % 20000))
}

# field JSON NAME: the first number named NAME in framecast-bench's --json output.
field() { grep -o "\"$2\":[-0-9.e]*" <<<"$1" | head -1 | cut -d: -f2; }

# median: the median of the numbers on stdin ("nan" for none).
median() { sort -g | awk '{v[NR]=$1} END {if (NR==0) print "nan"; else if (NR%2) print v[(NR+1)/2]; else print (v[NR/2]+v[NR/2+1])/2}'; }
