// Cache-hit throughput: the Cachefront worker serving a HIT vs a minimal
// JavaScript worker over caches.default.match, both in workerd (wrangler dev
// --local, same runtime version), loaded with wrk on loopback in one run.
// Prints requests/s of each and the ratio. The runs are interleaved over
// several rounds (baseline, Cache API tier, memory tier, repeat) and each
// ratio is the median of the per-round ratios, so load that comes and goes
// on the machine hits both sides alike.
//
// Each run also measures CPU per request: the user+sys CPU time of the
// variant's workerd process (/proc/<pid>/stat) over the run, divided by the
// requests wrk completed. On a shared machine req/s follows whatever else
// runs; CPU per request moves much less (it still grows under contention,
// for every variant alike), so its ratio to the bare JS worker in the same
// round is the figure to read under load. It counts all of workerd (HTTP
// parsing, wrangler dev's proxy and asset-router workers, console
// forwarding to the inspector), not only our wasm: the variants without
// [assets] show the worker's own code against the bare JS worker.
//
// CACHE_HIT_OTHER_BUILD=<dir> adds the memory and Cache API tiers of another
// build of the worker (a build/ directory copied elsewhere, e.g. of the
// commit before a change) to the same interleaved rounds, for a before/after
// comparison under the same load.
// Usage: node benches/cache-hit/run.mjs [seconds per run] [rounds]
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { freePort, originsVar, repoRoot, startOrigin, startWorker } from '../../tests/e2e/harness.mjs';
import { workerdCpuSeconds } from '../workerd-cpu.mjs';

const seconds = Number(process.argv[2] ?? 10);
const rounds = Number(process.argv[3] ?? 3);
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const BODY_BYTES = 2048;

/** wrk against `w.url`; with the workerd CPU it used per request (µs). */
function wrk(w) {
  const before = workerdCpuSeconds(w.pid);
  const out = spawnSync('wrk', ['-t2', '-c32', `-d${seconds}s`, '--latency', `${w.url}/bench/hit`], { encoding: 'utf8' });
  const after = workerdCpuSeconds(w.pid);
  if (out.status !== 0) throw new Error(`wrk failed: ${out.stderr || out.error}`);
  const rps = Number(/Requests\/sec:\s+([\d.]+)/.exec(out.stdout)?.[1]);
  const requests = Number(/(\d+) requests in/.exec(out.stdout)?.[1]);
  const p99 = /99%\s+(\S+)/.exec(out.stdout)?.[1];
  const non2xx = Number(/Non-2xx or 3xx responses:\s+(\d+)/.exec(out.stdout)?.[1] ?? 0);
  if (!(after > before)) throw new Error(`no workerd CPU seen for ${w.url} (process group ${w.pid})`);
  const cpuUs = ((after - before) * 1e6) / requests;
  return { rps, p99, non2xx, cpuUs };
}

async function startBaseline(config = 'benches/cache-hit/wrangler.baseline.toml') {
  const port = await freePort();
  const inspector = await freePort();
  const persist = mkdtempSync(path.join(tmpdir(), 'cachefront-bench-'));
  const child = spawn(path.join(repoRoot, 'node_modules/.bin/wrangler'), [
    'dev', '--local', '--ip', '127.0.0.1', '--port', String(port), '--inspector-port', String(inspector),
    '--persist-to', persist, '-c', path.join(repoRoot, config),
    '--show-interactive-dev-session=false',
  ], { detached: true, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, WRANGLER_SEND_METRICS: 'false', CLOUDFLARE_CF_FETCH_ENABLED: 'false' } });
  let output = '';
  child.stdout.on('data', (d) => (output += d));
  child.stderr.on('data', (d) => (output += d));
  const url = `http://127.0.0.1:${port}`;
  for (let i = 0; i < 300 && !output.includes('Ready on'); i++) await new Promise((r) => setTimeout(r, 200));
  return {
    url,
    pid: child.pid,
    stop: () => {
      try { process.kill(-child.pid, 'SIGTERM'); } catch { /* gone */ }
      rmSync(persist, { recursive: true, force: true });
    },
  };
}

