// Purge benchmarks, in workerd via wrangler dev (one data centre, one
// isolate: what is measured is the local path of a purge, not the spread to
// other data centres, which PURGE_SYNC_MS bounds).
//  1. Propagation: from the purge API's 200 to the first fresh answer for the
//     purged page, over many purges (median and max).
//  2. Hit-path cost: wrk on a hit for a page carrying origin tags vs one
//     carrying only the automatic tags, in the same run (ratio).
// Usage: node benches/purge/run.mjs [purges] [wrk seconds]
import { spawnSync } from 'node:child_process';
import { originsVar, startOrigin, startWorker } from '../../tests/e2e/harness.mjs';

const PURGES = Number(process.argv[2] ?? 50);
const SECONDS = Number(process.argv[3] ?? 8);
const TOKEN = 'bench-purge-token-0123456789';
const versions = new Map();

const origin = await startOrigin((req, res) => {
  const n = (versions.get(req.url) ?? 0) + 1;
  versions.set(req.url, n);
  const headers = { 'content-type': 'text/plain', 'cache-control': 'max-age=3600' };
  if (!req.url.startsWith('/untagged')) headers['cache-tag'] = `page:${req.url}, pages, catalogue`;
  res.writeHead(200, headers);
  res.end(`${req.url} v${n} ${'x'.repeat(1024)}`);
});
const worker = await startWorker({ vars: { ORIGINS: originsVar([{ name: 'primary', origin }]), PURGE_TOKEN: TOKEN, REQUEST_LOG: 'off' } });

const get = async (path) => {
  const r = await fetch(`${worker.url}${path}`);
  return { status: r.headers.get('cache-status'), body: await r.text() };
};

try {
  const delays = [];
  for (let i = 0; i < PURGES; i++) {
    const path = `/p/${i}`;
    const first = await get(path);
    while (!/^cachefront; hit/.test((await get(path)).status)) { /* wait for the stored copy */ }
    await new Promise((r) => setTimeout(r, 1_050)); // purges are compared at ms, entries fetched before
    const res = await fetch(`${worker.url}/__cachefront/purge`, {
      method: 'POST',
      headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' },
      body: JSON.stringify({ tags: [`page:${path}`] }),
    });
    await res.text();
    if (res.status !== 200) throw new Error(`purge answered ${res.status}`);
    const acknowledged = performance.now();
    let answer;
    do answer = await get(path); while (answer.body === first.body);
    delays.push(performance.now() - acknowledged);
  }
  delays.sort((a, b) => a - b);
  console.log(`purge propagation over ${PURGES} purges: median ${delays[Math.floor(delays.length / 2)].toFixed(1)} ms, max ${delays[delays.length - 1].toFixed(1)} ms`);

  for (const path of ['/tagged/hit', '/untagged/hit']) {
    for (let i = 0; i < 3; i++) await get(path);
  }
  const rps = (path) => {
    const out = spawnSync('wrk', ['-t2', '-c16', `-d${SECONDS}s`, `${worker.url}${path}`], { encoding: 'utf8' });
    return Number(/Requests\/sec:\s+([\d.]+)/.exec(out.stdout)?.[1]);
  };
  const untagged = rps('/untagged/hit');
  const tagged = rps('/tagged/hit');
  console.log(`hit path: origin tags ${tagged.toFixed(0)} req/s, automatic tags only ${untagged.toFixed(0)} req/s, ratio ${(tagged / untagged).toFixed(3)}`);
} finally {
  await worker.stop();
  await origin.close();
}
