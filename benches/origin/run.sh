#!/usr/bin/env bash
# Throughput of the example origin with every cachefront-origin layer on vs the same app
# with none, measured with wrk on loopback in one run (two servers side by side, runs
# interleaved so machine noise hits both alike). Not part of the test command.
#
#   bash benches/origin/run.sh
#
# Env: BENCH_DURATION (per run, default 10s), BENCH_ROUNDS (4), BENCH_CONNECTIONS (32),
# BENCH_THREADS (2), BENCH_ROUTES ("/products/1 /livez"). Uses DATABASE_URL when set,
# else a throwaway cluster from scripts/with-postgres.sh. Honours CARGO_TARGET_DIR.
# Instructions per request instead (stable on a loaded machine): benches/origin/callgrind.sh.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"

if [[ -z "${DATABASE_URL:-}" ]]; then
  exec bash scripts/with-postgres.sh bash "$0" "$@"
fi

DURATION="${BENCH_DURATION:-10s}"
ROUNDS="${BENCH_ROUNDS:-4}"
CONNS="${BENCH_CONNECTIONS:-32}"
THREADS="${BENCH_THREADS:-2}"
ROUTES="${BENCH_ROUTES:-/products/1 /livez}"

command -v wrk >/dev/null 2>&1 || apt-get install -y --no-install-recommends wrk >/dev/null

# The workspace release profile is tuned for a small wasm; a server wants speed.
export CARGO_PROFILE_RELEASE_OPT_LEVEL=3 CARGO_PROFILE_RELEASE_LTO=false \
  CARGO_PROFILE_RELEASE_CODEGEN_UNITS=16 CARGO_PROFILE_RELEASE_STRIP=false
cargo build -q --release -p cachefront-origin --example catalog
BIN="${CARGO_TARGET_DIR:-$ROOT/target}/release/examples/catalog"

WORK="$(mktemp -d /tmp/cachefront-bench.XXXXXX)"
PIDS=()
cleanup() {
  local pid
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT

start() { # name, extra env...
  local name="$1"; shift
  env BIND=127.0.0.1:0 ADMIN_BIND=127.0.0.1:0 RUST_LOG=warn "$@" "$BIN" >"$WORK/$name.out" 2>"$WORK/$name.err" &
  PIDS+=("$!")
}
addr_of() {
  local name="$1" i
  for i in $(seq 1 300); do
    if grep -q 'listening on' "$WORK/$name.out" 2>/dev/null; then
      grep -o 'http://[0-9.:]*' "$WORK/$name.out" | head -1
      return
    fi
    sleep 0.1
  done
  echo "bench: $name did not start" >&2; cat "$WORK/$name.err" >&2; exit 1
}
wait_ready() {
  local url="$1" i
  for i in $(seq 1 300); do
    [[ "$(curl -s -o /dev/null -w '%{http_code}' "$url/readyz")" == 200 ]] && return
    sleep 0.1
  done
  echo "bench: $url never became ready" >&2; exit 1
}

start layered SLOW_REQUEST_MS=1000
start bare CATALOG_LAYERS=off
LAYERED="$(addr_of layered)"; BARE="$(addr_of bare)"
wait_ready "$LAYERED"; wait_ready "$BARE"

rps() { awk '/^Requests\/sec:/ {print $2}' "$1"; }
lat() { awk '/^    Latency/ {print $2}' "$1"; }

echo "cachefront-origin benchmark: wrk -t$THREADS -c$CONNS -d$DURATION, $ROUNDS interleaved rounds, $(nproc) cores"
echo "layers on:  $LAYERED (metrics, profiling + Server-Timing, cache tags, health)"
echo "layers off: $BARE (same handlers, no plugin layers)"
for route in $ROUTES; do
  # Warm both (connection pools, page cache) before measuring.
  wrk -t1 -c4 -d2s "$LAYERED$route" >/dev/null
  wrk -t1 -c4 -d2s "$BARE$route" >/dev/null
  on_sum=0; off_sum=0; on_lat=""; off_lat=""
  for r in $(seq 1 "$ROUNDS"); do
    # Alternate which server goes first, so drift (autovacuum, other load) evens out.
    if (( r % 2 )); then
      wrk -t"$THREADS" -c"$CONNS" -d"$DURATION" "$LAYERED$route" >"$WORK/on.txt"
      wrk -t"$THREADS" -c"$CONNS" -d"$DURATION" "$BARE$route" >"$WORK/off.txt"
    else
      wrk -t"$THREADS" -c"$CONNS" -d"$DURATION" "$BARE$route" >"$WORK/off.txt"
      wrk -t"$THREADS" -c"$CONNS" -d"$DURATION" "$LAYERED$route" >"$WORK/on.txt"
    fi
    if grep -q 'Non-2xx' "$WORK/on.txt" "$WORK/off.txt"; then
      echo "bench: non-2xx answers on $route" >&2; cat "$WORK/on.txt" "$WORK/off.txt" >&2; exit 1
    fi
    on_sum="$(awk -v a="$on_sum" -v b="$(rps "$WORK/on.txt")" 'BEGIN{print a+b}')"
    off_sum="$(awk -v a="$off_sum" -v b="$(rps "$WORK/off.txt")" 'BEGIN{print a+b}')"
    on_lat="$on_lat $(lat "$WORK/on.txt")"; off_lat="$off_lat $(lat "$WORK/off.txt")"
  done
  awk -v route="$route" -v on="$on_sum" -v off="$off_sum" -v n="$ROUNDS" -v onl="$on_lat" -v offl="$off_lat" 'BEGIN {
    on /= n; off /= n;
    printf "%-14s layers on %10.0f req/s   layers off %10.0f req/s   ratio %.3f   overhead %.1f us/request   (avg latency on:%s off:%s)\n",
      route, on, off, on / off, (1e6 / on - 1e6 / off), onl, offl
  }'
done
