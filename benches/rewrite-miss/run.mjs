// What edge HTML rewriting (HTML_REWRITE, on by default) adds to a cache
// miss in workerd: the demo site's pages (www/*.html, as an origin would
// serve them, with their unfingerprinted asset URLs) and one page of about
// 1 MB built from them, fetched from a loopback origin through two
// Cachefront workers, HTML_REWRITE=on and =off, every request a fresh URL
// (a miss, so the page is rewritten and stored each time). Reported per
// page: the workerd CPU per request (user + system from /proc) on each side
// and the difference, which is what a rewrite costs the miss that stores
// the page (hits serve the stored result).
//
// Usage: node benches/rewrite-miss/run.mjs [rounds]
// Each round fetches every page once per side (interleaved); CPU ticks are
// 10 ms, so the small pages need many rounds (the default 200).
import { readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { originsVar, repoRoot, startOrigin, startWorker } from '../../tests/e2e/harness.mjs';
import { workerdCpuSeconds } from '../workerd-cpu.mjs';

const rounds = Number(process.argv[2] ?? 200);

function htmlUnder(dir) {
  const out = [];
  for (const name of readdirSync(dir)) {
    const full = path.join(dir, name);
    if (statSync(full).isDirectory()) out.push(...htmlUnder(full));
    else if (name.endsWith('.html')) out.push(full);
  }
  return out;
}

const www = path.join(repoRoot, 'www');
const pages = new Map(
  htmlUnder(www)
    .sort()
    .map((file) => [path.relative(www, file), readFileSync(file, 'utf8')]),
);
/** About 1 MB: the index page's head, then every page's body, repeated. */
function largePage() {
  const index = pages.get('index.html');
  let page = index.slice(0, index.indexOf('<body'));
  const bodies = [...pages.values()]
    .filter((html) => html.includes('<body') && html.includes('</body>'))
    .map((html) => html.slice(html.indexOf('>', html.indexOf('<body')) + 1, html.lastIndexOf('</body>')));
  // Under STREAM_BODIES_ABOVE_BYTES (1 MiB in wrangler.toml): rewritten whole.
  while (page.length < 1_000_000) page += bodies[page.length % bodies.length];
  return `${page}</body></html>`;
}
pages.set('large (1 MB)', largePage());

const paths = new Map([...pages.keys()].map((name, i) => [`/rewrite-bench/p${i}`, name]));
const origin = await startOrigin((req, res) => {
  const name = paths.get(req.url.split('?')[0]);
  if (!name) {
    res.writeHead(404).end();
    return;
  }
  res.writeHead(200, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'public, max-age=600' });
  res.end(pages.get(name));
});
const vars = { ORIGINS: originsVar([{ name: 'primary', origin }]), REQUEST_LOG: 'off' };
const on = await startWorker({ vars: { ...vars, HTML_REWRITE: 'on' } });
const off = await startWorker({ vars: { ...vars, HTML_REWRITE: 'off' } });

async function miss(worker, key, n) {
  const res = await fetch(`${worker.url}${key}?n=${n}`);
  const body = await res.text();
  return { body, cache: res.headers.get('cache-status') };
}

try {
  // Warm both isolates (the first requests compile the wasm, read the manifest).
  for (const w of [on, off]) for (let i = 0; i < 3; i++) await miss(w, '/rewrite-bench/p0', `warm${i}`);
  const sample = await miss(on, '/rewrite-bench/p0', 'check');
  const plain = await miss(off, '/rewrite-bench/p0', 'check');
  if (sample.body === plain.body) throw new Error('HTML_REWRITE=on served the page unchanged: is the manifest in dist/www?');
  console.log(`workerd via wrangler dev; ${rounds} misses per page and side, interleaved; first answer: ${sample.cache}\n`);
  console.log('| page | bytes | CPU µs/req, off | CPU µs/req, on | rewrite adds, µs |');
  console.log('| --- | ---: | ---: | ---: | ---: |');
  const cpu = { on: new Map(), off: new Map() };
  for (let i = 0; i < rounds; i++) {
    for (const key of paths.keys()) {
      for (const [side, w] of [['off', off], ['on', on]]) {
        const before = workerdCpuSeconds(w.pid);
        await miss(w, key, `${side}${i}`);
        cpu[side].set(key, (cpu[side].get(key) ?? 0) + workerdCpuSeconds(w.pid) - before);
      }
    }
  }
  let totalOff = 0;
  let totalOn = 0;
  for (const [key, name] of paths) {
    const offUs = (cpu.off.get(key) * 1e6) / rounds;
    const onUs = (cpu.on.get(key) * 1e6) / rounds;
    if (!name.startsWith('large')) {
      totalOff += offUs;
      totalOn += onUs;
    }
    console.log(`| ${name} | ${Buffer.byteLength(pages.get(name))} | ${offUs.toFixed(0)} | ${onUs.toFixed(0)} | ${(onUs - offUs).toFixed(0)} |`);
  }
  const n = paths.size - 1;
  console.log(`| demo pages, mean | | ${(totalOff / n).toFixed(0)} | ${(totalOn / n).toFixed(0)} | ${((totalOn - totalOff) / n).toFixed(0)} |`);
} finally {
  await on.stop();
  await off.stop();
  await origin.close();
}
