#!/usr/bin/env bash
# Soak and origin faults for the worker in workerd (wrangler dev --local), on
# loopback, bounded in time (about 5 minutes with the defaults). A bench, not a
# test: it prints figures and checks and exits non-zero if a check failed.
#
#   bash benches/soak/run.sh
#
# Env: SOAK_SECONDS (mix per worker, default 60), SOAK_HIT_SECONDS (30), SOAK_CONNECTIONS (50),
# SOAK_STALL_SECONDS (30). Builds the worker first unless
# CACHEFRONT_SKIP_BUILD=1 and build/ exists. See benches/soak/README.md.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
command -v wrk >/dev/null 2>&1 || { echo "soak: wrk is not installed (apt-get install wrk)" >&2; exit 2; }
bash scripts/build-worker.sh
exec node benches/soak/run.mjs "$@"
