// Large bodies stream through the worker in workerd instead of being read
// whole: the origin sends half a body and waits until the client has
// received part of it before sending the rest. A worker that buffered would
// never pass the first half on, and the test would time out instead.
// Bodies with a Content-Length are also stored (Cache API tier, from a
// stream) and served back, whole and as ranges, byte for byte.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import http from 'node:http';
import { after, before, describe, test } from 'node:test';
import { eventually, originsVar, startOrigin, startWorker } from './harness.mjs';

const MiB = 1024 * 1024;

/** Deterministic bytes: the same `size` always gives the same body. */
function bytesOf(size) {
  const out = Buffer.alloc(size);
  let x = 2463534242;
  for (let i = 0; i < size; i += 1) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out[i] = x & 0xff;
  }
  return out;
}

const sha = (buf) => createHash('sha256').update(buf).digest('hex');

/** Reads a response body, calling `onBytes(total)` as chunks arrive. */
async function readAll(res, onBytes = () => {}) {
  const chunks = [];
  let total = 0;
  for await (const chunk of res.body) {
    chunks.push(Buffer.from(chunk));
    total += chunk.length;
    onBytes(total);
  }
  return Buffer.concat(chunks);
}

describe('large bodies stream through the worker', () => {
  let origin;
  let worker;
  const big = bytesOf(8 * MiB);
  /** Released by the client once it holds the first MiB of a gated body. */
  let release = () => {};

  before(async () => {
    origin = await startOrigin(async (req, res) => {
      const url = new URL(req.url, 'http://origin');
      const size = Number(url.searchParams.get('size') ?? big.length);
      const body = big.subarray(0, size);
      const headers = { 'content-type': 'application/octet-stream', etag: '"big-1"' };
      headers['cache-control'] = url.searchParams.get('cc') ?? 'max-age=300';
      if (url.searchParams.get('length') !== 'unknown') headers['content-length'] = String(size);
      res.writeHead(200, headers);
      if (url.pathname.startsWith('/gated')) {
        const half = Math.floor(size / 2);
        res.write(body.subarray(0, half));
        await new Promise((resolve) => {
          release = resolve;
        });
        res.end(body.subarray(half));
      } else {
        res.end(body);
      }
    });
    worker = await startWorker({
      vars: {
        ORIGINS: originsVar([{ name: 'primary', origin }]),
        STREAM_BODIES_ABOVE_BYTES: String(MiB),
        CACHE_MAX_OBJECT_BYTES: String(64 * MiB),
        MEMORY_CACHE_BYTES: String(16 * MiB),
      },
    });
  });

  after(async () => {
    release();
    await worker?.stop();
    await origin?.close();
  });

  for (const length of ['known', 'unknown']) {
    // A buffering worker would wait forever for the rest: the timeout fails it.
    test(`the client gets bytes before the origin has sent them all (${length} length)`, { timeout: 60_000 }, async () => {
      const res = await fetch(`${worker.url}/gated-${length}?length=${length}&cc=no-store`);
      assert.equal(res.status, 200);
      let released = false;
      const body = await readAll(res, (total) => {
        if (!released && total >= MiB) {
          released = true;
          release();
        }
      });
      assert.ok(released, 'the first MiB arrived while the origin was still holding the rest');
      assert.equal(body.length, big.length);
      assert.equal(sha(body), sha(big));
    });
  }

  test('a large body with a Content-Length is stored and served back from the cache', async () => {
    const path = '/stored?size=' + 6 * MiB;
    const first = await fetch(`${worker.url}${path}`);
    assert.match(first.headers.get('cache-status'), /fwd=uri-miss; fwd-status=200; stored/);
    const firstBody = await readAll(first);
    assert.equal(sha(firstBody), sha(big.subarray(0, 6 * MiB)));

    // The store's branch of the stream is written after the response: asked
    // until it has landed (the bound only stops a hang).
    const hit = await eventually(
      () => fetch(`${worker.url}${path}`),
      async (r) => /^cachefront; hit/.test(r.headers.get('cache-status')) || (await r.arrayBuffer(), false),
      { delayMs: 200 },
    );
    assert.match(hit.headers.get('cache-status'), /^cachefront; hit/);
    assert.doesNotMatch(hit.headers.get('cache-status'), /detail=memory/);
    assert.equal(sha(await readAll(hit)), sha(big.subarray(0, 6 * MiB)));
    assert.equal(origin.hits(path), 1);

    const part = await fetch(`${worker.url}${path}`, { headers: { range: 'bytes=3000000-3999999' } });
    assert.equal(part.status, 206);
    assert.equal(part.headers.get('content-range'), `bytes 3000000-3999999/${6 * MiB}`);
    const partBody = await readAll(part);
    assert.equal(partBody.length, 1_000_000);
    assert.equal(sha(partBody), sha(big.subarray(3_000_000, 4_000_000)));

    const head = await fetch(`${worker.url}${path}`, { method: 'HEAD' });
    assert.equal(head.status, 200);
    assert.equal((await head.arrayBuffer()).byteLength, 0);
    assert.equal(origin.hits(path), 1);
  });

  test('a large body of unknown length is served whole but not stored', async () => {
    // The origin gets the keyed query: members sorted by name.
    const path = `/unknown?length=unknown&size=${3 * MiB}`;
    const first = await fetch(`${worker.url}${path}`);
    assert.match(first.headers.get('cache-status'), /detail=unknown-length/);
    assert.equal(sha(await readAll(first)), sha(big.subarray(0, 3 * MiB)));
    const second = await fetch(`${worker.url}${path}`);
    assert.equal(sha(await readAll(second)), sha(big.subarray(0, 3 * MiB)));
    assert.equal(origin.hits(path), 2);
  });

  test('a body just under the threshold is still buffered and reaches the memory tier', async () => {
    const path = `/small?size=${MiB - 1}`;
    await readAll(await fetch(`${worker.url}${path}`));
    let status = '';
    for (let attempt = 0; attempt < 20 && !/detail=memory/.test(status); attempt += 1) {
      const res = await fetch(`${worker.url}${path}`);
      status = res.headers.get('cache-status');
      assert.equal(sha(await readAll(res)), sha(big.subarray(0, MiB - 1)));
    }
    assert.match(status, /detail=memory/);
  });
});

