// Small programs that pin down what a minifier must not get wrong, each run
// before and after `cachefront minify-js` (oxc) with the same result. The
// first four are the ones minify-js 0.6.0, the minifier used before oxc, got
// wrong (a constructor turned into an arrow function, `arguments` rebound, a
// panic on if/else, a parse error on String.raw); the rest cover what a
// classic script shares with the page and build reproducibility.
//
// Run: node --test tests/minify/   (set CACHEFRONT_BIN to skip `cargo build`)

import { test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync, spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import os from "node:os";
import vm from "node:vm";
import path from "node:path";
import { fileURLToPath } from "node:url";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");

function cachefrontBinary() {
  if (process.env.CACHEFRONT_BIN) return process.env.CACHEFRONT_BIN;
  execFileSync("cargo", ["build", "--quiet", "-p", "cachefront-cli"], { cwd: root, stdio: "inherit" });
  const targetDir = path.resolve(root, process.env.CARGO_TARGET_DIR ?? "target");
  return path.join(targetDir, "debug", "cachefront");
}

const bin = cachefrontBinary();
const scratch = mkdtempSync(path.join(os.tmpdir(), "cachefront-snippets-"));
process.on("exit", () => rmSync(scratch, { recursive: true, force: true }));
const requireHere = createRequire(path.join(scratch, "_"));

function minify(source, name) {
  const file = path.join(scratch, `${name}.js`);
  writeFileSync(file, source);
  const result = spawnSync(bin, ["minify-js", file], { encoding: "utf8" });
  return { status: result.status, code: result.stdout, error: result.stderr.trim() };
}

/** Runs a CommonJS program and returns its exports, or the error it threw. */
function run(source, name) {
  const file = path.join(scratch, `${name}.run.js`);
  writeFileSync(file, source);
  try {
    return { value: requireHere(file) };
  } catch (e) {
    return { error: `${e.constructor.name}: ${e.message}` };
  }
}

const CASES = [
  {
    name: "constructor function",
    source: "function Point(x) { this.x = x; }\nPoint.prototype.get = function () { return this.x; };\nmodule.exports = new Point(3).get();\n",
    value: 3,
  },
  {
    name: "arguments object",
    source: "function count() { return arguments.length; }\nmodule.exports = count(1, 2, 3);\n",
    value: 3,
  },
  {
    name: "if/else where neither branch returns",
    source: "var out = [];\nfunction log(a) { if (a) { out.push(1); } else { out.push(2); } }\nlog(true); log(false);\nmodule.exports = out;\n",
    value: [1, 2],
  },
  {
    name: "String.raw with escapes that are only legal raw",
    source: "module.exports = String.raw`\\[a\\]`;\n",
    value: "\\[a\\]",
  },
  {
    name: "getters, classes and closures in loops",
    source:
      "class A { #n = 1; get n() { return this.#n; } static of() { return new A(); } }\n" +
      "var fns = []; for (let i = 0; i < 3; i++) fns.push(() => i);\n" +
      "var o = { get twice() { return A.of().n * 2; } };\n" +
      "module.exports = [fns.map((f) => f()), o.twice, typeof A, A.name];\n",
    value: [[0, 1, 2], 2, "function", "A"],
  },
];

for (const c of CASES) {
  test(`minified ${c.name} behaves like the original`, () => {
    const name = c.name.replace(/\W+/g, "_");
    assert.deepEqual(run(c.source, `${name}-orig`), { value: c.value }, "original behaves as stated");
    const out = minify(c.source, name);
    assert.equal(out.status, 0, out.error);
    // A minifier that copies its input would pass the behaviour check alone.
    assert.ok(
      Buffer.byteLength(out.code) < Buffer.byteLength(c.source),
      `the output shrank (${Buffer.byteLength(c.source)} -> ${Buffer.byteLength(out.code)} bytes): ${out.code}`,
    );
    assert.deepEqual(run(out.code, `${name}-min`), { value: c.value });
  });
}

test("a classic script's top-level functions stay callable by other scripts", () => {
  const library = "function formatPrice(cents) { var euros = cents / 100; return euros.toFixed(2) + ' EUR'; }\nvar unusedHere = 1;\n";
  const out = minify(library, "globals");
  assert.equal(out.status, 0, out.error);
  assert.ok(Buffer.byteLength(out.code) < Buffer.byteLength(library), out.code);
  const context = vm.createContext({});
  vm.runInContext(out.code, context);
  assert.equal(vm.runInContext("formatPrice(1999) + unusedHere", context), "19.99 EUR1");
});

test("the same input minifies to the same bytes on every run", () => {
  const source = Array.from({ length: 8 }, (_, i) => `function f${i}() { return ${i}; }`).join("\n") + "\nmodule.exports = f0() + f7();\n";
  const outputs = new Set();
  for (let i = 0; i < 12; i++) outputs.add(minify(source, `order${i}`).code);
  assert.equal(outputs.size, 1);
});
