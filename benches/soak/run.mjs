// Soak and origin faults in workerd (a bench, not a test; see README.md).
// 1. Load: wrk, SOAK_CONNECTIONS connections, SOAK_HIT_SECONDS of hits only
//    then SOAK_SECONDS of a hit/miss mix (mix.lua) against the Cachefront
//    worker, then the same against a
//    minimal JavaScript worker over caches.default (baseline-worker.js) in
//    front of the same origin; socket errors, non-2xx and the RSS of each
//    workerd process before and after.
// 2. Faults, against Cachefront only: connection reset mid-body, a body
//    shorter than its Content-Length, a stall of SOAK_STALL_SECONDS, a 5xx
//    burst; each answer is checked against docs/origins.md and
//    docs/caching.md.
// 3. Afterwards: a short wrk run and single requests must be answered normally.
// Everything runs on loopback and every phase is bounded in time.
import { spawn, spawnSync } from 'node:child_process';
import path from 'node:path';
import { originsVar, repoRoot, startOrigin, startWorker } from '../../tests/e2e/harness.mjs';

const SECONDS = Number(process.env.SOAK_SECONDS ?? 60);
const HIT_SECONDS = Number(process.env.SOAK_HIT_SECONDS ?? 30);
const CONNECTIONS = Number(process.env.SOAK_CONNECTIONS ?? 50);
const STALL_SECONDS = Number(process.env.SOAK_STALL_SECONDS ?? 30);
const BODY = 'x'.repeat(2048);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const here = path.join(repoRoot, 'benches', 'soak');

// ---------------------------------------------------------------- origin
/** Fault mode of the whole origin: null, 'stall' or '5xx'. */
let mode = null;
const stalled = new Set();
const origin = await startOrigin(async (req, res) => {
  const url = req.url;
  if (mode === 'stall') {
    await new Promise((resolve) => {
      const timer = setTimeout(resolve, STALL_SECONDS * 1000);
      stalled.add(() => {
        clearTimeout(timer);
        resolve();
      });
    });
  }
  if (mode === '5xx' && !url.startsWith('/hit/')) {
    res.writeHead(503, { 'content-type': 'text/plain', 'cache-control': 'public, max-age=300', 'retry-after': '1' });
    res.end('origin overloaded');
    return;
  }
  if (url.startsWith('/fault/reset')) {
    // Headers and a first part of the body, then the connection is reset.
    res.writeHead(200, { 'content-type': 'text/plain', 'content-length': '65536', 'cache-control': 'public, max-age=300' });
    res.write('r'.repeat(1024));
    setImmediate(() => req.socket.resetAndDestroy?.() ?? req.socket.destroy());
    return;
  }
  if (url.startsWith('/fault/truncated')) {
    // A body shorter than the Content-Length, then a clean close.
    res.writeHead(200, { 'content-type': 'text/plain', 'content-length': '10000', 'cache-control': 'public, max-age=300' });
    res.write('t'.repeat(100));
    setImmediate(() => req.socket.end());
    return;
  }
  const cc = url.startsWith('/stale/') ? 'max-age=1, stale-if-error=600' : 'public, max-age=600';
  res.writeHead(200, { 'content-type': 'text/plain', 'cache-control': cc });
  res.end(BODY);
});

// ---------------------------------------------------------------- helpers
/** RSS (KiB) of the workerd processes in a wrangler process group. */
function workerdRssKiB(groupId) {
  const ps = spawnSync('ps', ['-eo', 'pid=,pgid=,rss=,comm='], { encoding: 'utf8' });
  return ps.stdout
    .split('\n')
    .map((line) => line.trim().split(/\s+/))
    .filter(([, pgid, , comm]) => Number(pgid) === groupId && /workerd/.test(comm ?? ''))
    .reduce((sum, [, , rss]) => sum + Number(rss), 0);
}

/** wrk, run asynchronously: the stand-in origin lives in this process. */
async function wrk(url, seconds, runId, hitsOnly = false) {
  const args = ['-t2', `-c${CONNECTIONS}`, `-d${seconds}s`, '--timeout', '15s', '--latency', '-s', path.join(here, 'mix.lua'), url, '--', runId, ...(hitsOnly ? ['hits'] : [])];
  const child = spawn('wrk', args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d) => (stdout += d));
  child.stderr.on('data', (d) => (stderr += d));
  const killer = setTimeout(() => child.kill('SIGKILL'), (seconds + 60) * 1000);
  const status = await new Promise((resolve) => child.on('exit', resolve));
  clearTimeout(killer);
  if (status !== 0) throw new Error(`wrk failed (${status}): ${stderr}`);
  const socket = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(stdout);
  return {
    requests: Number(/(\d+) requests in/.exec(stdout)?.[1] ?? 0),
    rps: Number(/Requests\/sec:\s+([\d.]+)/.exec(stdout)?.[1] ?? 0),
    p99: /99%\s+(\S+)/.exec(stdout)?.[1],
    non2xx: Number(/Non-2xx or 3xx responses:\s+(\d+)/.exec(stdout)?.[1] ?? 0),
    socketErrors: socket ? socket.slice(1).reduce((a, b) => a + Number(b), 0) : 0,
    socketDetail: socket?.[0] ?? 'Socket errors: none',
  };
}

