// Cache rules (CACHE_RULES, docs/cache-rules.md) end to end in workerd: every
// field on one worker, then each recipe of docs/cache-rules.md loaded
// verbatim (appended to wrangler.toml) in front of an origin in the style
// of the site it is for.
//
// Time-dependent behaviour (lifetimes running out, adaptive doubling) is
// covered natively with a controlled clock (tests/rules.rs); here it shows in
// `Cache-Status` (ttl=, rule=); lifetimes of a second are watched by polling
// until the entry changes state, never by a sleep or a window.
import assert from 'node:assert/strict';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { eventually, originsVar, raw, repoRoot, startOrigin, startWorker } from './harness.mjs';

const PURGE_TOKEN = 'e2e-rules-purge-token-0123456789abcdef';
const status = (res) => res.headers['cache-status'] ?? '';
const isHit = (res) => /; hit(;|$)/.test(status(res));

/** A stand-in origin: answers by path, counts calls, records what it saw. */
async function origin(name, answer) {
  const calls = new Map();
  const seen = [];
  const server = await startOrigin((req, res) => {
    const url = new URL(req.url, 'http://origin');
    const n = (calls.get(url.pathname) ?? 0) + 1;
    calls.set(url.pathname, n);
    seen.push({ path: url.pathname, query: url.search, headers: req.headers });
    const [code, headers, body] = answer(url, req, n);
    res.writeHead(code, headers);
    res.end(body);
  });
  return { name, server, calls: (p) => calls.get(p) ?? 0, seen, last: (p) => seen.filter((s) => s.path === p).at(-1) };
}

const PAGE = { 'content-type': 'text/html', etag: '"v1"' };

