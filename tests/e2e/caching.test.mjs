// HTTP caching end to end: the worker in workerd in front of a stand-in
// origin whose answers each test scripts by path. Waits are real time, kept
// to whole seconds because HTTP ages are whole seconds.
import assert from 'node:assert/strict';
import http from 'node:http';
import { after, before, describe, test } from 'node:test';
import { eventually, originsVar, startOrigin, startWorker } from './harness.mjs';

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/**
 * A plain HTTP GET. fetch() turns a request with If-None-Match into a
 * `Cache-Control: no-cache` one (Fetch standard), which is not what a cache
 * in front of browsers mostly sees; this sends exactly the given headers.
 */
function rawGet(url, headers) {
  return new Promise((resolve, reject) => {
    http.get(url, { headers }, (res) => {
      let body = '';
      res.on('data', (c) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, body }));
    }).on('error', reject);
  });
}

/** Per-path origin behaviour: (req, n, body) => { status, headers, body } | 'hang' */
const routes = new Map();
const counts = new Map();

describe('RFC 9111 cache in workerd', () => {
  let origin;
  let worker;

  before(async () => {
    origin = await startOrigin(async (req, res, body) => {
      const path = req.url;
      const n = (counts.get(path) ?? 0) + 1;
      counts.set(path, n);
      const route = [...routes.entries()].find(([prefix]) => path.startsWith(prefix));
      const answer = route ? await route[1](req, n, body) : { status: 200, headers: { 'cache-control': 'max-age=60' }, body: `v${n}` };
      res.writeHead(answer.status ?? 200, answer.headers ?? {});
      res.end(answer.body ?? '');
    });
    worker = await startWorker({
      vars: { ORIGINS: originsVar([{ name: 'primary', origin }]), STALE_IF_ERROR_SECS: '0' },
    });
  });

  after(async () => {
    await worker?.stop();
    await origin?.close();
  });

  const get = (path, headers = {}) => fetch(`${worker.url}${path}`, { headers });
  const status = (res) => res.headers.get('cache-status');

  test('fresh responses are hits until max-age passes, then refetched', async () => {
    // A hit is checked on a long-lived entry (no race with its max-age), the
    // expiry on a 1 s one after waiting longer (a slower run only waits more).
    routes.set('/fresh-long', (_req, n) => ({ headers: { 'cache-control': 'max-age=600' }, body: `long v${n}` }));
    await (await get('/fresh-long')).text();
    const hit = await get('/fresh-long');
    assert.match(status(hit), /^cachefront; hit; ttl=\d/);
    assert.equal(await hit.text(), 'long v1');
    routes.set('/fresh', (_req, n) => ({ headers: { 'cache-control': 'max-age=1' }, body: `fresh v${n}` }));
    const first = await get('/fresh');
    assert.equal(await first.text(), 'fresh v1');
    await sleep(2_100);
    const expired = await get('/fresh');
    assert.match(status(expired), /^cachefront; fwd=stale; fwd-status=200; stored/);
    assert.equal(await expired.text(), 'fresh v2');
  });

  test('a stale entry is revalidated and a 304 updates its headers', async () => {
    routes.set('/validate', (req, n) => {
      if (n > 1) {
        assert.equal(req.headers['if-none-match'], '"rev1"');
        return { status: 304, headers: { etag: '"rev1"', 'cache-control': 'max-age=60', 'x-build': 'b2' } };
      }
      return { headers: { etag: '"rev1"', 'cache-control': 'max-age=1', 'x-build': 'b1' }, body: 'validated body' };
    });
    await (await get('/validate')).text();
    await sleep(2_100);
    const res = await get('/validate');
    assert.equal(res.status, 200);
    assert.match(status(res), /^cachefront; fwd=stale; fwd-status=304; ttl=\d+; stored/);
    assert.equal(res.headers.get('x-build'), 'b2');
    assert.equal(await res.text(), 'validated body');
    const after304 = await get('/validate');
    assert.match(status(after304), /^cachefront; hit/);
    assert.equal(after304.headers.get('cache-control'), 'max-age=60');
  });

  test('a client conditional is answered 304 from the cache', async () => {
    routes.set('/etagged', () => ({ headers: { etag: '"e1"', 'cache-control': 'max-age=60' }, body: 'etagged' }));
    await (await get('/etagged')).text();
    const res = await rawGet(`${worker.url}/etagged`, { 'if-none-match': '"e1"' });
    assert.equal(res.status, 304);
    assert.equal(res.body, '');
    assert.match(res.headers['cache-status'], /^cachefront; hit/);
    assert.equal(counts.get('/etagged'), 1);
  });

  test('stale-while-revalidate serves stale and refreshes in the background', async () => {
    // The refreshed copy is long-lived: a second refresh would otherwise
    // depend on whether it, too, went stale before the next request.
    routes.set('/swr', (_req, n) => ({
      headers: { 'cache-control': n === 1 ? 'max-age=1, stale-while-revalidate=60' : 'max-age=600' },
      body: `swr v${n}`,
    }));
    await (await get('/swr')).text();
    await sleep(2_100);
    const stale = await get('/swr');
    assert.match(status(stale), /^cachefront; hit; ttl=-\d+; detail=stale-while-revalidate$/);
    assert.equal(await stale.text(), 'swr v1');
    const refreshed = await eventually(() => get('/swr'), async (r) => (await r.clone().text()) === 'swr v2');
    assert.equal(await refreshed.text(), 'swr v2');
    assert.equal(counts.get('/swr'), 2);
  });

  test('stale-if-error serves the stale copy when the origin answers 500', async () => {
    routes.set('/sie', (_req, n) => (n === 1
      ? { headers: { 'cache-control': 'max-age=1, stale-if-error=300' }, body: 'good copy' }
      : { status: 500, headers: { 'content-type': 'text/plain' }, body: 'origin broke' }));
    await (await get('/sie')).text();
    await sleep(2_100);
    const res = await get('/sie');
    assert.equal(res.status, 200);
    assert.equal(await res.text(), 'good copy');
    assert.match(status(res), /^cachefront; fwd=stale; fwd-status=500; ttl=-\d+; detail=stale-if-error$/);
  });

  test('Vary keeps a variant per normalized header value', async () => {
    routes.set('/vary', (req) => ({
      headers: { 'cache-control': 'max-age=60', vary: 'Accept-Language' },
      body: `lang=${req.headers['accept-language'] ?? 'none'}`,
    }));
    assert.equal(await (await get('/vary', { 'accept-language': 'en' })).text(), 'lang=en');
    assert.equal(await (await get('/vary', { 'accept-language': 'de' })).text(), 'lang=de');
    const en = await get('/vary', { 'accept-language': 'EN' });
    assert.match(status(en), /^cachefront; hit/);
    assert.equal(await en.text(), 'lang=en');
    const de = await get('/vary', { 'accept-language': 'de' });
    assert.equal(await de.text(), 'lang=de');
    assert.equal(counts.get('/vary'), 2);
  });

  test('a successful POST invalidates the URI and its same-host Location', async () => {
    routes.set('/items', (req, n) => (req.method === 'POST'
      ? { status: 201, headers: { location: '/items/9' }, body: 'created' }
      : { headers: { 'cache-control': 'max-age=600' }, body: `${req.url} v${n}` }));
    await (await get('/items')).text();
    await (await get('/items/9')).text();
    assert.match(status(await get('/items')), /^cachefront; hit/);
    const post = await fetch(`${worker.url}/items`, { method: 'POST', body: '{}' });
    assert.equal(post.status, 201);
    await post.text();
    assert.match(status(await get('/items')), /^cachefront; fwd=uri-miss/);
    assert.match(status(await get('/items/9')), /^cachefront; fwd=uri-miss/);
  });

  test('HEAD is answered from a cached GET', async () => {
    routes.set('/head', () => ({ headers: { 'cache-control': 'max-age=60', 'content-type': 'text/plain' }, body: 'head body' }));
    await (await get('/head')).text();
    const res = await fetch(`${worker.url}/head`, { method: 'HEAD' });
    assert.equal(res.status, 200);
    assert.match(status(res), /^cachefront; hit/);
    assert.equal(res.headers.get('content-type'), 'text/plain', 'the GET\'s headers');
    assert.equal(await res.text(), '', 'no body for HEAD');
    assert.equal(counts.get('/head'), 1);
    assert.deepEqual(origin.requests.filter((r) => r.url === '/head').map((r) => r.method), ['GET'], 'the origin never saw the HEAD');
  });

  test('a Range request is a 206 slice of a cached full response', async () => {
    routes.set('/range', () => ({ headers: { 'cache-control': 'max-age=60', etag: '"r1"' }, body: 'abcdefghij' }));
    await (await get('/range')).text();
    const res = await get('/range', { range: 'bytes=3-6' });
    assert.equal(res.status, 206);
    assert.equal(res.headers.get('content-range'), 'bytes 3-6/10');
    assert.equal(await res.text(), 'defg');
    assert.match(status(res), /^cachefront; hit/);
  });

  test('a 206 from the origin passes through uncached', async () => {
    routes.set('/partial', () => ({ status: 206, headers: { 'cache-control': 'max-age=60', 'content-range': 'bytes 0-1/4' }, body: 'ab' }));
    for (let i = 0; i < 2; i++) {
      const res = await get('/partial', { range: 'bytes=0-1' });
      assert.equal(res.status, 206);
      assert.equal(status(res), 'cachefront; fwd=partial; fwd-status=206; detail=partial');
      await res.text();
    }
    assert.equal(counts.get('/partial'), 2);
  });

  test('CDN-Cache-Control takes precedence and is not forwarded downstream', async () => {
    routes.set('/cdncc', (_req, n) => ({
      headers: { 'cache-control': 'private, no-store', 'cdn-cache-control': 'max-age=600' },
      body: `cdn v${n}`,
    }));
    const first = await get('/cdncc');
    assert.match(status(first), /stored/);
    assert.equal(first.headers.get('cdn-cache-control'), null);
    assert.equal(first.headers.get('cache-control'), 'private, no-store');
    await first.text();
    const hit = await get('/cdncc');
    assert.match(status(hit), /^cachefront; hit/);
    assert.equal(await hit.text(), 'cdn v1');
  });

  test('Surrogate-Control governs the edge (an origin written for Fastly or Varnish), never leaves it, and is announced', async () => {
    const announced = [];
    routes.set('/surrogate-', (req, n) => {
      announced.push(req.headers['surrogate-capability']);
      const sc = {
        '/surrogate-fresh': { 'cache-control': 'no-store', 'surrogate-control': 'max-age=600;cachefront' },
        '/surrogate-nostore': { 'cache-control': 'max-age=600', 'surrogate-control': 'no-store' },
        '/surrogate-private': { 'cache-control': 'private, max-age=600', 'surrogate-control': 'max-age=600' },
        '/surrogate-other': { 'surrogate-control': 'max-age=600;another-cdn' },
      }[req.url];
      return { headers: sc, body: `${req.url} v${n}` };
    });
    const twice = async (path) => {
      const first = await get(path);
      const firstBody = await first.text();
      const second = await get(path);
      return { first, firstBody, second, secondBody: await second.text() };
    };

    const fresh = await twice('/surrogate-fresh');
    assert.match(status(fresh.first), /stored/);
    assert.equal(fresh.first.headers.get('surrogate-control'), null, 'not forwarded downstream');
    assert.equal(fresh.first.headers.get('cache-control'), 'no-store', 'the browser-facing field is untouched');
    assert.match(status(fresh.second), /^cachefront; hit/);
    assert.equal(fresh.secondBody, '/surrogate-fresh v1');

    const nostore = await twice('/surrogate-nostore');
    assert.match(status(nostore.second), /detail=no-store/);
    assert.equal(nostore.secondBody, '/surrogate-nostore v2');

    const personal = await twice('/surrogate-private');
    assert.match(status(personal.second), /detail=private/);
    assert.equal(personal.secondBody, '/surrogate-private v2', 'Cache-Control: private still holds');

    const other = await twice('/surrogate-other');
    assert.doesNotMatch(status(other.second), /hit/, 'directives for another device do not apply');
    assert.equal(other.secondBody, '/surrogate-other v2');

    assert.ok(announced.length >= 6, `${announced.length} origin requests`);
    for (const value of announced) assert.equal(value, 'cachefront="Surrogate/1.0"');
  });

  test('a response with Set-Cookie is never stored', async () => {
    routes.set('/cookie', (_req, n) => ({ headers: { 'cache-control': 'max-age=60', 'set-cookie': `sid=${n}` }, body: `cookie v${n}` }));
    for (let i = 1; i <= 2; i++) {
      const res = await get('/cookie');
      assert.equal(status(res), 'cachefront; fwd=uri-miss; fwd-status=200; detail=set-cookie');
      assert.equal(res.headers.get('set-cookie'), `sid=${i}`);
      await res.text();
    }
  });

  test('concurrent misses for one key share one origin fetch', async () => {
    // The first fetch is held at the origin until the worker has caught up
    // with the other seven (two probes, each a full pass through the worker
    // to the origin and back, sent after them): they are all in the worker
    // while it is open, however slow the machine, which a timer would guess.
    let release;
    const held = new Promise((resolve) => (release = resolve));
    routes.set('/coalesce', async (_req, n) => {
      await held;
      return { headers: { 'cache-control': 'max-age=60' }, body: `coalesced v${n}` };
    });
    const pending = Promise.all(Array.from({ length: 8 }, () => get('/coalesce')));
    await eventually(async () => counts.get('/coalesce') ?? 0, (n) => n >= 1);
    for (const probe of ['/probe/coalesced-1', '/probe/coalesced-2']) assert.equal(await (await get(probe)).text(), 'v1');
    release();
    const answers = await pending;
    const bodies = await Promise.all(answers.map((r) => r.text()));
    assert.deepEqual(answers.map((r) => r.status), Array(8).fill(200), bodies.join('\n'));
    assert.equal(counts.get('/coalesce'), 1, 'one origin fetch');
    assert.ok(bodies.every((b) => b === 'coalesced v1'));
    assert.ok(answers.filter((r) => /collapsed/.test(status(r))).length >= 1);
  });

  test('DC_COLLAPSE: a private answer is fetched per request at once, and claim markers are never served', async () => {
    // One wrangler dev is one isolate: the claim protocol runs (markers in
    // the Cache API) but the only waiter is this isolate's own follower,
    // which the no-wait marker must send to the origin without waiting out
    // the claim. Both requests reach the worker before the origin answers.
    let release;
    const held = new Promise((resolve) => (release = resolve));
    routes.set('/dc-private', async (_req, n) => {
      await held;
      return { headers: { 'cache-control': 'private, max-age=60' }, body: `private ${n}` };
    });
    const pending = Promise.all([get('/dc-private'), get('/dc-private')]);
    await eventually(async () => counts.get('/dc-private') ?? 0, (n) => n >= 1);
    for (const probe of ['/probe/dc-1', '/probe/dc-2']) await (await get(probe)).text();
    release();
    const answers = await pending;
    const bodies = (await Promise.all(answers.map((r) => r.text()))).sort();
    assert.deepEqual(bodies, ['private 1', 'private 2'], 'each request got its own private answer');
    assert.ok(answers.every((r) => !/collapsed/.test(status(r))), answers.map(status).join('\n'));
    assert.doesNotMatch(worker.logs(), /gave up waiting/);

    // A public page: a miss then a hit, as without collapsing; what the
    // client gets is the origin's page, never a marker.
    routes.set('/dc-public', (_req, n) => ({ headers: { 'cache-control': 'max-age=60' }, body: `public ${n}` }));
    const miss = await get('/dc-public');
    assert.equal(status(miss), 'cachefront; fwd=uri-miss; fwd-status=200; stored');
    assert.equal(await miss.text(), 'public 1');
    const hit = await eventually(async () => {
      const res = await get('/dc-public');
      return { status: status(res), body: await res.text() };
    }, (r) => r.status.startsWith('cachefront; hit'));
    assert.equal(hit.body, 'public 1');
    assert.equal(counts.get('/dc-public'), 1);
  });

  test('unkeyed override headers never reach the origin', async () => {
    routes.set('/poison', () => ({ headers: { 'cache-control': 'max-age=60' }, body: 'page' }));
    await (await get('/poison', { 'x-forwarded-host': 'evil.example', 'x-original-url': '/admin' })).text();
    const seen = origin.requests.find((r) => r.url === '/poison');
    assert.notEqual(seen.headers['x-forwarded-host'], 'evil.example');
    assert.equal(seen.headers['x-original-url'], undefined);
  });
});

