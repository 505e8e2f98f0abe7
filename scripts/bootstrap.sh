#!/usr/bin/env bash
# Installs what building and testing the worker needs, each piece only when it
# is missing or at the wrong version. Everything comes from the package
# registries (crates.io, npm); nothing is downloaded from anywhere else.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"

need() {
  command -v "$1" >/dev/null 2>&1 || { echo "bootstrap: '$1' is required ($2)" >&2; exit 1; }
}
need cargo "install Rust with rustup"
need rustup "install Rust with rustup"
need node "install Node.js 20 or newer"
need npm "install Node.js 20 or newer"

say() { echo "bootstrap: $*" >&2; }

# The CLI's image encoders link the system's libavif, libwebp and libjpeg
# (README: prerequisites); say so here rather than deep in a C compile error.
missing_libs=()
for lib in libavif libwebp libjpeg; do
  pkg-config --exists "$lib" 2>/dev/null || missing_libs+=("$lib")
done
if [ ${#missing_libs[@]} -gt 0 ]; then
  say "missing system libraries for the image encoders: ${missing_libs[*]}"
  say "install them with: sudo apt-get install libavif-dev libwebp-dev libjpeg-dev pkg-config"
  exit 1
fi

# The version of a package as Cargo.lock pins it.
locked_version() {
  awk -v name="$1" '$0 == "name = \"" name "\"" { getline; gsub(/version = |"/, ""); print; exit }' Cargo.lock
}

if ! rustup target list --installed | grep -qx wasm32-unknown-unknown; then
  say "adding the wasm32-unknown-unknown target"
  rustup target add wasm32-unknown-unknown
fi
for component in clippy rustfmt; do
  if ! rustup component list --installed | grep -q "^$component"; then
    say "adding rustup component $component"
    rustup component add "$component"
  fi
done

worker_version=$(locked_version worker)
if [ "$(worker-build --version 2>/dev/null || true)" != "$worker_version" ]; then
  say "installing worker-build $worker_version (takes a few minutes)"
  cargo install worker-build --version "$worker_version" --force
fi

bindgen_version=$(locked_version wasm-bindgen)
if [ "$(wasm-bindgen --version 2>/dev/null || true)" != "wasm-bindgen $bindgen_version" ]; then
  say "installing wasm-bindgen-cli $bindgen_version (takes a few minutes)"
  cargo install wasm-bindgen-cli --version "$bindgen_version" --force
fi

if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  say "installing npm packages (wrangler, esbuild, binaryen)"
  npm ci --no-audit --no-fund
fi
