#!/usr/bin/env bash
# Runs the worker locally in the real Workers runtime, serving www/ on
# http://127.0.0.1:8787 and proxying everything else to ORIGINS (wrangler.toml).
# Extra arguments go to `wrangler dev`, e.g. --var 'ORIGINS:[...]'.
set -euo pipefail
cd "$(dirname "$0")/.."
# The environment `wrangler dev` is given (--env NAME / -e NAME) is the one
# whose vars are checked, first, so that a bad rule fails before any build.
env_name=
previous=
for arg in "$@"; do
  case "$previous" in --env | -e) env_name=$arg ;; esac
  case "$arg" in --env=* | -e=*) env_name=${arg#*=} ;; esac
  previous=$arg
done
export CACHEFRONT_CHECK_ENV=$env_name
bash scripts/check-config.sh ${env_name:+--env "$env_name"}
bash scripts/bootstrap.sh
source scripts/toolchain-env.sh
bash scripts/build-worker.sh
exec node_modules/.bin/wrangler dev --local --ip 127.0.0.1 --port "${PORT:-8787}" "$@"
