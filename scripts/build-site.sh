#!/usr/bin/env bash
# Builds the demo site for the edge: www/ -> dist/www/ with `cachefront build`
# (CSS minified, every asset fingerprinted, references rewritten, SRI added,
# manifest.json written). Skipped when dist/www is newer than its inputs.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -f dist/www/manifest.json ] \
  && [ -z "$(find www cli/src cli/image-codecs src/assets cli/Cargo.toml -newer dist/www/manifest.json -print -quit)" ]; then
  echo "build-site: dist/www is up to date" >&2
  exit 0
fi
export PATH="$HOME/.cargo/bin:$PATH"
cargo run -q -p cachefront-cli -- build --src www --out dist/www
