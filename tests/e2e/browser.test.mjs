// The demo site in a real browser: headless Chromium (Debian's /usr/bin/chromium,
// driven by playwright-core) loads every page of the built site (dist/www) from
// the worker in workerd, scrolls it to the bottom so lazy images load too, and
// checks that nothing fails: no failed requests or HTTP errors, no console
// errors or uncaught exceptions, every script, stylesheet and image from the
// worker is a fingerprinted file from dist/www/manifest.json, and every <img>
// but the first is loading="lazy", and nothing on the page shifts (Cumulative
// Layout Shift 0: every image's box is reserved; the cart filled by script
// from localStorage is only reported). A full-page screenshot of the home page is
// saved to target/e2e-artifacts/home.png.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
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
const manifestFile = JSON.parse(readFileSync(path.join(SITE, 'manifest.json'), 'utf8'));
const manifest = manifestFile.assets;
// The AVIF/WebP variants of encoded images are fingerprinted files too.
const fingerprintedPaths = new Set([
  ...Object.values(manifest).map((entry) => entry.path),
  ...Object.values(manifestFile.images ?? {}).flatMap((image) => image.variants.map((v) => v.path)),
]);
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
        await context.addInitScript(OBSERVE_PAINT_AND_SHIFTS);
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
        const vitals = await page.evaluate(() => window.__cachefrontVitals);
        // The filled cart is rendered by script from localStorage; whether
        // that lands before the first paint depends on timing, so its shift
        // is reported, not asserted. Every page as served must not shift.
        if (cart) t.diagnostic(`layout shift of the script-rendered cart: ${vitals.cls}`);
        else if (vitals.cls !== 0) problems.push(`layout shift ${vitals.cls}: ${JSON.stringify(vitals.shifts)}`);
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

// The image pipeline, measured: the same pages from a worker serving the
// site as built (AVIF/WebP in <picture>, optimised PNGs) and from one serving
// it built with `--no-images` (PNGs as drawn), at a desktop and a phone
// width. Recorded per case: image bytes transferred (after scrolling the
// whole page, so lazy images count), Largest Contentful Paint and Cumulative
// Layout Shift (PerformanceObserver); the figures are printed and written to
// target/e2e-artifacts/images.json, the screenshots kept beside them. Checked:
// the home page's image bytes at least halve, nothing shifts, and the pages
// look the same (pixel comparison of the screenshots, in the browser).
const MEASURED_PAGES = ['/', '/products/alpine-tent.html'];
const MEASURED_WIDTHS = [1280, 390];
const BASELINE_SITE = 'dist/www-noimages';
const BASELINE_CONFIG = '.wrangler-e2e-noimages.toml';
// A channel that differs by more than this counts the pixel as changed;
// below it is encoding noise no one sees side by side.
const PIXEL_TOLERANCE = 40;
const MAX_CHANGED_PIXELS = 0.005;

const OBSERVE_PAINT_AND_SHIFTS = () => {
  window.__cachefrontVitals = { lcp: 0, cls: 0, shifts: [] };
  new PerformanceObserver((list) => {
    for (const entry of list.getEntries()) window.__cachefrontVitals.lcp = entry.startTime;
  }).observe({ type: 'largest-contentful-paint', buffered: true });
  new PerformanceObserver((list) => {
    for (const entry of list.getEntries()) {
      if (entry.hadRecentInput) continue;
      window.__cachefrontVitals.cls += entry.value;
      window.__cachefrontVitals.shifts.push((entry.sources || []).map((s) => s.node?.outerHTML?.slice(0, 120) ?? '?'));
    }
  }).observe({ type: 'layout-shift', buffered: true });
};

