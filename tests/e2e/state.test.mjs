// State export/import end to end (docs/ops/disaster-recovery.md): a worker in
// workerd tags and purges pages, its state is exported, a second worker with
// a fresh persist directory (empty Durable Objects and KV) imports it, and
// the restored registry serves and takes purges. Bad documents are refused
// with JSON errors and change nothing.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { eventually, originsVar, startOrigin, startWorker } from './harness.mjs';

const TOKEN = 'e2e-state-token-0123456789';
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

describe('state export and import', () => {
  let origin;
  let first;
  let second;
  let exported;
  const versions = new Map();

  before(async () => {
    origin = await startOrigin((req, res) => {
      if (req.url === '/healthz') {
        res.writeHead(200, { 'content-type': 'text/plain' });
        res.end('ok');
        return;
      }
      const n = (versions.get(req.url) ?? 0) + 1;
      versions.set(req.url, n);
      const tag = req.url.startsWith('/products/') ? 'products, product:7' : 'pages';
      res.writeHead(200, { 'content-type': 'text/plain', 'cache-control': 'max-age=600', 'cache-tag': tag });
      res.end(`${req.url} v${n}`);
    });
    const vars = {
      ORIGINS: originsVar([{ name: 'primary', origin, health_path: '/healthz' }]),
      PURGE_TOKEN: TOKEN,
    };
    [first, second] = await Promise.all([startWorker({ vars }), startWorker({ vars })]);
  });

  after(async () => {
    await Promise.all([first?.stop(), second?.stop()]);
    await origin?.close();
  });

  const call = (worker, method, { body, token = TOKEN, query = '' } = {}) =>
    fetch(`${worker.url}/__cachefront/state${query}`, {
      method,
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      body,
    });
  const exportState = async (worker) => {
    const response = await call(worker, 'GET');
    assert.equal(response.status, 200);
    assert.equal(response.headers.get('cache-control'), 'no-store');
    return response.json();
  };
  const purge = (worker, body) => fetch(`${worker.url}/__cachefront/purge`, {
    method: 'POST',
    headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  const get = (worker, path) => fetch(`${worker.url}${path}`);
  const cachedAgain = (worker, path) =>
    eventually(() => get(worker, path), (r) => /^cachefront; hit/.test(r.headers.get('cache-status')));
  const byKey = (document) => Object.fromEntries(document.tags.map((t) => [t.key, t]));

  test('the state endpoint needs the purge token', async () => {
    assert.equal((await call(first, 'GET', { token: 'wrong' })).status, 401);
    const put = await call(first, 'DELETE');
    assert.equal(put.status, 405);
    assert.equal((await put.json()).error.code, 'method_not_allowed');
  });

  test('tags purged on one worker are exported with the origin health results', async () => {
    for (const path of ['/products/7', '/pages/a']) {
      await (await get(first, path)).text();
      await (await cachedAgain(first, path)).text();
    }
    await sleep(1_100);
    assert.equal((await purge(first, { tags: ['product:7'] })).status, 200);
    assert.equal((await purge(first, { tags: ['pages'], soft: true })).status, 200);
    assert.equal((await fetch(`${first.url}/__scheduled?cron=*+*+*+*+*`)).status, 200);

    exported = await eventually(() => exportState(first), (d) => d.origin_health.length > 0);
    assert.equal(exported.format, 'cachefront-state');
    assert.equal(exported.version, 1);
    const tags = byKey(exported);
    assert.ok(tags['product:7'].hard_ms > 0, JSON.stringify(exported));
    assert.equal(tags['product:7'].soft_ms, 0);
    assert.ok(tags.pages.soft_ms > 0);
    assert.deepEqual(exported.origin_health.map((h) => [h.origin, h.up]), [['primary', true]]);
  });

  test('a fresh worker refuses bad documents with JSON errors and keeps its state', async () => {
    const before = await exportState(second);
    assert.deepEqual(before.tags, [], 'the second worker starts empty');
    const cases = [
      ['{oops', 400, 'malformed_json'],
      [JSON.stringify({ ...exported, format: 'something-else' }), 400, 'wrong_format'],
      [JSON.stringify({ ...exported, version: 9 }), 422, 'unsupported_version'],
      [JSON.stringify({ ...exported, tags: [...exported.tags, { key: 'late', hard_ms: Date.now() + 3_600_000, soft_ms: 0 }] }), 400, 'invalid_field'],
    ];
    for (const [body, status, code] of cases) {
      const response = await call(second, 'PUT', { body });
      assert.equal(response.status, status, body);
      assert.match(response.headers.get('content-type'), /application\/json/);
      const answer = await response.json();
      assert.equal(answer.ok, false);
      assert.equal(answer.error.code, code, JSON.stringify(answer));
    }
    const dry = await call(second, 'PUT', { body: JSON.stringify(exported), query: '?dry_run=true' });
    assert.equal(dry.status, 200);
    assert.equal((await dry.json()).imported.dry_run, true);
    assert.deepEqual((await exportState(second)).tags, [], 'bad documents and a dry run wrote nothing');
  });

  test('importing restores the registry and health, and purge by tag works on it', async () => {
    const imported = await call(second, 'PUT', { body: JSON.stringify(exported) });
    assert.equal(imported.status, 200);
    const receipt = await imported.json();
    assert.equal(receipt.imported.tags, exported.tags.length);
    assert.equal(receipt.imported.origin_health, 1);

    const restored = await exportState(second);
    assert.deepEqual(restored.tags, exported.tags);
    assert.deepEqual(restored.origin_health, exported.origin_health);

    // Importing the same document again changes nothing (times only move forward).
    assert.equal((await call(second, 'PUT', { body: JSON.stringify(exported) })).status, 200);
    assert.deepEqual((await exportState(second)).tags, exported.tags);

    await (await get(second, '/products/7')).text();
    const hit = await cachedAgain(second, '/products/7');
    const cached = await hit.text();
    await sleep(1_100);
    assert.equal((await purge(second, { tags: ['product:7'] })).status, 200);
    const fresh = await get(second, '/products/7');
    assert.match(fresh.headers.get('cache-status'), /purged/);
    assert.notEqual(await fresh.text(), cached);
    const after = byKey(await exportState(second));
    assert.ok(after['product:7'].hard_ms > byKey(exported)['product:7'].hard_ms, 'the new purge moved the time forward');
    assert.equal(after.pages.soft_ms, byKey(exported).pages.soft_ms, 'other keys are as restored');
  });
});
