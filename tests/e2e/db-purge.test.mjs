// The write → purge loop end to end: the catalogue example origin (real
// PostgreSQL, its NOTIFY triggers and change listener) behind the worker in
// workerd. A product page cached at the edge is replaced by the new content
// after a plain UPDATE in PostgreSQL, with no purge call from the test.
//
// Needs DATABASE_URL (scripts/with-postgres.sh provides one), psql, and the
// catalogue example built (cargo build -p cachefront-origin --examples; the
// binary is looked up in CATALOG_BIN, else $CARGO_TARGET_DIR or target/). Without
// them the test is skipped, unless CI=true or CACHEFRONT_TEST_STRICT is set, in
// which case it fails.
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { eventually, freePort, repoRoot, startWorker } from './harness.mjs';

const TOKEN = 'e2e-db-purge-token-0123456789';
const strict = process.env.CI === 'true' || Boolean(process.env.CACHEFRONT_TEST_STRICT);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function catalogBin() {
  if (process.env.CATALOG_BIN) return process.env.CATALOG_BIN;
  const target = process.env.CARGO_TARGET_DIR ?? path.join(repoRoot, 'target');
  return path.resolve(repoRoot, target, 'debug', 'examples', 'catalog');
}

function hasPsql() {
  try {
    execFileSync('psql', ['--version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

/** Why the test cannot run here, or null. */
function missingPrerequisite() {
  if (!process.env.DATABASE_URL) return 'DATABASE_URL is not set (run under scripts/with-postgres.sh)';
  if (!hasPsql()) return 'psql is not installed';
  if (!existsSync(catalogBin())) return `${catalogBin()} is missing (cargo build -p cachefront-origin --examples)`;
  return null;
}

const missing = missingPrerequisite();
if (missing && strict) {
  throw new Error(`db-purge e2e cannot run: ${missing}`);
}

function psql(url, sql) {
  return execFileSync('psql', [url, '-v', 'ON_ERROR_STOP=1', '-qAtc', sql], {
    encoding: 'utf8',
    env: { ...process.env, PGOPTIONS: '-c client_min_messages=warning' },
  }).trim();
}

/** Starts the catalogue example; resolves with its URL once it says where it listens. */
function startCatalog(env) {
  const child = spawn(catalogBin(), [], {
    // ADMIN_BIND :0 too: the default admin port (9091) may be taken by another origin.
    env: { ...process.env, BIND: '127.0.0.1:0', ADMIN_BIND: '127.0.0.1:0', RUST_LOG: 'info', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stderr.on('data', (d) => (output += d));
  const exited = new Promise((resolve) => child.on('exit', resolve));
  const url = new Promise((resolve, reject) => {
    child.stdout.on('data', (d) => {
      output += d;
      const m = /listening on (http:\/\/[\d.:]+)/.exec(output);
      if (m) resolve(m[1]);
    });
    child.on('exit', (code) => reject(new Error(`catalog exited (${code}) before listening:\n${output}`)));
  });
  return {
    url,
    logs: () => output,
    stop: async () => {
      if (child.exitCode === null) {
        child.kill('SIGTERM');
        const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
        await exited;
        clearTimeout(timer);
      }
    },
  };
}

describe('write → purge loop behind the edge', { skip: missing ?? false }, () => {
  const database = `cachefront_e2e_db_purge_${process.pid}`;
  let adminUrl;
  let databaseUrl;
  let catalog;
  let worker;

  before(async () => {
    adminUrl = process.env.DATABASE_URL;
    const u = new URL(adminUrl);
    u.pathname = `/${database}`;
    databaseUrl = u.toString();
    psql(adminUrl, `DROP DATABASE IF EXISTS ${database}`);
    psql(adminUrl, `CREATE DATABASE ${database}`);

    // The catalogue purges the edge, so the edge's port is chosen first.
    const edgePort = await freePort();
    catalog = startCatalog({
      DATABASE_URL: databaseUrl,
      CACHEFRONT_EDGE_URL: `http://127.0.0.1:${edgePort}`,
      CACHEFRONT_PURGE_TOKEN: TOKEN,
    });
    const origin = await catalog.url;
    // Ready means: schema seeded, triggers installed, listener listening.
    const ready = await eventually(
      () => fetch(`${origin}/readyz`).catch(() => ({ status: 0 })),
      (r) => r.status === 200,
      { attempts: 300, delayMs: 200 },
    );
    assert.equal(ready.status, 200, `catalog never became ready:\n${catalog.logs()}`);
    worker = await startWorker({
      port: edgePort,
      vars: {
        ORIGINS: JSON.stringify([{ name: 'catalog', url: origin }]),
        PURGE_TOKEN: TOKEN,
      },
    });
  });

  after(async () => {
    await worker?.stop();
    await catalog?.stop();
    try {
      if (adminUrl) psql(adminUrl, `DROP DATABASE IF EXISTS ${database} WITH (FORCE)`);
    } catch (err) {
      console.error(`db-purge: could not drop ${database}: ${err.message}`);
    }
  });

  test('an UPDATE in PostgreSQL replaces the cached product page at the edge', async (t) => {
    const page = `${worker.url}/products/1`;
    const first = await fetch(page);
    assert.equal(first.status, 200);
    assert.equal(first.headers.get('cachefront-origin'), 'catalog', 'served by the origin, not the assets');
    assert.match(await first.text(), /<p class="price">\$389\.00<\/p>/);
    const hit = await eventually(() => fetch(page), (r) => /^cachefront; hit/.test(r.headers.get('cache-status')));
    assert.match(hit.headers.get('cache-status'), /^cachefront; hit/);
    assert.match(await hit.text(), /\$389\.00/);

    psql(databaseUrl, 'UPDATE products SET price_cents = 12345, updated_at = now() WHERE id = 1');
    const committed = performance.now();

    // No purge call here: the trigger, the listener and the purge client do it.
    const deadline = committed + 30_000;
    let latest;
    let body = '';
    while (performance.now() < deadline) {
      latest = await fetch(page);
      body = await latest.text();
      if (body.includes('$123.45')) break;
      assert.match(body, /\$389\.00/, 'old or new content, nothing else');
      await sleep(20);
    }
    const latencyMs = Math.round(performance.now() - committed);
    assert.match(body, /<p class="price">\$123\.45<\/p>/, `the edge still served the old page after 30 s:\n${catalog.logs()}`);
    assert.doesNotMatch(latest.headers.get('cache-status'), /^cachefront; hit/);
    t.diagnostic(`update → edge serves new content: ${latencyMs} ms`);
    console.log(`db-purge: update → edge serves new content in ${latencyMs} ms`);

    // The new page is cached again.
    const again = await eventually(() => fetch(page), (r) => /^cachefront; hit/.test(r.headers.get('cache-status')));
    assert.match(again.headers.get('cache-status'), /^cachefront; hit/, 'the new page is a hit again');
    assert.match(await again.text(), /\$123\.45/);
  });
});
