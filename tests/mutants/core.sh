#!/usr/bin/env bash
# Mutation testing of the worker's pure core (docs/testing.md, "Mutation
# testing"): copies the runtime-free modules, unchanged, into a scratch crate
# of their own and runs cargo-mutants there, so each mutant costs a rebuild of
# a few thousand lines and their unit tests (seconds), not of the whole
# `cachefront` crate and its integration tests (minutes). What it measures:
# whether each module's own unit tests (and those of the other copied
# modules) notice the change.
#
#   tests/mutants/core.sh [FILE...]        default: the nine target modules
#
# MUTANTS_WORK (default $TMPDIR/cachefront-mutants) holds the crate, its
# target directory and mutants.out; extra cargo-mutants options go in
# MUTANTS_ARGS (e.g. "--shard 1/2"). Not part of scripts/test.sh: a run of
# every module takes tens of minutes.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
work=${MUTANTS_WORK:-${TMPDIR:-/tmp}/cachefront-mutants}

# The targets and everything they import from the crate (nothing else).
copied=(
  stable_hash.rs
  semantics/cache_control.rs semantics/cache_status.rs semantics/conditional.rs
  semantics/http_date.rs semantics/policy.rs semantics/policy/tests.rs
  semantics/range.rs semantics/vary.rs
  cache/key.rs
  origin/health.rs origin/pool.rs origin/shaping.rs
  purge/tags.rs
)
targets=(
  src/semantics/policy.rs src/semantics/cache_control.rs src/semantics/range.rs
  src/semantics/vary.rs src/semantics/conditional.rs src/cache/key.rs
  src/purge/tags.rs src/origin/pool.rs src/origin/health.rs
)
[ $# -gt 0 ] && targets=("$@")

mkdir -p "$work/src"
for file in "${copied[@]}"; do
  mkdir -p "$(dirname "$work/src/$file")"
  cmp -s "$root/src/$file" "$work/src/$file" || cp "$root/src/$file" "$work/src/$file"
done
cp "$root/Cargo.lock" "$work/Cargo.lock"
cat > "$work/Cargo.toml" <<'TOML'
[package]
name = "cachefront-core-mutants"
version = "0.0.0"
edition = "2021"
publish = false

[dependencies]
http = "1"
serde = { version = "1", features = ["derive"] }
serde_json = "1"
url = "2"
bytes = "1"
httpdate = "1"

[workspace]
TOML
cat > "$work/src/lib.rs" <<'RS'
//! The worker's pure core, copied from `src/` by tests/mutants/core.sh: the
//! same module paths, so the files compile unchanged.
pub type Body = bytes::Bytes;
pub mod stable_hash;
pub mod semantics {
    pub mod cache_control;
    pub mod cache_status;
    pub mod conditional;
    pub mod http_date;
    pub mod policy;
    pub mod range;
    pub mod vary;
}
pub mod cache {
    pub mod key;
}
pub mod origin {
    pub mod health;
    pub mod pool;
    pub mod shaping;
}
pub mod purge {
    pub mod tags;
}
RS

files=()
for target in "${targets[@]}"; do files+=(-f "$target"); done
cd "$work"
export CARGO_TARGET_DIR="$work/target"
# shellcheck disable=SC2086 # MUTANTS_ARGS is a list of options
exec nice -n 19 cargo mutants "${files[@]}" --timeout 20 --build-timeout 600 \
  --cap-lints true -o "$work" ${MUTANTS_ARGS:-}
