#!/usr/bin/env bash
# The simulator's full scenarios (docs/scale.md), before and after issue #20's
# changes. Arguments go to cachefront-sim, e.g.
#   bash benches/sim/run.sh --scenario all --duration-s 3600
# The defaults below are the reduced run quoted in docs/scale.md.
set -euo pipefail
cd "$(dirname "$0")/../.."
cargo build -q --profile native -p cachefront-sim
exec "${CARGO_TARGET_DIR:-target}/native/cachefront-sim" \
  --scenario steady --duration-s 60 --sim-dcs 6 --sim-isolates 1000 "$@"
