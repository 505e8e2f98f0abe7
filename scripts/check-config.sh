#!/usr/bin/env bash
# Validates the worker's configuration offline before anything is built or
# started: `cachefront check` reads wrangler.toml's [vars] (and .dev.vars)
# and runs them through the worker's own validation, printing every problem
# with its path; any error stops here. Arguments go to `cachefront check`
# (e.g. --env staging). Used by scripts/dev.sh and scripts/build-worker.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
cargo run -q -p cachefront-cli -- check --config wrangler.toml "$@"
