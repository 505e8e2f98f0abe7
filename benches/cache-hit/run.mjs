// Cache-hit throughput: the Cachefront worker serving a HIT vs a minimal
// JavaScript worker over caches.default.match, both in workerd (wrangler dev
// --local, same runtime version), loaded with wrk on loopback in one run.
// Prints requests/s of each and the ratio. The runs are interleaved over
// several rounds (baseline, Cache API tier, memory tier, repeat) and each
// ratio is the median of the per-round ratios, so load that comes and goes
// on the machine hits both sides alike.
// Usage: node benches/cache-hit/run.mjs [seconds per run] [rounds]
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { freePort, originsVar, repoRoot, startOrigin, startWorker } from '../../tests/e2e/harness.mjs';

const seconds = Number(process.argv[2] ?? 10);
const rounds = Number(process.argv[3] ?? 3);
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const BODY_BYTES = 2048;

function wrk(url) {
  const out = spawnSync('wrk', ['-t2', '-c32', `-d${seconds}s`, '--latency', url], { encoding: 'utf8' });
  if (out.status !== 0) throw new Error(`wrk failed: ${out.stderr || out.error}`);
  const rps = Number(/Requests\/sec:\s+([\d.]+)/.exec(out.stdout)?.[1]);
  const p99 = /99%\s+(\S+)/.exec(out.stdout)?.[1];
  const non2xx = Number(/Non-2xx or 3xx responses:\s+(\d+)/.exec(out.stdout)?.[1] ?? 0);
  return { rps, p99, non2xx };
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
// inspector, which costs far more than Workers Logs do in production. The
// last line measures the default (logging on) for completeness.
const vars = { ORIGINS: originsVar([{ name: 'primary', origin }]), REQUEST_LOG: 'off' };
const memoryTier = await startWorker({ vars });
const edgeTierOnly = await startWorker({ vars: { ...vars, MEMORY_CACHE_BYTES: '0' } });
const logging = await startWorker({ vars: { ...vars, REQUEST_LOG: 'json' } });
const baseline = await startBaseline();
// The same JavaScript deployed like Cachefront (assets with run_worker_first):
// workerd then routes both through the same asset router, so the ratio
// compares the two workers' code rather than their deployment shape.
const shaped = await startBaseline('benches/cache-hit/wrangler.baseline-assets.toml');
try {
  for (const w of [memoryTier, edgeTierOnly, logging, baseline, shaped]) {
    for (let i = 0; i < 3; i++) await (await fetch(`${w.url}/bench/hit`)).text();
  }
  const hitStatus = (await fetch(`${edgeTierOnly.url}/bench/hit`)).headers.get('cache-status');
  console.log(`body ${BODY_BYTES} B, wrk -t2 -c32 -d${seconds}s on loopback, ${rounds} interleaved rounds; edge-tier hit answers: ${hitStatus}`);
  const edgeRatios = [];
  const memoryRatios = [];
  const shapedEdgeRatios = [];
  const shapedMemoryRatios = [];
  for (let round = 1; round <= rounds; round += 1) {
    const base = wrk(`${baseline.url}/bench/hit`);
    const edge = wrk(`${edgeTierOnly.url}/bench/hit`);
    const memory = wrk(`${memoryTier.url}/bench/hit`);
    const assetsShaped = wrk(`${shaped.url}/bench/hit`);
    edgeRatios.push(edge.rps / base.rps);
    memoryRatios.push(memory.rps / base.rps);
    shapedEdgeRatios.push(edge.rps / assetsShaped.rps);
    shapedMemoryRatios.push(memory.rps / assetsShaped.rps);
    console.log(
      `round ${round}: baseline JS worker (caches.default.match) ${base.rps.toFixed(0)} req/s (p99 ${base.p99}, non-2xx ${base.non2xx}); ` +
        `same JS with [assets] run_worker_first ${assetsShaped.rps.toFixed(0)} (p99 ${assetsShaped.p99}); ` +
        `Cache API tier ${edge.rps.toFixed(0)} (p99 ${edge.p99}, non-2xx ${edge.non2xx}); ` +
        `memory tier ${memory.rps.toFixed(0)} (p99 ${memory.p99}, non-2xx ${memory.non2xx})`,
    );
  }
  const logged = wrk(`${logging.url}/bench/hit`);
  console.log(`cachefront, memory tier, JSON request logs: ${logged.rps.toFixed(0)} req/s, p99 ${logged.p99}, non-2xx ${logged.non2xx}`);
  console.log(`ratio (Cache API tier / baseline), median of ${rounds}: ${median(edgeRatios).toFixed(2)}`);
  console.log(`ratio (memory tier / baseline), median of ${rounds}:    ${median(memoryRatios).toFixed(2)}`);
  console.log(`ratio (Cache API tier / baseline with assets), median of ${rounds}: ${median(shapedEdgeRatios).toFixed(2)}`);
  console.log(`ratio (memory tier / baseline with assets), median of ${rounds}:    ${median(shapedMemoryRatios).toFixed(2)}`);
} finally {
  await memoryTier.stop();
  await edgeTierOnly.stop();
  await logging.stop();
  baseline.stop();
  shaped.stop();
  await origin.close();
}
