// Hit-ratio trace bench (issue #15): replays a synthetic, seeded workload
// through the Cachefront worker in workerd (wrangler dev --local) and prints
// one table row per cache configuration. See README.md in this folder for the
// workload, the measures and how to read them. A bench, not a test: it checks
// nothing; it exits non-zero only when a configuration could not be measured.
//
// Usage: node benches/hit-ratio/run.mjs [--configs a,b,c] [--json out.json]
//          [--seconds 150] [--rate 50] [--urls 10000] [--alpha 0.9]
//          [--seed 1] [--concurrency 16] [--write-share 0.01]
//          [--outage-at 75] [--outage-seconds 8] [--purge-sync-ms 1000] [--dry-run] [--no-purge]
import { writeFileSync } from 'node:fs';
import http from 'node:http';
import { parseArgs } from 'node:util';
import { originsVar, startWorker } from '../../tests/e2e/harness.mjs';

// ---------------------------------------------------------------- parameters
const { values: args } = parseArgs({
  options: {
    configs: { type: 'string', default: 'a,b,c' },
    json: { type: 'string' },
    seconds: { type: 'string', default: '150' },
    rate: { type: 'string', default: '50' },
    urls: { type: 'string', default: '10000' },
    alpha: { type: 'string', default: '0.9' },
    seed: { type: 'string', default: '1' },
    concurrency: { type: 'string', default: '16' },
    'write-share': { type: 'string', default: '0.01' },
    'outage-at': { type: 'string', default: '75' },
    'outage-seconds': { type: 'string', default: '8' },
    'purge-sync-ms': { type: 'string', default: '1000' },
    'dry-run': { type: 'boolean', default: false },
    'no-purge': { type: 'boolean', default: false },
  },
});
const P = {
  seconds: Number(args.seconds),
  rate: Number(args.rate),
  urls: Number(args.urls),
  alpha: Number(args.alpha),
  seed: Number(args.seed),
  concurrency: Number(args.concurrency),
  writeShare: Number(args['write-share']),
  outageAt: Number(args['outage-at']),
  outageSeconds: Number(args['outage-seconds']),
  purgeSyncMs: Number(args['purge-sync-ms']),
};
for (const [name, value] of Object.entries(P)) {
  if (!Number.isFinite(value) || value < 0) throw new Error(`--${name}: not a non-negative number`);
}
if (P.rate <= 0 || P.urls < 1 || P.concurrency < 1) throw new Error('--rate, --urls and --concurrency must be positive');
if (P.outageAt + P.outageSeconds > P.seconds) throw new Error('the outage must end before the run does');
const PURGE_TOKEN = 'hit-ratio-bench-token-0123456789';

// The configurations. (b) and (c) use CACHE_RULES in the format of issue #15
// (JSON string form). Before measuring them, a probe checks that the worker
// applies the rules (Cache-Status names rule "html"); a build that ignores or
// refuses CACHE_RULES gets its row marked skipped instead of measuring (a)
// again under another name.
const HTML_RULE = {
  name: 'html',
  match: { path: '/p/**' },
  cache: 'everything',
  edge_ttl: { mode: 'override', seconds: 86400 },
  stale_if_error: 86400,
};
const ASSET_RULE = {
  name: 'assets',
  match: { extensions: ['json', 'jpg', 'css', 'js'] },
  cache: 'everything',
  edge_ttl: { mode: 'override', seconds: 86400 },
  stale_if_error: 86400,
};
const CONFIGS = {
  a: { label: '(a) origin headers only', rules: null },
  b: { label: '(b) rules: edge TTL 1 day + tag purge', rules: [HTML_RULE, ASSET_RULE] },
  c: {
    label: '(c) (b) + adaptive TTL on HTML',
    rules: [{ ...HTML_RULE, adaptive_ttl: { min: 60, max: 86400 } }, ASSET_RULE],
  },
};
const chosen = args.configs.split(',').map((c) => c.trim()).filter(Boolean);
for (const c of chosen) if (!CONFIGS[c]) throw new Error(`--configs: unknown configuration ${c} (a, b or c)`);

