// End-to-end harness: runs the built worker in the real Workers runtime
// (`wrangler dev --local`, i.e. workerd) on a free loopback port, next to
// stand-in origins that each test runs itself. Every process started here is
// stopped by `stop()`/`close()`, and killed when the test process exits.
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

const liveChildren = new Set();
process.on('exit', () => {
  for (const child of liveChildren) {
    try {
      process.kill(-child.pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
});

/** A TCP port nobody listens on right now. */
export async function freePort() {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.unref();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

/**
 * Starts a stand-in origin on 127.0.0.1. `handler(req, res, body)` answers;
 * every request is recorded in `requests` ({ method, url, headers, body }).
 */
export async function startOrigin(handler) {
  const requests = [];
  const errors = [];
  const sockets = new Set();
  const server = http.createServer((req, res) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks).toString();
      requests.push({ method: req.method, url: req.url, headers: req.headers, body });
      Promise.resolve()
        .then(() => handler(req, res, body))
        .catch((err) => {
          // An assertion inside a stand-in fails the test itself: rethrown
          // outside the request, it is an uncaught exception, which node:test
          // reports as a failure of the test running (the worker still gets
          // an answer, so nothing hangs).
          errors.push(err);
          if (!res.headersSent) res.writeHead(500, { 'content-type': 'text/plain' });
          res.end(String(err));
          setImmediate(() => {
            throw err;
          });
        });
    });
  });
  server.on('connection', (s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address();
  return {
    url: `http://127.0.0.1:${port}`,
    port,
    requests,
    /** Exceptions thrown by `handler` (each also failed the running test). */
    errors,
    hits: (pathname) => requests.filter((r) => r.url === pathname).length,
    close: () =>
      new Promise((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}

/**
 * A TCP server that accepts connections and drops them at once, counting
 * them: an origin that is "up" at the socket level but fails every request.
 */
export async function startDroppingServer() {
  let connections = 0;
  const server = net.createServer((socket) => {
    connections += 1;
    socket.destroy();
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address();
  return {
    url: `http://127.0.0.1:${port}`,
    connections: () => connections,
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
}

/** The ORIGINS value for a list of stand-ins: [{ name, origin }]. */
export function originsVar(list) {
  return JSON.stringify(list.map(({ name, origin, ...rest }) => ({ name, url: origin.url, ...rest })));
}

/**
 * Starts the worker under `wrangler dev --local` with the given vars (which
 * override wrangler.toml). Resolves once it answers HTTP.
 */
export async function startWorker(options = {}) {
  // freePort() gives a port up before wrangler binds it: another process can
  // take it in between. A port taken that way makes wrangler exit before it
  // is ready; then the worker starts again on another port (only when the
  // test did not ask for a port of its own).
  for (let attempt = 1; ; attempt += 1) {
    try {
      return await startWorkerOnce(options);
    } catch (err) {
      const taken = /EADDRINUSE|address already in use/i.test(String(err?.message));
      if (!taken || options.port !== undefined || attempt >= 3) throw err;
    }
  }
}

async function startWorkerOnce({ vars = {}, timeoutMs = 90_000, port: wantedPort, config } = {}) {
  if (!existsSync(path.join(repoRoot, 'build', 'index.js'))) {
    throw new Error('build/index.js is missing: run scripts/build-worker.sh (scripts/test.sh does) first');
  }
  const port = wantedPort ?? (await freePort());
  const inspectorPort = await freePort();
  const persistDir = mkdtempSync(path.join(tmpdir(), 'cachefront-e2e-'));
  const args = [
    'dev',
    '--local',
    '--ip', '127.0.0.1',
    '--port', String(port),
    '--inspector-port', String(inspectorPort),
    '--persist-to', persistDir,
    '--show-interactive-dev-session=false',
    // Lets tests fire the cron handler with GET /__scheduled?cron=...
    '--test-scheduled',
  ];
  // Another wrangler config (e.g. with extra bindings), in the repository root.
  if (config) args.push('--config', config);
  for (const [key, value] of Object.entries(vars)) args.push('--var', `${key}:${value}`);
  const child = spawn(path.join(repoRoot, 'node_modules', '.bin', 'wrangler'), args, {
    cwd: repoRoot,
    detached: true,
    stdio: ['ignore', 'pipe', 'pipe'],
    env: {
      ...process.env,
      CACHEFRONT_SKIP_BUILD: '1',
      WRANGLER_SEND_METRICS: 'false',
      CLOUDFLARE_CF_FETCH_ENABLED: 'false',
      WRANGLER_LOG_PATH: path.join(persistDir, 'logs'),
      FORCE_COLOR: '0',
    },
  });
  liveChildren.add(child);
  let output = '';
  child.stdout.on('data', (d) => (output += d));
  child.stderr.on('data', (d) => (output += d));
  let exited = false;
  const exitPromise = new Promise((resolve) => child.on('exit', () => {
    exited = true;
    liveChildren.delete(child);
    resolve();
  }));

  const stop = async () => {
    if (!exited) {
      try {
        process.kill(-child.pid, 'SIGTERM');
      } catch {
        // already gone
      }
      const killTimer = setTimeout(() => {
        try {
          process.kill(-child.pid, 'SIGKILL');
        } catch {
          // already gone
        }
      }, 5_000);
      await exitPromise;
      clearTimeout(killTimer);
    }
    rmSync(persistDir, { recursive: true, force: true });
  };

  const url = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (exited) {
      await stop();
      throw new Error(`wrangler dev exited before it was ready:\n${output}`);
    }
    if (output.includes('Ready on')) {
      try {
        await fetch(`${url}/robots.txt`, { signal: AbortSignal.timeout(10_000) });
        return { url, stop, logs: () => output, persistDir, pid: child.pid, inspectorPort };
      } catch {
        // not answering yet
      }
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  await stop();
  throw new Error(`wrangler dev was not ready within ${timeoutMs} ms:\n${output}`);
}

/**
 * Repeats `request()` until `accept(result)` holds, for effects that land in
 * the background (cache writes after `waitUntil`, refreshes, log lines), and
 * returns the accepted result (or the last one, for the caller's assertion to
 * show). The bound only stops a hang: it is far beyond what any run needs, so
 * a slow machine waits longer but never changes the outcome. `attempts`
 * (older callers) can only lengthen it.
 */
export async function eventually(request, accept, { delayMs = 100, timeoutMs = 30_000, attempts = 0 } = {}) {
  const deadline = Date.now() + Math.max(timeoutMs, attempts * delayMs);
  for (;;) {
    const last = await request();
    if (await accept(last)) return last;
    if (Date.now() >= deadline) return last;
    await new Promise((r) => setTimeout(r, delayMs));
  }
}

/**
 * One HTTP/1.1 request with exactly these headers (no implicit Host when one
 * is given), path sent as written, optional body (fixed length or chunked).
 */
export function raw(base, { method = 'GET', path, headers = {}, body, chunked = false }) {
  const { hostname, port } = new URL(base);
  const hasHost = Object.keys(headers).some((h) => h.toLowerCase() === 'host');
  const sent = { ...headers };
  if (body !== undefined && !chunked) sent['content-length'] = String(Buffer.byteLength(body));
  if (body !== undefined && chunked) sent['transfer-encoding'] = 'chunked';
  return new Promise((resolve, reject) => {
    const req = http.request(
      { host: hostname, port, method, path, headers: sent, setHost: !hasHost, agent: false },
      (res) => {
        let data = '';
        res.setEncoding('utf8');
        res.on('data', (c) => (data += c));
        res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, body: data }));
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    if (body !== undefined && chunked) {
      req.write(body.slice(0, 3));
      req.end(body.slice(3));
    } else {
      req.end(body);
    }
  });
}
