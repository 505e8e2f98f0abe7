// Assets at the edge, end to end in workerd: the built site (dist/www) with
// fingerprinted, immutable files, and origin HTML rewritten on the way
// through (asset URLs from the build manifest, lazy images, preload hints,
// <picture> with the build's AVIF/WebP variants for images it encoded).
import assert from 'node:assert/strict';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { eventually, originsVar, repoRoot, startOrigin, startWorker } from './harness.mjs';

const manifestFile = JSON.parse(readFileSync(path.join(repoRoot, 'dist/www/manifest.json'), 'utf8'));
const manifest = manifestFile.assets;
const images = manifestFile.images ?? {};
const fingerprinted = (logical) => manifest[logical].path;

const ORIGIN_PAGE = `<!doctype html><html><head>
<link rel="stylesheet" href="/css/site.css">
<script src="/js/app.js" defer></script>
</head><body>
<img src="/images/hero.png" width="1200" height="500" alt="hero">
<img src="/images/products/alpine-tent.png" width="800" height="600" alt="tent">
<img src="/uploads/visitor-photo.png" width="640" alt="upload">
</body></html>`;

// Hand-written origin JavaScript: comments, long names, whitespace.
const ORIGIN_SCRIPT = `// Cart totals, as an origin might serve them.
function cartTotal(items) {
  var total = 0;
  for (var index = 0; index < items.length; index++) {
    var item = items[index];
    if (item.quantity > 0) {
      total += item.price * item.quantity;
    } else {
      console.log('skipping', item.name);
    }
  }
  return Math.round(total * 100) / 100;
}
`;
const ORIGIN_STYLES = `/* origin stylesheet */
body {
  margin : 0 ;
  font: 16px/1.5 serif;
}

a:hover { color : red ; }
`;

