#!/usr/bin/env bash
# The whole loop on this machine: the catalogue example origin
# (origin-plugin/examples/catalog.rs) on the PostgreSQL in DATABASE_URL,
# and the worker in the real Workers runtime in front of it, serving www/
# and caching the origin. Started by scripts/dev.sh under
# scripts/with-postgres.sh (which provides a throwaway PostgreSQL when
# DATABASE_URL is not set). Extra arguments go to `wrangler dev`.
#
# Every process it starts is stopped when it exits, by Ctrl-C, by a signal
# or on failure.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/toolchain-env.sh

port=${PORT:-8787}
token=${PURGE_TOKEN:-dev-purge-token-not-a-secret}
logs=$(mktemp -d)

pids=()
stop_all() {
  local pid
  for pid in "${pids[@]}"; do
    # Each child leads its own process group (setsid): wrangler's workerd too.
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
  done
  for pid in "${pids[@]}"; do
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL -- "-$pid" 2>/dev/null || true
  done
  rm -rf "$logs"
}
trap stop_all EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

echo "dev: building the catalogue origin" >&2
cargo build -q -p cachefront-origin --example catalog
target_dir=${CARGO_TARGET_DIR:-target}

# The origin binds the port it is given (CATALOG_PORT), else one the kernel
# picks (port 0), and says which in its first line: a port probed free now
# could be taken by the time the build above has finished.
echo "dev: starting the catalogue origin (database: ${DATABASE_URL%%@*}@…)" >&2
BIND="127.0.0.1:${CATALOG_PORT:-0}" ADMIN_BIND="127.0.0.1:0" \
  CACHEFRONT_EDGE_URL="http://127.0.0.1:$port" CACHEFRONT_PURGE_TOKEN="$token" \
  setsid "$target_dir/debug/examples/catalog" >"$logs/catalog.log" 2>&1 &
pids+=($!)
origin=
for _ in $(seq 300); do
  origin=$(sed -n 's|^catalog listening on http://\([0-9.:]*\).*|\1|p' "$logs/catalog.log" | head -1)
  if [ -n "$origin" ] && curl -fs "http://$origin/readyz" >/dev/null 2>&1; then break; fi
  if ! kill -0 "${pids[0]}" 2>/dev/null; then
    echo "dev: the catalogue origin stopped:" >&2
    cat "$logs/catalog.log" >&2
    exit 1
  fi
  sleep 0.2
done
if [ -z "$origin" ] || ! curl -fs "http://$origin/readyz" >/dev/null; then
  echo "dev: the catalogue origin never became ready:" >&2
  cat "$logs/catalog.log" >&2
  exit 1
fi
echo "dev: started the catalogue origin on $origin" >&2

echo "dev: starting the worker on http://127.0.0.1:$port" >&2
CACHEFRONT_SKIP_BUILD=1 setsid node_modules/.bin/wrangler dev --local --ip 127.0.0.1 --port "$port" \
  --show-interactive-dev-session=false --test-scheduled \
  --var "ORIGINS:[{\"name\":\"catalog\",\"url\":\"http://$origin\"}]" \
  --var "PURGE_TOKEN:$token" "$@" > >(sed -u 's/^/worker | /') 2>&1 &
pids+=($!)
ready=
for _ in $(seq 600); do
  if curl -fs -o /dev/null "http://127.0.0.1:$port/robots.txt" 2>/dev/null; then ready=yes; break; fi
  kill -0 "${pids[1]}" 2>/dev/null || break
  sleep 0.2
done
if [ -z "$ready" ]; then
  echo "dev: the worker did not start on 127.0.0.1:$port (see its output above)" >&2
  exit 1
fi

cat <<EOF

Cachefront is running: the worker on http://127.0.0.1:$port in front of the
catalogue origin ($origin) and its PostgreSQL. Try:

  curl -s -o /dev/null -D - http://127.0.0.1:$port/products/1 | grep -i cache-status   # fwd=uri-miss; …; stored
  curl -s -o /dev/null -D - http://127.0.0.1:$port/products/1 | grep -i cache-status   # hit
  curl -s -X POST http://127.0.0.1:$port/__cachefront/purge \\
    -H 'Authorization: Bearer $token' -d '{"tags":["product:1"]}'
  psql "\$DATABASE_URL" -c "UPDATE products SET price_cents = 12345 WHERE id = 1"
  curl -s http://127.0.0.1:$port/products/1 | grep price              # \$123.45: purged on write

DATABASE_URL=$DATABASE_URL
Ctrl-C stops everything.
EOF

# Stay up until a child stops (or Ctrl-C).
wait -n "${pids[@]}" || true
echo "dev: a process stopped; shutting down" >&2
