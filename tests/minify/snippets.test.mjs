// Small programs that pin down how minify-js 0.6.0 (through
// `cachefront minify-js`) gets JavaScript wrong, so the findings stay
// reproducible and the day a release fixes them is noticed: each case states
// what the original does and exactly what the minified build does instead.
// A case whose minified build starts behaving like the original fails with
// "fixed upstream?", and the case should then be moved to libraries-style
// behaviour checks.
//
// Run: node --test tests/minify/   (set CACHEFRONT_BIN to skip `cargo build`)

import { test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync, spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import os from "node:os";
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
    original: { value: 3 },
    // The declaration becomes `var Point=(a=>{this.x=a})`: no prototype, not constructible.
    minified: { error: "TypeError: Cannot set properties of undefined (setting 'get')" },
  },
  {
    name: "arguments object",
    source: "function count() { return arguments.length; }\nmodule.exports = count(1, 2, 3);\n",
    original: { value: 3 },
    // As an arrow function, `arguments` is the CommonJS wrapper's (5 of them).
    minified: { value: 5 },
  },
  {
    name: "if/else where neither branch returns",
    source: "function log(a) { if (a) { console.log(1); } else { console.log(2); } }\nmodule.exports = typeof log;\n",
    original: { value: "function" },
    minified: {
      minifyError:
        "error: " + "PATH" + ": minifier panicked at minify-js-0.6.0/src/minify/pass1.rs:331: assertion failed: cons_expr.returns && alt_expr.returns",
    },
  },
  {
    name: "String.raw with escapes that are only legal raw",
    source: "module.exports = String.raw`\\[a\\]`;\n",
    original: { value: "\\[a\\]" },
    minified: { minifyErrorIncludes: 'ExpectedSyntax("expression operator")' },
  },
];

for (const c of CASES) {
  test(`minify-js 0.6.0 on ${c.name}: known wrong result is still the same`, () => {
    assert.deepEqual(run(c.source, `${c.name}-orig`.replace(/\W+/g, "_")), c.original, "original behaves as stated");
    const name = c.name.replace(/\W+/g, "_");
    const out = minify(c.source, name);
    if (c.minified.minifyError) {
      assert.notEqual(out.status, 0, "fixed upstream? minify-js now accepts this");
      assert.equal(out.error, c.minified.minifyError.replace("PATH", path.join(scratch, `${name}.js`)));
      return;
    }
    if (c.minified.minifyErrorIncludes) {
      assert.notEqual(out.status, 0, "fixed upstream? minify-js now accepts this");
      assert.ok(out.error.includes(c.minified.minifyErrorIncludes), out.error);
      return;
    }
    assert.equal(out.status, 0, out.error);
    const result = run(out.code, `${name}-min`);
    assert.notDeepEqual(result, c.original, "fixed upstream? the minified build now behaves like the original");
    assert.deepEqual(result, c.minified);
  });
}

test("minify-js 0.6.0 output order of hoisted functions varies between runs", () => {
  const source = Array.from({ length: 8 }, (_, i) => `function f${i}() { return ${i}; }`).join("\n") + "\nmodule.exports = f0() + f7();\n";
  const outputs = new Set();
  for (let i = 0; i < 12; i++) outputs.add(minify(source, `order${i}`).code);
  // With 8 functions a repeat of one order in 12 runs is likely, all 12 the
  // same essentially impossible (8! orders): more than one means the output
  // depends on a per-process random hash seed.
  assert.ok(outputs.size > 1, "fixed upstream? output is now the same on every run");
});