describe('every rule field, on one worker', () => {
  let web;
  let api;
  let worker;
  let downFor = new Set();
  const get = (p, headers = {}) => raw(worker.url, { path: p, headers: { host: 'shop.example', ...headers } });

  before(async () => {
    web = await origin('web', (url, req, n) => {
      const p = url.pathname;
      if (downFor.has(p)) return [503, { 'content-type': 'text/plain' }, 'down'];
      if (p.startsWith('/files/')) return [200, { 'content-type': p.endsWith('.css') && !p.includes('account') ? 'text/css' : 'text/html' }, `file ${n}`];
      if (p === '/blog/missing') return [404, { 'content-type': 'text/html' }, `missing ${n}`];
      if (p === '/err') return [502, { 'content-type': 'text/plain', 'cache-control': 'max-age=600' }, `err ${n}`];
      if (p.startsWith('/private/')) return [200, { 'content-type': 'text/html', 'cache-control': 'private', 'set-cookie': 'sid=1' }, `private ${n}`];
      if (p.startsWith('/nostore/')) return [200, { 'content-type': 'text/html', 'cache-control': 'no-store' }, `nostore ${n}`];
      if (p.startsWith('/adaptive/')) {
        if (req.headers['if-none-match']?.replace(/^W\//, '') === '"a1"') return [304, { etag: '"a1"' }, ''];
        return [200, { 'content-type': 'text/plain', etag: '"a1"' }, `adaptive ${n}`];
      }
      if (p.startsWith('/headers/')) return [200, { 'content-type': 'text/plain', 'cache-control': 'public, max-age=600', 'x-powered-by': 'php' }, `h ${n}`];
      const echo = `${p}${url.search} n=${n} cookie=${req.headers.cookie ?? '-'} device=${req.headers['cf-device-type'] ?? '-'} lang=${req.headers['accept-language'] ?? '-'}`;
      return [200, PAGE, echo];
    });
    api = await origin('api', (url, req, n) => [200, { 'content-type': 'application/json', 'cache-control': 'public, max-age=60' }, `{"api":${n}}`]);
    const rules = [
      { name: 'site', continue: true, response_headers: { set: { 'x-site': 'on' } } },
      { name: 'basket', match: { path: ['/basket', '/basket/**'] }, cache: 'bypass' },
      { name: 'api', match: { path: '/api/**' }, origin: 'api' },
      { name: 'blog', match: { path: '/blog/**' }, cache: 'everything', edge_ttl: { mode: 'override', seconds: 3600, status: { 404: 60 } }, tags: ['blog'] },
      { name: 'err', match: { path: '/err' }, edge_ttl: { mode: 'respect_origin', status: { '502': 30 } } },
      { name: 'files', match: { path: '/files/**', extensions: ['css'] }, cache: 'everything' },
      { name: 'lang', match: { path: '/lang/**' }, cache: 'everything', cache_key: { cookies: ['lang'] }, bypass_cookies: ['session*'] },
      { name: 'static', match: { path: '/static/**' }, cache: 'everything', cache_key: { query: 'none' } },
      { name: 'search', match: { path: '/search' }, cache: 'everything', cache_key: { query: { include: ['q'] } } },
      { name: 'vary', match: { path: '/vary/**' }, cache: 'everything', cache_key: { headers: ['accept-language'], device: true, country: true } },
      { name: 'headers', match: { path: '/headers/**' }, browser_ttl: { mode: 'override', seconds: 30 }, response_headers: { remove: ['x-powered-by'] } },
      { name: 'adaptive', match: { path: '/adaptive/**' }, cache: 'everything', adaptive_ttl: { min: 1, max: 8 } },
      { name: 'sie', match: { path: '/sie/**' }, cache: 'everything', edge_ttl: { mode: 'override', seconds: 1 }, stale_if_error: 3600 },
      { name: 'swr', match: { path: '/swr/**' }, cache: 'everything', edge_ttl: { mode: 'override', seconds: 1 }, stale_while_revalidate: 600 },
      { name: 'all', match: { path: '/all/**' }, cache: 'everything', cache_key: { query: 'all' } },
      { name: 'private', match: { path: '/private/**' }, cache: 'everything', override_private: true },
      { name: 'nostore', match: { path: '/nostore/**' }, cache: 'everything', override_private: true },
      { name: 'cond', match: { path: '/cond/**', methods: ['GET'], query: { present: ['v'], absent: ['debug'] }, header: { accept: '*html*' }, cookie: ['ab'] }, cache: 'everything' },
      { name: 'hosted', match: { host: '*.example.org' }, cache: 'bypass' },
      { name: 'anything', match: { path: '/**' }, cache: 'everything' },
    ];
    worker = await startWorker({
      vars: {
        ORIGINS: originsVar([{ name: 'web', origin: web.server }, { name: 'api', origin: api.server }]),
        CACHE_RULES: JSON.stringify(rules),
        PURGE_TOKEN,
        // No failover to the api origin: its answers would hide the web
        // origin's errors this suite looks at.
        ORIGIN_FAILURE_STATUSES: '599',
      },
    });
  });

  after(async () => {
    await worker?.stop();
    await web?.server.close();
    await api?.server.close();
  });

  test('cache = "bypass" neither reads nor writes, and says which rule', async () => {
    await get('/basket');
    const again = await get('/basket');
    assert.match(status(again), /fwd=bypass.*detail=rule; rule="site,basket"/);
    assert.equal(web.calls('/basket'), 2);
  });

  test('continue layers a site-wide rule under every other', async () => {
    const res = await get('/basket');
    assert.equal(res.headers['x-site'], 'on');
  });

  test('everything + edge_ttl override stores a page without freshness, with its lifetime', async () => {
    await get('/blog/post');
    const again = await eventually(() => get('/blog/post'), isHit);
    assert.match(status(again), /hit; ttl=(3600|359\d)/);
    assert.equal(web.calls('/blog/post'), 1);
  });

  test('edge_ttl.status gives a 404 its own lifetime, and a 5xx is stored only when named', async () => {
    await get('/blog/missing');
    assert.match(status(await eventually(() => get('/blog/missing'), isHit)), /ttl=(60|59)/);
    await get('/err');
    const err = await eventually(() => get('/err'), isHit);
    assert.equal(err.status, 502);
    assert.match(status(err), /ttl=(30|29)/);
  });

  test('tags: a purge by the rule tag drops the entry', async () => {
    await get('/blog/tagged');
    await eventually(() => get('/blog/tagged'), isHit);
    const purge = await fetch(`${worker.url}/__cachefront/purge`, {
      method: 'POST',
      headers: { authorization: `Bearer ${PURGE_TOKEN}`, 'content-type': 'application/json' },
      body: JSON.stringify({ tags: ['blog'] }),
    });
    assert.equal(purge.status, 200, await purge.text());
    const after = await eventually(() => get('/blog/tagged'), (r) => !isHit(r));
    assert.match(after.body, /n=2/);
  });

  test('deception armor: a page behind a .css path is served but never stored', async () => {
    await get('/files/account.php/x.css');
    const again = await get('/files/account.php/x.css');
    assert.match(status(again), /detail=deception-armor/);
    assert.equal(again.body, 'file 2');
    await get('/files/site.css');
    assert.ok(isHit(await eventually(() => get('/files/site.css'), isHit)), 'a real stylesheet is stored');
  });

  test('cache_key.cookies keys the named cookie, withholds the rest, and bypass_cookies bypass', async () => {
    const first = await get('/lang/home', { cookie: 'lang=de; _ga=1; other=x' });
    assert.match(first.body, /cookie=lang=de /);
    const shared = await eventually(() => get('/lang/home', { cookie: '_ga=2; lang=de' }), isHit);
    assert.match(shared.body, /n=1/);
    const fr = await get('/lang/home', { cookie: 'lang=fr' });
    assert.match(fr.body, /n=2 cookie=lang=fr /);
    const member = await get('/lang/home', { cookie: 'lang=de; session_id=alice' });
    assert.match(status(member), /detail=bypass-cookie/);
    assert.match(member.body, /session_id=alice/, 'a bypassed request keeps its cookies');
  });

  test('cache_key.query none / include: the origin receives only the keyed query', async () => {
    const first = await get('/static/bundle?v=1&utm_source=x');
    assert.match(first.body, /^\/static\/bundle n=1/);
    assert.ok(isHit(await eventually(() => get('/static/bundle?v=2'), isHit)));
    const search = await get('/search?sid=9&q=shoes&page=2');
    assert.match(search.body, /^\/search\?q=shoes n=1/);
    assert.ok(isHit(await eventually(() => get('/search?q=shoes'), isHit)));
  });

  test('cache_key headers, device and country split entries; the origin learns the class', async () => {
    const phone = 'Mozilla/5.0 (iPhone; CPU iPhone OS 17_0) Mobile/15E148';
    const a = await get('/vary/p', { 'accept-language': 'de', 'user-agent': phone });
    assert.match(a.body, /n=1 .*device=mobile lang=de/);
    assert.ok(isHit(await eventually(() => get('/vary/p', { 'accept-language': 'de', 'user-agent': phone }), isHit)));
    const desktop = await get('/vary/p', { 'accept-language': 'de', 'user-agent': 'Mozilla/5.0 (X11; Linux)', 'cf-device-type': 'mobile' });
    assert.match(desktop.body, /n=2 .*device=desktop/, 'a client cannot choose its class');
    const fr = await get('/vary/p', { 'accept-language': 'fr', 'user-agent': phone });
    assert.match(fr.body, /n=3/);
  });

  test('origin routes /api/** to the api origin', async () => {
    const res = await get('/api/items');
    assert.match(res.body, /"api":1/);
    assert.equal(web.calls('/api/items'), 0);
    assert.equal(api.calls('/api/items'), 1);
  });

  test('browser_ttl and response_headers shape what clients see, hit or miss', async () => {
    for (const res of [await get('/headers/a'), await eventually(() => get('/headers/a'), isHit)]) {
      assert.equal(res.headers['cache-control'], 'max-age=30');
      assert.equal(res.headers['x-powered-by'], undefined);
      assert.equal(res.headers['x-site'], 'on');
    }
  });

  test('adaptive_ttl doubles after an unchanged revalidation', async () => {
    // Each answer states its entry's lifetime: ttl= (what is left) + Age
    // (what is spent), so no check depends on when a request lands. Polls
    // until the entry has gone stale and was revalidated (however long that
    // takes on this machine); every hit before it shows the lifetime then.
    const lifetime = (res) => Number(/ttl=(-?\d+)/.exec(status(res))?.[1]) + Number(res.headers.age);
    const revalidation = async () => {
      const hits = [];
      const answer = await eventually(() => get('/adaptive/p'), (r) => {
        if (isHit(r)) hits.push(r);
        return /fwd-status=304/.test(status(r));
      });
      assert.match(status(answer), /fwd-status=304; ttl=-?\d+; stored/);
      return { answer, hits };
    };
    assert.match(status(await get('/adaptive/p')), /stored/);
    const first = await revalidation();
    for (const hit of first.hits) assert.equal(lifetime(hit), 1, status(hit));
    assert.equal(lifetime(first.answer), 2, 'unchanged once: 2 s');
    const second = await revalidation();
    for (const hit of second.hits) assert.equal(lifetime(hit), 2, status(hit));
    assert.equal(lifetime(second.answer), 4, 'unchanged twice: 4 s');
    assert.equal(web.calls('/adaptive/p'), 3, 'one fetch, two revalidations');
  });

  // The entry these two store lives one second: the first hit (however late
  // it comes) names the body stored, and polling, not a sleep, finds the
  // moment it has gone stale.
  test('stale_if_error covers an origin that fails after the edge TTL', async () => {
    await get('/sie/p');
    const stored = await eventually(() => get('/sie/p'), isHit);
    assert.ok(isHit(stored), status(stored));
    downFor.add('/sie/p');
    const res = await eventually(() => get('/sie/p'), (r) => !isHit(r));
    assert.equal(res.status, 200);
    assert.equal(res.body, stored.body);
    assert.match(status(res), /stale-if-error/);
  });

  test('stale_while_revalidate: past the edge TTL the stale copy answers and a refresh is stored', async () => {
    await get('/swr/p');
    const stored = await eventually(() => get('/swr/p'), isHit);
    assert.ok(isHit(stored), status(stored));
    const stale = await eventually(() => get('/swr/p'), (r) => !/; hit; ttl=[1-9]/.test(status(r)));
    assert.match(status(stale), /stale-while-revalidate/);
    assert.equal(stale.body, stored.body);
    const refreshed = await eventually(() => get('/swr/p'), (r) => r.body !== stored.body && isHit(r));
    assert.ok(isHit(refreshed), status(refreshed));
    assert.match(status(refreshed), /rule="site,swr"/);
  });

  test('cache_key.query "all" keys and forwards even the globally ignored parameters', async () => {
    const first = await get('/all/p?utm_source=mail&id=1');
    assert.match(first.body, /^\/all\/p\?id=1&utm_source=mail n=1/);
    const other = await get('/all/p?id=1&utm_source=web');
    assert.match(other.body, /n=2/, 'another utm_source: another entry');
    assert.ok(isHit(await eventually(() => get('/all/p?utm_source=mail&id=1'), isHit)));
  });

  test('override_private stores a private answer without its cookie, never a no-store one', async () => {
    const first = await get('/private/p');
    assert.deepEqual(first.headers['set-cookie'], ['sid=1']);
    const again = await eventually(() => get('/private/p'), isHit);
    assert.equal(again.headers['set-cookie'], undefined);
    await get('/nostore/p');
    const nostore = await get('/nostore/p');
    assert.equal(nostore.body, 'nostore 2');
  });

  test('everything never stores an answer to a credentialed request the rule did not vouch for', async () => {
    const alice = await get('/me', { cookie: 'session=alice' });
    assert.match(alice.body, /cookie=session=alice/);
    const anon = await get('/me');
    assert.match(anon.body, /n=2 cookie=-/, "alice's page is not served to others");
    await get('/token', { authorization: 'Bearer alice' });
    assert.match((await get('/token')).body, /n=2/);
  });

  test('match conditions: methods, query present/absent, header glob, cookie, host', async () => {
    const ok = { accept: 'text/html', cookie: 'ab=1' };
    const first = await get('/cond/a?v=1', ok);
    assert.match(status(first), /rule="site,cond"/);
    assert.match(status(await get('/cond/a?v=1&debug=1', ok)), /rule="site,anything"/);
    assert.match(status(await get('/cond/a', ok)), /rule="site,anything"/);
    assert.match(status(await get('/cond/a?v=1', { accept: 'application/json', cookie: 'ab=1' })), /rule="site,anything"/);
    assert.match(status(await get('/cond/a?v=1', { accept: 'text/html' })), /rule="site,anything"/);
    const other = await raw(worker.url, { path: '/x', headers: { host: 'shop.example.org' } });
    assert.match(status(other), /detail=rule; rule="site,hosted"/);
  });
});

/** The recipe blocks of docs/cache-rules.md, by name. */
function recipes() {
  const doc = readFileSync(path.join(repoRoot, 'docs', 'cache-rules.md'), 'utf8');
  const found = {};
  for (const m of doc.matchAll(/```toml recipe=([a-z-]+)\n([\s\S]*?)```/g)) found[m[1]] = m[2];
  return found;
}

/** Starts the worker with wrangler.toml plus a recipe block, appended verbatim. */
async function withRecipe(name, vars) {
  const block = recipes()[name];
  assert.ok(block, `recipe ${name} is in docs/cache-rules.md`);
  const file = `.wrangler-e2e-recipe-${name}.toml`;
  const base = readFileSync(path.join(repoRoot, 'wrangler.toml'), 'utf8');
  writeFileSync(path.join(repoRoot, file), `${base}\n${block}`);
  try {
    const worker = await startWorker({ vars, config: file });
    const stop = worker.stop;
    worker.stop = async () => {
      await stop();
      rmSync(path.join(repoRoot, file), { force: true });
    };
    return worker;
  } catch (e) {
    rmSync(path.join(repoRoot, file), { force: true });
    throw e;
  }
}

describe('recipes from docs/cache-rules.md, loaded verbatim', () => {
  test('docs/cache-rules.md has the five recipes', () => {
    assert.deepEqual(Object.keys(recipes()).sort(), ['api', 'cms', 'search', 'spa', 'static-site']);
  });

  test('static site: assets for a year without their query, pages for an hour', async () => {
    const site = await origin('web', (url, req, n) =>
      url.pathname.endsWith('.css') ? [200, { 'content-type': 'text/css', 'x-powered-by': 'x' }, `css ${n}`] : [200, PAGE, `page ${n}`]);
    const worker = await withRecipe('static-site', { ORIGINS: originsVar([{ name: 'web', origin: site.server }]) });
    try {
      const get = (p) => raw(worker.url, { path: p, headers: { host: 'shop.example' } });
      const css = await get('/assets/app.css?v=1');
      assert.equal(css.headers['cache-control'], 'max-age=31536000');
      assert.equal(css.headers['x-powered-by'], undefined);
      assert.match(status(await eventually(() => get('/assets/app.css?v=2'), isHit)), /rule="assets"/);
      assert.equal(site.seen.find((s) => s.path === '/assets/app.css').query, '', 'the query stays at the edge');
      await get('/blog/hello');
      assert.match(status(await eventually(() => get('/blog/hello'), isHit)), /ttl=(3600|359\d);.*rule="pages"/);
    } finally {
      await worker.stop();
      await site.server.close();
    }
  });

  test('CMS: anonymous visitors share pages despite analytics cookies; logged-in users and the admin bypass', async () => {
    const cms = await origin('web', (url, req, n) => [200, PAGE, `${url.pathname} ${n} cookie=${req.headers.cookie ?? '-'}`]);
    const worker = await withRecipe('cms', { ORIGINS: originsVar([{ name: 'web', origin: cms.server }]) });
    try {
      const get = (p, headers = {}) => raw(worker.url, { path: p, headers: { host: 'shop.example', ...headers } });
      const first = await get('/post', { cookie: '_ga=GA1.1; consent=yes' });
      assert.match(first.body, /cookie=-/, 'the origin renders the anonymous page');
      const other = await eventually(() => get('/post', { cookie: '_ga=GA2.2' }), isHit);
      assert.match(status(other), /rule="pages"/);
      const editor = await get('/post', { cookie: 'wordpress_logged_in_abc=editor' });
      assert.match(status(editor), /detail=bypass-cookie/);
      assert.match(editor.body, /wordpress_logged_in_abc=editor/);
      assert.match(status(await get('/wp-admin/edit.php')), /detail=rule; rule="admin"/);
    } finally {
      await worker.stop();
      await cms.server.close();
    }
  });

  test('API: token-bearing and per-user requests bypass; public data goes to the api origin and is cached', async () => {
    const web = await origin('web', () => [200, PAGE, 'web']);
    const apiOrigin = await origin('api', (url, req, n) =>
      [200, { 'content-type': 'application/json', 'cache-control': 'max-age=5' }, `{"path":"${url.pathname}","n":${n},"user":"${req.headers.authorization ?? ''}"}`]);
    const worker = await withRecipe('api', {
      ORIGINS: originsVar([{ name: 'web', origin: web.server }, { name: 'api', origin: apiOrigin.server }]),
    });
    try {
      const get = (p, headers = {}) => raw(worker.url, { path: p, headers: { host: 'shop.example', ...headers } });
      const alice = await get('/api/products', { authorization: 'Bearer alice' });
      assert.match(status(alice), /detail=rule; rule="api-private"/);
      const me = await get('/api/me');
      assert.match(status(me), /rule="api-me"/);
      await get('/api/products?_=123');
      const cached = await eventually(() => get('/api/products?_=456'), isHit);
      assert.match(status(cached), /ttl=(30|29);.*rule="api-public"/, 'minimum 30 s over the origin 5 s');
      assert.doesNotMatch(cached.body, /alice/);
      assert.equal(cached.headers['cache-control'], 'no-store', 'browsers do not keep API answers');
      assert.equal(web.calls('/api/products'), 0);
    } finally {
      await worker.stop();
      await web.server.close();
      await apiOrigin.server.close();
    }
  });

  test('search: one entry per query and page, whatever else the URL carries', async () => {
    const site = await origin('web', (url, req, n) => [200, PAGE, `${url.search} ${n}`]);
    const worker = await withRecipe('search', { ORIGINS: originsVar([{ name: 'web', origin: site.server }]) });
    try {
      const get = (p) => raw(worker.url, { path: p, headers: { host: 'shop.example' } });
      const first = await get('/search?q=shoes&sort=asc&sid=1');
      assert.match(first.body, /^\?q=shoes 1$/);
      assert.ok(isHit(await eventually(() => get('/search?sid=2&q=shoes'), isHit)));
      const page2 = await get('/search?q=shoes&page=2');
      assert.match(page2.body, /^\?page=2&q=shoes 2$/);
    } finally {
      await worker.stop();
      await site.server.close();
    }
  });

  test('SPA: bundles for a year, the shell briefly, the API never', async () => {
    const site = await origin('web', (url, req, n) =>
      url.pathname.startsWith('/assets/') ? [200, { 'content-type': 'text/javascript' }, `js ${n}`]
        : url.pathname.startsWith('/api/') ? [200, { 'content-type': 'application/json', 'cache-control': 'public, max-age=600' }, `{"n":${n}}`]
          : [200, { 'content-type': 'text/html' }, `shell ${n}`]);
    const worker = await withRecipe('spa', { ORIGINS: originsVar([{ name: 'web', origin: site.server }]) });
    try {
      const get = (p, headers = {}) => raw(worker.url, { path: p, headers: { host: 'shop.example', ...headers } });
      await get('/assets/app.3f2a.js');
      assert.match(status(await eventually(() => get('/assets/app.3f2a.js'), isHit)), /rule="bundles"/);
      await get('/api/cart');
      assert.match(status(await get('/api/cart')), /detail=rule; rule="api"/);
      const shell = await get('/dashboard', { accept: 'text/html,application/xhtml+xml' });
      assert.equal(shell.headers['cache-control'], 'max-age=0');
      assert.match(status(await eventually(() => get('/settings', { accept: 'text/html' }), (r) => /rule="shell"/.test(status(r)))), /rule="shell"/);
    } finally {
      await worker.stop();
      await site.server.close();
    }
  });
});
