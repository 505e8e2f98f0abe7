#!/usr/bin/env bash
# Builds the site (dist/www, via scripts/build-site.sh) and the worker
# (build/index.js + wasm, with worker-build); wrangler runs this as its [build]
# command. Each part is skipped when nothing it depends on changed since the
# last build, and both under CACHEFRONT_SKIP_BUILD=1 (tests build once, then
# start many wrangler instances from that build).
#
# CACHEFRONT_WORKER_FEATURES picks the crate features of the wasm. The default
# (empty) is the slim worker, which refuses EDGE_MINIFY_JS=on; set it to
# js-minify for oxc and EDGE_MINIFY_JS (+~440 KB gzip, a slower cold start:
# docs/assets.md). The wasm's function-name section is dropped
# (scripts/strip-wasm-names.mjs) unless CACHEFRONT_WASM_NAMES=keep.
#
# First of all the configuration is checked (scripts/check-config.sh): a bad
# variable or cache rule fails here, before anything is built or deployed.
# CACHEFRONT_CHECK_ENV=NAME checks [env.NAME.vars] instead of [vars].
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${CACHEFRONT_SKIP_BUILD:-0}" = 1 ] && [ -f build/index.js ] && [ -f dist/www/manifest.json ]; then
  exit 0
fi
bash scripts/check-config.sh ${CACHEFRONT_CHECK_ENV:+--env "$CACHEFRONT_CHECK_ENV"}
bash scripts/build-site.sh
features=${CACHEFRONT_WORKER_FEATURES-}
names=${CACHEFRONT_WASM_NAMES:-strip}
stamp=build/.cachefront-features
if [ -f build/index.js ] && [ "$(cat "$stamp" 2>/dev/null)" = "features=$features names=$names" ]; then
  if [ -z "$(find src Cargo.toml Cargo.lock -newer build/index.js -print -quit)" ]; then
    echo "build-worker: build/ is up to date" >&2
    exit 0
  fi
fi
source scripts/toolchain-env.sh
rm -f "$stamp"
worker-build --release ${features:+--features "$features"}
if [ "$names" != keep ]; then
  node scripts/strip-wasm-names.mjs build/index_bg.wasm
fi
echo "features=$features names=$names" > "$stamp"
