#!/usr/bin/env bash
# Instructions per request of the example origin with every cachefront-origin layer on vs
# the same app with none, counted by callgrind (stable on a loaded machine, unlike req/s).
# Not part of the test command.
#
#   bash benches/origin/callgrind.sh            # prints instructions/request and the ratio
#
# Each binary runs under `valgrind --tool=callgrind` on its own; one keep-alive client
# (curl, requests on one connection) sends CG_WARMUP requests, the counters are zeroed
# (`callgrind_control -z`), CG_REQUESTS more are sent and counted (`callgrind_control -d`).
# A second line gives the connection's polls per request in each run: whole-run figures
# depend on it (see POLLS_AWK below).
# Env: CG_ROUTE (/products/1), CG_WARMUP (300), CG_REQUESTS (2000), CG_RUST_LOG (info),
# CG_KEEP (a directory
# to keep the callgrind dumps in, for `callgrind_annotate`), CATALOG_BIN (a prebuilt
# catalog; default: build it like run.sh), CG_ON_ENV (extra VAR=value words for the
# "layers on" run: `CATALOG_LAYERS=passthrough` measures six pass-through layers instead,
# the stack's structure alone; `SERVER_TIMING_SAMPLE_RATE=0.01` the profiler sampling).
# Uses DATABASE_URL when set, else a throwaway
# cluster from scripts/with-postgres.sh. Honours CARGO_TARGET_DIR.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"

if [[ -z "${DATABASE_URL:-}" ]]; then
  exec bash scripts/with-postgres.sh bash "$0" "$@"
fi

ROUTE="${CG_ROUTE:-/products/1}"
WARMUP="${CG_WARMUP:-300}"
REQUESTS="${CG_REQUESTS:-2000}"
# The catalog's default level. Not `warn`: below INFO the old capture (before 2026-12-06)
# was silently off (its statements never built), which made the layers look cheap.
LOG="${CG_RUST_LOG:-info}"

if [[ -z "${CATALOG_BIN:-}" ]]; then
  # Same profile as run.sh, plus line tables so callgrind_annotate can name functions.
  export CARGO_PROFILE_RELEASE_OPT_LEVEL=3 CARGO_PROFILE_RELEASE_LTO=false \
    CARGO_PROFILE_RELEASE_CODEGEN_UNITS=16 CARGO_PROFILE_RELEASE_STRIP=false \
    CARGO_PROFILE_RELEASE_DEBUG=line-tables-only
  cargo build -q --release -p cachefront-origin --example catalog
  CATALOG_BIN="${CARGO_TARGET_DIR:-$ROOT/target}/release/examples/catalog"
fi

WORK="$(mktemp -d /tmp/cachefront-cg.XXXXXX)"
PID=""
cleanup() {
  if [[ -n "$PID" ]]; then kill "$PID" 2>/dev/null || true; wait "$PID" 2>/dev/null || true; fi
  rm -rf "$WORK"
}
trap cleanup EXIT

# `n` requests on one keep-alive connection.
requests() {
  local url="$1" n="$2" args=() i
  for ((i = 0; i < n; i++)); do args+=(-o /dev/null "$url"); done
  curl -s --fail "${args[@]}"
}

measure() { # name, extra env...
  local name="$1"; shift
  env BIND=127.0.0.1:0 ADMIN_BIND=127.0.0.1:0 RUST_LOG="$LOG" SLOW_REQUEST_MS=1000 "$@" \
    valgrind --tool=callgrind --callgrind-out-file="$WORK/$name.%p" "$CATALOG_BIN" \
    >"$WORK/$name.out" 2>"$WORK/$name.err" &
  PID=$!
  local i addr=""
  for i in $(seq 1 600); do
    addr="$(grep -o 'listening on http://[0-9.:]*' "$WORK/$name.out" 2>/dev/null | head -1 | sed 's/listening on //')" || true
    [[ -n "$addr" ]] && break
    sleep 0.2
  done
  [[ -n "$addr" ]] || { echo "callgrind: $name did not start" >&2; cat "$WORK/$name.err" >&2; exit 1; }
  for i in $(seq 1 600); do
    [[ "$(curl -s -o /dev/null -w '%{http_code}' "$addr/readyz")" == 200 ]] && break
    sleep 0.2
  done
  requests "$addr$ROUTE" "$WARMUP"
  callgrind_control -z "$PID" >/dev/null
  requests "$addr$ROUTE" "$REQUESTS"
  callgrind_control -d "$PID" >/dev/null
  kill "$PID"; wait "$PID" 2>/dev/null || true; PID=""
  # The dump made by -d is the one with a part number (.1); the exit dump is the rest.
  local dump; dump="$(ls "$WORK/$name".*.1 | head -1)"
  if [[ -n "${CG_KEEP:-}" ]]; then mkdir -p "$CG_KEEP"; cp "$dump" "$CG_KEEP/$name.callgrind"; fi
  echo "$(awk '/^summary:/ {print $2}' "$dump") $(awk "$POLLS_AWK" "$dump")"
}

# Polls of the connection (hyper's `Dispatcher::poll_catch` calls) in a dump: each costs
# ~6k instructions (more with the layers on), and how many a request needs depends on
# whether PostgreSQL's answer is already there, so whole-run figures swing by several
# thousand a request between runs of the same binary. Compare runs at equal polls
# (docs/origin-plugin.md, seventh round).
POLLS_AWK='
/^c?fn=\(/ {
  id = $1; sub(/^c?fn=/, "", id)
  name = $0; sub(/^c?fn=\([0-9]+\) ?/, "", name)
  if (name != "") names[id] = name
  if ($0 ~ /^cfn=/) cur = names[id]
  next
}
/^calls=/ { if (cur ~ /Dispatcher<D,Bs,I,T>::poll_catch$/) { split($1, a, "="); n += a[2] } }
END { print n + 0 }'

# shellcheck disable=SC2086 # CG_ON_ENV is a list of words
read -r on on_polls <<<"$(measure on ${CG_ON_ENV:-})"
read -r off off_polls <<<"$(measure off CATALOG_LAYERS=off)"
awk -v on="$on" -v off="$off" -v n="$REQUESTS" -v route="$ROUTE" -v pon="$on_polls" -v poff="$off_polls" 'BEGIN {
  printf "%s over %d requests: layers on %.1fk instructions/request, layers off %.1fk, layers cost %.1fk, ratio off/on %.3f\n",
    route, n, on / n / 1000, off / n / 1000, (on - off) / n / 1000, off / on
  printf "connection polls/request: layers on %.3f, layers off %.3f\n", pon / n, poff / n
}'
