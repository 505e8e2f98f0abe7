// Smoke test of the slim worker (CACHEFRONT_WORKER_FEATURES="": no js-minify)
// in workerd: it starts, serves an asset, proxies to an origin, and refuses
// EDGE_MINIFY_JS=on with a configuration error. scripts/test.sh builds it
// into build-slim/ (see there); this file runs it through a wrangler config
// whose `main` points there, so the default build in build/ stays as it is.
//
// Run: node --test tests/slim/   (after the slim build, as scripts/test.sh does)
import assert from 'node:assert/strict';
import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { originsVar, repoRoot, startOrigin, startWorker } from '../e2e/harness.mjs';

const slimMain = path.join(repoRoot, 'build-slim', 'index.js');
if (!existsSync(slimMain)) {
  throw new Error('build-slim/index.js is missing: scripts/test.sh builds it (CACHEFRONT_WORKER_FEATURES= scripts/build-worker.sh, then copies build/)');
}
const stamp = readFileSync(path.join(repoRoot, 'build-slim', '.cachefront-features'), 'utf8').trim();

describe('the slim worker (no js-minify)', () => {
  const config = path.join(repoRoot, `.wrangler-e2e-slim-${process.pid}.toml`);
  let origin;

  before(async () => {
    const base = readFileSync(path.join(repoRoot, 'wrangler.toml'), 'utf8');
    writeFileSync(config, base.replace(/^main = "build\/index\.js"$/m, 'main = "build-slim/index.js"'));
    origin = await startOrigin((_req, res) => {
      res.writeHead(200, { 'content-type': 'application/javascript', 'cache-control': 'max-age=60' });
      res.end('function  add ( a , b ) { return a + b ; }\n');
    });
  });

  after(async () => {
    await origin?.close();
    rmSync(config, { force: true });
  });

  test('was built without features', () => {
    assert.match(stamp, /^features= /);
    assert.match(readFileSync(config, 'utf8'), /^main = "build-slim\/index\.js"$/m);
  });

  test('starts, serves an asset and proxies to the origin', async () => {
    const worker = await startWorker({ config, vars: { ORIGINS: originsVar([{ name: 'primary', origin }]) } });
    try {
      const asset = await fetch(`${worker.url}/robots.txt`);
      assert.equal(asset.status, 200);
      assert.equal(asset.headers.get('cache-status'), 'cachefront; hit; detail=assets');
      await asset.text();
      const proxied = await fetch(`${worker.url}/app.js`);
      assert.equal(proxied.status, 200);
      assert.equal(proxied.headers.get('cachefront-origin'), 'primary');
      assert.equal(await proxied.text(), 'function  add ( a , b ) { return a + b ; }\n', 'passed on unminified');
    } finally {
      await worker.stop();
    }
  });

  test('refuses EDGE_MINIFY_JS=on with a configuration error', async () => {
    const token = 'slim-operator-token-0001';
    const worker = await startWorker({
      config,
      vars: { ORIGINS: originsVar([{ name: 'primary', origin }]), EDGE_MINIFY_JS: 'on', PURGE_TOKEN: token },
    });
    try {
      const res = await fetch(`${worker.url}/app.js`);
      assert.equal(res.status, 500);
      assert.equal((await res.json()).error, 'invalid_config');
      const health = await fetch(`${worker.url}/__cachefront/health`, { headers: { authorization: `Bearer ${token}` } });
      const json = await health.json();
      assert.equal(json.variable, 'EDGE_MINIFY_JS', JSON.stringify(json));
      assert.match(JSON.stringify(json), /js-minify/);
    } finally {
      await worker.stop();
    }
  });
});
