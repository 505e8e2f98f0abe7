#!/usr/bin/env bash
# Usage: fuzz/run.sh [SECONDS_PER_TARGET] [TARGET...]
#
# Builds the libFuzzer targets once, then fuzzes each target (all when none
# are named) for SECONDS_PER_TARGET (default 60), ONE fuzzer process at a time,
# starting from fuzz/seeds/<target> and fuzz/corpus/<target>. New inputs are
# merged back into fuzz/corpus/<target>, minimised with libFuzzer's -merge=1.
# Crashing inputs land in $FUZZ_TARGET_DIR/artifacts/<target>/; copy one to
# fuzz/regressions/<target>/ to keep it as a regression test (tests/replay.rs).
# Executions and exec/s per target are printed at the end and appended to
# $FUZZ_TARGET_DIR/runs.tsv.
#
# Environment:
#   FUZZ_SANITIZER  none (default) or address. address needs nightly-only
#                   rustc flags: the script then sets RUSTC_BOOTSTRAP=1.
#   FUZZ_TARGET_DIR build output (default: $CARGO_TARGET_DIR/fuzz or target/fuzz).
#   FUZZ_ARGS       extra libFuzzer flags, e.g. "-max_len=65536".
# See docs/fuzzing.md.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=${1:-60}
shift || true
all_targets=()
for file in fuzz/fuzz_targets/*.rs; do
  all_targets+=("$(basename "$file" .rs)")
done
targets=("$@")
[ ${#targets[@]} -eq 0 ] && targets=("${all_targets[@]}")

command -v cargo-fuzz >/dev/null || {
  echo "cargo-fuzz is missing: cargo install cargo-fuzz" >&2
  exit 1
}

sanitizer=${FUZZ_SANITIZER:-none}
target_dir=${FUZZ_TARGET_DIR:-${CARGO_TARGET_DIR:-$PWD/target}/fuzz}
if [ "$sanitizer" != none ]; then
  # -Zsanitizer is nightly-only; the pinned stable compiler accepts it with
  # RUSTC_BOOTSTRAP=1 (checked with 1.95, docs/fuzzing.md).
  export RUSTC_BOOTSTRAP=1
fi

# The workspace's release profile is tuned for the worker's wasm size
# (opt-level "z", fat LTO); fuzzing wants speed and quick builds.
export CARGO_PROFILE_RELEASE_OPT_LEVEL=3
export CARGO_PROFILE_RELEASE_LTO=false
export CARGO_PROFILE_RELEASE_CODEGEN_UNITS=16

echo "building ${#targets[@]} target(s), sanitizer=$sanitizer" >&2
for target in "${targets[@]}"; do
  cargo fuzz build -O -a --sanitizer "$sanitizer" --features libfuzzer \
    --target-dir "$target_dir" "$target"
done
bin_dir="$target_dir/x86_64-unknown-linux-gnu/release"

dict_for() {
  case "$1" in
    config | purge_json | state_json) echo fuzz/dict/json.dict ;;
    html_rewrite) echo fuzz/dict/html.dict ;;
    css_min) echo fuzz/dict/css.dict ;;
    *) echo fuzz/dict/headers.dict ;;
  esac
}
max_len_for() {
  case "$1" in
    html_rewrite | css_min | origin_minify) echo 16384 ;;
    *) echo 4096 ;;
  esac
}

summary=()
crashed=0
for target in "${targets[@]}"; do
  corpus=fuzz/corpus/$target
  seeds=fuzz/seeds/$target
  artifacts=$target_dir/artifacts/$target
  work=$(mktemp -d)
  mkdir -p "$corpus" "$seeds" "$artifacts" "$work/new" "$work/merged"
  log=$target_dir/$target.log
  echo "== $target: ${seconds}s" >&2
  status=ok
  # One process (no -jobs/-workers: with them libFuzzer forks children that
  # log to ./fuzz-N.log); run targets one after another on a shared machine.
  # shellcheck disable=SC2086
  "$bin_dir/$target" "$work/new" "$corpus" "$seeds" \
    -dict="$(dict_for "$target")" -max_len="$(max_len_for "$target")" \
    -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
    -artifact_prefix="$artifacts/" -print_final_stats=1 \
    ${FUZZ_ARGS:-} >"$log" 2>&1 || status=crash
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
  if [ "$status" = crash ]; then
    crashed=1
    echo "   $target: FAILED, see $log and $artifacts/" >&2
    grep -m3 -E 'panicked|ERROR: libFuzzer|deadly signal|timeout' "$log" >&2 || true
  fi
  # Minimise the old corpus plus what was found into a fresh directory.
  # Edges only (-use_counters=0): keeping every hit-count bucket kept about
  # five times as many files for the same edges.
  "$bin_dir/$target" -merge=1 -use_counters=0 "$work/merged" "$corpus" "$work/new" \
    -max_len="$(max_len_for "$target")" -timeout=10 -rss_limit_mb=2048 \
    >"$target_dir/$target.merge.log" 2>&1 || true
  if [ -n "$(ls -A "$work/merged")" ]; then
    rm -f "$corpus"/*
    cp "$work/merged"/* "$corpus"/
  fi
  rm -rf "$work"
  files=$(find "$corpus" -type f | wc -l)
  bytes=$(du -sb "$corpus" | cut -f1)
  line=$(printf '%-14s %-6s %12s execs %8s exec/s  corpus %4s files %8s bytes' \
    "$target" "$status" "${execs:-?}" "${rate:-?}" "$files" "$bytes")
  summary+=("$line")
  printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$(date -u +%FT%TZ)" "$target" "$seconds" \
    "$status" "${execs:-}" "${rate:-}" >>"$target_dir/runs.tsv"
done

echo
printf '%s\n' "${summary[@]}"
echo "corpus total: $(du -sh fuzz/corpus | cut -f1)"
exit "$crashed"
