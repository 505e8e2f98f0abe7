#!/usr/bin/env bash
# Builds the site (dist/www, via scripts/build-site.sh) and the worker
# (build/index.js + wasm, with worker-build); wrangler runs this as its [build]
# command. Each part is skipped when nothing it depends on changed since the
# last build, and both under CACHEFRONT_SKIP_BUILD=1 (tests build once, then
# start many wrangler instances from that build).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${CACHEFRONT_SKIP_BUILD:-0}" = 1 ] && [ -f build/index.js ] && [ -f dist/www/manifest.json ]; then
  exit 0
fi
bash scripts/build-site.sh
if [ -f build/index.js ]; then
  if [ -z "$(find src Cargo.toml Cargo.lock -newer build/index.js -print -quit)" ]; then
    echo "build-worker: build/ is up to date" >&2
    exit 0
  fi
fi
source scripts/toolchain-env.sh
worker-build --release
