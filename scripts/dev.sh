#!/usr/bin/env bash
# The main command: the whole loop locally. With no arguments it starts a
# throwaway PostgreSQL (or uses DATABASE_URL), the catalogue example origin
# seeded in it, and the worker in the real Workers runtime in front of it on
# http://127.0.0.1:${PORT:-8787}, serving www/ and caching the origin, with a
# development PURGE_TOKEN; see scripts/dev-loop.sh. Ctrl-C stops everything.
#
#   ./scripts/dev.sh                       the whole loop
#   ./scripts/dev.sh --static              the worker alone, ORIGINS from wrangler.toml
#   ORIGINS='[...]' ./scripts/dev.sh       the worker in front of your origin(s)
#   ./scripts/dev.sh --var 'ORIGINS:[...]' the same
#
# Other arguments go to `wrangler dev`.
set -euo pipefail
cd "$(dirname "$0")/.."
# The environment `wrangler dev` is given (--env NAME / -e NAME) is the one
# whose vars are checked, first, so that a bad rule fails before any build.
env_name=
previous=
own_origin=${ORIGINS:+yes}
static=
args=()
for arg in "$@"; do
  case "$previous" in --env | -e) env_name=$arg ;; --var) case "$arg" in ORIGINS:*) own_origin=yes ;; esac ;; esac
  case "$arg" in
    --env=* | -e=*) env_name=${arg#*=} ;;
    --static) static=yes; previous=$arg; continue ;;
  esac
  args+=("$arg")
  previous=$arg
done
export CACHEFRONT_CHECK_ENV=$env_name
bash scripts/check-config.sh ${env_name:+--env "$env_name"}
if [ "${CACHEFRONT_SKIP_BUILD:-0}" != 1 ]; then
  bash scripts/bootstrap.sh
fi
source scripts/toolchain-env.sh
bash scripts/build-worker.sh
if [ -n "$static" ] || [ -n "$own_origin" ]; then
  if [ -n "${ORIGINS:-}" ]; then args+=(--var "ORIGINS:$ORIGINS"); fi
  exec node_modules/.bin/wrangler dev --local --ip 127.0.0.1 --port "${PORT:-8787}" "${args[@]}"
fi
exec bash scripts/with-postgres.sh bash scripts/dev-loop.sh "${args[@]}"