async function measurePage(browser, baseUrl, pagePath, width, screenshotPath) {
  const context = await browser.newContext({ viewport: { width, height: 800 } });
  try {
    await context.addInitScript(OBSERVE_PAINT_AND_SHIFTS);
    const page = await context.newPage();
    const response = await page.goto(`${baseUrl}${pagePath}`, { waitUntil: 'load' });
    assert.equal(response?.status(), 200, `${pagePath} at ${baseUrl}`);
    await page.evaluate(async () => {
      const step = Math.max(200, Math.floor(window.innerHeight / 2));
      for (let y = 0; y <= document.documentElement.scrollHeight; y += step) {
        window.scrollTo(0, y);
        await new Promise((r) => requestAnimationFrame(() => setTimeout(r, 50)));
      }
    });
    // A lazy image the scroll passed before the browser looked at it (a loaded
    // machine) starts loading only in view: each poll brings the first one
    // still pending into view. A hang names the images that never completed.
    await page
      .waitForFunction(() => {
        const pending = [...document.images].filter((img) => !img.complete);
        pending[0]?.scrollIntoView({ block: 'center' });
        return pending.length === 0;
      }, null, { timeout: 60_000, polling: 250 })
      .catch(async (e) => {
        const pending = await page.evaluate(() => [...document.images].filter((img) => !img.complete).map((img) => `${img.currentSrc || img.src} (loading=${img.loading})`));
        throw new Error(`${e.message}; images never complete: ${pending.join(', ')}`);
      });
    await page.waitForLoadState('networkidle');
    const figures = await page.evaluate(() => {
      const images = performance
        .getEntriesByType('resource')
        .filter((e) => /\.(png|jpe?g|webp|avif|svg|gif)(\?|$)/i.test(new URL(e.name).pathname));
      return {
        imageBytes: images.reduce((sum, e) => sum + e.encodedBodySize, 0),
        imageRequests: images.length,
        imageTypes: [...new Set(images.map((e) => new URL(e.name).pathname.split('.').pop()))].sort(),
        lcp: Math.round(window.__cachefrontVitals.lcp),
        cls: window.__cachefrontVitals.cls,
        shifts: window.__cachefrontVitals.shifts,
      };
    });
    await page.evaluate(() => window.scrollTo(0, 0));
    await page.screenshot({ path: screenshotPath, fullPage: true });
    return figures;
  } finally {
    await context.close();
  }
}

/** Share of pixels that differ by more than PIXEL_TOLERANCE in a channel, and the mean channel difference, computed on a canvas. */
async function compareScreenshots(browser, fileA, fileB) {
  const page = await browser.newPage();
  try {
    const dataUrl = (file) => `data:image/png;base64,${readFileSync(file).toString('base64')}`;
    return await page.evaluate(
      async ({ a, b, tolerance }) => {
        const load = (src) => new Promise((resolve, reject) => {
          const img = new Image();
          img.onload = () => resolve(img);
          img.onerror = reject;
          img.src = src;
        });
        const [imgA, imgB] = await Promise.all([load(a), load(b)]);
        if (imgA.width !== imgB.width || imgA.height !== imgB.height) {
          return { sameSize: false, sizes: [imgA.width, imgA.height, imgB.width, imgB.height] };
        }
        const pixels = (img) => {
          const canvas = document.createElement('canvas');
          canvas.width = img.width;
          canvas.height = img.height;
          const ctx = canvas.getContext('2d');
          ctx.drawImage(img, 0, 0);
          return ctx.getImageData(0, 0, img.width, img.height).data;
        };
        const pa = pixels(imgA);
        const pb = pixels(imgB);
        let changed = 0;
        let total = 0;
        for (let i = 0; i < pa.length; i += 4) {
          let worst = 0;
          for (let c = 0; c < 3; c++) {
            const d = Math.abs(pa[i + c] - pb[i + c]);
            total += d;
            if (d > worst) worst = d;
          }
          if (worst > tolerance) changed++;
        }
        const count = pa.length / 4;
        return { sameSize: true, changedShare: changed / count, meanDifference: total / (count * 3) };
      },
      { a: dataUrl(fileA), b: dataUrl(fileB), tolerance: PIXEL_TOLERANCE },
    );
  } finally {
    await page.close();
  }
}

