# Sourced by the build, dev and test scripts: points worker-build at the tools
# the bootstrap installed from the package registries, so it never tries to
# download binaries from elsewhere (this machine has no such access).
# Callers cd to the repository root before sourcing this file.
repo_root=$(pwd)
export PATH="$HOME/.cargo/bin:$PATH"
export WASM_BINDGEN_BIN="${WASM_BINDGEN_BIN:-wasm-bindgen}"
export ESBUILD_BIN="${ESBUILD_BIN:-$repo_root/node_modules/.bin/esbuild}"
export WASM_OPT_BIN="${WASM_OPT_BIN:-$repo_root/node_modules/.bin/wasm-opt}"
export WRANGLER_SEND_METRICS=false
export CLOUDFLARE_CF_FETCH_ENABLED=false
export WRANGLER_LOG_PATH="$repo_root/target/wrangler-logs"