const origin = await startOrigin((_req, res) => {
  res.writeHead(200, { 'content-type': 'text/plain', 'cache-control': 'public, max-age=600' });
  res.end('x'.repeat(BODY_BYTES));
});
// Request logs off: wrangler dev forwards console output through its
// inspector, which costs far more than Workers Logs do in production. One
// variant per round has the default (REQUEST_LOG=json), against logging off.
const vars = { ORIGINS: originsVar([{ name: 'primary', origin }]), REQUEST_LOG: 'off' };
const memoryTier = await startWorker({ vars });
const edgeTierOnly = await startWorker({ vars: { ...vars, MEMORY_CACHE_BYTES: '0' } });
const logging = await startWorker({ vars: { ...vars, REQUEST_LOG: 'json' } });
// The same worker without [assets]: workerd then runs no asset router in
// front of it, like the bare JS worker, so the two compare the workers' code
// alone.
const bareConfig = '.wrangler-bench-no-assets.toml';
writeFileSync(
  path.join(repoRoot, bareConfig),
  readFileSync(path.join(repoRoot, 'wrangler.toml'), 'utf8').replace(/^\[assets\]\n(?:(?:#.*|[a-z_]+ = .*)\n)*/m, ''),
);
const bareMemory = await startWorker({ vars, config: bareConfig });
const bareEdge = await startWorker({ vars: { ...vars, MEMORY_CACHE_BYTES: '0' }, config: bareConfig });
const otherBuild = process.env.CACHE_HIT_OTHER_BUILD;
let other;
const otherConfig = '.wrangler-bench-other-build.toml';
const otherBareConfig = '.wrangler-bench-other-build-no-assets.toml';
if (otherBuild) {
  // wrangler.toml with `main` in the other build (and no build command).
  const toml = readFileSync(path.join(repoRoot, 'wrangler.toml'), 'utf8')
    .replace(/^main = .*$/m, `main = ${JSON.stringify(path.join(path.resolve(otherBuild), 'index.js'))}`)
    .replace(/^\[build\]\ncommand = .*$/m, '');
  writeFileSync(path.join(repoRoot, otherConfig), toml);
  // And the same without [assets], to compare the two builds' code alone.
  writeFileSync(path.join(repoRoot, otherBareConfig), toml.replace(/^\[assets\]\n(?:(?:#.*|[a-z_]+ = .*)\n)*/m, ''));
  other = {
    memory: await startWorker({ vars, config: otherConfig }),
    edge: await startWorker({ vars: { ...vars, MEMORY_CACHE_BYTES: '0' }, config: otherConfig }),
    bare: await startWorker({ vars, config: otherBareConfig }),
    bareEdge: await startWorker({ vars: { ...vars, MEMORY_CACHE_BYTES: '0' }, config: otherBareConfig }),
    logged: await startWorker({ vars: { ...vars, REQUEST_LOG: 'json' }, config: otherConfig }),
  };
}
const baseline = await startBaseline();
// The same JavaScript deployed like Cachefront (assets with run_worker_first):
// workerd then routes both through the same asset router, so the ratio
// compares the two workers' code rather than their deployment shape.
const shaped = await startBaseline('benches/cache-hit/wrangler.baseline-assets.toml');
// The bare JS worker writing one JSON console line per request: the
// runtime's share of what REQUEST_LOG=json costs.
const jsLogged = await startBaseline('benches/cache-hit/wrangler.baseline-log.toml');
try {
  for (const w of [memoryTier, edgeTierOnly, logging, bareMemory, bareEdge, baseline, shaped, jsLogged, ...(other ? [other.memory, other.edge, other.bare, other.bareEdge, other.logged] : [])]) {
    for (let i = 0; i < 3; i++) await (await fetch(`${w.url}/bench/hit`)).text();
    // Two seconds of load, not measured: V8 compiles the hot wasm (and JS)
    // functions again with its optimising tier in the background, and that
    // CPU would otherwise land in the first round's CPU per request.
    spawnSync('wrk', ['-t2', '-c32', '-d2s', `${w.url}/bench/hit`], { encoding: 'utf8' });
  }
  const hitStatus = (await fetch(`${edgeTierOnly.url}/bench/hit`)).headers.get('cache-status');
  console.log(`body ${BODY_BYTES} B, wrk -t2 -c32 -d${seconds}s on loopback, ${rounds} interleaved rounds; edge-tier hit answers: ${hitStatus}`);
  // Per variant and round: req/s and CPU per request.
  const variants = {
    baseline: { name: 'bare JS worker (caches.default.match)', w: baseline },
    shaped: { name: 'same JS deployed with [assets] like Cachefront', w: shaped },
    edge: { name: 'Cache API tier', w: edgeTierOnly },
    memory: { name: 'memory tier', w: memoryTier },
    logged: { name: 'memory tier, REQUEST_LOG=json', w: logging },
    jsLogged: { name: 'bare JS worker with one JSON console line', w: jsLogged },
    bare: { name: 'memory tier without [assets]', w: bareMemory },
    bareEdge: { name: 'Cache API tier without [assets]', w: bareEdge },
  };
  if (other) {
    variants.otherMemory = { name: 'other build: memory tier', w: other.memory };
    variants.otherEdge = { name: 'other build: Cache API tier', w: other.edge };
    variants.otherBare = { name: 'other build: memory tier without [assets]', w: other.bare };
    variants.otherBareEdge = { name: 'other build: Cache API tier without [assets]', w: other.bareEdge };
    variants.otherLogged = { name: 'other build: memory tier, REQUEST_LOG=json', w: other.logged };
  }
  const only = process.env.CACHE_HIT_VARIANTS?.split(',').map((k) => k.trim());
  if (only) {
    for (const k of Object.keys(variants)) if (k !== 'baseline' && !only.includes(k)) delete variants[k];
  }
  const runs = Object.fromEntries(Object.keys(variants).map((k) => [k, []]));
  for (let round = 1; round <= rounds; round += 1) {
    const line = [];
    const order = Object.entries(variants);
    if (round % 2 === 0) order.reverse();
    for (const [k, v] of order) {
      const r = wrk(v.w);
      runs[k].push(r);
      line.push(`${v.name} ${r.rps.toFixed(0)} req/s (p99 ${r.p99}, non-2xx ${r.non2xx}) ${r.cpuUs.toFixed(0)} µs CPU/req`);
    }
    console.log(`round ${round}: ${line.join('; ')}`);
  }
  // Throughput ratio: variant req/s over baseline req/s (higher is better).
  // CPU ratio: baseline CPU/req over variant CPU/req, so it reads the same
  // way (1.0 = as cheap as the baseline; higher is better).
  const ratio = (k, against, metric) =>
    median(runs[k].map((r, i) => (metric === 'rps' ? r.rps / runs[against][i].rps : runs[against][i].cpuUs / r.cpuUs)));
  const cpu = (k) => median(runs[k].map((r) => r.cpuUs));
  console.log(`\nmedians of ${rounds} interleaved rounds          req/s ratio   CPU ratio   CPU/req`);
  const row = (label, k, against) => runs[k] && runs[against] &&
    console.log(`${label.padEnd(44)} ${ratio(k, against, 'rps').toFixed(2).padStart(6)}   ${ratio(k, against, 'cpu').toFixed(2).padStart(9)}   ${cpu(k).toFixed(0).padStart(5)} µs`);
  console.log(`${'bare JS worker'.padEnd(44)} ${'1.00'.padStart(6)}   ${'1.00'.padStart(9)}   ${cpu('baseline').toFixed(0).padStart(5)} µs`);
  row('memory tier / bare JS worker', 'memory', 'baseline');
  row('Cache API tier / bare JS worker', 'edge', 'baseline');
  row('memory tier / JS worker with assets', 'memory', 'shaped');
  row('Cache API tier / JS worker with assets', 'edge', 'shaped');
  row('memory tier without [assets] / bare JS worker', 'bare', 'baseline');
  row('Cache API tier without [assets] / bare JS worker', 'bareEdge', 'baseline');
  row('REQUEST_LOG=json / off (memory tier)', 'logged', 'memory');
  row('bare JS worker: one console line / none', 'jsLogged', 'baseline');
  if (other) {
    row('other build: memory tier / bare JS worker', 'otherMemory', 'baseline');
    row('other build: Cache API tier / bare JS worker', 'otherEdge', 'baseline');
    row('memory tier / other build\'s', 'memory', 'otherMemory');
    row('Cache API tier / other build\'s', 'edge', 'otherEdge');
    row('without [assets]: memory tier / other build\'s', 'bare', 'otherBare');
    row('without [assets]: Cache API tier / other build\'s', 'bareEdge', 'otherBareEdge');
    row('REQUEST_LOG=json: memory tier / other build\'s', 'logged', 'otherLogged');
    row('other build: REQUEST_LOG=json / off', 'otherLogged', 'otherMemory');
  }
  if (runs.memory && runs.edge && runs.logged) console.log(`extra CPU per request over the bare JS worker: memory tier ${(cpu('memory') - cpu('baseline')).toFixed(0)} µs, ` +
    `Cache API tier ${(cpu('edge') - cpu('baseline')).toFixed(0)} µs; JSON log line ${(cpu('logged') - cpu('memory')).toFixed(0)} µs` +
    (runs.jsLogged ? `, of which the runtime's console line (the JS worker's) ${(cpu('jsLogged') - cpu('baseline')).toFixed(0)} µs` : ''));
} finally {
  await memoryTier.stop();
  await edgeTierOnly.stop();
  await logging.stop();
  await bareMemory.stop();
  await bareEdge.stop();
  rmSync(path.join(repoRoot, bareConfig), { force: true });
  if (other) {
    await other.memory.stop();
    await other.edge.stop();
    await other.bare.stop();
    await other.bareEdge.stop();
    await other.logged.stop();
    rmSync(path.join(repoRoot, otherConfig), { force: true });
    rmSync(path.join(repoRoot, otherBareConfig), { force: true });
  }
  baseline.stop();
  shaped.stop();
  jsLogged.stop();
  await origin.close();
}
