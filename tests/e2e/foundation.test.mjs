// Foundation end-to-end tests: the worker in workerd serves www/, proxies to a
// stand-in origin, caches what may be cached, and reports bad configuration.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { eventually, originsVar, startOrigin, startWorker } from './harness.mjs';

describe('worker with a healthy origin', () => {
  let origin;
  let worker;

  before(async () => {
    let served = 0;
    origin = await startOrigin((req, res) => {
      served += 1;
      const cacheControl = req.url.startsWith('/no-store') ? 'no-store' : 'public, max-age=300';
      res.writeHead(200, { 'content-type': 'text/plain', 'cache-control': cacheControl });
      res.end(`origin response #${served} for ${req.method} ${req.url}`);
    });
    worker = await startWorker({ vars: { ORIGINS: originsVar([{ name: 'primary', origin }]) } });
  });

  after(async () => {
    await worker?.stop();
    await origin?.close();
  });

  test('serves the demo site from www/ without asking the origin', async () => {
    const res = await fetch(`${worker.url}/`);
    assert.equal(res.status, 200);
    assert.match(res.headers.get('content-type'), /text\/html/);
    assert.equal(res.headers.get('cache-status'), 'cachefront; hit; detail=assets');
    // Answered by the asset store with the build's _headers: the worker
    // never ran, so there is no timing of it (docs/assets.md).
    assert.equal(res.headers.get('server-timing'), null);
    assert.equal(res.headers.get('cache-control'), 'public, max-age=60, stale-while-revalidate=300');
    assert.match(await res.text(), /<!doctype html>/i);
    assert.equal(origin.requests.length, 0);
  });

  test('proxied GET is stored on the first request and a hit afterwards', async () => {
    const first = await fetch(`${worker.url}/api/products?page=1`);
    assert.equal(first.status, 200);
    assert.equal(first.headers.get('cache-status'), 'cachefront; fwd=uri-miss; fwd-status=200; stored');
    assert.equal(first.headers.get('cachefront-origin'), 'primary');
    assert.match(first.headers.get('server-timing'), /origin;dur=\d+;desc="primary"/);
    const body = await first.text();

    const hit = await eventually(
      () => fetch(`${worker.url}/api/products?page=1`),
      (r) => r.headers.get('cache-status')?.startsWith('cachefront; hit'),
    );
    assert.match(hit.headers.get('cache-status'), /^cachefront; hit; ttl=\d+(; detail=memory)?$/);
    assert.equal(await hit.text(), body);
    // Present and a non-negative integer (Number(null) would pass `>= 0`).
    assert.match(hit.headers.get('age') ?? 'absent', /^\d+$/);
    assert.equal(hit.headers.get('cache-control'), 'public, max-age=300');
    assert.equal(hit.headers.get('x-cachefront-meta'), null);
    assert.equal(origin.hits('/api/products?page=1'), 1);
  });

  test('a no-store response is never served from cache', async () => {
    for (let i = 0; i < 3; i++) {
      const res = await fetch(`${worker.url}/no-store/item`);
      assert.equal(res.status, 200);
      assert.equal(res.headers.get('cache-status'), 'cachefront; fwd=uri-miss; fwd-status=200; detail=no-store');
      await res.text();
      await new Promise((r) => setTimeout(r, 100));
    }
    assert.equal(origin.hits('/no-store/item'), 3);
  });

  test('POST goes to the origin with its body and is not cached', async () => {
    const res = await fetch(`${worker.url}/api/cart`, { method: 'POST', body: '{"sku":"tent"}' });
    assert.equal(res.status, 200);
    assert.equal(res.headers.get('cache-status'), 'cachefront; fwd=method; fwd-status=200');
    await res.text();
    const seen = origin.requests.find((r) => r.url === '/api/cart');
    assert.equal(seen.method, 'POST');
    assert.equal(seen.body, '{"sku":"tent"}');
  });
});

describe('worker with an unreachable origin', () => {
  let worker;

  before(async () => {
    // A port nobody listens on: connections are refused.
    const { freePort } = await import('./harness.mjs');
    const port = await freePort();
    worker = await startWorker({
      vars: { ORIGINS: JSON.stringify([{ name: 'gone', url: `http://127.0.0.1:${port}` }]) },
    });
  });

  after(async () => worker?.stop());

  test('answers 502 with a JSON body naming the origin, and never caches it', async () => {
    for (let i = 0; i < 2; i++) {
      const res = await fetch(`${worker.url}/api/anything`);
      assert.equal(res.status, 502);
      assert.equal(res.headers.get('cache-control'), 'no-store');
      assert.equal(res.headers.get('cache-status'), 'cachefront; fwd=uri-miss; detail=origin_unreachable');
      const json = await res.json();
      assert.equal(json.error, 'origin_unreachable');
      assert.equal(json.origin, 'gone');
    }
  });
});

describe('worker with an invalid ORIGINS', () => {
  let worker;
  const token = 'e2e-operator-token-0001';

  before(async () => {
    worker = await startWorker({
      vars: { ORIGINS: '[{"name":"primary","url":"http://deploy:hunter2@not a url"}]', PURGE_TOKEN: token },
    });
  });

  after(async () => worker?.stop());

  test('answers every public request with a generic JSON 500 that names nothing', async () => {
    // The site's own files are answered by the asset store, which does not
    // run the worker; everything that reaches the worker gets the 500.
    const page = await fetch(`${worker.url}/`);
    assert.equal(page.status, 200);
    await page.text();
    for (const path of ['/api/products', '/css/site.css', '/__cachefront/health']) {
      const res = await fetch(`${worker.url}${path}`);
      assert.equal(res.status, 500, path);
      assert.equal(res.headers.get('content-type'), 'application/json');
      assert.equal(res.headers.get('cache-control'), 'no-store');
      const text = await res.text();
      const json = JSON.parse(text);
      assert.equal(json.error, 'invalid_config');
      assert.equal(json.variable, undefined);
      for (const secret of ['ORIGINS', 'hunter2', 'deploy', 'not a url']) {
        assert.ok(!text.includes(secret), `${path}: ${text}`);
      }
    }
  });

  test('shows the details at the health endpoint to the operator token only', async () => {
    const res = await fetch(`${worker.url}/__cachefront/health`, { headers: { authorization: `Bearer ${token}` } });
    assert.equal(res.status, 500);
    const text = await res.text();
    const json = JSON.parse(text);
    assert.equal(json.variable, 'ORIGINS');
    assert.match(json.message, /not an absolute http\(s\) URL/);
    assert.ok(!text.includes('hunter2'), text);
  });
});
