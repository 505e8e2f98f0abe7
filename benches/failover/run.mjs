// Failover latency: what a refused or hanging primary adds per request,
// against a healthy single-origin worker in the same run (all in workerd via
// wrangler dev, loopback origins). Sequential requests to no-store responses,
// so every request goes to the origins. Usage: node benches/failover/run.mjs [requests]
import { freePort, startOrigin, startWorker } from '../../tests/e2e/harness.mjs';

const N = Number(process.argv[2] ?? 200);

function quantile(sorted, q) {
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))];
}

async function measure(url, n) {
  const times = [];
  for (let i = 0; i < n; i++) {
    const t = performance.now();
    const res = await fetch(`${url}/bench/${i}`);
    await res.arrayBuffer();
    if (res.status !== 200) throw new Error(`status ${res.status} from ${url}`);
    times.push(performance.now() - t);
  }
  times.sort((a, b) => a - b);
  return { p50: quantile(times, 0.5), p99: quantile(times, 0.99) };
}

const healthy = await startOrigin((_req, res) => {
  res.writeHead(200, { 'content-type': 'text/plain', 'cache-control': 'no-store' });
  res.end('ok');
});
const hanging = await startOrigin(() => new Promise(() => {}));
const refusedUrl = `http://127.0.0.1:${await freePort()}`;
const origins = (primary, extra = {}) => JSON.stringify([
  { name: 'primary', url: primary, ...extra },
  { name: 'backup', url: healthy.url },
]);
const common = { REQUEST_LOG: 'off' };
const workers = {
  baseline: await startWorker({ vars: { ...common, ORIGINS: JSON.stringify([{ name: 'only', url: healthy.url }]) } }),
  refusedEveryTime: await startWorker({ vars: { ...common, ORIGINS: origins(refusedUrl), HEALTH_FAILURE_THRESHOLD: '1000000' } }),
  circuitOpen: await startWorker({ vars: { ...common, ORIGINS: origins(refusedUrl), HEALTH_FAILURE_THRESHOLD: '1', HEALTH_COOLDOWN_SECS: '3600' } }),
  hangingPrimary: await startWorker({ vars: { ...common, ORIGINS: origins(hanging.url, { timeout_ms: 250 }), HEALTH_FAILURE_THRESHOLD: '1000000' } }),
};
try {
  for (const w of Object.values(workers)) await measure(w.url, 5); // warm up (and open the circuit)
  const base = await measure(workers.baseline.url, N);
  const refused = await measure(workers.refusedEveryTime.url, N);
  const open = await measure(workers.circuitOpen.url, N);
  const hang = await measure(workers.hangingPrimary.url, Math.min(N, 40));
  const fmt = (r) => `p50 ${r.p50.toFixed(2)} ms, p99 ${r.p99.toFixed(2)} ms`;
  console.log(`sequential requests: ${N} (hanging: ${Math.min(N, 40)}), loopback origins, workerd via wrangler dev`);
  console.log(`healthy single origin (baseline): ${fmt(base)}`);
  console.log(`primary refuses, circuit never opens: ${fmt(refused)}  added p99 ${(refused.p99 - base.p99).toFixed(2)} ms`);
  console.log(`primary refuses, circuit open:        ${fmt(open)}  added p99 ${(open.p99 - base.p99).toFixed(2)} ms`);
  console.log(`primary hangs, timeout_ms=250:        ${fmt(hang)}  added p50 ${(hang.p50 - base.p50).toFixed(2)} ms`);
} finally {
  for (const w of Object.values(workers)) await w.stop();
  await healthy.close();
  await hanging.close();
}
