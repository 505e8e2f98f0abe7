// The main command, end to end: `scripts/dev.sh` with no arguments starts a
// throwaway PostgreSQL, the catalogue origin and the worker, and the loop
// works through it: a miss that is stored, a hit, a purge by tag with the
// development token, and an UPDATE in the database that changes the page at
// the edge (purge on write). Ctrl-C (SIGINT to its process group) must leave
// no process behind.
//
// Needs the PostgreSQL server binaries, psql and the catalogue example (the
// test command provides them); skipped without them unless CI=true or
// CACHEFRONT_TEST_STRICT is set.
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import net from 'node:net';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { eventually, freePort, repoRoot } from './harness.mjs';

const strict = process.env.CI === 'true' || Boolean(process.env.CACHEFRONT_TEST_STRICT);
const TOKEN = 'dev-purge-token-not-a-secret';

function has(cmd, args) {
  try {
    execFileSync(cmd, args, { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}
const missing = !has('psql', ['--version'])
  ? 'psql is not installed'
  : !has('bash', ['-c', 'ls /usr/lib/postgresql/*/bin/initdb || command -v initdb'])
    ? 'the PostgreSQL server binaries are not installed'
    : null;
if (missing && strict) throw new Error(`dev-loop e2e cannot run: ${missing}`);

/** Whether something accepts TCP connections on 127.0.0.1:port. */
function listening(port) {
  return new Promise((resolve) => {
    const socket = net.connect({ host: '127.0.0.1', port }, () => {
      socket.destroy();
      resolve(true);
    });
    socket.on('error', () => resolve(false));
  });
}

describe('./scripts/dev.sh runs the whole loop', { skip: missing ?? false }, () => {
  let child;
  let output = '';
  let exited;
  let port;
  let base;

  before(async () => {
    port = await freePort();
    base = `http://127.0.0.1:${port}`;
    const env = { ...process.env, PORT: String(port), CACHEFRONT_SKIP_BUILD: '1', FORCE_COLOR: '0' };
    // Its own throwaway PostgreSQL, as on a fresh machine.
    delete env.DATABASE_URL;
    child = spawn('bash', [path.join(repoRoot, 'scripts', 'dev.sh')], {
      cwd: repoRoot,
      env,
      detached: true,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    child.stdout.on('data', (d) => (output += d));
    child.stderr.on('data', (d) => (output += d));
    exited = new Promise((resolve) => child.on('exit', (code, signal) => resolve({ code, signal })));
    const started = await Promise.race([
      // dev.sh builds the catalogue first: on a busy machine cargo may wait
      // minutes for its lock. The bound only guards against a hang.
      eventually(async () => output, (o) => o.includes('Ctrl-C stops everything.'), { attempts: 4500, delayMs: 200 }),
      exited.then(() => null),
    ]);
    assert.ok(started?.includes('Ctrl-C stops everything.'), `dev.sh did not start:\n${output}`);
  });

  after(async () => {
    if (child && child.exitCode === null) {
      try {
        process.kill(-child.pid, 'SIGKILL');
      } catch {
        // gone
      }
    }
  });

  test('a miss is stored, then hit; a purge by tag and an UPDATE reach the edge; Ctrl-C stops everything', async () => {
    const page = `${base}/products/1`;
    const first = await fetch(page);
    assert.equal(first.status, 200);
    assert.match(first.headers.get('cache-status'), /fwd=uri-miss.*stored/);
    assert.equal(first.headers.get('cachefront-origin'), 'catalog');
    const hit = await eventually(() => fetch(page), (r) => /^cachefront; hit/.test(r.headers.get('cache-status')));
    assert.match(hit.headers.get('cache-status'), /^cachefront; hit/);

    const purge = await fetch(`${base}/__cachefront/purge`, {
      method: 'POST',
      headers: { authorization: `Bearer ${TOKEN}` },
      body: JSON.stringify({ tags: ['product:1'] }),
    });
    assert.equal(purge.status, 200, await purge.text());
    const purged = await eventually(() => fetch(page), (r) => !/^cachefront; hit/.test(r.headers.get('cache-status')));
    assert.doesNotMatch(purged.headers.get('cache-status'), /^cachefront; hit/);

    const databaseUrl = /^DATABASE_URL=(\S+)$/m.exec(output)?.[1];
    assert.ok(databaseUrl, `dev.sh printed no DATABASE_URL:\n${output}`);
    execFileSync('psql', [databaseUrl, '-v', 'ON_ERROR_STOP=1', '-qc', 'UPDATE products SET price_cents = 12345, updated_at = now() WHERE id = 1']);
    const changed = await eventually(
      async () => (await fetch(page)).text(),
      (body) => body.includes('$123.45'),
      { attempts: 150, delayMs: 200 },
    );
    assert.match(changed, /<p class="price">\$123\.45<\/p>/);

    const catalogPort = Number(/catalogue origin on 127\.0\.0\.1:(\d+)/.exec(output)?.[1]);
    const pgPort = Number(new URL(databaseUrl).port);
    assert.ok(await listening(catalogPort) && (await listening(pgPort)));
    // Ctrl-C in a terminal: SIGINT to the whole foreground process group.
    process.kill(-child.pid, 'SIGINT');
    const { code, signal } = await exited;
    assert.ok(code !== null || signal !== null);
    for (const [name, p] of [['worker', port], ['catalog', catalogPort], ['postgres', pgPort]]) {
      assert.equal(await listening(p), false, `${name} still listens on ${p} after Ctrl-C:\n${output}`);
    }
    let left = '';
    try {
      // pgrep leaves itself out; it exits 1 when nothing matches.
      left = execFileSync('pgrep', ['-af', `--port ${port}|127.0.0.1:${catalogPort}|-p ${pgPort} `], { encoding: 'utf8' }).trim();
    } catch {
      left = '';
    }
    assert.equal(left, '', `processes left behind:\n${left}`);
  });
});
