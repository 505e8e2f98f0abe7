#!/usr/bin/env bash
# Runs the worker locally in the real Workers runtime, serving www/ on
# http://127.0.0.1:8787 and proxying everything else to ORIGINS (wrangler.toml).
# Extra arguments go to `wrangler dev`, e.g. --var 'ORIGINS:[...]'.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
source scripts/toolchain-env.sh
bash scripts/build-worker.sh
exec node_modules/.bin/wrangler dev --local --ip 127.0.0.1 --port "${PORT:-8787}" "$@"
