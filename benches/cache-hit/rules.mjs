// What cache rules cost a hit: the Cachefront worker serving the same 2 KiB
// memory-tier HIT without rules (the baseline) and with 50 rules in
// CACHE_RULES, in workerd, loaded with wrk on loopback. The request matches
// only the 50th rule, so every rule is evaluated on every request (the
// worst case for a list of that size). Runs are interleaved over rounds and
// the ratio is the median of the per-round ratios.
// Usage: node benches/cache-hit/rules.mjs [seconds per run] [rounds] [rules]
import { spawnSync } from 'node:child_process';
import { originsVar, startOrigin, startWorker } from '../../tests/e2e/harness.mjs';

const seconds = Number(process.argv[2] ?? 10);
const rounds = Number(process.argv[3] ?? 5);
const count = Number(process.argv[4] ?? 50);
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

function wrk(url) {
  const out = spawnSync('wrk', ['-t2', '-c32', `-d${seconds}s`, url], { encoding: 'utf8' });
  if (out.status !== 0) throw new Error(`wrk failed: ${out.stderr || out.error}`);
  const non2xx = Number(/Non-2xx or 3xx responses:\s+(\d+)/.exec(out.stdout)?.[1] ?? 0);
  if (non2xx > 0) throw new Error(`${non2xx} non-2xx answers from ${url}`);
  return Number(/Requests\/sec:\s+([\d.]+)/.exec(out.stdout)?.[1]);
}

/** A realistic mix that the bench request does not match, then one that does. */
function rules(n) {
  const list = [];
  for (let i = 0; i < n - 1; i += 1) {
    switch (i % 5) {
      case 0:
        list.push({ name: `section-${i}`, match: { path: `/section-${i}/**` }, cache: 'everything', edge_ttl: { mode: 'override', seconds: 600 } });
        break;
      case 1:
        list.push({ name: `assets-${i}`, match: { path: `/assets-${i}/**/*.css`, extensions: ['css', 'js'] }, cache_key: { query: 'none' } });
        break;
      case 2:
        list.push({ name: `api-${i}`, match: { path: '/api/**', header: { 'x-tenant': `tenant-${i}` } }, cache: 'bypass' });
        break;
      case 3:
        list.push({ name: `search-${i}`, match: { path: `/search-${i}`, query: { present: ['q'] } }, cache_key: { query: { include: ['q'] } } });
        break;
      default:
        list.push({ name: `members-${i}`, match: { path: '/members/**', cookie: [`member-${i}`] }, cache: 'bypass' });
    }
  }
  list.push({ name: 'bench', match: { path: '/bench/**', methods: ['GET', 'HEAD'] }, cache: 'standard', tags: ['bench'] });
  return list;
}

const origin = await startOrigin((_req, res) => {
  res.writeHead(200, { 'content-type': 'text/plain', 'cache-control': 'public, max-age=600' });
  res.end('x'.repeat(2048));
});
const vars = { ORIGINS: originsVar([{ name: 'primary', origin }]), REQUEST_LOG: 'off' };
const plain = await startWorker({ vars });
const ruled = await startWorker({ vars: { ...vars, CACHE_RULES: JSON.stringify(rules(count)) } });
try {
  for (const w of [plain, ruled]) {
    for (let i = 0; i < 3; i++) await (await fetch(`${w.url}/bench/hit`)).text();
  }
  const status = (await fetch(`${ruled.url}/bench/hit`)).headers.get('cache-status');
  console.log(`${count} rules, the request matching the last; wrk -t2 -c32 -d${seconds}s, ${rounds} interleaved rounds; with rules: ${status}`);
  const ratios = [];
  for (let round = 1; round <= rounds; round += 1) {
    const base = wrk(`${plain.url}/bench/hit`);
    const withRules = wrk(`${ruled.url}/bench/hit`);
    ratios.push(withRules / base);
    console.log(`round ${round}: no rules ${base.toFixed(0)} req/s, ${count} rules ${withRules.toFixed(0)} req/s, ratio ${(withRules / base).toFixed(3)}`);
  }
  console.log(`median ratio (${count} rules / no rules): ${median(ratios).toFixed(3)}`);
} finally {
  await plain.stop();
  await ruled.stop();
  await origin.close();
}
