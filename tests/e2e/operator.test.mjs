// The state endpoint in workerd with bodies above STREAM_BODIES_ABOVE_BYTES
// (read through the runtime's stream, up to 32 MiB), its own STATE_TOKEN,
// and times ahead of the clock imported as now
// (docs/ops/disaster-recovery.md).
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { originsVar, startOrigin, startWorker } from './harness.mjs';

const PURGE_TOKEN = 'e2e-operator-purge-token-01';
const STATE_TOKEN = 'e2e-operator-state-token-01';
const MAX_IMPORT_BYTES = 32 * 1024 * 1024;

const documentWith = (tags) => JSON.stringify({
  format: 'cachefront-state', version: 1, exported_ms: 1, tags, origin_health: [],
});

describe('state import of streamed bodies', () => {
  let origin;
  let worker;

  before(async () => {
    origin = await startOrigin((req, res) => {
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.end('ok');
    });
    worker = await startWorker({
      vars: {
        ORIGINS: originsVar([{ name: 'primary', origin }]),
        PURGE_TOKEN,
        STATE_TOKEN,
        STREAM_BODIES_ABOVE_BYTES: '1024',
      },
    });
  });

  after(async () => {
    await worker?.stop();
    await origin?.close();
  });

  const put = (body, { token = STATE_TOKEN, ...init } = {}) =>
    fetch(`${worker.url}/__cachefront/state`, {
      method: 'PUT',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      body,
      ...init,
    });

  test('a document far above the stream threshold is imported', async () => {
    const tags = Array.from({ length: 3000 }, (_, i) => ({ key: `product:${i}`, hard_ms: 1000, soft_ms: 0 }));
    const body = documentWith(tags);
    assert.ok(body.length > 100_000);
    const response = await put(body);
    const receipt = await response.json();
    assert.equal(response.status, 200, JSON.stringify(receipt));
    assert.equal(receipt.imported.tags, 3000);
    const exported = await (await fetch(`${worker.url}/__cachefront/state`, {
      headers: { authorization: `Bearer ${STATE_TOKEN}` },
    })).json();
    assert.equal(exported.tags.length, 3000);
  });

  test('times ahead of the clock are imported as now and counted', async () => {
    const before = Date.now();
    const ahead = before + 60_000;
    const response = await put(documentWith([{ key: 'ahead', hard_ms: ahead, soft_ms: 0 }]));
    const receipt = await response.json();
    assert.equal(response.status, 200, JSON.stringify(receipt));
    assert.deepEqual(receipt.imported.clamped_to_now, { tags: 1, origin_health: 0 });
    const exported = await (await fetch(`${worker.url}/__cachefront/state`, {
      headers: { authorization: `Bearer ${STATE_TOKEN}` },
    })).json();
    const entry = exported.tags.find((t) => t.key === 'ahead');
    assert.ok(entry.hard_ms < ahead && entry.hard_ms >= before - 5_000, JSON.stringify(entry));
  });

  test('with STATE_TOKEN set, the purge token does not open the state endpoint', async () => {
    const response = await put(documentWith([]), { token: PURGE_TOKEN });
    assert.equal(response.status, 401);
  });
});

// The worker refuses before the upload has ended. Under `wrangler dev` that
// leaves the runtime's connection unusable for the next non-GET request
// ("Your worker restarted mid-request") and sometimes drops the refusal's
// body (never its status), so each case gets a worker of its own and only
// the status is checked here; the JSON of the refusal is checked natively
// (src/admin/state.rs tests).
describe('state import above 32 MiB', () => {
  let origin;

  before(async () => {
    origin = await startOrigin((req, res) => {
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.end('ok');
    });
  });

  after(async () => origin?.close());

  // `makeBody` gives a fresh body per attempt. Under load the local
  // runtime now and then answers a first large upload with its own 503 (no
  // worker JSON); that attempt is repeated, at most twice, on a new worker.
  const refusedBy = async (makeBody, init = {}) => {
    for (let attempt = 1; ; attempt++) {
      const worker = await startWorker({
        vars: {
          ORIGINS: originsVar([{ name: 'primary', origin }]),
          STATE_TOKEN,
          STREAM_BODIES_ABOVE_BYTES: '1024',
        },
      });
      try {
        const response = await fetch(`${worker.url}/__cachefront/state`, {
          method: 'PUT',
          headers: { authorization: `Bearer ${STATE_TOKEN}` },
          body: makeBody(),
          ...init,
        });
        const text = await response.text().catch(() => '');
        const fromWorker = /"error"/.test(text);
        if (response.status === 503 && !fromWorker && attempt < 3) continue;
        return response.status;
      } finally {
        await worker.stop();
      }
    }
  };

  test('with its length announced, it is a 413 before any of it is read', async () => {
    assert.equal(await refusedBy(() => Buffer.alloc(MAX_IMPORT_BYTES + 1, 0x20)), 413);
  });

  test('with its length unknown, it is a 413 once 32 MiB were read', async () => {
    const chunks = async function* () {
      const chunk = Buffer.alloc(1024 * 1024, 0x20);
      for (let i = 0; i <= 32; i++) yield chunk;
    };
    assert.equal(await refusedBy(() => ReadableStream.from(chunks()), { duplex: 'half' }), 413);
  });
});
