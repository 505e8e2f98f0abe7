// Minifier comparison, same run: our pipeline (`cachefront minify-js` =
// oxc, `cachefront minify-css` = lightningcss, `minify-css --edge` = the
// worker's own CSS minifier) against esbuild, on real libraries from
// node_modules and the demo site's CSS.
//
//   cargo build --profile native -p cachefront-cli
//   CACHEFRONT_BIN=target/native/cachefront node benches/minify/compare.mjs
//
// (The `native` profile: the `release` profile is tuned for the worker's wasm
// size, opt-level "z", which makes the minifiers ~2.5x slower natively.)
//
// Sizes are gzip -9 of the output. Times are the best of REPEAT runs inside
// each tool's own process (ours: --repeat/--timings in the binary; esbuild:
// transformSync in this process, which includes its IPC to the Go service),
// so process start-up is excluded from both.

import { spawnSync } from "node:child_process";
import { readFileSync, mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { gzipSync } from "node:zlib";
import * as esbuild from "esbuild";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const bin = process.env.CACHEFRONT_BIN ?? path.join(root, "target/native/cachefront");
const REPEAT = Number(process.env.REPEAT ?? 5);
const scratch = mkdtempSync(path.join(os.tmpdir(), "cachefront-bench-"));
process.on("exit", () => rmSync(scratch, { recursive: true, force: true }));

const JS = [
  "node_modules/lodash/lodash.js",
  "node_modules/jquery/dist/jquery.js",
  "node_modules/underscore/underscore-umd.js",
  "node_modules/moment/moment.js",
  "node_modules/js-yaml/dist/js-yaml.cjs.js",
  "node_modules/acorn/dist/acorn.js",
  "node_modules/react/cjs/react.production.js",
  "node_modules/react-dom/cjs/react-dom-server-legacy.node.production.js",
  "www/js/app.js",
  "www/js/catalog.js",
  "www/js/products.js",
];
const CSS = ["www/css/site.css", "www/css/base.css", "node_modules/bootstrap/dist/css/bootstrap.css"];

const gz = (bytes) => gzipSync(bytes, { level: 9 }).length;
const kb = (n) => (n / 1024).toFixed(1);

function ours(command, file) {
  const out = path.join(scratch, "out");
  const [name, ...flags] = command.split(" ");
  const result = spawnSync(bin, [name, ...flags, file, "--out", out, "--repeat", String(REPEAT), "--timings"], { encoding: "utf8" });
  if (result.status !== 0) return { error: result.stderr.trim().split("\n").pop().replace(/^error: .*?: /, "") };
  const timings = JSON.parse(result.stderr.trim().split("\n").pop());
  return { bytes: readFileSync(out), ms: timings.best_ms };
}

function theirs(source, loader) {
  let best = Infinity;
  let code;
  for (let i = 0; i < REPEAT; i++) {
    const started = process.hrtime.bigint();
    code = esbuild.transformSync(source, { loader, minify: true }).code;
    best = Math.min(best, Number(process.hrtime.bigint() - started) / 1e6);
  }
  return { bytes: Buffer.from(code), ms: best };
}

function table(title, loader, command, files) {
  console.log(`\n## ${title}\n`);
  console.log("| file | original gz KB | esbuild gz KB | ours gz KB | size ratio (ours/esbuild) | esbuild ms | ours ms | time ratio |");
  console.log("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
  const totals = { esbuild: 0, ours: 0, esbuildMs: 0, oursMs: 0 };
  for (const file of files) {
    const full = path.join(root, file);
    const source = readFileSync(full);
    const them = theirs(source.toString("utf8"), loader);
    const us = ours(command, full);
    const name = file.replace("node_modules/", "");
    if (us.error) {
      console.log(`| ${name} | ${kb(gz(source))} | ${kb(gz(them.bytes))} | failed | n/a | ${them.ms.toFixed(2)} | n/a | n/a |`);
      console.log(`|  | ↳ ${us.error.replace(/\|/g, "\\|")} |`);
      continue;
    }
    totals.esbuild += gz(them.bytes);
    totals.ours += gz(us.bytes);
    totals.esbuildMs += them.ms;
    totals.oursMs += us.ms;
    console.log(
      `| ${name} | ${kb(gz(source))} | ${kb(gz(them.bytes))} | ${kb(gz(us.bytes))} | ${(gz(us.bytes) / gz(them.bytes)).toFixed(3)} | ${them.ms.toFixed(2)} | ${us.ms.toFixed(2)} | ${(us.ms / them.ms).toFixed(2)} |`,
    );
  }
  if (totals.esbuild > 0) {
    console.log(
      `| **all minified** |  | ${kb(totals.esbuild)} | ${kb(totals.ours)} | ${(totals.ours / totals.esbuild).toFixed(3)} | ${totals.esbuildMs.toFixed(2)} | ${totals.oursMs.toFixed(2)} | ${(totals.oursMs / totals.esbuildMs).toFixed(2)} |`,
    );
  }
}

console.log(`binary: ${bin}; best of ${REPEAT}; esbuild ${esbuild.version}`);
table("JavaScript: oxc vs esbuild", "js", "minify-js", JS);
table("CSS: lightningcss vs esbuild", "css", "minify-css", CSS);
table("CSS at the edge (EDGE_MINIFY_CSS): our minifier vs esbuild", "css", "minify-css --edge", CSS);
