#!/usr/bin/env bash
# Run every test of the origin plugin (crate cachefront-origin).
#
#   bash scripts/with-postgres.sh bash scripts/test-origin.sh
#
# Needs DATABASE_URL (with-postgres.sh provides a throwaway cluster), the PostgreSQL
# server binaries (the /readyz test starts and stops a cluster of its own) and promtool
# (installed from Debian's `prometheus` package when missing). Honours CARGO_TARGET_DIR.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

if ! command -v promtool >/dev/null 2>&1; then
  echo "test-origin: installing promtool (Debian package prometheus)" >&2
  apt-get install -y --no-install-recommends prometheus >/dev/null \
    || { apt-get update >/dev/null && apt-get install -y --no-install-recommends prometheus >/dev/null; }
fi

if [[ -z "${DATABASE_URL:-}" ]]; then
  echo "test-origin: DATABASE_URL is not set; run under scripts/with-postgres.sh" >&2
  exit 2
fi

# Missing PostgreSQL or promtool fails the tests instead of skipping them.
export CACHEFRONT_TEST_STRICT=1

# Each feature must build on its own (one module per feature, like tower-http).
for features in "" metrics profiling pprof health postgres cache-tags purge assets db analyze db-purge \
    cloudfront memory otlp; do
  cargo check -q -p cachefront-origin --lib --no-default-features ${features:+--features "$features"}
done

# The SIGTERM and catalogue tests run the example binaries.
cargo build -q -p cachefront-origin --examples
cargo test -p cachefront-origin --all-features --doc
cargo test -p cachefront-origin --all-features --lib --tests