describe('stale-if-error when the origin is unreachable', () => {
  test('the stale copy is served after the origin goes away', async () => {
    const origin = await startOrigin((_req, res) => {
      res.writeHead(200, { 'cache-control': 'max-age=1, stale-if-error=300' });
      res.end('last good copy');
    });
    const worker = await startWorker({ vars: { ORIGINS: originsVar([{ name: 'primary', origin }]) } });
    try {
      await (await fetch(`${worker.url}/page`)).text();
      await origin.close();
      await sleep(2_100);
      const res = await fetch(`${worker.url}/page`);
      assert.equal(res.status, 200);
      assert.equal(await res.text(), 'last good copy');
      assert.match(res.headers.get('cache-status'), /^cachefront; fwd=stale; ttl=-\d+; detail=stale-if-error$/);
      const never = await fetch(`${worker.url}/never-cached`);
      assert.equal(never.status, 502);
      assert.equal((await never.json()).error, 'origin_unreachable');
    } finally {
      await worker.stop();
      await origin.close();
    }
  });

  test('without stale-if-error, the disconnected grace serves it unless a directive forbids', async () => {
    const origin = await startOrigin((req, res) => {
      const strict = req.url.startsWith('/strict');
      res.writeHead(200, { 'cache-control': strict ? 'max-age=1, must-revalidate' : 'max-age=1' });
      res.end(strict ? 'strict copy' : 'plain copy');
    });
    const worker = await startWorker({
      vars: { ORIGINS: originsVar([{ name: 'primary', origin }]), STALE_IF_DISCONNECTED_SECS: '300' },
    });
    try {
      await (await fetch(`${worker.url}/plain`)).text();
      await (await fetch(`${worker.url}/strict`)).text();
      await origin.close();
      await sleep(2_100);
      const plain = await fetch(`${worker.url}/plain`);
      assert.equal(await plain.text(), 'plain copy');
      assert.match(plain.headers.get('cache-status'), /^cachefront; fwd=stale; ttl=-\d+; detail=stale-if-disconnected$/);
      const strict = await fetch(`${worker.url}/strict`);
      assert.equal(strict.status, 502, 'must-revalidate forbids serving it stale');
      await strict.arrayBuffer();
    } finally {
      await worker.stop();
      await origin.close();
    }
  });
});

