#!/usr/bin/env bash
# Builds the demo site for the edge: www/ -> dist/www/ with `cachefront build`
# (CSS minified, every asset fingerprinted, references rewritten, SRI added,
# manifest.json and the asset store's _headers written). Skipped when dist/www
# is newer than its inputs. Pages get HTML_CACHE_CONTROL from wrangler.toml's
# [vars] (or its default) in _headers, the same value the worker gives them.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -f dist/www/manifest.json ] \
  && [ -z "$(find www cli/src cli/image-codecs src/assets cli/Cargo.toml wrangler.toml -newer dist/www/manifest.json -print -quit)" ]; then
  echo "build-site: dist/www is up to date" >&2
  exit 0
fi
export PATH="$HOME/.cargo/bin:$PATH"
html_cache_control=$(sed -n "s/^HTML_CACHE_CONTROL *= *[\"']\(.*\)[\"'] *$/\1/p" wrangler.toml | head -n 1)
cargo run -q -p cachefront-cli -- build --src www --out dist/www \
  ${html_cache_control:+--html-cache-control "$html_cache_control"}
