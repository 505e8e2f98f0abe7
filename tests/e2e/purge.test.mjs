// Tag purge end to end: the worker in workerd with its tag registry (SQLite
// Durable Objects), a stand-in origin that tags its pages, and the purge API.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { eventually, freePort, originsVar, startOrigin, startWorker } from './harness.mjs';

const TOKEN = 'e2e-purge-token-0123456789';

describe('purge API', () => {
  let origin;
  let worker;
  const versions = new Map();

  before(async () => {
    origin = await startOrigin((req, res) => {
      const n = (versions.get(req.url) ?? 0) + 1;
      versions.set(req.url, n);
      const tag = req.url.startsWith('/products/') ? 'products, product:7' : 'pages';
      const cc = req.url.startsWith('/soft') ? 'max-age=600, stale-while-revalidate=60' : 'max-age=600';
      res.writeHead(200, { 'content-type': 'text/plain', 'cache-control': cc, 'cache-tag': tag });
      res.end(`${req.url} v${n}`);
    });
    worker = await startWorker({
      vars: { ORIGINS: originsVar([{ name: 'primary', origin }]), PURGE_TOKEN: TOKEN, PURGE_PREFIX_TAGS: '/blog/' },
    });
  });

  after(async () => {
    await worker?.stop();
    await origin?.close();
  });

  const get = (path) => fetch(`${worker.url}${path}`);
  const purge = (body, token = TOKEN, method = 'POST') => fetch(`${worker.url}/__cachefront/purge`, {
    method,
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
    body: method === 'POST' ? JSON.stringify(body) : undefined,
  });
  const cachedAgain = (path) => eventually(() => get(path), (r) => /^cachefront; hit/.test(r.headers.get('cache-status')));

  test('a tagged page is purged by tag, its untagged neighbour is not', async () => {
    assert.equal(await (await get('/products/7')).text(), '/products/7 v1');
    assert.equal(await (await get('/info/about')).text(), '/info/about v1');
    const hit = await cachedAgain('/products/7');
    assert.equal(hit.headers.get('cache-tag'), null, 'tag headers stop at the edge');
    await hit.text();
    // No wait before the purge: it applies at once in the isolate that
    // purged, and counts as after a fetch even in the same millisecond.
    const receipt = await purge({ tags: ['product:7'] });
    assert.equal(receipt.status, 200);
    const json = await receipt.json();
    assert.equal(json.ok, true);
    assert.equal(json.dry_run, false);
    assert.deepEqual(json.purged.tags, ['product:7']);
    assert.equal(json.registry_keys, 1);
    assert.equal(json.shards_written, 1);
    assert.equal(typeof json.purged_at_ms, 'number');
    assert.deepEqual(json.cloudflare, { status: 'disabled' });
    const fresh = await get('/products/7');
    assert.match(fresh.headers.get('cache-status'), /purged/);
    assert.equal(await fresh.text(), '/products/7 v2');
    const neighbour = await get('/info/about');
    assert.match(neighbour.headers.get('cache-status'), /^cachefront; hit/);
    assert.equal(await neighbour.text(), '/info/about v1');
  });

  test('purge by URL, by prefix and by host', async () => {
    const host = new URL(worker.url).host;
    for (const path of ['/by-url', '/blog/one', '/by-host']) {
      await (await get(path)).text();
      await (await cachedAgain(path)).text();
    }
    const byUrl = await purge({ urls: [`${worker.url}/by-url`] });
    assert.equal(byUrl.status, 200);
    assert.deepEqual((await byUrl.json()).purged.urls, [`${worker.url}/by-url`]);
    assert.match((await get('/by-url')).headers.get('cache-status'), /purged/);
    assert.match((await get('/by-host')).headers.get('cache-status'), /^cachefront; hit/);
    assert.equal((await purge({ prefixes: ['/blog/'] })).status, 200);
    assert.match((await get('/blog/one')).headers.get('cache-status'), /purged/);
    assert.equal((await purge({ hosts: [host.split(':')[0]] })).status, 200);
    assert.match((await get('/by-host')).headers.get('cache-status'), /purged/);
  });

  test('purge everything reaches every entry', async () => {
    await (await get('/everything-a')).text();
    await (await cachedAgain('/everything-a')).text();
    assert.equal((await purge({ everything: true })).status, 200);
    const r = await get('/everything-a');
    assert.match(r.headers.get('cache-status'), /purged/);
    await r.text();
  });

  test('a soft purge serves the stale copy while it is refreshed', async () => {
    await (await get('/soft/page')).text();
    await (await cachedAgain('/soft/page')).text();
    assert.equal((await purge({ tags: ['pages'], soft: true })).status, 200);
    const stale = await get('/soft/page');
    assert.match(stale.headers.get('cache-status'), /stale-while-revalidate/);
    assert.equal(await stale.text(), '/soft/page v1');
    const refreshed = await eventually(() => get('/soft/page'), async (r) => (await r.clone().text()) === '/soft/page v2');
    assert.equal(await refreshed.text(), '/soft/page v2');
  });

  test('bad token, bad JSON and wrong method are refused and change nothing', async () => {
    await (await get('/products/safe')).text();
    await (await cachedAgain('/products/safe')).text();
    for (const [res, status] of [
      [await purge({ tags: ['products'] }, 'wrong-token-0000000000000'), 401],
      [await fetch(`${worker.url}/__cachefront/purge`, { method: 'POST', headers: { authorization: `Bearer ${TOKEN}` }, body: '{oops' }), 400],
      [await purge(null, TOKEN, 'GET'), 405],
      [await purge({ tags: Array.from({ length: 3000 }, (_, i) => `tag-${i}-${'x'.repeat(20)}`) }), 413],
    ]) {
      assert.equal(res.status, status);
      const json = await res.json();
      assert.equal(typeof json.error.code, 'string');
      assert.ok(!JSON.stringify(json).includes(TOKEN));
    }
    const still = await get('/products/safe');
    assert.match(still.headers.get('cache-status'), /^cachefront; hit/);
    await still.text();
  });
});

