// The demo site in a real browser: headless Chromium (Debian's /usr/bin/chromium,
// driven by playwright-core) loads every page of the built site (dist/www) from
// the worker in workerd, scrolls it to the bottom so lazy images load too, and
// checks that nothing fails: no failed requests or HTTP errors, no console
// errors or uncaught exceptions, every script, stylesheet and image from the
// worker is a fingerprinted file from dist/www/manifest.json, and every <img>
// but the first is loading="lazy". A full-page screenshot of the home page is
// saved to target/e2e-artifacts/home.png.
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { chromium } from 'playwright-core';
import { originsVar, repoRoot, startOrigin, startWorker } from './harness.mjs';

const CHROMIUM = '/usr/bin/chromium';
const SITE = path.join(repoRoot, 'dist', 'www');
const ARTIFACTS = path.join(repoRoot, 'target', 'e2e-artifacts');

if (!existsSync(path.join(SITE, 'manifest.json'))) {
  throw new Error(`${SITE}/manifest.json is missing: build the site first (scripts/build-worker.sh; scripts/test.sh does)`);
}
const manifest = JSON.parse(readFileSync(path.join(SITE, 'manifest.json'), 'utf8')).assets;
const fingerprintedPaths = new Set(Object.values(manifest).map((entry) => entry.path));
// favicon.ico is fetched by its well-known name, so the build keeps it as is;
// it is the one exception, and only while the manifest does not list it.
const unfingerprintedAllowed = new Set(manifest['/favicon.ico'] ? [] : ['/favicon.ico']);

/** Every page of the built site: `/` plus each dist/www/*.html and dist/www/products/*.html. */
function sitePages() {
  const htmlIn = (dir, prefix) =>
    readdirSync(path.join(SITE, dir), { withFileTypes: true })
      .filter((e) => e.isFile() && e.name.endsWith('.html'))
      .map((e) => `${prefix}${e.name}`)
      .sort();
  return ['/', ...htmlIn('.', '/'), ...htmlIn('products', '/products/')];
}
const PAGES = sitePages();
// The cart page renders its items (thumbnails cloned from a <template>) from
// localStorage, so it is loaded once more with every product in the cart.
const PRODUCT_SLUGS = PAGES.filter((p) => p.startsWith('/products/') && p !== '/products/index.html').map((p) => path.basename(p, '.html'));
const CASES = [
  ...PAGES.map((pagePath) => ({ name: pagePath, pagePath })),
  { name: '/cart.html with every product in the cart', pagePath: '/cart.html', cart: Object.fromEntries(PRODUCT_SLUGS.map((slug) => [slug, 1])) },
];

const SUBRESOURCE_TYPES = new Set(['script', 'stylesheet', 'image']);