describe('assets and origin HTML at the edge', () => {
  let origin;
  let worker;
  let resizing;
  // The second worker runs first for every request (the documented
  // worker-first mode), the first one uses wrangler.toml's assets-first default.
  const workerFirst = path.join(repoRoot, `.wrangler-e2e-assets-${process.pid}.toml`);

  before(async () => {
    origin = await startOrigin((req, res) => {
      if (req.url === '/js/broken.js' || req.url === '/js/vendor.min.js') {
        // A syntax error, and an already-minified file: both served as sent.
        const body = req.url === '/js/broken.js' ? 'function broken( {\n  return 1;\n}\n' : ORIGIN_SCRIPT;
        res.writeHead(200, { 'content-type': 'application/javascript', 'cache-control': 'public, max-age=60' });
        res.end(body);
        return;
      }
      if (req.url.startsWith('/js/')) {
        const headers = { 'content-type': 'text/javascript; charset=utf-8', 'cache-control': 'public, max-age=60', etag: '"js-v1"' };
        res.writeHead(200, headers);
        res.end(ORIGIN_SCRIPT);
        return;
      }
      if (req.url.startsWith('/styles/')) {
        res.writeHead(200, { 'content-type': 'text/css', 'cache-control': 'public, max-age=60', etag: '"css-v1"' });
        res.end(ORIGIN_STYLES);
        return;
      }
      if (req.url.startsWith('/raw')) {
        res.writeHead(200, { 'content-type': 'text/html', 'cache-control': 'no-store, no-transform' });
        res.end(ORIGIN_PAGE);
        return;
      }
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'public, max-age=60', etag: '"page-v1"' });
      res.end(ORIGIN_PAGE);
    });
    const vars = { ORIGINS: originsVar([{ name: 'primary', origin }]) };
    worker = await startWorker({ vars });
    // A second worker with the options that are off by default.
    const base = readFileSync(path.join(repoRoot, 'wrangler.toml'), 'utf8');
    writeFileSync(workerFirst, base.replace(/^run_worker_first = .*$/m, 'run_worker_first = true'));
    resizing = await startWorker({
      config: workerFirst,
      vars: {
        ...vars,
        IMAGE_RESIZING: '320,640',
        PURGE_STRIP_TAG_HEADERS: 'false',
        EDGE_MINIFY_CSS: 'on',
        EDGE_MINIFY_JS: 'on',
      },
    });
  });

  after(async () => {
    await worker?.stop();
    await resizing?.stop();
    await origin?.close();
    rmSync(workerFirst, { force: true });
  });

  test('the built site references fingerprinted files, which are immutable', async () => {
    const home = await fetch(`${worker.url}/`);
    assert.equal(home.status, 200);
    assert.equal(home.headers.get('cache-control'), 'public, max-age=60, stale-while-revalidate=300');
    const html = await home.text();
    const css = fingerprinted('/css/site.css');
    assert.ok(html.includes(`href="${css}"`), 'the page links the fingerprinted stylesheet');
    const asset = await fetch(`${worker.url}${css}`);
    assert.equal(asset.status, 200);
    assert.equal(asset.headers.get('cache-control'), 'public, max-age=31536000, immutable');
    assert.match(asset.headers.get('content-type'), /text\/css/);
    assert.ok(asset.headers.get('etag'), 'the asset store gives an ETag');
    await asset.text();
  });

  test('by default the asset store answers a fingerprinted file without running the worker', async () => {
    const css = fingerprinted('/css/site.css');
    const asset = await fetch(`${worker.url}${css}`);
    assert.equal(asset.status, 200);
    await asset.text();
    assert.equal(asset.headers.get('cache-control'), 'public, max-age=31536000, immutable');
    assert.equal(asset.headers.get('cache-status'), 'cachefront; hit; detail=assets');
    assert.equal(asset.headers.get('server-timing'), null, 'the worker did not time it: it did not run');
    // An origin path in the same instance runs the worker, which logs it
    // (REQUEST_LOG is json by default): the log is there, just not for the asset.
    const page = await fetch(`${worker.url}/shop/log-control`);
    await page.text();
    assert.match(page.headers.get('server-timing'), /cachefront;dur=/);
    await eventually(
      async () => worker.logs(),
      (logs) => logs.includes('"path":"/shop/log-control"'),
      { attempts: 30, delayMs: 200 },
    );
    assert.ok(!worker.logs().includes(`"path":"${css}"`), 'no request-log line for the asset');
    // In worker-first mode the same file runs the worker, which says so.
    const viaWorker = await fetch(`${resizing.url}${css}`);
    await viaWorker.text();
    assert.equal(viaWorker.headers.get('cache-control'), 'public, max-age=31536000, immutable');
    assert.equal(viaWorker.headers.get('cache-status'), 'cachefront; hit; detail=assets');
    assert.match(viaWorker.headers.get('server-timing'), /cachefront;dur=/);
  });

  test('origin HTML gets manifest URLs, lazy images and preload hints', async () => {
    const res = await fetch(`${worker.url}/shop/alpine-tent`);
    assert.equal(res.status, 200);
    const html = await res.text();
    assert.ok(html.includes(`href="${fingerprinted('/css/site.css')}"`), html);
    assert.ok(html.includes(`src="${fingerprinted('/js/app.js')}"`), html);
    assert.match(html, /<img src="[^"]*hero[^"]*"[^>]*alt="hero">/, 'the first image stays eager');
    assert.match(html, /alt="tent" loading="lazy" decoding="async"/);
    assert.match(res.headers.get('link'), new RegExp(`<${fingerprinted('/css/site.css')}>; rel=preload; as=style`));
    assert.equal(res.headers.get('etag'), 'W/"page-v1"');
    const hit = await fetch(`${worker.url}/shop/alpine-tent`);
    assert.match(hit.headers.get('cache-status'), /^cachefront; hit/);
    assert.equal(await hit.text(), html, 'the rewritten page is what is cached');
  });

  test('origin HTML gets the build\'s <picture> for images in the manifest, the same markup as the built site', async () => {
    assert.ok(images['/images/hero.png']?.variants?.length, 'the build encoded the hero (cachefront build with images on)');
    const res = await fetch(`${worker.url}/shop/picture-page`);
    assert.equal(res.status, 200);
    const html = await res.text();
    const pictureOf = (page, logical) => {
      const img = page.indexOf(`src="${fingerprinted(logical)}"`);
      const open = page.lastIndexOf('<picture>', img);
      assert.ok(img > 0 && open >= 0, `no <picture> around ${logical}: ${page}`);
      return page.slice(open, page.indexOf('>', img) + 1);
    };
    const hero = pictureOf(html, '/images/hero.png');
    for (const variant of images['/images/hero.png'].variants) {
      assert.ok(hero.includes(`${variant.path} ${variant.width}w`), `${variant.path} offered: ${hero}`);
    }
    assert.match(hero, /^<picture><source type="image\/avif" srcset="[^"]+" sizes="\(max-width: 1200px\) 100vw, 1200px"><source type="image\/webp"/);
    // The build wrote the same <picture> into its own home page.
    const built = readFileSync(path.join(repoRoot, 'dist/www/index.html'), 'utf8');
    const sourcesOf = (picture) => picture.slice(0, picture.indexOf('<img'));
    assert.equal(sourcesOf(hero), sourcesOf(pictureOf(built, '/images/hero.png')));
    // A variant is a fingerprinted file of the asset store: immutable, typed.
    const avif = images['/images/hero.png'].variants.find((v) => v.type === 'image/avif');
    const file = await fetch(`${worker.url}${avif.path}`);
    assert.equal(file.status, 200);
    assert.equal(file.headers.get('content-type'), 'image/avif');
    assert.equal(file.headers.get('cache-control'), 'public, max-age=31536000, immutable');
    assert.equal((await file.arrayBuffer()).byteLength, avif.size);
    // An image the build never saw is left alone.
    assert.match(html, /<img src="\/uploads\/visitor-photo.png" width="640" alt="upload"/);
    assert.ok(!html.includes('<picture><source type="image/avif" srcset="/uploads'), html);
  });

  test('no-transform pages are served exactly as the origin sent them', async () => {
    const res = await fetch(`${worker.url}/raw/page`);
    assert.equal(await res.text(), ORIGIN_PAGE);
    assert.equal(res.headers.get('link'), null);
  });

  test('IMAGE_RESIZING adds srcset through Cloudflare image resizing to images not in the manifest', async () => {
    const res = await fetch(`${resizing.url}/products/tent-with-resizing`);
    const html = await res.text();
    assert.match(html, /<img src="\/uploads\/visitor-photo.png" width="640" alt="upload" loading="lazy" decoding="async" srcset="\/cdn-cgi\/image\/width=320,format=auto\/uploads\/visitor-photo.png 320w, \/cdn-cgi\/image\/width=640,format=auto\//, html);
    // Images the build encoded keep their <picture> and get no resizing URLs.
    assert.ok(!html.includes('cdn-cgi/image/width=320,format=auto/images/'), html);
    assert.ok(html.includes('<picture><source type="image/avif"'), html);
  });

  test('asset pages carry the automatic tags a URL, prefix or host purge names', async () => {
    const page = await fetch(`${resizing.url}/`);
    await page.text();
    const tags = (page.headers.get('cache-tag') ?? '').split(', ');
    assert.ok(tags.includes('host:127.0.0.1'), tags.join(', '));
    assert.ok(tags.includes('url:127.0.0.1/'), tags.join(', '));
    const css = await fetch(`${resizing.url}${fingerprinted('/css/site.css')}`);
    await css.text();
    assert.equal(css.headers.get('cache-tag'), null, 'fingerprinted files are not tagged');
    const stripped = await fetch(`${worker.url}/`);
    await stripped.text();
    assert.equal(stripped.headers.get('cache-tag'), null, 'tag headers stop at the edge by default');
  });

  test('origin JavaScript is minified once, before it is cached, with EDGE_MINIFY_JS=on', async () => {
    const first = await fetch(`${resizing.url}/js/cart.js`);
    const minified = await first.text();
    assert.equal(first.headers.get('x-minify'), 'minified');
    assert.equal(first.headers.get('etag'), 'W/"js-v1"');
    assert.ok(minified.length < ORIGIN_SCRIPT.length / 2, minified);
    assert.ok(!minified.includes('Cart totals'), 'comments are gone');
    // It still behaves the same (a classic script keeps its global name).
    const run = (source) => new Function(`${source}; return cartTotal;`)();
    const items = [{ price: 2.5, quantity: 3 }, { price: 1.1, quantity: 0, name: 'x' }, { price: 0.1, quantity: 7 }];
    assert.equal(run(minified)(items), run(ORIGIN_SCRIPT)(items));
    const hit = await fetch(`${resizing.url}/js/cart.js`);
    assert.match(hit.headers.get('cache-status'), /^cachefront; hit/);
    assert.equal(await hit.text(), minified);
    assert.equal(origin.hits('/js/cart.js'), 1);
  });

  test('origin JavaScript the minifier should not touch is served as sent', async () => {
    const broken = await fetch(`${resizing.url}/js/broken.js`);
    assert.equal(await broken.text(), 'function broken( {\n  return 1;\n}\n');
    assert.equal(broken.headers.get('x-minify'), 'skipped; reason=failed');
    const vendor = await fetch(`${resizing.url}/js/vendor.min.js`);
    assert.equal(await vendor.text(), ORIGIN_SCRIPT);
    assert.equal(vendor.headers.get('x-minify'), 'skipped; reason=already_minified');
    const plain = await fetch(`${worker.url}/js/app-plain.js`);
    assert.equal(await plain.text(), ORIGIN_SCRIPT, 'off by default');
    assert.equal(plain.headers.get('etag'), '"js-v1"');
  });

  test('origin CSS is minified once, before it is cached, with EDGE_MINIFY_CSS=on', async () => {
    const expected = 'body{margin:0;font:16px/1.5 serif}a:hover{color:red}';
    const first = await fetch(`${resizing.url}/styles/site.css`);
    assert.equal(await first.text(), expected);
    assert.equal(first.headers.get('x-minify'), 'minified');
    assert.equal(first.headers.get('etag'), 'W/"css-v1"');
    const hit = await fetch(`${resizing.url}/styles/site.css`);
    assert.match(hit.headers.get('cache-status'), /^cachefront; hit/);
    assert.equal(await hit.text(), expected);
    assert.equal(origin.hits('/styles/site.css'), 1);
    const plain = await fetch(`${worker.url}/styles/site.css`);
    assert.equal(await plain.text(), ORIGIN_STYLES, 'off by default');
  });
});
