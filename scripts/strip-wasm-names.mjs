// Removes the `name` custom section from a wasm file, in place. worker-build
// keeps it (it runs wasm-opt with --debuginfo) so that stack traces name Rust
// functions; it is a fifth of the worker's raw size and ~90 KB of its gzip
// size, which Cloudflare counts against the script limit and the isolate
// pays for at start-up. Panics still log their message; frames then read
// `wasm-function[N]`. Keep the names with CACHEFRONT_WASM_NAMES=keep
// (scripts/build-worker.sh).
// Usage: node scripts/strip-wasm-names.mjs build/index_bg.wasm
import { readFileSync, writeFileSync } from 'node:fs';

const file = process.argv[2];
const wasm = readFileSync(file);
if (wasm.readUInt32LE(0) !== 0x6d736100) throw new Error(`${file} is not a wasm module`);

function leb(at) {
  let value = 0;
  let shift = 0;
  for (;;) {
    const byte = wasm[at++];
    value += (byte & 0x7f) * 2 ** shift;
    shift += 7;
    if (byte < 0x80) return [value, at];
  }
}

const kept = [wasm.subarray(0, 8)];
let removed = 0;
for (let at = 8; at < wasm.length; ) {
  const start = at;
  const id = wasm[at++];
  const [size, body] = leb(at);
  const end = body + size;
  let drop = false;
  if (id === 0) {
    const [nameLength, nameAt] = leb(body);
    drop = wasm.toString('utf8', nameAt, nameAt + nameLength) === 'name';
  }
  if (drop) removed += end - start;
  else kept.push(wasm.subarray(start, end));
  at = end;
}
writeFileSync(file, Buffer.concat(kept));
console.error(`strip-wasm-names: ${file}: removed ${removed} bytes of function names`);