describe('the image pipeline in headless Chromium: bytes, LCP, CLS, screenshots', () => {
  let origin;
  let pipeline;
  let baseline;
  let browser;
  const results = [];

  before(async () => {
    // The same site built without the image pipeline, served by a second worker.
    // CACHEFRONT_BIN: an already-built CLI, instead of cargo run.
    const args = ['build', '--src', 'www', '--out', BASELINE_SITE, '--no-images'];
    const built = process.env.CACHEFRONT_BIN
      ? spawnSync(process.env.CACHEFRONT_BIN, args, { cwd: repoRoot, encoding: 'utf8' })
      : spawnSync('cargo', ['run', '-q', '-p', 'cachefront-cli', '--', ...args], { cwd: repoRoot, encoding: 'utf8' });
    assert.equal(built.status, 0, `cachefront build --no-images failed: ${built.stderr}`);
    const config = readFileSync(path.join(repoRoot, 'wrangler.toml'), 'utf8').replace(/^directory = "dist\/www"$/m, `directory = "${BASELINE_SITE}"`);
    assert.ok(config.includes(BASELINE_SITE), 'wrangler.toml has [assets] directory = "dist/www"');
    writeFileSync(path.join(repoRoot, BASELINE_CONFIG), config);
    origin = await startOrigin((req, res) => {
      res.writeHead(404, { 'content-type': 'text/plain', 'cache-control': 'no-store' });
      res.end('stand-in origin: not found');
    });
    const vars = { ORIGINS: originsVar([{ name: 'primary', origin }]) };
    pipeline = await startWorker({ vars });
    baseline = await startWorker({ vars, config: BASELINE_CONFIG });
    browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: ['--headless=new', '--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'] });
    mkdirSync(ARTIFACTS, { recursive: true });
  });

  after(async () => {
    await browser?.close().catch(() => {});
    await pipeline?.stop();
    await baseline?.stop();
    await origin?.close();
    rmSync(path.join(repoRoot, BASELINE_CONFIG), { force: true });
    if (results.length) writeFileSync(path.join(ARTIFACTS, 'images.json'), `${JSON.stringify(results, null, 2)}\n`);
  });

  for (const pagePath of MEASURED_PAGES) {
    for (const width of MEASURED_WIDTHS) {
      test(`${pagePath} at ${width} px: fewer image bytes, no layout shift, no visible change`, async (t) => {
        const name = `${pagePath === '/' ? 'home' : path.basename(pagePath, '.html')}-${width}`;
        const withShot = path.join(ARTIFACTS, `${name}-pipeline.png`);
        const withoutShot = path.join(ARTIFACTS, `${name}-no-images.png`);
        const on = await measurePage(browser, pipeline.url, pagePath, width, withShot);
        const off = await measurePage(browser, baseline.url, pagePath, width, withoutShot);
        const diff = await compareScreenshots(browser, withShot, withoutShot);
        const row = { page: pagePath, width, pipeline: on, noImages: off, screenshots: diff };
        results.push(row);
        t.diagnostic(`image bytes ${off.imageBytes} -> ${on.imageBytes} (${(100 * (1 - on.imageBytes / off.imageBytes)).toFixed(1)}% less; ${on.imageTypes.join('/')}), LCP ${off.lcp} -> ${on.lcp} ms, CLS ${off.cls} -> ${on.cls}, changed pixels ${(100 * (diff.changedShare ?? 1)).toFixed(3)}%, mean difference ${diff.meanDifference?.toFixed(3)}`);
        assert.ok(on.imageTypes.includes('avif'), `AVIF served: ${on.imageTypes}`);
        assert.equal(on.cls, 0, `layout shifts with the pipeline: ${JSON.stringify(on.shifts)}`);
        if (pagePath === '/') {
          assert.ok(on.imageBytes * 2 <= off.imageBytes, `home page image bytes ${on.imageBytes}, not half of ${off.imageBytes}`);
        } else {
          assert.ok(on.imageBytes < off.imageBytes, `image bytes ${on.imageBytes} vs ${off.imageBytes}`);
        }
        assert.ok(diff.sameSize, `screenshots differ in size: ${JSON.stringify(diff.sizes)}`);
        assert.ok(diff.changedShare <= MAX_CHANGED_PIXELS, `${(100 * diff.changedShare).toFixed(3)}% of pixels changed visibly`);
      });
    }
  }
});