async function warm(url) {
  for (let i = 0; i < 20; i++) await (await fetch(`${url}/hit/${i}`)).arrayBuffer();
}

async function get(url, headers = {}) {
  const started = Date.now();
  const res = await fetch(url, { headers, signal: AbortSignal.timeout(60_000) });
  const body = await res.text();
  return { status: res.status, cache: res.headers.get('cache-status'), body, ms: Date.now() - started };
}

const checks = [];
function check(name, ok, detail) {
  checks.push({ name, ok, detail });
  console.log(`${ok ? 'ok  ' : 'FAIL'} ${name}: ${detail}`);
}

const mb = (kib) => (kib / 1024).toFixed(1);

// ---------------------------------------------------------------- run
const vars = { ORIGINS: originsVar([{ name: 'primary', origin }]), REQUEST_LOG: 'off' };
const cachefront = await startWorker({ vars });
const baseline = await startWorker({ config: 'benches/soak/wrangler.baseline.toml', vars: { ORIGIN: origin.url } });
let failed = false;
try {
  console.log(`soak: wrk -t2 -c${CONNECTIONS}, ${HIT_SECONDS} s of hits then ${SECONDS} s of mix.lua (4/5 hits on 20 pages, 1/5 new pages), 2 KiB bodies, loopback`);
  const memory = {};
  for (const [name, w] of [['cachefront', cachefront], ['baseline', baseline]]) {
    await warm(w.url);
    const before = workerdRssKiB(w.pid);
    // Hits only first: nothing new is stored, so growth here is the worker's
    // own (and the runtime's per-request) memory, not the cache's contents.
    const hits = await wrk(w.url, HIT_SECONDS, `${name}-hits`, true);
    await sleep(2_000);
    const afterHits = workerdRssKiB(w.pid);
    const load = await wrk(w.url, SECONDS, `${name}-${Date.now()}`);
    await sleep(2_000);
    const afterLoad = workerdRssKiB(w.pid);
    memory[name] = { before, afterHits, afterLoad, hits, load };
    console.log(
      `${name}: hits only ${hits.requests} requests (${hits.rps.toFixed(0)} req/s, p99 ${hits.p99}, non-2xx ${hits.non2xx}, ${hits.socketDetail}), ` +
        `workerd RSS ${mb(before)} -> ${mb(afterHits)} MiB (+${mb(afterHits - before)}); ` +
        `mix ${load.requests} requests (${load.rps.toFixed(0)} req/s, p99 ${load.p99}, non-2xx ${load.non2xx}, ${load.socketDetail}), ` +
        `RSS -> ${mb(afterLoad)} MiB (+${mb(afterLoad - afterHits)}, ${((afterLoad - afterHits) / Math.max(1, load.requests / 5)).toFixed(0)} KiB per new page)`,
    );
    check(`${name} load: no socket errors`, hits.socketErrors + load.socketErrors === 0, `${hits.socketDetail}; ${load.socketDetail}`);
    check(`${name} load: no non-2xx`, hits.non2xx + load.non2xx === 0, `${hits.non2xx + load.non2xx} of ${hits.requests + load.requests}`);
  }

  // -------------------------------------------------------------- faults
  const w = cachefront.url;
  // Stale copies for the fault phases, stale after one second.
  for (const p of ['/stale/reset', '/stale/stall', '/stale/5xx']) await get(`${w}${p}`);
  await sleep(2_100);

  // Reset mid-body and a short body: nothing was received whole, so the
  // request failed like an unreachable origin (502 origin_unreachable).
  const reset = await get(`${w}/fault/reset/1`);
  check('reset mid-body: 502 origin_unreachable, not stored', reset.status === 502 && /origin_unreachable/.test(reset.body), `${reset.status} ${reset.body.slice(0, 80)} [${reset.cache}]`);
  const truncated = await get(`${w}/fault/truncated/1`);
  check('body shorter than Content-Length: 502 origin_unreachable', truncated.status === 502 && /origin_unreachable/.test(truncated.body), `${truncated.status} ${truncated.body.slice(0, 80)} [${truncated.cache}]`);
  const truncatedAgain = await get(`${w}/fault/truncated/1`);
  check('the truncated body was not stored', truncatedAgain.status === 502 && !/^cachefront; hit/.test(truncatedAgain.cache ?? ''), `${truncatedAgain.status} [${truncatedAgain.cache}]`);

  // A stall longer than the origin timeout (10 s): 504 origin_timeout, a
  // stale copy within STALE_IF_DISCONNECTED_SECS is served instead, and hits
  // do not wait for the origin at all.
  mode = 'stall';
  const stallStarted = Date.now();
  const [stallMiss, stallStale, ...stallHits] = await Promise.all([
    get(`${w}/fault/stall/1`),
    get(`${w}/stale/stall`),
    ...Array.from({ length: 20 }, (_, i) => get(`${w}/hit/${i}`)),
  ]);
  check('stall: a miss gets 504 origin_timeout', stallMiss.status === 504 && /origin_timeout/.test(stallMiss.body), `${stallMiss.status} after ${stallMiss.ms} ms [${stallMiss.cache}]`);
  check('stall: a stale copy is served (stale-if-error / disconnected)', stallStale.status === 200 && /stale-if-(error|disconnected)/.test(stallStale.cache ?? ''), `${stallStale.status} after ${stallStale.ms} ms [${stallStale.cache}]`);
  const slowestHit = Math.max(...stallHits.map((h) => h.ms));
  check('stall: hits are served from the cache', stallHits.every((h) => h.status === 200 && /^cachefront; hit/.test(h.cache ?? '')), `20 hits, slowest ${slowestHit} ms`);
  await sleep(Math.max(0, STALL_SECONDS * 1000 - (Date.now() - stallStarted)));
  mode = null;
  for (const release of stalled) release();
  stalled.clear();

  // A 5xx burst: the origin's own 503 is passed on and never stored; a
  // stale copy within stale-if-error is served instead.
  mode = '5xx';
  const burst = await Promise.all(Array.from({ length: 100 }, (_, i) => get(`${w}/fault/5xx/${i % 10}`)));
  const burstStatuses = [...new Set(burst.map((b) => b.status))];
  check('5xx burst: the origin\'s 503 is passed on', burst.every((b) => b.status === 503), `statuses ${burstStatuses.join(',')}`);
  const burstStale = await get(`${w}/stale/5xx`);
  check('5xx burst: stale-if-error serves the stale copy', burstStale.status === 200 && /stale-if-error/.test(burstStale.cache ?? ''), `${burstStale.status} [${burstStale.cache}]`);
  mode = null;
  const afterBurst = await get(`${w}/fault/5xx/0`);
  check('after the burst: the 503 was not stored', afterBurst.status === 200 && afterBurst.body === BODY, `${afterBurst.status} [${afterBurst.cache}]`);

  // -------------------------------------------------------------- after
  const miss = await get(`${w}/after/miss`);
  const hit = await get(`${w}/after/miss`);
  check('afterwards: a miss is fetched and stored', miss.status === 200 && /stored/.test(miss.cache ?? ''), `[${miss.cache}]`);
  check('afterwards: then a hit', hit.status === 200 && /^cachefront; hit/.test(hit.cache ?? ''), `[${hit.cache}]`);
  const again = await wrk(w, 10, `after-${Date.now()}`);
  check('afterwards: 10 s of the mix without errors', again.socketErrors === 0 && again.non2xx === 0, `${again.requests} requests, ${again.rps.toFixed(0)} req/s, non-2xx ${again.non2xx}, ${again.socketDetail}`);
  await sleep(2_000);
  const end = workerdRssKiB(cachefront.pid);
  const [c, b] = [memory.cachefront, memory.baseline];
  console.log(
    `memory (workerd RSS, MiB): cachefront ${mb(c.before)} -> ${mb(c.afterHits)} after hits (+${mb(c.afterHits - c.before)}) -> ` +
      `${mb(c.afterLoad)} after the mix (+${mb(c.afterLoad - c.afterHits)}) -> ${mb(end)} after faults; ` +
      `baseline JS ${mb(b.before)} -> ${mb(b.afterHits)} (+${mb(b.afterHits - b.before)}) -> ${mb(b.afterLoad)} (+${mb(b.afterLoad - b.afterHits)})`,
  );
  failed = checks.some((c) => !c.ok);
  console.log(`${checks.filter((c) => c.ok).length} of ${checks.length} checks passed`);
} finally {
  mode = null;
  for (const release of stalled) release();
  await cachefront.stop();
  await baseline.stop();
  await origin.close();
}
process.exit(failed ? 1 : 0);