describe('large uploads stream through the worker to the origin', () => {
  let upstream;
  let worker;
  /** Bytes the origin has received of the current upload, and a waiter. */
  let received = 0;
  let onProgress = () => {};

  before(async () => {
    upstream = http.createServer((req, res) => {
      const hash = createHash('sha256');
      received = 0;
      req.on('data', (chunk) => {
        hash.update(chunk);
        received += chunk.length;
        onProgress();
      });
      req.on('end', () => {
        res.writeHead(200, { 'content-type': 'application/json', 'cache-control': 'no-store' });
        res.end(JSON.stringify({ method: req.method, bytes: received, sha: hash.digest('hex') }));
      });
    });
    await new Promise((resolve) => upstream.listen(0, '127.0.0.1', resolve));
    const origin = { url: `http://127.0.0.1:${upstream.address().port}` };
    worker = await startWorker({
      vars: { ORIGINS: originsVar([{ name: 'primary', origin }]), STREAM_BODIES_ABOVE_BYTES: String(MiB) },
    });
  });

  after(async () => {
    onProgress();
    await worker?.stop();
    upstream?.closeAllConnections();
    await new Promise((resolve) => upstream?.close(resolve));
  });

  for (const length of ['known', 'unknown']) {
    // A buffering worker would wait for the whole upload before calling the
    // origin, while the client waits for the origin: the timeout fails it.
    test(`the origin gets an upload's first MiB before the client has sent the rest (${length} length)`, { timeout: 60_000 }, async () => {
      const body = bytesOf(6 * MiB);
      const half = 3 * MiB;
      const originHasFirstMiB = new Promise((resolve) => {
        onProgress = () => received >= MiB && resolve();
      });
      const stream = new ReadableStream({
        async pull(controller) {
          if (!this.sent) {
            this.sent = true;
            controller.enqueue(body.subarray(0, half));
            return;
          }
          await originHasFirstMiB;
          controller.enqueue(body.subarray(half));
          controller.close();
        },
      });
      const headers = { 'content-type': 'application/octet-stream' };
      if (length === 'known') headers['content-length'] = String(body.length);
      const res = await fetch(`${worker.url}/upload-${length}`, { method: 'POST', body: stream, duplex: 'half', headers });
      assert.equal(res.status, 200);
      const seen = await res.json();
      assert.equal(seen.method, 'POST');
      assert.equal(seen.bytes, body.length);
      assert.equal(seen.sha, sha(body));
    });
  }

  test('a small upload is still read whole and forwarded', async () => {
    const body = bytesOf(1000);
    const res = await fetch(`${worker.url}/upload-small`, { method: 'PUT', body });
    const seen = await res.json();
    assert.equal(seen.bytes, 1000);
    assert.equal(seen.sha, sha(body));
  });
});