describe('the KV tier', () => {
  test('small stored entries are written to the CACHE_KV namespace as well', async () => {
    const { spawnSync } = await import('node:child_process');
    const { repoRoot } = await import('./harness.mjs');
    const origin = await startOrigin((_req, res) => {
      res.writeHead(200, { 'cache-control': 'max-age=600' });
      res.end('small page');
    });
    const worker = await startWorker({
      vars: { ORIGINS: originsVar([{ name: 'primary', origin }]), KV_CACHE_MAX_OBJECT_BYTES: '65536' },
    });
    try {
      const res = await fetch(`${worker.url}/kv/page`);
      assert.match(res.headers.get('cache-status'), /stored/);
      await res.text();
      const listed = await eventually(
        async () => spawnSync(`${repoRoot}/node_modules/.bin/wrangler`,
          ['kv', 'key', 'list', '--binding', 'CACHE_KV', '--local', '--persist-to', worker.persistDir],
          { cwd: repoRoot, encoding: 'utf8', env: { ...process.env, WRANGLER_SEND_METRICS: 'false' } }),
        (out) => out.status === 0 && out.stdout.includes('/kv/page'),
        { attempts: 10, delayMs: 300 },
      );
      const keys = JSON.parse(listed.stdout).map((k) => k.name);
      assert.ok(keys.some((k) => k.endsWith('/.cachefront/v1/http/kv/page')), keys.join(', '));
    } finally {
      await worker.stop();
      await origin.close();
    }
  });
});