// ---------------------------------------------------------------- seeded workload
/** mulberry32: a small seeded PRNG, so every run replays the same trace. */
function prng(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
const pick = (rand, weighted) => {
  let x = rand() * weighted.reduce((s, [w]) => s + w, 0);
  for (const [w, v] of weighted) {
    if ((x -= w) < 0) return v;
  }
  return weighted[weighted.length - 1][1];
};
const between = (rand, lo, hi) => Math.floor(lo + rand() * (hi - lo + 1));

const DAY = 86400;
/**
 * The URL catalogue: kind, path, tag, body size and the origin's headers.
 * HTML never carries freshness (validators only, or nothing); the rest carry
 * max-age values of the usual kinds.
 */
function catalogue(rand) {
  const urls = [];
  for (let id = 0; id < P.urls; id++) {
    const kind = pick(rand, [[30, 'html'], [20, 'json'], [25, 'img'], [15, 'static-hashed'], [10, 'static']]);
    let path;
    let type;
    let cc = null;
    let validators;
    let size;
    let tag;
    switch (kind) {
      case 'html':
        path = `/p/${id}`;
        type = 'text/html; charset=utf-8';
        validators = pick(rand, [[40, 'etag'], [40, 'etag+lm'], [20, 'none']]);
        size = between(rand, 4096, 16384);
        tag = `page-${id}`;
        break;
      case 'json':
        path = `/api/items/${id}.json`;
        type = 'application/json';
        cc = pick(rand, [[50, 'public, max-age=60'], [30, 'public, max-age=300'], [20, 'max-age=60, stale-while-revalidate=30']]);
        validators = 'etag';
        size = between(rand, 512, 4096);
        tag = `item-${id}`;
        break;
      case 'img':
        path = `/img/${id}.jpg`;
        type = 'image/jpeg';
        cc = pick(rand, [[60, 'public, max-age=86400'], [40, 'public, max-age=3600']]);
        validators = 'etag+lm';
        size = between(rand, 4096, 32768);
        tag = `asset-${id}`;
        break;
      case 'static-hashed': {
        const ext = rand() < 0.5 ? 'js' : 'css';
        path = `/static/${id}.${Math.floor(rand() * 0xffffffff).toString(16).padStart(8, '0')}.${ext}`;
        type = ext === 'js' ? 'text/javascript' : 'text/css';
        cc = 'public, max-age=31536000, immutable';
        validators = 'etag';
        size = between(rand, 2048, 24576);
        tag = `asset-${id}`;
        break;
      }
      default: {
        const ext = rand() < 0.5 ? 'js' : 'css';
        path = `/static/theme-${id}.${ext}`;
        type = ext === 'js' ? 'text/javascript' : 'text/css';
        cc = 'public, max-age=600';
        validators = 'etag+lm';
        size = between(rand, 2048, 24576);
        tag = `asset-${id}`;
      }
    }
    // When the current version was written, before the run: log-uniform
    // between an hour and half a year (drives heuristic freshness in (a)).
    const ageSeconds = Math.exp(Math.log(3600) + rand() * (Math.log(180 * DAY) - Math.log(3600)));
    urls.push({ id, kind, path, type, cc, validators, size, tag, ageSeconds, mutable: kind !== 'static-hashed' });
  }
  return urls;
}

/** Zipf(alpha) over ranks 1..n: the cumulative weights, for sampling by bisection. */
function zipfCdf(n, alpha) {
  const cdf = new Float64Array(n);
  let sum = 0;
  for (let k = 1; k <= n; k++) cdf[k - 1] = sum += 1 / k ** alpha;
  for (let k = 0; k < n; k++) cdf[k] /= sum;
  return cdf;
}
function sampleRank(cdf, u) {
  let lo = 0;
  let hi = cdf.length - 1;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (cdf[mid] < u) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

function workload() {
  const urls = catalogue(prng(P.seed));
  // Popularity is independent of kind: a seeded shuffle maps ranks to URLs.
  const order = urls.map((_, i) => i);
  const shuffle = prng(P.seed + 1);
  for (let i = order.length - 1; i > 0; i--) {
    const j = Math.floor(shuffle() * (i + 1));
    [order[i], order[j]] = [order[j], order[i]];
  }
  const cdf = zipfCdf(urls.length, P.alpha);
  // Requests: Poisson arrivals at P.rate, each URL drawn by popularity.
  const rand = prng(P.seed + 2);
  const requests = [];
  for (let t = 0; ; ) {
    t += (-Math.log(1 - rand()) / P.rate) * 1000;
    if (t >= P.seconds * 1000) break;
    requests.push({ at: t, url: order[sampleRank(cdf, rand())] });
  }
  // Writes: P.writeShare of the URLs, distinct, drawn by popularity among
  // those that can change (fingerprinted files never do), at uniform times
  // outside the outage (the origin application is down then, so nobody
  // writes through it).
  const wrand = prng(P.seed + 3);
  const writeCount = Math.round(P.writeShare * urls.length);
  const written = new Set();
  const mutable = urls.filter((u) => u.mutable).length;
  while (written.size < Math.min(writeCount, mutable)) {
    const url = order[sampleRank(cdf, wrand())];
    if (urls[url].mutable) written.add(url);
  }
  const outage = [P.outageAt * 1000, (P.outageAt + P.outageSeconds) * 1000];
  const writes = [...written].map((url) => {
    let at;
    do at = 2_000 + wrand() * (P.seconds * 1000 - 4_000);
    while (at >= outage[0] && at < outage[1]);
    return { at, url };
  });
  writes.sort((x, y) => x.at - y.at);
  return { urls, requests, writes, outage };
}

// ---------------------------------------------------------------- origin
const FILLER = 'Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor. ';
const filler = (n) => FILLER.repeat(Math.ceil(n / FILLER.length)).slice(0, n);
const marker = (v) => `@@v=${v}@@`;

function body(u, v) {
  const pad = filler(u.size);
  switch (u.kind) {
    case 'html':
      return `<!doctype html><html><head><title>Page ${u.id} ${marker(v)}</title></head><body><main><p>${pad}</p></main></body></html>`;
    case 'json':
      return JSON.stringify({ id: u.id, rev: marker(v), text: pad });
    case 'img':
      return `JFIF ${u.id} ${marker(v)} ${pad}`;
    default:
      return u.type === 'text/css'
        ? `.r${u.id}::after{content:"${marker(v)}"}\n/* ${pad} */`
        : `var r${u.id}="${marker(v)}";\n// ${pad}`;
  }
}

/**
 * The stand-in origin: one version per URL (in the body and the ETag),
 * Cache-Tag, 304 for a matching conditional request. Written with node:http
 * rather than the harness's startOrigin because the outage must refuse
 * connections: the listening socket is closed and opened again on the same port.
 */
class Origin {
  constructor(urls) {
    this.byPath = new Map(urls.map((u) => [u.path, u]));
    this.reset(urls);
    this.sockets = new Set();
    this.port = 0;
  }

  reset(urls) {
    const now = Date.now();
    this.state = urls.map((u) => ({ version: 1, modifiedMs: now - u.ageSeconds * 1000, supersededAt: [] }));
    this.counts = { requests: 0, ok: 0, notModified: 0, other: 0 };
  }

  /** The origin's write: the next version, then (by the caller) a purge of its tag. */
  write(url) {
    const s = this.state[url];
    s.supersededAt.push(performance.now());
    s.version += 1;
    s.modifiedMs = Date.now();
  }

  handle(req, res) {
    this.counts.requests += 1;
    const u = this.byPath.get(req.url);
    if (!u) {
      this.counts.other += 1;
      res.writeHead(404, { 'content-type': 'text/plain' });
      res.end('not found');
      return;
    }
    const s = this.state[u.id];
    const etag = `"${u.id}-${s.version}"`;
    const headers = { 'content-type': u.type, 'cache-tag': `${u.tag}, kind-${u.kind}` };
    if (u.cc) headers['cache-control'] = u.cc;
    if (u.validators !== 'none') headers.etag = etag;
    const lastModified = new Date(Math.floor(s.modifiedMs / 1000) * 1000);
    if (u.validators === 'etag+lm') headers['last-modified'] = lastModified.toUTCString();
    const inm = req.headers['if-none-match'];
    const ims = req.headers['if-modified-since'];
    // Weak comparison (RFC 9110 §13.1.2): the edge may weaken the ETag of
    // HTML it rewrote.
    const matches = inm
      ? u.validators !== 'none' && inm.split(',').some((t) => t.trim().replace(/^W\//, '') === etag)
      : Boolean(ims) && u.validators === 'etag+lm' && Date.parse(ims) >= lastModified.getTime();
    if (matches) {
      this.counts.notModified += 1;
      res.writeHead(304, headers);
      res.end();
      return;
    }
    this.counts.ok += 1;
    const text = body(u, s.version);
    headers['content-length'] = Buffer.byteLength(text);
    res.writeHead(200, headers);
    res.end(text);
  }

  async listen() {
    this.server = http.createServer((req, res) => {
      req.resume();
      req.on('end', () => this.handle(req, res));
    });
    this.server.keepAliveTimeout = 30_000;
    this.server.on('connection', (socket) => {
      this.sockets.add(socket);
      socket.on('close', () => this.sockets.delete(socket));
    });
    await new Promise((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(this.port, '127.0.0.1', resolve);
    });
    this.port = this.server.address().port;
    this.url = `http://127.0.0.1:${this.port}`;
  }

  /** Outage: stop listening (connections refused) and drop open connections. */
  async down() {
    const closed = new Promise((resolve) => this.server.close(resolve));
    for (const socket of this.sockets) socket.destroy();
    await closed;
  }
}

// ---------------------------------------------------------------- client
/** Our member of Cache-Status, classified. */
function classify(cacheStatus) {
  // Ours is the last member; a rule list (rule="a,b") may hold commas.
  const header = cacheStatus ?? '';
  const at = header.lastIndexOf('cachefront');
  if (at < 0) return 'none';
  const member = header.slice(at);
  const params = new Map(member.split(';').slice(1).map((p) => {
    const [k, v] = p.trim().split('=');
    return [k, v ?? true];
  }));
  const detail = params.get('detail');
  if (params.has('hit')) {
    const stale = detail === 'stale-while-revalidate' || detail === 'max-stale' || Number(params.get('ttl')) < 0;
    return stale ? 'staleHit' : 'freshHit';
  }
  if (detail === 'stale-if-error' || detail === 'stale-if-disconnected') return 'staleOnError';
  if (params.get('fwd-status') === '304') return 'revalidated';
  return 'fetched';
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const median = (xs) => (xs.length ? [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] : NaN);

async function purge(workerUrl, tag) {
  for (let attempt = 0; attempt < 10; attempt++) {
    try {
      const res = await fetch(`${workerUrl}/__cachefront/purge`, {
        method: 'POST',
        headers: { authorization: `Bearer ${PURGE_TOKEN}`, 'content-type': 'application/json' },
        body: JSON.stringify({ tags: [tag] }),
        signal: AbortSignal.timeout(10_000),
      });
      await res.text();
      if (res.status === 200) return { ok: true, attempts: attempt + 1 };
      const wait = res.status === 429 ? Number(res.headers.get('retry-after') ?? 1) * 1000 : 200;
      await sleep(wait);
    } catch {
      await sleep(200);
    }
  }
  return { ok: false, attempts: 10 };
}

async function runConfig(key, trace) {
  const config = CONFIGS[key];
  const origin = new Origin(trace.urls);
  await origin.listen();
  const vars = {
    ORIGINS: originsVar([{ name: 'primary', origin }]),
    PURGE_TOKEN,
    PURGE_SYNC_MS: String(P.purgeSyncMs),
    REQUEST_LOG: 'off',
  };
  if (config.rules) vars.CACHE_RULES = JSON.stringify(config.rules);
  const worker = await startWorker({ vars });
  try {
    if (config.rules) {
      // A worker that does not know CACHE_RULES ignores it and would measure
      // (a) again under another name; one that refuses it answers 500.
      const res = await fetch(`${worker.url}/p/rules-probe`, { signal: AbortSignal.timeout(30_000) });
      const text = await res.text();
      const cacheStatus = res.headers.get('cache-status') ?? '';
      if (!/rule="[^"]*html/.test(cacheStatus)) {
        const why = res.status === 500 ? `refused: ${res.status} ${text.slice(0, 80)}` : `not applied (Cache-Status: ${cacheStatus || 'none'})`;
        console.error(`${config.label}: CACHE_RULES ${why}; skipped`);
        return { config: key, label: config.label, rules: config.rules, skipped: `CACHE_RULES ${why}` };
      }
    }
    origin.reset(trace.urls); // the readiness and rules probes do not count
    const t0 = performance.now();
    const at = (ms) => sleep(Math.max(0, t0 + ms - performance.now()));
    const now = () => performance.now() - t0;

    // Per URL: when the last write happened and when it was last answered 2xx.
    const lastWrite = new Float64Array(trace.urls.length).fill(-Infinity);
    const lastGood = new Float64Array(trace.urls.length).fill(-Infinity);
    const seen = new Uint8Array(trace.urls.length);
    const m = {
      requests: 0, freshHit: 0, staleHit: 0, staleOnError: 0, revalidated: 0, fetched: 0, none: 0,
      firstRequests: 0, firstRequestHits: 0,
      errors: 0, errorsDuringOutage: 0, errorsDuringOutageWarm: 0, requestsDuringOutage: 0, errorKinds: {},
      staleBeyondSync: 0, staleWithinSync: 0, staleBeyondSyncWorstMs: 0, unparsedBodies: 0,
      writes: 0, purgesFailed: 0, purgeMs: [], latencyMs: [], lateStartMs: [],
      byKind: {},
      ruleAnswers: 0,
    };
    const kindStats = (kind) =>
      (m.byKind[kind] ??= { requests: 0, hits: 0, staleOnError: 0, errors: 0, errorsDuringOutage: 0, errorsDuringOutageWarm: 0 });

    // Writes: bump the version at the origin, then purge the URL's tag, as
    // the origin plugin does after a commit.
    const writer = (async () => {
      for (const w of trace.writes) {
        await at(w.at);
        const u = trace.urls[w.url];
        origin.write(w.url);
        lastWrite[w.url] = now();
        m.writes += 1;
        if (args['no-purge']) continue;
        const started = performance.now();
        const r = await purge(worker.url, u.tag);
        if (r.ok) m.purgeMs.push(performance.now() - started);
        else m.purgesFailed += 1;
      }
    })();

    const outage = (async () => {
      await at(trace.outage[0]);
      await origin.down();
      await at(trace.outage[1]);
      await origin.listen();
    })();

    let next = 0;
    const client = async () => {
      while (next < trace.requests.length) {
        const r = trace.requests[next++];
        await at(r.at);
        const u = trace.urls[r.url];
        const started = now();
        m.lateStartMs.push(started - r.at);
        const first = !seen[r.url];
        seen[r.url] = 1;
        let status = 0;
        let kind = 'network';
        let text = '';
        try {
          const res = await fetch(`${worker.url}${u.path}`, { signal: AbortSignal.timeout(30_000) });
          text = await res.text();
          status = res.status;
          kind = classify(res.headers.get('cache-status'));
          if (/;\s*rule="/.test(res.headers.get('cache-status') ?? '')) m.ruleAnswers += 1;
        } catch (err) {
          m.errorKinds[err?.name ?? 'error'] = (m.errorKinds[err?.name ?? 'error'] ?? 0) + 1;
        }
        const ended = now();
        m.latencyMs.push(ended - started);
        m.requests += 1;
        const byKind = kindStats(u.kind === 'html' ? `html (${u.validators})` : u.kind);
        byKind.requests += 1;
        const inOutage = ended >= trace.outage[0] && started < trace.outage[1];
        if (inOutage) m.requestsDuringOutage += 1;
        if (first) m.firstRequests += 1;
        if (status < 200 || status >= 400) {
          m.errors += 1;
          byKind.errors += 1;
          if (status) m.errorKinds[status] = (m.errorKinds[status] ?? 0) + 1;
          if (inOutage) {
            m.errorsDuringOutage += 1;
            byKind.errorsDuringOutage += 1;
            // Warm: the URL was answered 2xx since its last write, so a cache
            // could have held a current copy.
            if (lastGood[r.url] > lastWrite[r.url]) {
              m.errorsDuringOutageWarm += 1;
              byKind.errorsDuringOutageWarm += 1;
            }
          }
          continue;
        }
        m[kind] += 1;
        if (kind === 'freshHit' || kind === 'staleHit') byKind.hits += 1;
        if (kind === 'staleOnError') byKind.staleOnError += 1;
        if (first && (kind === 'freshHit' || kind === 'staleHit')) m.firstRequestHits += 1;
        lastGood[r.url] = Math.max(lastGood[r.url], ended);
        const v = Number(/@@v=(\d+)@@/.exec(text)?.[1]);
        if (!v) {
          m.unparsedBodies += 1;
          continue;
        }
        // Stale: the version had been superseded at the origin more than
        // PURGE_SYNC_MS before this request started.
        const supersededAt = origin.state[r.url].supersededAt[v - 1];
        if (supersededAt !== undefined) {
          const late = t0 + started - supersededAt;
          if (late > P.purgeSyncMs) {
            m.staleBeyondSync += 1;
            m.staleBeyondSyncWorstMs = Math.max(m.staleBeyondSyncWorstMs, late);
          } else if (late > 0) m.staleWithinSync += 1;
        }
      }
    };
    await Promise.all([...Array.from({ length: P.concurrency }, client), writer, outage]);
    const elapsed = now() / 1000;
    return summarize(key, m, origin.counts, elapsed);
  } finally {
    await worker.stop();
    await origin.down().catch(() => {});
  }
}

function summarize(key, m, originCounts, elapsed) {
  const pct = (x, n = m.requests) => (n ? (100 * x) / n : 0);
  const hits = m.freshHit + m.staleHit;
  const warmRequests = m.requests - m.firstRequests;
  const late = [...m.lateStartMs].sort((a, b) => a - b);
  const lat = [...m.latencyMs].sort((a, b) => a - b);
  return {
    config: key,
    label: CONFIGS[key].label,
    rules: CONFIGS[key].rules,
    seconds: elapsed,
    requests: m.requests,
    achievedRate: m.requests / elapsed,
    scheduleLagP99Ms: late[Math.floor(late.length * 0.99)] ?? 0,
    latencyP50Ms: lat[Math.floor(lat.length / 2)] ?? 0,
    latencyP99Ms: lat[Math.floor(lat.length * 0.99)] ?? 0,
    hitRatio: pct(hits),
    freshHitPct: pct(m.freshHit),
    staleHitPct: pct(m.staleHit),
    // First requests for a URL in the run are compulsory misses in a cold
    // cache; this ratio leaves them out (see README.md).
    hitRatioExcludingFirst: pct(hits - m.firstRequestHits, warmRequests),
    staleOnErrorAnswers: m.staleOnError,
    revalidatedPct: pct(m.revalidated),
    fetchedPct: pct(m.fetched),
    unclassified: m.none,
    distinctUrls: m.firstRequests,
    originRequests: originCounts.requests,
    originRequestsPer1000: m.requests ? (1000 * originCounts.requests) / m.requests : 0,
    origin304s: originCounts.notModified,
    writes: m.writes,
    purgesFailed: m.purgesFailed,
    purgeP50Ms: median(m.purgeMs),
    purgeMaxMs: m.purgeMs.length ? Math.max(...m.purgeMs) : NaN,
    staleBeyondSync: m.staleBeyondSync,
    staleBeyondSyncWorstMs: m.staleBeyondSyncWorstMs,
    staleWithinSync: m.staleWithinSync,
    unparsedBodies: m.unparsedBodies,
    requestsDuringOutage: m.requestsDuringOutage,
    errorsDuringOutage: m.errorsDuringOutage,
    errorsDuringOutageWarm: m.errorsDuringOutageWarm,
    errors: m.errors,
    errorKinds: m.errorKinds,
    byKind: m.byKind,
    ruleAnswers: m.ruleAnswers,
  };
}

// ---------------------------------------------------------------- main
const trace = workload();
const kinds = {};
for (const u of trace.urls) kinds[u.kind] = (kinds[u.kind] ?? 0) + 1;
const htmlProfiles = {};
for (const u of trace.urls.filter((x) => x.kind === 'html')) htmlProfiles[u.validators] = (htmlProfiles[u.validators] ?? 0) + 1;
const header = [
  `hit-ratio bench: ${P.urls} URLs (${Object.entries(kinds).map(([k, n]) => `${k} ${n}`).join(', ')}; HTML validators: ${Object.entries(htmlProfiles).map(([k, n]) => `${k} ${n}`).join(', ')}), seed ${P.seed}`,
  `requests: Zipf alpha ${P.alpha}, Poisson at ${P.rate}/s for ${P.seconds} s = ${trace.requests.length} requests, ${P.concurrency} in flight at most`,
  `writes: ${trace.writes.length} distinct URLs (${(100 * P.writeShare).toFixed(1)} %, drawn by popularity among non-fingerprinted URLs), each followed by a tag purge`,
  `outage: origin refuses connections from ${P.outageAt} s to ${P.outageAt + P.outageSeconds} s (no writes then); PURGE_SYNC_MS=${P.purgeSyncMs}`,
];
for (const key of chosen.filter((k) => CONFIGS[k].rules)) header.push(`CACHE_RULES ${key}: ${JSON.stringify(CONFIGS[key].rules)}`);
if (args['no-purge']) header.push('--no-purge: writes are NOT followed by a purge (a check of the stale-answer measure, not a configuration)');
console.log(header.join('\n'));
if (args['dry-run']) {
  const distinct = new Set(trace.requests.map((r) => r.url)).size;
  const writtenAsked = trace.writes.filter((w) => trace.requests.some((r) => r.url === w.url && r.at > w.at)).length;
  console.log(`dry run: ${distinct} distinct URLs asked (${((100 * distinct) / trace.requests.length).toFixed(1)} % of requests are a URL's first); ${writtenAsked} written URLs asked again after their write`);
  process.exit(0);
}

const results = [];
for (const key of chosen) {
  console.error(`running ${CONFIGS[key].label} ...`);
  const r = await runConfig(key, trace);
  results.push(r);
  if (!r.skipped) console.error(`  ${r.requests} requests in ${r.seconds.toFixed(0)} s`);
}

const f1 = (x) => (Number.isFinite(x) ? x.toFixed(1) : '–');
console.log('');
console.log('| configuration | requests (req/s) | hit ratio | fresh / stale hits | hit ratio without first requests | stale-on-error answers | origin req / 1000 | stale > PURGE_SYNC_MS | errors in outage (warm URLs) | errors overall |');
console.log('| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |');
for (const r of results) {
  if (r.skipped) {
    console.log(`| ${r.label} | skipped: ${r.skipped.replaceAll('|', '/')} | | | | | | | | |`);
    continue;
  }
  console.log(
    `| ${r.label} | ${r.requests} (${f1(r.achievedRate)}) | ${f1(r.hitRatio)} % | ${f1(r.freshHitPct)} % / ${f1(r.staleHitPct)} % | ${f1(r.hitRatioExcludingFirst)} % | ` +
      `${r.staleOnErrorAnswers} | ${f1(r.originRequestsPer1000)} | ${r.staleBeyondSync} | ${r.errorsDuringOutage} of ${r.requestsDuringOutage} (${r.errorsDuringOutageWarm}) | ${r.errors} |`,
  );
}
console.log('');
for (const r of results.filter((x) => !x.skipped)) {
  console.log(
    `${r.config}: ${r.ruleAnswers} answers named a rule; ${r.distinctUrls} distinct URLs asked; revalidated (304) ${f1(r.revalidatedPct)} %, fetched ${f1(r.fetchedPct)} %; origin ${r.originRequests} requests (${r.origin304s} answered 304); ` +
      `${r.writes} writes, purge p50 ${f1(r.purgeP50Ms)} ms, max ${f1(r.purgeMaxMs)} ms, ${r.purgesFailed} failed; stale within PURGE_SYNC_MS ${r.staleWithinSync}` +
      `${r.staleBeyondSync ? `, worst ${f1(r.staleBeyondSyncWorstMs)} ms after the write` : ''}; ` +
      `latency p50 ${f1(r.latencyP50Ms)} ms, p99 ${f1(r.latencyP99Ms)} ms; schedule lag p99 ${f1(r.scheduleLagP99Ms)} ms; ` +
      `errors ${JSON.stringify(r.errorKinds)}${r.unparsedBodies ? `; ${r.unparsedBodies} bodies without a version` : ''}`,
  );
  console.log(
    `${r.config} by kind: ${Object.entries(r.byKind)
      .map(([k, s]) => `${k} ${s.requests} req, hits ${f1((100 * s.hits) / s.requests)} %, stale-on-error ${s.staleOnError}, errors ${s.errors} (outage ${s.errorsDuringOutage}, warm ${s.errorsDuringOutageWarm})`)
      .join('; ')}`,
  );
}
// A configuration asked for but not measured is a failed run.
if (results.some((r) => r.skipped)) process.exitCode = 1;
if (args.json) {
  writeFileSync(args.json, `${JSON.stringify({ parameters: P, workload: header, results }, null, 2)}\n`);
  console.log(`\nwrote ${args.json}`);
}
