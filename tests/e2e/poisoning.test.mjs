// Cache poisoning and deception, end to end: the worker in workerd in front
// of a deliberately careless stand-in origin — it reflects every request
// header, the query and the body into pages it marks `public, max-age=300`,
// answers per-user JSON with nothing but `ETag`/`Last-Modified`, reflects
// `Origin` into `Access-Control-Allow-Origin` without `Vary`, honours method
// overrides, redirects by `X-Forwarded-Proto`, and sends cacheable 5xx pages.
//
// Every case is an attacker's (or user A's) request followed by a victim's
// (or anonymous user B's) request for the same resource; the victim's answer
// must not carry the attacker's marker or A's data. Where the defence is
// that something never reaches the origin, the origin's record is checked
// too. Requests go out through node:http so that exactly the given bytes are
// sent (fetch() would resolve `..`, fix `Host` and refuse a GET body).
//
// Concurrency is ordered by gates (promises the test resolves), never by
// timers; no outcome depends on a wall-clock window.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import path from 'node:path';
import { gzipSync } from 'node:zlib';
import { eventually, originsVar, raw, repoRoot, startOrigin, startWorker } from './harness.mjs';

const PURGE_TOKEN = 'e2e-poisoning-purge-token-0123456789';
const BYPASS_COOKIES = 'session*,wordpress_logged_in_*';
// A Last-Modified far in the past: heuristic freshness (10 %, capped at a day)
// makes a validator-only answer fresh for the whole run.
const LONG_AGO = 'Mon, 01 Jan 2024 00:00:00 GMT';
const PUBLIC = 'public, max-age=300';

/** A promise and the function that resolves it. */
function gate() {
  let open;
  const opened = new Promise((resolve) => (open = resolve));
  return { opened, open };
}

/** Everything a response shows a client, for "does not contain" checks. */
const visible = (res) => `${res.status}\n${JSON.stringify(res.headers)}\n${res.body}`;

/** Attacker markers, in any case: hosts come back lower-cased. */
const hasMarker = (text) => /evil/i.test(text);

/**
 * The careless origin's view of a path: escapes decoded, repeated slashes
 * collapsed, dot segments resolved, `;params` dropped — as many frameworks
 * route. Used only to pick a route; the raw URL is what gets recorded.
 */
function carelessPath(url) {
  let path = url.split('?')[0];
  try {
    path = decodeURIComponent(path);
  } catch {
    // keep it raw
  }
  path = path.replace(/;[^/]*/g, '').replace(/\/{2,}/g, '/');
  return new URL(path, 'http://origin.invalid').pathname;
}

/** Query members split on `&` and `;` (as some frameworks do); last one wins. */
function carelessQuery(url) {
  const query = url.includes('?') ? url.slice(url.indexOf('?') + 1) : '';
  const params = {};
  for (const member of query.split(/[&;]/)) {
    if (!member) continue;
    const [name, value = ''] = member.split('=');
    params[decodeURIComponent(name)] = decodeURIComponent(value);
  }
  return params;
}

/** The method the careless origin acts on: overrides win. */
const effectiveMethod = (req) =>
  (req.headers['x-http-method-override'] ?? req.headers['x-http-method'] ?? req.headers['x-method-override'] ?? req.method)
    .toUpperCase();

/** A cacheable page that reflects everything about the request. */
function reflectPage(req, body) {
  const method = effectiveMethod(req);
  if (method !== 'GET' && method !== 'HEAD') {
    // Heuristically cacheable thanks to Last-Modified (CPDoS by method override).
    return { status: 405, headers: { 'last-modified': LONG_AGO, 'content-type': 'text/plain' }, body: `method ${method} not allowed` };
  }
  const page = `<html><body><pre>${JSON.stringify({ method: req.method, url: req.url, headers: req.headers, body })}</pre></body></html>`;
  return {
    headers: { 'cache-control': PUBLIC, 'content-type': 'text/html', 'last-modified': LONG_AGO },
    body: method === 'HEAD' ? '' : page,
  };
}

/** Whose request this is, from a session cookie or a bearer token. */
function userOf(req) {
  const cookie = /(?:^|;\s*)(?:sid|session_id|wordpress_logged_in_[a-z0-9]*)=([a-z]+)/.exec(req.headers.cookie ?? '');
  const bearer = /^Bearer ([a-z]+)$/.exec(req.headers.authorization ?? '');
  return cookie?.[1] ?? bearer?.[1] ?? null;
}

const userJson = (user) => JSON.stringify({ user, email: user ? `${user}@mail.example` : null, balance: user ? 4242 : null });

