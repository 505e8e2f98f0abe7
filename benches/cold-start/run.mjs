// Cold start of the worker in workerd: the time from starting a fresh
// workerd (a new isolate: the wasm compiled, the module evaluated, which
// instantiates the wasm) until it is ready, plus the first request's answer
// (the worker's lazy set-up: configuration, first pipeline), for each worker
// build given, against a ten-line JavaScript worker started the same way in
// the same round. Rounds are interleaved; each figure is a median, and the
// cold start of a build is the median over rounds of (build − JS worker), so
// workerd's own start-up and the machine's load cancel out.
//
// Usage: node benches/cold-start/run.mjs [rounds] [name=build-dir ...]
//   with no build dirs: `default=build` (whatever scripts/build-worker.sh
//   last built). Build the variants first, e.g.
//     bash scripts/build-worker.sh && cp -r build /tmp/cf-default
//     CACHEFRONT_WORKER_FEATURES=js-minify bash scripts/build-worker.sh && cp -r build /tmp/cf-minify
//   then: node benches/cold-start/run.mjs 9 slim=/tmp/cf-default minify=/tmp/cf-minify
// Also prints each wasm's size (raw, gzip -9) and V8's compile time for it
// in this node (WebAssembly.compile, median) when this node can compile it
// (node 20 cannot: the wasm uses reference types only newer V8s accept).
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { gzipSync } from 'node:zlib';
import { Miniflare } from 'miniflare';
import { repoRoot } from '../../tests/e2e/harness.mjs';

const rounds = Number(process.argv[2] ?? 7);
const builds = (process.argv.slice(3).length ? process.argv.slice(3) : ['default=build']).map((arg) => {
  const [name, dir] = arg.split('=');
  return { name, dir: path.resolve(repoRoot, dir) };
});
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const COMPAT = '2026-04-20';

const scratch = mkdtempSync(path.join(tmpdir(), 'cachefront-cold-'));
const baselineScript = path.join(scratch, 'baseline.mjs');
// The same bindings as the worker (KV, a SQLite Durable Object class, the
// asset store), so that workerd starts the same services for both.
writeFileSync(
  baselineScript,
  `import { DurableObject } from 'cloudflare:workers';
export class TagRegistry extends DurableObject {}
export default { async fetch() { return new Response('{"ok":true}', { headers: { 'content-type': 'application/json' } }); } };\n`,
);

function options(build) {
  return {
    modules: true,
    modulesRoot: build ? build.dir : scratch,
    scriptPath: build ? path.join(build.dir, 'index.js') : baselineScript,
    modulesRules: [{ type: 'CompiledWasm', include: ['**/*.wasm'] }],
    compatibilityDate: COMPAT,
    bindings: { ORIGINS: '[{"name":"primary","url":"http://127.0.0.1:9"}]', REQUEST_LOG: 'off' },
    kvNamespaces: ['HEALTH', 'CACHE_KV'],
    durableObjects: { TAG_REGISTRY: { className: 'TagRegistry', useSQLite: true } },
    assets: { directory: path.join(repoRoot, 'dist', 'www'), binding: 'ASSETS', routerConfig: { has_user_worker: true } },
    cf: false,
  };
}

// CPU time (user + system, 10 ms ticks) of the workerd processes this node
// started: less disturbed by other load on the machine than wall time.
function workerdCpuMs() {
  let ticks = 0;
  for (const task of readdirSync('/proc/self/task')) {
    const children = readFileSync(`/proc/self/task/${task}/children`, 'utf8').trim().split(/\s+/).filter(Boolean);
    for (const pid of children) {
      try {
        if (readFileSync(`/proc/${pid}/comm`, 'utf8').trim() !== 'workerd') continue;
        const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
        ticks += Number(fields[11]) + Number(fields[12]);
      } catch {
        // exited
      }
    }
  }
  return ticks * 10;
}

// One cold start: a new workerd with one isolate, then its first two answers.
async function coldStart(build) {
  const t0 = performance.now();
  const mf = new Miniflare(options(build));
  await mf.ready;
  const t1 = performance.now();
  // The health endpoint runs the worker's whole entry (configuration, the
  // pipeline, the JSON answer) without a subrequest to an origin.
  const first = await mf.dispatchFetch('http://localhost/__cachefront/health');
  await first.arrayBuffer();
  const t2 = performance.now();
  const cpu = workerdCpuMs();
  const second = await mf.dispatchFetch('http://localhost/__cachefront/health');
  await second.arrayBuffer();
  const t3 = performance.now();
  await mf.dispose();
  return { ready: t1 - t0, first: t2 - t1, second: t3 - t2, total: t2 - t0, cpu };
}

const results = new Map([['js', []], ...builds.map((b) => [b.name, []])]);
for (let round = 0; round < rounds; round++) {
  results.get('js').push(await coldStart(null));
  for (const build of builds) results.get(build.name).push(await coldStart(build));
}

const fmt = (n) => n.toFixed(1);
console.log(`cold start in workerd (miniflare ${process.versions.node ? 'on node ' + process.versions.node : ''}), ${rounds} rounds, medians in ms`);
console.log('| worker | wasm raw | wasm gzip -9 | V8 compile (node) | workerd ready | first answer | second answer | wall: cold start − JS worker | workerd CPU to first answer − JS worker |');
console.log('| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |');
const js = results.get('js');
console.log(`| JS worker, same bindings | – | – | – | ${fmt(median(js.map((r) => r.ready)))} | ${fmt(median(js.map((r) => r.first)))} | ${fmt(median(js.map((r) => r.second)))} | 0 | 0 (${fmt(median(js.map((r) => r.cpu)))} ms) |`);
for (const build of builds) {
  const wasm = readFileSync(path.join(build.dir, 'index_bg.wasm'));
  const compiles = [];
  try {
    for (let i = 0; i < 5; i++) {
      const t = performance.now();
      await WebAssembly.compile(wasm);
      compiles.push(performance.now() - t);
    }
  } catch {
    // Node 20's V8 predates wasm features workerd's has (noexternref).
  }
  const runs = results.get(build.name);
  const extra = runs.map((r, i) => r.total - js[i].total);
  const extraCpu = runs.map((r, i) => r.cpu - js[i].cpu);
  console.log(
    `| ${build.name} | ${wasm.length.toLocaleString('en')} B | ${gzipSync(wasm, { level: 9 }).length.toLocaleString('en')} B | ${compiles.length ? fmt(median(compiles)) : 'n/a'} | ` +
      `${fmt(median(runs.map((r) => r.ready)))} | ${fmt(median(runs.map((r) => r.first)))} | ${fmt(median(runs.map((r) => r.second)))} | ` +
      `${fmt(median(extra))} (min ${fmt(Math.min(...extra))}, max ${fmt(Math.max(...extra))}) | ` +
      `**${fmt(median(extraCpu))}** (min ${fmt(Math.min(...extraCpu))}, max ${fmt(Math.max(...extraCpu))}) |`,
  );
}
rmSync(scratch, { recursive: true, force: true });
