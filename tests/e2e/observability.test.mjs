// What operators see of each request: one JSON log line (Logpush / `wrangler
// tail`) and one Analytics Engine data point when the ANALYTICS dataset is
// bound. Local Analytics Engine (miniflare) accepts writes and keeps nothing,
// so the data point's layout is tested natively (src/telemetry/analytics.rs) and by the
// edge exporter's tests; here the binding is configured and every write must
// succeed: each request line says `"analytics":"written"` (a failed one
// says `"failed"` and is logged as `analytics_write_failed`).
import assert from 'node:assert/strict';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { eventually, originsVar, repoRoot, startOrigin, startWorker } from './harness.mjs';

/** The JSON request lines a worker has logged so far. */
function requestLines(worker) {
  return worker
    .logs()
    .split('\n')
    .map((line) => line.slice(line.indexOf('{')))
    .filter((line) => line.startsWith('{"method"'))
    .map((line) => JSON.parse(line));
}

describe('per-request observability', () => {
  let origin;
  let worker;
  const config = path.join(repoRoot, `.wrangler-e2e-${process.pid}.toml`);

  before(async () => {
    origin = await startOrigin((_req, res) => {
      res.writeHead(200, { 'cache-control': 'max-age=600', 'content-type': 'text/plain' });
      res.end('observed');
    });
    // Worker first, so that an asset request runs the worker and is logged
    // (in the default, assets-first mode the asset store answers it alone).
    const base = readFileSync(path.join(repoRoot, 'wrangler.toml'), 'utf8')
      .replace(/^run_worker_first = .*$/m, 'run_worker_first = true');
    writeFileSync(config, `${base}\n[[analytics_engine_datasets]]\nbinding = "ANALYTICS"\ndataset = "cachefront_requests"\n`);
    worker = await startWorker({
      config,
      vars: { ORIGINS: originsVar([{ name: 'primary', origin }]), REQUEST_LOG: 'json' },
    });
  });

  after(async () => {
    await worker?.stop();
    await origin?.close();
    rmSync(config, { force: true });
  });

  test('each request logs one JSON line with its cache outcome, tier and timings', async () => {
    await (await fetch(`${worker.url}/observed/page`)).text();
    await (await fetch(`${worker.url}/observed/page`)).text();
    await (await fetch(`${worker.url}/robots.txt`)).text();
    const lines = await eventually(
      async () => requestLines(worker),
      (found) => found.filter((l) => l.path === '/observed/page').length >= 2 && found.some((l) => l.path === '/robots.txt'),
      { attempts: 30, delayMs: 200 },
    );
    const page = lines.filter((l) => l.path === '/observed/page');
    assert.equal(page[0].method, 'GET');
    assert.equal(page[0].status, 200);
    assert.equal(page[0].cache, 'miss');
    assert.equal(page[0].tier, 'origin');
    assert.equal(page[0].origin, 'primary');
    assert.equal(typeof page[0].origin_ms, 'number');
    assert.match(page[0].cache_status, /^cachefront; fwd=uri-miss; fwd-status=200; stored/);
    assert.equal(page[1].cache, 'hit');
    assert.equal(page[1].tier, 'memory');
    assert.equal(page[1].origin, undefined);
    assert.equal(typeof page[1].edge_ms, 'number');
    const asset = lines.find((l) => l.path === '/robots.txt');
    assert.equal(asset.tier, 'assets');
  });

  test('with the ANALYTICS dataset bound, every data point is written', async () => {
    for (let i = 0; i < 5; i += 1) await (await fetch(`${worker.url}/observed/${i}`)).text();
    const lines = await eventually(
      async () => requestLines(worker),
      (found) => found.some((l) => l.path === '/observed/4'),
      { attempts: 30, delayMs: 200 },
    );
    assert.match(worker.logs(), /env\.ANALYTICS\b.*Analytics Engine/, 'wrangler bound the dataset');
    // Each request line says its data point was written: a binding the
    // worker cannot reach (or a write that fails) leaves no "written".
    for (let i = 0; i < 5; i += 1) {
      const line = lines.find((l) => l.path === `/observed/${i}`);
      assert.ok(line, `a request line for /observed/${i}`);
      assert.equal(line.analytics, 'written', JSON.stringify(line));
    }
    assert.doesNotMatch(worker.logs(), /analytics_write_failed/);
  });
});
