// Where a hit's CPU goes inside workerd: samples the worker's isolate with
// the V8 profiler (through wrangler dev's inspector) while wrk loads one
// variant, and prints the functions with the most self time (JavaScript
// glue, runtime built-ins and, in a build with names kept, wasm functions).
// Build with `CACHEFRONT_WASM_NAMES=keep bash scripts/build-worker.sh` to
// see the Rust functions by name.
// CACHE_HIT_PROFILE_OUT=<file.cpuprofile> also writes the whole profile
// (Chrome DevTools opens it), and CACHE_HIT_CALLERS=<text> lists who calls
// the functions whose name contains <text>, with their share.
// Usage: node benches/cache-hit/profile.mjs [memory|edge|json] [seconds] [top]
import { spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import WebSocket from 'ws';
import { originsVar, startOrigin, startWorker } from '../../tests/e2e/harness.mjs';

const variant = process.argv[2] ?? 'memory';
const seconds = Number(process.argv[3] ?? 5);
const top = Number(process.argv[4] ?? 40);

const origin = await startOrigin((_req, res) => {
  res.writeHead(200, { 'content-type': 'text/plain', 'cache-control': 'public, max-age=600' });
  res.end('x'.repeat(2048));
});
const vars = { ORIGINS: originsVar([{ name: 'primary', origin }]), REQUEST_LOG: variant === 'json' ? 'json' : 'off' };
if (variant === 'edge') vars.MEMORY_CACHE_BYTES = '0';
const worker = await startWorker({ vars });
try {
  for (let i = 0; i < 3; i++) await (await fetch(`${worker.url}/bench/hit`)).text();
  const targets = await (await fetch(`http://127.0.0.1:${worker.inspectorPort}/json`)).json();
  const target = targets.find((t) => t.webSocketDebuggerUrl) ?? targets[0];
  const ws = new WebSocket(target.webSocketDebuggerUrl);
  await new Promise((resolve, reject) => ws.once('open', resolve).once('error', reject));
  let next = 1;
  const pending = new Map();
  ws.on('message', (data) => {
    const msg = JSON.parse(data);
    if (msg.id && pending.has(msg.id)) {
      pending.get(msg.id)(msg);
      pending.delete(msg.id);
    }
  });
  const send = (method, params = {}) =>
    new Promise((resolve) => {
      const id = next++;
      pending.set(id, resolve);
      ws.send(JSON.stringify({ id, method, params }));
    });
  await send('Profiler.enable');
  await send('Profiler.setSamplingInterval', { interval: 50 });
  await send('Profiler.start');
  const out = spawnSync('wrk', ['-t2', '-c32', `-d${seconds}s`, `${worker.url}/bench/hit`], { encoding: 'utf8' });
  const requests = Number(/(\d+) requests in/.exec(out.stdout)?.[1]);
  const { result } = await send('Profiler.stop');
  ws.close();
  if (process.env.CACHE_HIT_PROFILE_OUT) writeFileSync(process.env.CACHE_HIT_PROFILE_OUT, JSON.stringify(result.profile));
  const { nodes, samples, timeDeltas } = result.profile;
  const byId = new Map(nodes.map((n) => [n.id, n]));
  const parent = new Map();
  for (const n of nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const label = (n) => {
    const f = n.callFrame;
    const where = f.url ? ` ${f.url.split('/').slice(-2).join('/')}:${f.lineNumber + 1}` : '';
    return `${f.functionName || '(anonymous)'}${where}`;
  };
  const self = new Map();
  const inclusive = new Map();
  let total = 0;
  samples.forEach((id, i) => {
    const dt = timeDeltas[i] ?? 0;
    total += dt;
    self.set(label(byId.get(id)), (self.get(label(byId.get(id))) ?? 0) + dt);
    const seen = new Set();
    for (let at = id; at !== undefined; at = parent.get(at)) seen.add(label(byId.get(at)));
    for (const name of seen) inclusive.set(name, (inclusive.get(name) ?? 0) + dt);
  });
  const busy = total - (self.get('(idle)') ?? 0);
  console.log(`${variant}: ${requests} requests in ${seconds}s; sampled ${(total / 1e3).toFixed(0)} ms, ${(busy / 1e3).toFixed(0)} ms not idle = ${(busy / requests).toFixed(1)} µs per request (the profiler slows everything; read the shares)`);
  for (const [title, map] of [['self time', self], ['inclusive time', inclusive]]) {
    console.log(`\n-- ${title}`);
    const rows = [...map.entries()].filter(([n]) => !n.startsWith('(idle)') && !n.startsWith('(root)')).sort((a, b) => b[1] - a[1]).slice(0, top);
    for (const [name, us] of rows) {
      console.log(`${(us / requests).toFixed(2).padStart(8)} µs/req  ${((100 * us) / busy).toFixed(1).padStart(5)} %  ${name}`);
    }
  }
  const wanted = process.env.CACHE_HIT_CALLERS;
  if (wanted) {
    // Inclusive time of the matching functions, by their caller.
    const callers = new Map();
    samples.forEach((id, i) => {
      const dt = timeDeltas[i] ?? 0;
      for (let at = id; at !== undefined; at = parent.get(at)) {
        if (!label(byId.get(at)).includes(wanted)) continue;
        const up = parent.get(at);
        const key = up === undefined ? '(root)' : label(byId.get(up));
        callers.set(key, (callers.get(key) ?? 0) + dt);
        break;
      }
    });
    console.log(`\n-- callers of *${wanted}*`);
    for (const [name, us] of [...callers.entries()].sort((a, b) => b[1] - a[1]).slice(0, top)) {
      console.log(`${(us / requests).toFixed(2).padStart(8)} µs/req  ${((100 * us) / busy).toFixed(1).padStart(5)} %  ${name}`);
    }
  }
} finally {
  await worker.stop();
  await origin.close();
}