describe('registry views', () => {
  let origin;
  let worker;

  before(async () => {
    origin = await startOrigin((req, res) => {
      res.writeHead(200, { 'content-type': 'text/plain', 'cache-control': 'max-age=600', 'cache-tag': 'a, b, c' });
      res.end(`${req.url}`);
    });
    worker = await startWorker({
      vars: { ORIGINS: originsVar([{ name: 'primary', origin }]), PURGE_TOKEN: TOKEN },
    });
  });

  after(async () => {
    await worker?.stop();
    await origin?.close();
  });

  const authorization = `Bearer ${TOKEN}`;
  const health = async () => (await fetch(`${worker.url}/__cachefront/health`, { headers: { authorization } })).json();

  test("a view's first sync brings the purges the registry held before it (the backfill)", async () => {
    for (const tag of ['a', 'b', 'c']) {
      const receipt = await fetch(`${worker.url}/__cachefront/purge`, {
        method: 'POST',
        headers: { authorization, 'content-type': 'application/json' },
        body: JSON.stringify({ tags: [tag] }),
      });
      assert.equal(receipt.status, 200);
    }
    assert.deepEqual((await health()).purge_views, [], 'no view before a page is served');
    // A miss then hits: the hits start the views of the shards of a, b and c.
    await (await fetch(`${worker.url}/page`)).text();
    const synced = await eventually(async () => {
      await (await fetch(`${worker.url}/page`)).text();
      return health();
    }, (h) => h.purge_views.length > 0 && h.purge_views.every((v) => v.synced_ms_ago !== null)
      && h.purge_views.reduce((n, v) => n + v.keys, 0) >= 3);
    const views = synced.purge_views;
    assert.equal(views.reduce((n, v) => n + v.keys, 0), 3, JSON.stringify(views));
    for (const view of views) {
      assert.equal(view.horizon_ms, 0, `every write is in the backfill: ${JSON.stringify(view)}`);
      assert.ok(view.cursor >= view.keys);
    }
  });
});