describe('a careless origin behind the worker', () => {
  let origin;
  let worker;
  /** [prefix, (req, body, n) => answer | Promise<answer>] — longest prefix wins. */
  const routes = [];
  const counts = new Map();
  const arrivals = [];
  const route = (prefix, fn) => routes.push([prefix, fn]);
  /** Resolves when the origin receives a request matching `pred`. */
  const arrival = (pred) => new Promise((resolve) => arrivals.push({ pred, resolve }));
  const received = (prefix) => origin.requests.filter((r) => carelessPath(r.url).startsWith(prefix));
  const send = (opts) => raw(worker.url, opts);
  const get = (path, headers = {}) => raw(worker.url, { path, headers });
  let probes = 0;
  /**
   * Waits until the worker has taken in every request sent before the call:
   * two probes in a row, each for a new path, go through the worker to the
   * origin and back. A request sent earlier has had at least two full passes
   * of the worker's own work to reach the coalescing slot, however slow the
   * machine (a timer would guess at that).
   */
  const workerCaughtUp = async () => {
    for (let i = 0; i < 2; i++) {
      probes += 1;
      assert.equal((await get(`/probe/${probes}`)).status, 200);
    }
  };

  before(async () => {
    origin = await startOrigin(async (req, res, body) => {
      const path = carelessPath(req.url);
      for (let i = arrivals.length - 1; i >= 0; i--) {
        if (arrivals[i].pred(req)) arrivals.splice(i, 1)[0].resolve(req);
      }
      const matched = routes.filter(([prefix]) => path.startsWith(prefix)).sort((a, b) => b[0].length - a[0].length)[0];
      const n = (counts.get(matched?.[0] ?? path) ?? 0) + 1;
      counts.set(matched?.[0] ?? path, n);
      const answer = matched ? await matched[1](req, body, n) : reflectPage(req, body);
      res.writeHead(answer.status ?? 200, answer.headers ?? {});
      res.end(req.method === 'HEAD' ? undefined : answer.body ?? '');
    });
    worker = await startWorker({
      vars: {
        ORIGINS: originsVar([{ name: 'primary', origin }]),
        PURGE_TOKEN,
        BYPASS_COOKIES,
        CACHE_KEY_HEADERS: 'X-Device',
        // Error pages below must not open the circuit for the other cases.
        HEALTH_FAILURE_THRESHOLD: '1000',
      },
    });
    // Renders the CACHE_KEY_HEADERS field and the query it was asked with.
    route('/keyed/', (req) => ({
      headers: { 'cache-control': PUBLIC },
      body: `device=${req.headers['x-device'] ?? 'none'} query=${req.url.split('?')[1] ?? ''}`,
    }));
  });

  after(async () => {
    await worker?.stop();
    await origin?.close();
  });

  describe('unkeyed request headers', () => {
    // Each header would change what a careless origin renders; none is part of
    // the key, so none may reach the origin with the client's value.
    const UNKEYED = [
      ['x-forwarded-host', 'EVIL-xfh.example'],
      ['x-forwarded-proto', 'EVIL-xfproto'],
      ['x-forwarded-scheme', 'EVIL-xfscheme'],
      ['x-forwarded-port', 'EVIL-6666'],
      ['x-forwarded-server', 'EVIL-xfserver.example'],
      ['x-forwarded-prefix', '/EVIL-prefix'],
      ['x-forwarded-ssl', 'EVIL-off'],
      ['x-forwarded-uri', '/EVIL-xfuri'],
      ['x-forwarded-path', '/EVIL-xfpath'],
      ['x-forwarded-for', '6.6.6.6, EVIL-xff'],
      ['x-real-ip', 'EVIL-real-ip'],
      ['true-client-ip', 'EVIL-true-client-ip'],
      ['x-client-ip', 'EVIL-client-ip'],
      ['x-cluster-client-ip', 'EVIL-cluster-ip'],
      ['forwarded', 'for=6.6.6.6;host=EVIL-fwd.example;proto=http'],
      ['x-original-url', '/EVIL-original-url'],
      ['x-rewrite-url', '/EVIL-rewrite-url'],
      ['x-original-host', 'EVIL-original-host.example'],
      ['x-host', 'EVIL-xhost.example'],
      ['x-http-host-override', 'EVIL-host-override.example'],
      ['front-end-https', 'EVIL-off'],
      ['x-http-method-override', 'EVIL-POST'],
      ['x-http-method', 'EVIL-DELETE'],
      ['x-method-override', 'EVIL-PUT'],
      ['x-wap-profile', 'http://EVIL-wap.example/p.xml'],
      ['x-arbitrary-debug', 'EVIL-arbitrary'],
    ];
    for (const [name, value] of UNKEYED) {
      test(`${name} from a client never reaches the origin nor the next client`, async () => {
        const path = `/reflect/hdr/${name}/page`;
        await get(path, { [name]: value });
        const seen = received(path);
        assert.ok(seen.length >= 1, 'the attacker request reached the origin');
        assert.ok(!hasMarker(JSON.stringify(seen[0].headers)), `origin received ${JSON.stringify(seen[0].headers)}`);
        const victim = await get(path);
        assert.equal(victim.status, 200);
        assert.ok(!hasMarker(visible(victim)), visible(victim));
      });
    }

    test('a method override cannot plant a 405 (CPDoS) for GET clients', async () => {
      for (const name of ['x-http-method-override', 'x-http-method', 'x-method-override']) {
        const path = `/reflect/hmo/${name}`;
        await get(path, { [name]: 'DELETE' });
        const victim = await get(path);
        assert.equal(victim.status, 200, `${name}: ${victim.headers['cache-status']}`);
      }
    });

    test('a redirect built from a forwarded host is not poisoned', async () => {
      route('/redir/', (req) => {
        const fwdHost = /host=([^;,\s]+)/.exec(req.headers.forwarded ?? '')?.[1];
        const host = req.headers['x-original-host'] ?? req.headers['x-host'] ?? req.headers['x-forwarded-server'] ?? fwdHost ?? req.headers['x-forwarded-host'] ?? 'www.example';
        return { status: 301, headers: { location: `https://${host}/home`, 'cache-control': PUBLIC }, body: '' };
      });
      const attacks = [
        ['x-forwarded-host', 'EVIL-redir.example'],
        ['x-original-host', 'EVIL-redir.example'],
        ['x-host', 'EVIL-redir.example'],
        ['x-forwarded-server', 'EVIL-redir.example'],
        ['forwarded', 'host=EVIL-redir.example'],
      ];
      for (const [name, value] of attacks) {
        const path = `/redir/${name}`;
        await get(path, { [name]: value });
        const victim = await get(path);
        assert.ok(!hasMarker(String(victim.headers.location)), `${name}: victim redirected to ${victim.headers.location}`);
      }
    });

    test('the edge sets X-Forwarded-For and X-Real-IP itself', async () => {
      const path = '/reflect/xff-own';
      await get(path, { 'x-forwarded-for': '6.6.6.6', 'x-real-ip': '6.6.6.6' });
      const seen = received(path)[0];
      assert.ok(!String(seen.headers['x-forwarded-for'] ?? '').includes('6.6.6.6'), seen.headers['x-forwarded-for']);
      assert.ok(!String(seen.headers['x-real-ip'] ?? '').includes('6.6.6.6'), seen.headers['x-real-ip']);
    });

    test('an oversized header cannot plant an error page (CPDoS HHO)', async () => {
      route('/hho/', (req) => {
        const tooBig = Object.values(req.headers).some((v) => String(v).length > 2000);
        return tooBig
          ? { status: 400, headers: { 'content-type': 'text/plain', 'last-modified': LONG_AGO }, body: 'EVIL-header too large' }
          : { headers: { 'cache-control': PUBLIC }, body: 'page' };
      });
      for (const name of ['x-oversized', 'referer', 'user-agent']) {
        const path = `/hho/${name}`;
        await get(path, { [name]: `https://a.example/${'A'.repeat(3000)}` });
        const victim = await get(path);
        assert.equal(victim.status, 200, `${name}: ${victim.headers['cache-status']}`);
        assert.equal(victim.body, 'page');
      }
    });

    test('a client error provoked by what one client sent is not stored, even marked public (CPDoS)', async () => {
      // An origin (or its WAF, or a blanket middleware) that marks every
      // answer public, errors included. Each error below depends on something
      // other than the URL: an oversized header, a client's rate limit, a
      // client's User-Agent, a precondition.
      route('/cpdos4xx/', (req) => {
        const ua = String(req.headers['user-agent'] ?? '');
        const error = (status, body) => ({ status, headers: { 'cache-control': PUBLIC }, body });
        if (ua.length > 2000) return error(431, 'EVIL-header fields too large');
        if (ua.includes('EVIL-bot')) return error(403, 'EVIL-blocked');
        if (ua.includes('EVIL-flood')) return error(429, 'EVIL-slow down');
        if (req.headers['if-match']) return error(412, 'EVIL-precondition');
        if (ua.includes('EVIL-malformed')) return error(400, 'EVIL-bad request');
        return { headers: { 'cache-control': PUBLIC }, body: 'page' };
      });
      const attacks = [
        ['/cpdos4xx/hho', { 'user-agent': `x${'A'.repeat(3000)}` }],
        ['/cpdos4xx/waf', { 'user-agent': 'EVIL-bot/1.0' }],
        ['/cpdos4xx/rate', { 'user-agent': 'EVIL-flood' }],
        ['/cpdos4xx/precondition', { 'if-match': '"nope"' }],
        ['/cpdos4xx/malformed', { 'user-agent': 'EVIL-malformed' }],
      ];
      for (const [path, headers] of attacks) {
        const attack = await get(path, headers);
        assert.ok(attack.status >= 400, `${path}: the attack reached the origin (${attack.status})`);
        assert.match(attack.headers['cache-status'], /detail=error-status/, path);
        const victim = await get(path);
        assert.equal(victim.status, 200, `${path}: ${victim.headers['cache-status']}`);
        assert.equal(victim.body, 'page');
      }
    });

    test('a Host header names its own cache entry', async () => {
      const path = '/reflect/host-header';
      await get(path, { host: 'EVIL-host.example' });
      const victim = await get(path);
      assert.ok(!hasMarker(visible(victim)), visible(victim));
    });

    // The local runtime answers an absolute-form target with its own 500
    // before the worker runs; locally this holds by construction.
    test('an absolute-form request target cannot poison the real host', async () => {
      const path = '/reflect/absolute-form';
      await send({ path: `http://EVIL-abs.example${path}` });
      const victim = await get(path);
      assert.ok(!hasMarker(visible(victim)), visible(victim));
    });

    test('a keyed header cannot be forged through the query', async () => {
      await get('/keyed/p?cachefront-h-x-device=mobile');
      await get('/keyed/p?cachefront-h-x-device=EVIL');
      const victim = await get('/keyed/p', { 'x-device': 'mobile' });
      assert.equal(victim.body, 'device=mobile query=');
    });
  });

  describe('request bodies and methods', () => {
    // The local runtime drops a GET's body before the worker runs (the origin
    // receives none); locally this holds by construction, elsewhere the
    // worker's get-with-body bypass is what keeps it.
    test('a GET with a body (fat GET) does not poison the plain GET', async () => {
      const path = '/reflect/fat-get';
      await send({ path, headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: 'callback=EVIL-fat' });
      await send({ path, headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: 'callback=EVIL-chunked', chunked: true });
      await send({ path, headers: { 'x-http-method-override': 'POST' }, body: 'EVIL-fat-override' });
      const victim = await get(path);
      assert.equal(victim.status, 200);
      assert.ok(!hasMarker(visible(victim)), visible(victim));
    });

    test('HEAD first does not leave an empty body for GET', async () => {
      const path = '/reflect/head-first';
      const head = await send({ method: 'HEAD', path });
      assert.equal(head.status, 200);
      const victim = await get(path);
      assert.equal(victim.status, 200);
      assert.match(victim.body, /"method":"GET"/);
    });

    for (const method of ['POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS', 'FOO']) {
      test(`a cacheable answer to ${method} is never served to GET`, async () => {
        const path = `/reflect/unsafe/${method}`;
        route(path, (req, body) => ({
          headers: { 'cache-control': PUBLIC, 'content-location': path },
          body: req.method === 'GET' ? 'plain page' : `answer to ${req.method} EVIL-${body}`,
        }));
        await send({ method, path, headers: { 'content-type': 'text/plain' }, body: 'payload' });
        const victim = await get(path);
        assert.equal(victim.body, 'plain page', victim.headers['cache-status']);
      });
    }

    test('a Range miss does not leave a partial body for the next client', async () => {
      route('/range-origin', (req) => (req.headers.range
        ? { status: 206, headers: { 'cache-control': PUBLIC, 'content-range': 'bytes 0-3/10' }, body: 'EVIL' }
        : { headers: { 'cache-control': PUBLIC }, body: '0123456789' }));
      await get('/range-origin', { range: 'bytes=0-3' });
      const victim = await get('/range-origin');
      assert.equal(victim.status, 200);
      assert.equal(victim.body, '0123456789');
    });
  });

  describe('query parameters', () => {
    before(() => {
      // A JSONP endpoint that splits on `&` and `;` and also echoes campaign
      // parameters into the page, as tracking snippets do.
      route('/jsonp/', (req) => {
        const params = carelessQuery(req.url);
        const campaign = Object.entries(params).filter(([k]) => /^(utm_|fbclid|gclid|msclkid)/.test(k));
        return {
          headers: { 'cache-control': PUBLIC, 'content-type': 'application/javascript' },
          body: `${params.callback ?? 'cb'}({"ok":true}); /* ${JSON.stringify(campaign)} */`,
        };
      });
    });

    test('parameter cloaking through an ignored member with `;` (utm_content=x;callback=EVIL)', async () => {
      await get('/jsonp/cloak?callback=ok&utm_content=x;callback=EVIL');
      const seen = received('/jsonp/cloak')[0];
      assert.equal(seen.url, '/jsonp/cloak?callback=ok');
      const victim = await get('/jsonp/cloak?callback=ok');
      assert.match(victim.body, /^ok\(/);
      assert.ok(!hasMarker(victim.body), victim.body);
    });

    test('parameter cloaking through fbclid and gclid members with `;`', async () => {
      await get('/jsonp/cloak2?callback=ok&fbclid=1;callback=EVIL');
      await get('/jsonp/cloak3?gclid=1;callback=EVIL&callback=ok&msclkid=2;callback=EVIL');
      assert.ok(!hasMarker((await get('/jsonp/cloak2?callback=ok')).body));
      assert.ok(!hasMarker((await get('/jsonp/cloak3?callback=ok')).body));
    });

    test('ignored parameters never reach the origin', async () => {
      await get('/jsonp/ignored?callback=ok&utm_source=EVIL-utm&fbclid=EVIL-fb&gclid=EVIL-g');
      assert.deepEqual(received('/jsonp/ignored').map((r) => r.url), ['/jsonp/ignored?callback=ok']);
      const victim = await get('/jsonp/ignored?callback=ok');
      assert.ok(!hasMarker(victim.body), victim.body);
    });

    test('the origin receives exactly the keyed query, sorted', async () => {
      await get('/jsonp/sorted?z=1&utm_medium=EVIL&a=2&&callback=ok');
      assert.deepEqual(received('/jsonp/sorted').map((r) => r.url), ['/jsonp/sorted?a=2&callback=ok&z=1']);
      const again = await get('/jsonp/sorted?callback=ok&a=2&z=1');
      assert.match(again.headers['cache-status'], /^cachefront; hit/);
    });

    test('an escaped ignored-parameter name is keyed and forwarded alike', async () => {
      await get('/jsonp/escaped?callback=ok&utm%5Fcontent=x;callback=EVIL');
      const victim = await get('/jsonp/escaped?callback=ok');
      assert.ok(!hasMarker(victim.body), victim.body);
    });
  });

  describe('paths', () => {
    before(() => {
      route('/norm', (req, _body, n) => ({ headers: { 'cache-control': PUBLIC }, body: `${carelessPath(req.url)} v${n}` }));
    });

    const ALIASES = [
      ['escaped unreserved letter', (p) => `${p}/a%62c`],
      ['escaped first letter', (p) => `${p}/%61bc`],
      ['leading double slash', (p) => `/${p}/abc`],
      ['inner double slash', (p) => `${p}//abc`],
      ['dot-dot segment', (p) => `${p}/x/../abc`],
      ['dot segment', (p) => `${p}/./abc`],
      ['escaped dot-dot segment', (p) => `${p}/x/%2e%2e/abc`],
    ];
    ALIASES.forEach(([label, alias], i) => {
      test(`the origin receives the normalised path, shared with /abc (${label})`, async () => {
        const prefix = `/norm${i}`;
        const first = await get(alias(prefix));
        assert.equal(first.status, 200);
        assert.deepEqual(received(prefix).map((r) => r.url), [`${prefix}/abc`]);
        const canonical = await get(`${prefix}/abc`);
        assert.match(canonical.headers['cache-status'], /^cachefront; hit/);
      });
    });

    test('a URL purge of /abc also removes what its aliases stored', async () => {
      const aliases = ['/normp/a%62c', '//normp/abc', '/normp/x/../abc'];
      for (const alias of aliases) await get(alias);
      const before = new Map();
      for (const alias of aliases) {
        const stored = await eventually(() => get(alias), (r) => /^cachefront; hit/.test(r.headers['cache-status']));
        assert.match(stored.headers['cache-status'], /^cachefront; hit/, alias);
        before.set(alias, stored.body);
      }
      const purge = await fetch(`${worker.url}/__cachefront/purge`, {
        method: 'POST',
        headers: { authorization: `Bearer ${PURGE_TOKEN}`, 'content-type': 'application/json' },
        body: JSON.stringify({ urls: [`${worker.url}/normp/abc`] }),
      });
      assert.equal(purge.status, 200, await purge.text());
      // Every alias now answers with a copy fetched after the purge (aliases
      // that share one entry share that new copy).
      for (const alias of aliases) {
        const after = await get(alias);
        assert.notEqual(after.body, before.get(alias), `${alias} still served the copy from before the purge [${after.headers['cache-status']}]`);
      }
    });
  });

  describe('web cache deception', () => {
    before(() => {
      // The account page, whatever follows its path (catch-all routing).
      route('/account', (req) => ({
        headers: { 'content-type': 'text/html', etag: `"acct-${userOf(req) ?? 'anon'}"`, 'last-modified': LONG_AGO },
        body: `<h1>account</h1>${userJson(userOf(req))}`,
      }));
      route('/profile', (req) => ({
        headers: { 'content-type': 'text/html', 'cache-control': 'max-age=60' },
        body: `<h1>profile</h1>${userJson(userOf(req))}`,
      }));
    });

    const DECOYS = ['/x.css', ';x.css', '%2Fx.css', '.css', '/x.js?v=1', '/avatar.png'];
    for (const decoy of DECOYS) {
      test(`a static-looking ${decoy} under a cookie user's account page is not shared`, async () => {
        const path = `/account${decoy}`;
        const own = await get(path, { cookie: 'sid=alice' });
        assert.match(own.body, /alice/);
        const anonymous = await get(path);
        assert.ok(!anonymous.body.includes('alice'), `${anonymous.headers['cache-status']}\n${anonymous.body}`);
      });
    }

    test('a max-age page for a cookie user is not shared (no public, no s-maxage)', async () => {
      const own = await get('/profile/x.css', { cookie: 'sid=alice' });
      assert.match(own.body, /alice/);
      const anonymous = await get('/profile/x.css');
      assert.ok(!anonymous.body.includes('alice'), anonymous.headers['cache-status']);
      assert.match(own.headers['cache-status'], /detail=cookie/);
    });

    test('a static-looking path under an Authorization user is not shared', async () => {
      await get('/account/y.css', { authorization: 'Bearer alice' });
      await get('/profile/y.css', { authorization: 'Bearer alice' });
      for (const path of ['/account/y.css', '/profile/y.css']) {
        const anonymous = await get(path);
        assert.ok(!anonymous.body.includes('alice'), `${path}: ${anonymous.headers['cache-status']}`);
      }
    });
  });

  describe('per-user JSON with validators only', () => {
    before(() => {
      // Framework default: ETag (and here Last-Modified) on every answer, no Cache-Control.
      route('/api/me-lm', (req) => ({
        headers: { 'content-type': 'application/json', etag: `"${userOf(req) ?? 'anon'}-1"`, 'last-modified': LONG_AGO },
        body: userJson(userOf(req)),
      }));
      // ETag only: stored born stale, for revalidation.
      route('/api/me-etag', (req) => ({
        headers: { 'content-type': 'application/json', etag: `"${userOf(req) ?? 'anon'}-1"` },
        body: userJson(userOf(req)),
      }));
      // The anonymous answer fails: stale-if-error would be the only way out.
      route('/api/me-sie', (req) => (userOf(req)
        ? { headers: { 'content-type': 'application/json', etag: `"${userOf(req)}-1"` }, body: userJson(userOf(req)) }
        : { status: 500, headers: { 'content-type': 'text/plain' }, body: 'anonymous broke' }));
    });

    const CREDENTIALS = [
      ['Cookie', { cookie: 'sid=alice' }],
      ['Authorization', { authorization: 'Bearer alice' }],
    ];
    for (const [label, credentials] of CREDENTIALS) {
      const slug = label.toLowerCase();
      test(`${label}: a heuristically fresh answer (Last-Modified) is not served to anonymous users`, async () => {
        const path = `/api/me-lm/${slug}`;
        assert.match((await get(path, credentials)).body, /alice/);
        const anonymous = await get(path);
        assert.ok(!anonymous.body.includes('alice'), anonymous.headers['cache-status']);
      });

      for (const cc of ['max-stale', 'max-stale=86400', 'max-stale, only-if-cached']) {
        test(`${label}: an anonymous Cache-Control: ${cc} does not read the user's answer`, async () => {
          const path = `/api/me-etag/${slug}/${cc.replace(/[^a-z0-9]+/g, '-')}`;
          assert.match((await get(path, credentials)).body, /alice/);
          const anonymous = await get(path, { 'cache-control': cc });
          assert.ok(!anonymous.body.includes('alice'), anonymous.headers['cache-status']);
        });
      }

      test(`${label}: an anonymous request asking for stale-if-error does not get the user's answer`, async () => {
        const path = `/api/me-sie/${slug}`;
        assert.match((await get(path, credentials)).body, /alice/);
        const anonymous = await get(path, { 'cache-control': 'stale-if-error=86400' });
        assert.ok(!anonymous.body.includes('alice'), anonymous.headers['cache-status']);
      });

      test(`${label}: an anonymous If-None-Match cannot probe for the user's entry`, async () => {
        const path = `/api/me-lm/${slug}/probe`;
        await get(path, credentials);
        const anonymous = await get(path, { 'if-none-match': '"alice-1"' });
        assert.equal(anonymous.status, 200, anonymous.headers['cache-status']);
        assert.ok(!anonymous.body.includes('alice'));
      });
    }
  });

  describe('request coalescing', () => {
    // A is held at the origin by a gate until the worker has caught up with
    // B: B then either reached the origin by itself or waits behind A in the
    // worker. Either way A's data must not reach B.
    async function concurrently(path, userHeaders, headersForUser) {
      const release = gate();
      route(path, async (req) => {
        if (userOf(req)) {
          await release.opened;
          return { headers: { 'content-type': 'application/json', ...headersForUser }, body: userJson(userOf(req)) };
        }
        return { headers: { 'content-type': 'application/json', 'cache-control': 'max-age=60' }, body: userJson(null) };
      });
      const userArrived = arrival((r) => r.url.startsWith(path) && userOf(r));
      const user = get(path, userHeaders);
      await userArrived;
      const anonymous = get(path);
      await workerCaughtUp();
      release.open();
      return Promise.all([user, anonymous]);
    }

    test('a slow Authorization answer (max-age=60, must-revalidate) is not handed to a concurrent anonymous request', async () => {
      const [user, anonymous] = await concurrently('/co/auth', { authorization: 'Bearer alice' }, { 'cache-control': 'max-age=60, must-revalidate' });
      assert.match(user.body, /alice/);
      assert.ok(!anonymous.body.includes('alice'), anonymous.headers['cache-status']);
      const later = await get('/co/auth');
      assert.ok(!later.body.includes('alice'), later.headers['cache-status']);
    });

    test('a slow cookie answer (max-age=60) is not handed to a concurrent anonymous request', async () => {
      const [user, anonymous] = await concurrently('/co/cookie', { cookie: 'sid=alice' }, { 'cache-control': 'max-age=60' });
      assert.match(user.body, /alice/);
      assert.ok(!anonymous.body.includes('alice'), anonymous.headers['cache-status']);
    });

    test('a slow validator-only cookie answer is not handed to a concurrent anonymous request', async () => {
      const [user, anonymous] = await concurrently('/co/etag', { cookie: 'sid=alice' }, { etag: '"alice-1"', 'last-modified': LONG_AGO });
      assert.match(user.body, /alice/);
      assert.ok(!anonymous.body.includes('alice'), anonymous.headers['cache-status']);
    });

    test('a waiter with another Origin does not get a reflected CORS answer', async () => {
      const release = gate();
      route('/co/cors', async (req) => {
        if (req.headers.origin === 'https://evil.example') await release.opened;
        return { headers: { 'cache-control': PUBLIC, 'access-control-allow-origin': req.headers.origin ?? '*' }, body: 'data' };
      });
      const evilArrived = arrival((r) => r.url.startsWith('/co/cors'));
      const evil = get('/co/cors', { origin: 'https://evil.example' });
      await evilArrived;
      const good = get('/co/cors', { origin: 'https://good.example' });
      await workerCaughtUp();
      release.open();
      const [, victim] = await Promise.all([evil, good]);
      assert.notEqual(victim.headers['access-control-allow-origin'], 'https://evil.example');
    });
  });

  describe('CORS and Vary', () => {
    before(() => {
      route('/cors/', (req) => ({
        headers: {
          'cache-control': PUBLIC,
          ...(req.headers.origin ? { 'access-control-allow-origin': req.headers.origin, 'access-control-allow-credentials': 'true' } : {}),
        },
        body: '{"data":1}',
      }));
      route('/vary/lang', (req) => ({
        headers: { 'cache-control': PUBLIC, vary: 'Accept-Language' },
        body: `lang=${req.headers['accept-language'] ?? 'default'}`,
      }));
      route('/vary/encoding', (req) => ({
        headers: { 'cache-control': PUBLIC, vary: 'Accept-Encoding', 'content-type': 'application/octet-stream' },
        body: `ae=${req.headers['accept-encoding'] ?? 'none'}`,
      }));
      route('/vary/cookie', (req) => ({
        headers: { 'cache-control': PUBLIC, vary: 'Cookie' },
        body: `hello ${userOf(req) ?? 'guest'}`,
      }));
    });

    test('an Origin reflected into Access-Control-Allow-Origin without Vary is not served to another origin', async () => {
      await get('/cors/a', { origin: 'https://evil.example' });
      const other = await get('/cors/a', { origin: 'https://good.example' });
      assert.equal(other.headers['access-control-allow-origin'], 'https://good.example', other.headers['cache-status']);
      const none = await get('/cors/a');
      assert.equal(none.headers['access-control-allow-origin'], undefined, none.headers['cache-status']);
    });

    test('an Origin differing only in case cannot plant a mismatched Access-Control-Allow-Origin', async () => {
      await get('/cors/case', { origin: 'https://GOOD.example' });
      const victim = await get('/cors/case', { origin: 'https://good.example' });
      const acao = victim.headers['access-control-allow-origin'];
      assert.ok(acao === undefined || acao === 'https://good.example', `victim got ${acao} (${victim.headers['cache-status']})`);
    });

    test('Vary: Accept-Language keeps the attacker variant to the attacker', async () => {
      await get('/vary/lang', { 'accept-language': 'EVIL-lang' });
      const victim = await get('/vary/lang', { 'accept-language': 'en' });
      assert.equal(victim.body, 'lang=en');
    });

    // The local runtime drops a client's Connection header before the worker
    // runs (the nominated fields stay), so locally these three hold by
    // construction; they state the requirement for a runtime that passes
    // Connection on (src/origin/request.rs must not strip keyed fields for it).
    test('Connection cannot hide a Vary field from the origin while it is keyed', async () => {
      await get('/vary/lang/conn', { 'accept-language': 'en', connection: 'keep-alive, Accept-Language' });
      const victim = await get('/vary/lang/conn', { 'accept-language': 'en' });
      assert.equal(victim.body, 'lang=en', victim.headers['cache-status']);
    });

    test('Connection cannot hide a keyed Origin from the origin', async () => {
      await get('/cors/conn', { origin: 'https://good.example', connection: 'keep-alive, Origin' });
      const victim = await get('/cors/conn', { origin: 'https://good.example' });
      assert.equal(victim.headers['access-control-allow-origin'], 'https://good.example', victim.headers['cache-status']);
    });

    test('Connection cannot hide a CACHE_KEY_HEADERS field from the origin', async () => {
      await get('/keyed/conn', { 'x-device': 'mobile', connection: 'keep-alive, X-Device' });
      const victim = await get('/keyed/conn', { 'x-device': 'mobile' });
      assert.equal(victim.body, 'device=mobile query=', victim.headers['cache-status']);
    });

    // The local runtime replaces a client's Accept-Encoding with `br, gzip`
    // before the worker runs, so here this holds by construction; it states
    // the requirement for a runtime that passes the client's value on.
    test('Vary: Accept-Encoding normalisation does not share an attacker value the origin saw', async () => {
      await get('/vary/encoding', { 'accept-encoding': 'gzip, EVIL-coding' });
      const victim = await fetch(`${worker.url}/vary/encoding`, { headers: { 'accept-encoding': 'gzip' } });
      const body = await victim.text();
      assert.ok(!hasMarker(body), `${victim.headers.get('cache-status')}: ${body}`);
    });

    test('Vary on a field outside the forward allow-list files each value under its own variant', async () => {
      route('/vary/device', (req) => ({
        headers: { 'cache-control': PUBLIC, vary: 'X-Device-Type' },
        body: `device=${req.headers['x-device-type'] ?? 'none'}`,
      }));
      await get('/vary/device', { 'x-device-type': 'EVIL-device' });
      await get('/vary/device', { 'x-device-type': 'EVIL-device' });
      const plain = await get('/vary/device');
      assert.equal(plain.body, 'device=none', plain.headers['cache-status']);
      const mobile = await get('/vary/device', { 'x-device-type': 'mobile' });
      assert.ok(!hasMarker(mobile.body), `${mobile.headers['cache-status']}: ${mobile.body}`);
    });

    test('Vary: Cookie keeps one user\'s page from another and from guests', async () => {
      assert.equal((await get('/vary/cookie', { cookie: 'theme=dark; sid=alice' })).body, 'hello alice');
      assert.equal((await get('/vary/cookie', { cookie: 'theme=dark; sid=bob' })).body, 'hello bob');
      assert.equal((await get('/vary/cookie')).body, 'hello guest');
    });
  });

  describe('revalidation', () => {
    // First answer: shared, stale at once, with a validator. Every later
    // conditional gets a 304 that turns it per-user (`extra`).
    function revalidating(prefix, extra) {
      route(prefix, (req, _body, n) => {
        if (n > 1 && req.headers['if-none-match'] === '"v1"') {
          return { status: 304, headers: { etag: '"v1"', 'x-user': `${userOf(req) ?? 'nobody'}`, ...extra } };
        }
        return { headers: { etag: '"v1"', 'cache-control': 'public, max-age=0', 'content-type': 'text/plain' }, body: `shared page v${n}` };
      });
    }

    for (const [label, extra] of [
      ['private', { 'cache-control': 'private, max-age=600' }],
      ['no-store', { 'cache-control': 'no-store, max-age=600' }],
      ['a new Vary', { 'cache-control': 'public, max-age=600', vary: 'Cookie' }],
    ]) {
      test(`a 304 carrying ${label} is served but does not update the shared entry`, async () => {
        const prefix = `/rv/${label.replace(/\W+/g, '-')}`;
        revalidating(prefix, extra);
        await get(prefix);
        const alice = await get(prefix, { cookie: 'sid=alice' });
        assert.equal(alice.headers['x-user'], 'alice', alice.headers['cache-status']);
        const anonymous = await get(prefix);
        assert.notEqual(anonymous.headers['x-user'], 'alice', anonymous.headers['cache-status']);
        assert.doesNotMatch(anonymous.headers['cache-status'], /^cachefront; hit/);
      });
    }

    test('a stale-while-revalidate refresh triggered by a cookie user does not store that user\'s page', async () => {
      route('/swr/page', (req, _body, n) => {
        const user = userOf(req);
        if (user) {
          // Per-user, "fresh" for five minutes, not public: a careless default.
          return { headers: { 'cache-control': 'max-age=300' }, body: `hello ${user}` };
        }
        return n === 1
          ? { headers: { 'cache-control': 'public, max-age=0, stale-while-revalidate=600' }, body: 'generic v1' }
          : { headers: { 'cache-control': 'public, max-age=300' }, body: `generic v${n}` };
      });
      assert.equal((await get('/swr/page')).body, 'generic v1');
      const refreshArrived = arrival((r) => r.url.startsWith('/swr/page'));
      const alice = await get('/swr/page', { cookie: 'sid=alice' });
      assert.ok(!alice.body.includes('generic') || alice.body === 'generic v1', alice.body);
      // Alice's Cache-Status says whether she started a background refresh
      // (served stale-while-revalidate); only then is one awaited, and it
      // must come, however long it takes.
      const refreshed = /stale-while-revalidate/.test(alice.headers['cache-status']);
      if (refreshed) await refreshArrived;
      // Whatever that refresh left behind replaces 'generic v1' for good:
      // 'hello alice' if it was stored, else a later anonymous refresh.
      const anonymous = refreshed
        ? await eventually(() => get('/swr/page'), (r) => r.body !== 'generic v1')
        : await get('/swr/page');
      assert.ok(!anonymous.body.includes('alice'), `${anonymous.headers['cache-status']}: ${anonymous.body}`);
    });
  });

  describe('error pages', () => {
    for (const status of [500, 502, 503, 504]) {
      test(`a ${status} with public, max-age=300 is passed on, not stored`, async () => {
        const path = `/err/${status}`;
        let broken = true;
        route(path, () => (broken
          ? { status, headers: { 'cache-control': PUBLIC, 'content-type': 'text/plain' }, body: `EVIL-error ${status}` }
          : { headers: { 'cache-control': PUBLIC }, body: 'working page' }));
        const attacker = await get(path);
        assert.equal(attacker.status, status);
        broken = false;
        const victim = await get(path);
        assert.equal(victim.status, 200, victim.headers['cache-status']);
        assert.equal(victim.body, 'working page');
      });
    }

    test('a 5xx behind s-maxage or CDN-Cache-Control is not stored either', async () => {
      let broken = true;
      route('/err/targeted', () => (broken
        ? { status: 500, headers: { 'cdn-cache-control': 'max-age=300', 'cache-control': 's-maxage=300' }, body: 'EVIL-error' }
        : { headers: { 'cache-control': PUBLIC }, body: 'working page' }));
      await get('/err/targeted');
      broken = false;
      assert.equal((await get('/err/targeted')).body, 'working page');
    });
  });

  describe('session and error leaks', () => {
    test('a Set-Cookie on a public page never reaches the next client (session fixation)', async () => {
      route('/login-page', (_req, _body, n) => ({
        headers: { 'cache-control': PUBLIC, 'set-cookie': `session_token=secret-${n}; HttpOnly` },
        body: 'login form',
      }));
      const first = await get('/login-page');
      assert.match(String(first.headers['set-cookie']), /secret-1/);
      const second = await get('/login-page');
      assert.doesNotMatch(String(second.headers['set-cookie']), /secret-1/, second.headers['cache-status']);
    });

    test('a page stored without its Set-Cookie (private="set-cookie") keeps the cookie to its first client', async () => {
      route('/landing', (_req, _body, n) => ({
        headers: { 'cache-control': 'public, max-age=300, private="set-cookie"', 'set-cookie': `visitor=v-${n}` },
        body: 'landing page',
      }));
      const first = await get('/landing');
      assert.match(String(first.headers['set-cookie']), /v-1/);
      const second = await get('/landing');
      assert.equal(second.body, 'landing page');
      assert.equal(second.headers['set-cookie'], undefined, second.headers['cache-status']);
    });

    test('an error an attacker provokes with bad credentials is not stored (CPDoS)', async () => {
      route('/cpdos/', (req) => {
        if (req.headers.authorization) {
          return { status: 401, headers: { 'cache-control': 'max-age=300', 'www-authenticate': 'Bearer' }, body: 'EVIL-unauthorised' };
        }
        if (/%%/.test(req.headers.cookie ?? '')) {
          return { status: 400, headers: { 'cache-control': 'max-age=300' }, body: 'EVIL-bad cookie' };
        }
        return { headers: { 'cache-control': PUBLIC }, body: 'page' };
      });
      await get('/cpdos/auth', { authorization: 'Bearer EVIL' });
      await get('/cpdos/cookie', { cookie: 'x=%%%' });
      for (const path of ['/cpdos/auth', '/cpdos/cookie']) {
        const victim = await get(path);
        assert.equal(victim.status, 200, `${path}: ${victim.headers['cache-status']}`);
        assert.equal(victim.body, 'page');
      }
    });
  });

  describe('BYPASS_COOKIES', () => {
    before(() => {
      // Careless: every page is marked public, logged in or not.
      route('/bp/', (req, _body, n) => ({
        headers: { 'cache-control': PUBLIC, 'content-type': 'text/html' },
        body: userOf(req) ? `hello ${userOf(req)}` : `anonymous page v${n}`,
      }));
    });

    test('a logged-in user\'s public-marked page is not stored for anonymous users', async () => {
      const alice = await get('/bp/first', { cookie: 'theme=dark; session_id=alice' });
      assert.equal(alice.body, 'hello alice');
      assert.match(alice.headers['cache-status'], /fwd=bypass.*detail=bypass-cookie/);
      const bob = await get('/bp/first', { cookie: 'wordpress_logged_in_abc=bob' });
      assert.equal(bob.body, 'hello bob');
      const anonymous = await get('/bp/first');
      assert.match(anonymous.body, /^anonymous page/);
    });

    test('a logged-in user is not served the cached anonymous page', async () => {
      assert.match((await get('/bp/second')).body, /^anonymous page/);
      const alice = await get('/bp/second', { cookie: 'session_id=alice' });
      assert.equal(alice.body, 'hello alice', alice.headers['cache-status']);
    });

    test('a logged-in request never waits for an anonymous fetch in flight', async () => {
      const release = gate();
      route('/bp/slow', async (req) => {
        if (!userOf(req)) await release.opened;
        return { headers: { 'cache-control': PUBLIC }, body: userOf(req) ? `hello ${userOf(req)}` : 'anonymous page' };
      });
      const anonArrived = arrival((r) => r.url.startsWith('/bp/slow'));
      const anonymous = get('/bp/slow');
      await anonArrived;
      const aliceArrived = arrival((r) => r.url.startsWith('/bp/slow') && userOf(r));
      const alice = get('/bp/slow', { cookie: 'session_id=alice' });
      // A bypassing request goes to the origin and back while the anonymous
      // one is still held (the gate opens only after her answer). Her
      // Cache-Status proves she never queued behind it: a request that
      // waited for a coalesced fetch and gave up would not say bypass.
      await aliceArrived;
      const aliceAnswer = await alice;
      release.open();
      await anonymous;
      assert.equal(aliceAnswer.body, 'hello alice');
      assert.match(aliceAnswer.headers['cache-status'], /fwd=bypass.*detail=bypass-cookie/);
    });
  });

  describe('values an origin shows without Vary (the reflection guard)', () => {
    // The origin writes an allow-listed request field into a public page
    // without naming it in Vary: the edge sees its own request's value in
    // the body and does not share the page.
    for (const [name, value] of [
      ['user-agent', 'EVIL-agent'],
      ['referer', 'https://EVIL-referer.example/'],
      ['accept', 'EVIL/accept'],
      ['x-requested-with', 'EVIL-xhr'],
    ]) {
      test(`${name} reflected into a public page without Vary is not stored`, async () => {
        const path = `/reflect/residual/${name}`;
        const attacker = await get(path, { [name]: value });
        assert.match(attacker.headers['cache-status'], /detail=reflected/);
        const victim = await get(path, { [name]: 'ordinary' });
        assert.ok(!hasMarker(visible(victim)), visible(victim));
      });
    }

    test('a cookie reflected into a page the origin marks public is not stored', async () => {
      await get('/reflect/residual/cookie', { cookie: 'lang=EVIL-cookie' });
      const victim = await get('/reflect/residual/cookie');
      assert.ok(!hasMarker(visible(victim)), visible(victim));
    });

    test('a reflection in a compressed or JSON answer is found too', async () => {
      // The runtime hands the worker the decoded body of a gzip answer.
      route('/reflect/gzip/', (req) => ({
        headers: { 'cache-control': PUBLIC, 'content-type': 'text/html', 'content-encoding': 'gzip' },
        body: gzipSync(`<p>agent: ${req.headers['user-agent'] ?? '-'}</p>`),
      }));
      route('/reflect/json/', (req) => ({
        headers: { 'cache-control': PUBLIC, 'content-type': 'application/json' },
        body: JSON.stringify({ referer: req.headers.referer ?? null }),
      }));
      // The attacker's own answer says why it was not stored: the marker was
      // found in the decoded body (a victim's body could be compressed bytes).
      const gzipAttacker = await get('/reflect/gzip/page', { 'user-agent': 'EVIL-agent/gz', 'accept-encoding': 'gzip' });
      assert.match(gzipAttacker.headers['cache-status'], /detail=reflected/);
      const jsonAttacker = await get('/reflect/json/data', { referer: 'https://EVIL.example/"quoted"' });
      assert.match(jsonAttacker.headers['cache-status'], /detail=reflected/);
      const jsonVictim = await get('/reflect/json/data');
      assert.ok(!hasMarker(jsonVictim.body), jsonVictim.body);
    });

    test('a page that shows no request value is still stored and hit', async () => {
      route('/reflect/plain/', () => ({ headers: { 'cache-control': PUBLIC, 'content-type': 'text/html' }, body: '<p>same for all</p>' }));
      const first = await get('/reflect/plain/page', { 'user-agent': 'Agent-one/1.0' });
      assert.doesNotMatch(first.headers['cache-status'], /reflected/);
      const second = await get('/reflect/plain/page', { 'user-agent': 'Agent-two/2.0' });
      assert.match(second.headers['cache-status'], /hit/);
    });
  });
});

describe('a disconnected origin and per-user answers', () => {
  let origin;
  let worker;

  before(async () => {
    origin = await startOrigin((req, res) => {
      const user = userOf(req);
      res.writeHead(200, { 'content-type': 'application/json', etag: `"${user ?? 'anon'}-1"` });
      res.end(userJson(user));
    });
    worker = await startWorker({
      vars: { ORIGINS: originsVar([{ name: 'primary', origin }]), STALE_IF_DISCONNECTED_SECS: '600' },
    });
  });

  after(async () => {
    await worker?.stop();
    await origin?.close();
  });

  test('a cookie or Authorization answer is not served to anonymous users while no origin answers', async () => {
    assert.match((await get(worker, '/api/me-cookie', { cookie: 'sid=alice' })).body, /alice/);
    assert.match((await get(worker, '/api/me-auth', { authorization: 'Bearer alice' })).body, /alice/);
    await origin.close();
    for (const path of ['/api/me-cookie', '/api/me-auth']) {
      const anonymous = await get(worker, path);
      assert.ok(!anonymous.body.includes('alice'), `${path}: ${anonymous.headers['cache-status']}`);
      assert.equal(anonymous.status, 502);
    }
  });

  function get(w, path, headers = {}) {
    return raw(w.url, { path, headers });
  }
});

// wrangler dev hands the worker one scheme for every request (its
// --upstream-protocol, http by default; a client's MF-Original-URL is
// overwritten by its proxy), so both schemes against one cache need
// Miniflare's dispatchFetch: the same workerd, the built worker, the
// bindings of wrangler.toml, and the URL of each request chosen here.
describe('the scheme is part of the key', () => {
  let origin;
  let mf;

  before(async () => {
    const { Miniflare } = await import('miniflare');
    origin = await startOrigin((req, res) => {
      // The classic: redirect plain http to https, and let it be cached.
      if (req.headers['x-forwarded-proto'] === 'http') {
        res.writeHead(301, { location: `https://shop.test${req.url}`, 'cache-control': PUBLIC });
        res.end();
        return;
      }
      res.writeHead(200, { 'cache-control': PUBLIC, 'content-type': 'text/plain' });
      res.end(`page for ${req.headers['x-forwarded-proto']}`);
    });
    mf = new Miniflare({
      modules: true,
      scriptPath: path.join(repoRoot, 'build', 'index.js'),
      modulesRules: [{ type: 'CompiledWasm', include: ['**/*.wasm'] }],
      compatibilityDate: '2026-04-20',
      bindings: { ORIGINS: originsVar([{ name: 'primary', origin }]) },
      kvNamespaces: ['HEALTH', 'CACHE_KV'],
      durableObjects: { TAG_REGISTRY: { className: 'TagRegistry', useSQLite: true } },
      assets: { directory: path.join(repoRoot, 'dist', 'www'), binding: 'ASSETS', routerConfig: { has_user_worker: true } },
      cf: false,
    });
    await mf.ready;
  });

  after(async () => {
    await mf?.dispose();
    await origin?.close();
  });

  const at = async (url) => {
    const res = await mf.dispatchFetch(url, { redirect: 'manual' });
    return { status: res.status, location: res.headers.get('location'), cache: res.headers.get('cache-status'), body: await res.text() };
  };

  test('an http->https redirect stored for http is not served to https', async () => {
    const plain = await at('http://shop.test/scheme/a');
    assert.equal(plain.status, 301);
    assert.equal(origin.requests.at(-1).headers['x-forwarded-proto'], 'http');
    const secure = await at('https://shop.test/scheme/a');
    assert.equal(secure.status, 200, `https got ${secure.status} ${secure.location} [${secure.cache}]`);
    assert.equal(secure.body, 'page for https');
  });

  test('a page stored for https is not served to http', async () => {
    assert.equal((await at('https://shop.test/scheme/b')).status, 200);
    const plain = await at('http://shop.test/scheme/b');
    assert.equal(plain.status, 301, `http got ${plain.status} [${plain.cache}]`);
  });

  test('a client X-Forwarded-Proto cannot make the origin redirect https clients', async () => {
    await mf.dispatchFetch('https://shop.test/scheme/c', { headers: { 'x-forwarded-proto': 'http' }, redirect: 'manual' });
    const secure = await at('https://shop.test/scheme/c');
    assert.equal(secure.status, 200, `https got ${secure.status} ${secure.location} [${secure.cache}]`);
  });
});