describe('the demo site in headless Chromium', () => {
  let origin;
  let worker;
  let browser;

  before(async () => {
    if (!existsSync(CHROMIUM)) {
      throw new Error(`${CHROMIUM} is missing: install Debian's chromium package (apt-get install chromium) to run the browser tests`);
    }
    // Nothing on these pages should reach an origin: a stand-in that answers
    // 404 makes any request that falls through to it fail loudly.
    origin = await startOrigin((req, res) => {
      res.writeHead(404, { 'content-type': 'text/plain', 'cache-control': 'no-store' });
      res.end('stand-in origin: not found');
    });
    worker = await startWorker({ vars: { ORIGINS: originsVar([{ name: 'primary', origin }]) } });
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      headless: true,
      args: [
        '--headless=new',
        '--no-sandbox',
        '--disable-gpu',
        '--disable-quic',
        '--no-first-run',
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync',
      ],
    });
  });

  after(async () => {
    await browser?.close().catch(() => {});
    await worker?.stop();
    await origin?.close();
  });

  for (const { name, pagePath, cart } of CASES) {
    test(`${name} loads cleanly`, async (t) => {
      const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
      try {
        if (cart) {
          await context.addInitScript((value) => window.localStorage.setItem('cachefront.cart', value), JSON.stringify(cart));
        }
        const page = await context.newPage();
        const workerOrigin = new URL(worker.url).origin;
        const problems = [];
        const loaded = [];

        page.on('requestfailed', (req) => {
          problems.push(`request failed: ${req.method()} ${req.url()} (${req.failure()?.errorText})`);
        });
        page.on('response', (res) => {
          const req = res.request();
          if (req.isNavigationRequest() && req.frame() === page.mainFrame()) return; // checked below
          if (res.status() >= 400) problems.push(`HTTP ${res.status()} for ${req.resourceType()} ${res.url()}`);
        });
        page.on('request', (req) => {
          const url = new URL(req.url());
          if (url.origin === workerOrigin && SUBRESOURCE_TYPES.has(req.resourceType())) {
            loaded.push({ type: req.resourceType(), pathname: url.pathname, url: req.url() });
          }
        });
        page.on('console', (msg) => {
          if (msg.type() === 'error') {
            const where = msg.location()?.url ? ` (at ${msg.location().url})` : '';
            problems.push(`console error: ${msg.text()}${where}`);
          }
        });
        page.on('pageerror', (err) => problems.push(`page error: ${err.stack || err.message}`));

        const response = await page.goto(`${worker.url}${pagePath}`, { waitUntil: 'load' });
        assert.ok(response, `no response for ${pagePath}`);
        assert.equal(response.status(), 200, `${pagePath} answered HTTP ${response.status()}`);

        // Scroll to the bottom step by step so every lazy image comes into
        // view, then wait for every image to finish and the network to settle.
        await page.evaluate(async () => {
          const step = Math.max(200, Math.floor(window.innerHeight / 2));
          for (let y = 0; y <= document.documentElement.scrollHeight; y += step) {
            window.scrollTo(0, y);
            await new Promise((r) => requestAnimationFrame(() => setTimeout(r, 50)));
          }
          window.scrollTo(0, document.documentElement.scrollHeight);
        });
        // An image the page's scripts add after the scroll (the cart renders
        // from localStorage) may still be below the fold: bring each
        // unfinished one into view until all are complete.
        await page.waitForFunction(
          () => {
            const pending = [...document.images].filter((img) => !img.complete);
            for (const img of pending) img.scrollIntoView({ block: 'center' });
            return pending.length === 0;
          },
          null,
          { timeout: 60_000, polling: 250 },
        );
        await page.waitForLoadState('networkidle');

        const images = await page.evaluate(() =>
          [...document.images].map((img) => ({
            src: img.currentSrc || img.src,
            loading: img.getAttribute('loading'),
            naturalWidth: img.naturalWidth,
          })),
        );
        images.forEach((img, i) => {
          if (i > 0 && img.loading !== 'lazy') {
            problems.push(`<img> #${i + 1} (${img.src}) has loading=${JSON.stringify(img.loading)}, not "lazy"`);
          }
          if (img.naturalWidth === 0) problems.push(`<img> #${i + 1} (${img.src}) did not render (naturalWidth 0)`);
        });

        for (const { type, pathname, url } of loaded) {
          if (!fingerprintedPaths.has(pathname) && !unfingerprintedAllowed.has(pathname)) {
            problems.push(`${type} ${url} is not a fingerprinted path from dist/www/manifest.json`);
          }
        }

        if (pagePath === '/') {
          await page.evaluate(() => window.scrollTo(0, 0));
          mkdirSync(ARTIFACTS, { recursive: true });
          await page.screenshot({ path: path.join(ARTIFACTS, 'home.png'), fullPage: true });
        }

        t.diagnostic(`${loaded.length} scripts/stylesheets/images from the worker, ${images.length} <img>: ${[...new Set(loaded.map((r) => r.pathname))].join(' ')}`);
        assert.deepEqual(problems, [], `${pagePath}:\n  ${problems.join('\n  ')}`);
        assert.deepEqual(origin.requests.map((r) => `${r.method} ${r.url}`), [], 'requests reached the origin');
        assert.ok(loaded.some((r) => r.type === 'stylesheet'), `${pagePath} loaded no stylesheet from the worker`);
        if (cart) {
          const items = await page.locator('[data-cart-items] > li').count();
          assert.equal(items, Object.keys(cart).length, 'the cart page renders one item per product in the cart');
        }
      } finally {
        await context.close();
      }
    });
  }
});