describe('warming', () => {
  test('the cron warms the configured pages, which clients then get from the cache', async () => {
    const seen = [];
    const origin = await startOrigin((req, res) => {
      seen.push(req.url);
      res.writeHead(200, { 'content-type': 'text/plain', 'cache-control': 'max-age=600' });
      res.end(`${req.url} warmed`);
    });
    const port = await freePort();
    const self = `http://127.0.0.1:${port}`;
    const worker = await startWorker({
      port,
      vars: {
        ORIGINS: originsVar([{ name: 'primary', origin }]),
        WARM_URLS: `${self}/landing,${self}/deals`,
        WARM_INTERVAL_MS: '10',
      },
    });
    try {
      const cron = await fetch(`${worker.url}/__scheduled?cron=*+*+*+*+*`);
      assert.equal(cron.status, 200);
      await cron.text();
      assert.deepEqual(seen.filter((u) => u !== '/healthz').sort(), ['/deals', '/landing']);
      const res = await fetch(`${worker.url}/landing`);
      assert.match(res.headers.get('cache-status'), /^cachefront; hit/);
      assert.equal(await res.text(), '/landing warmed');
    } finally {
      await worker.stop();
      await origin.close();
    }
  });

  test('after a purge, the purged page is fetched again and the next client gets a hit (Host with a port)', async () => {
    let n = 0;
    const origin = await startOrigin((req, res) => {
      if (req.url.startsWith('/Shop/')) n += 1;
      res.writeHead(200, { 'content-type': 'text/plain', 'cache-control': 'max-age=600', 'cache-tag': 'shop' });
      res.end(`${req.url} v${n}`);
    });
    const worker = await startWorker({
      vars: {
        ORIGINS: originsVar([{ name: 'primary', origin }]),
        PURGE_TOKEN: TOKEN,
        WARM_AFTER_PURGE: 'on',
        WARM_INTERVAL_MS: '0',
      },
    });
    try {
      // worker.url is http://127.0.0.1:<port>: the Host carries a port, and
      // the path has capitals.
      const page = `${worker.url}/Shop/Item?b=2&a=1`;
      await (await fetch(page)).text();
      await eventually(() => fetch(page), (r) => /^cachefront; hit/.test(r.headers.get('cache-status')));
      const purge = await fetch(`${worker.url}/__cachefront/purge`, {
        method: 'POST',
        headers: { authorization: `Bearer ${TOKEN}` },
        body: JSON.stringify({ tags: ['shop'] }),
      });
      assert.equal(purge.status, 200, await purge.text());
      await eventually(async () => n, (count) => count === 2, { attempts: 50, delayMs: 100 });
      // The warm request is at the origin: a client now either waits for it
      // (collapsed) or finds its entry (hit); either way the origin is not
      // asked again, which it would be if the warmed entry had another key.
      const next = await fetch(page);
      assert.match(next.headers.get('cache-status'), /^cachefront; hit|; collapsed/);
      assert.equal(await next.text(), '/Shop/Item?a=1&b=2 v2');
      const after = await fetch(page);
      assert.match(after.headers.get('cache-status'), /^cachefront; hit/, 'the warmed entry has the client key');
      assert.equal(n, 2, 'no client request reached the origin after the purge');
    } finally {
      await worker.stop();
      await origin.close();
    }
  });
});

describe('forwarding to the Cloudflare zone API (loopback stand-in)', () => {
  const ZONE = '0123456789abcdef0123456789abcdef';
  let api;
  let origin;
  let worker;
  let answer = { status: 200, body: { success: true, errors: [], messages: [], result: { id: 'purge-1' } } };

  before(async () => {
    origin = await startOrigin((_req, res) => {
      res.writeHead(200, { 'cache-control': 'max-age=600', 'cache-tag': 'zone-page' });
      res.end('zone page');
    });
    // Checks each call as Cloudflare's purge_cache reference documents it;
    // a call that does not match is answered 400 with the reason, which the
    // receipt then carries (and the test reads).
    api = await startOrigin((req, res, body) => {
      const problems = [];
      if (req.method !== 'POST') problems.push(`method ${req.method}`);
      if (req.url !== `/client/v4/zones/${ZONE}/purge_cache`) problems.push(`path ${req.url}`);
      if (req.headers.authorization !== 'Bearer cf-e2e-api-token') problems.push('authorization');
      if (!/^application\/json\b/.test(req.headers['content-type'] ?? '')) problems.push('content-type');
      let json;
      try {
        json = JSON.parse(body);
      } catch {
        problems.push('body is not JSON');
      }
      const kinds = json ? Object.keys(json) : [];
      const arrays = ['files', 'tags', 'hosts', 'prefixes'];
      if (kinds.length !== 1) problems.push(`one purge kind per call, got ${kinds}`);
      else if (kinds[0] === 'purge_everything' ? json.purge_everything !== true
        : !arrays.includes(kinds[0]) || !Array.isArray(json[kinds[0]]) || !json[kinds[0]].every((v) => typeof v === 'string')) {
        problems.push(`bad body ${body}`);
      }
      if (problems.length) {
        res.writeHead(400, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ success: false, errors: [{ code: 1, message: problems.join('; ') }], messages: [], result: null }));
        return;
      }
      res.writeHead(answer.status, { 'content-type': 'application/json' });
      res.end(JSON.stringify(answer.body));
    });
    worker = await startWorker({
      vars: {
        ORIGINS: originsVar([{ name: 'primary', origin }]),
        PURGE_TOKEN: TOKEN,
        CF_ZONE_ID: ZONE,
        CF_API_TOKEN: 'cf-e2e-api-token',
        CF_API_BASE: `${api.url}/client/v4`,
        REQUEST_LOG: 'json',
      },
    });
  });

  after(async () => {
    await worker?.stop();
    await origin?.close();
    await api?.close();
  });

  const purgeZone = (body) => fetch(`${worker.url}/__cachefront/purge`, {
    method: 'POST',
    headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });

  test('each purge kind reaches the zone API as documented and the receipt says it succeeded', async () => {
    const res = await purgeZone({ tags: ['zone-page'], urls: [`${worker.url}/a`] });
    assert.equal(res.status, 200);
    const receipt = await res.json();
    assert.deepEqual(receipt.cloudflare, { status: 'sent', calls: 2, ok: true, succeeded: 2, failed: [], retrying: 0 });
    const calls = api.requests.map((r) => JSON.parse(r.body));
    assert.deepEqual(calls, [{ files: [`${worker.url}/a`] }, { tags: ['zone-page'] }]);
    const purgeLines = () => worker.logs().split('\n')
      .map((line) => line.slice(line.indexOf('{')))
      .filter((line) => line.startsWith('{"method"') && line.includes('"path":"/__cachefront/purge"'))
      .map((line) => JSON.parse(line));
    const lines = await eventually(async () => purgeLines(), (found) => found.length >= 1, { attempts: 30, delayMs: 100 });
    assert.deepEqual(lines.at(-1).purge.cloudflare, receipt.cloudflare, 'the request log says what the receipt says');
    const logged = worker.logs();
    assert.doesNotMatch(logged, /cf-e2e-api-token/);
  });

  test('a zone purge Cloudflare refuses is reported in the receipt with its message', async () => {
    answer = { status: 403, body: { success: false, errors: [{ code: 10000, message: 'Authentication error' }], messages: [], result: null } };
    try {
      const res = await purgeZone({ everything: true });
      assert.equal(res.status, 200, 'the edge purge itself stood');
      const receipt = await res.json();
      assert.equal(receipt.cloudflare.status, 'sent');
      assert.equal(receipt.cloudflare.ok, false);
      assert.deepEqual(receipt.cloudflare.failed, [{ index: 0, status: 403, message: 'Authentication error' }]);
      assert.deepEqual(JSON.parse(api.requests.at(-1).body), { purge_everything: true });
    } finally {
      answer = { status: 200, body: { success: true, errors: [], messages: [], result: { id: 'purge-2' } } };
    }
  });
});
