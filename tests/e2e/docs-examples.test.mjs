// The docs' runnable examples, run verbatim against the worker in workerd.
// A shell block in docs/**/*.md is runnable when the line before its fence
// (blank lines aside) is a marker comment saying what it must answer:
//
//   <!-- runnable: status=200; contains="purged" -->
//   ```sh
//   curl -sS -X POST "$EDGE/__cachefront/purge" ...
//   ```
//
// `status=N`: every curl in the block gets HTTP N; `exit=N`: the block's
// exit status (default 0); `contains=TEXT`: its output holds TEXT. The block
// runs in bash with EDGE and CACHEFRONT_ENDPOINT set to the worker's URL and
// CACHEFRONT_PURGE_TOKEN to its token; the block's own placeholder
// assignments of those (`EDGE=https://www.example.com`, `...`) are skipped,
// and http://127.0.0.1:8787 (the local default) becomes the worker's URL.
// `cachefront` is the CLI of this checkout (cargo run, or CACHEFRONT_BIN).
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { originsVar, repoRoot, startOrigin, startWorker } from './harness.mjs';

const TOKEN = 'docs-examples-token-0123456789';
const PLACEHOLDER_LINE = /^\s*(export\s+)?(EDGE|CACHEFRONT_PURGE_TOKEN|CACHEFRONT_ENDPOINT)=/;

/** Every runnable block: `{ file, line, code, expect }`. */
export function runnableBlocks(docsDir = path.join(repoRoot, 'docs')) {
  const files = [];
  const walk = (dir) => {
    for (const entry of readdirSync(dir, { withFileTypes: true })) {
      const full = path.join(dir, entry.name);
      if (entry.isDirectory()) walk(full);
      else if (entry.name.endsWith('.md')) files.push(full);
    }
  };
  walk(docsDir);
  const blocks = [];
  for (const file of files.sort()) {
    const lines = readFileSync(file, 'utf8').split('\n');
    for (let i = 0; i < lines.length; i++) {
      const marker = lines[i].match(/^<!--\s*runnable:(.*?)-->\s*$/);
      if (!marker) continue;
      let fence = i + 1;
      while (fence < lines.length && lines[fence].trim() === '') fence++;
      assert.match(lines[fence] ?? '', /^```(sh|bash|console)\s*$/, `${path.relative(repoRoot, file)}:${i + 1}: a runnable marker must precede a sh code block`);
      const end = lines.findIndex((l, j) => j > fence && l.startsWith('```'));
      assert.ok(end > fence, `${path.relative(repoRoot, file)}:${fence + 1}: unterminated code block`);
      blocks.push({
        file: path.relative(repoRoot, file),
        line: fence + 1,
        code: lines.slice(fence + 1, end).join('\n'),
        expect: parseExpectations(marker[1]),
      });
    }
  }
  return blocks;
}

function parseExpectations(text) {
  const expect = { status: null, exit: 0, contains: [] };
  for (const part of text.split(';').map((p) => p.trim()).filter(Boolean)) {
    const [key, ...rest] = part.split('=');
    const value = rest.join('=').trim().replace(/^"(.*)"$/, '$1');
    if (key.trim() === 'status') expect.status = Number(value);
    else if (key.trim() === 'exit') expect.exit = Number(value);
    else if (key.trim() === 'contains') expect.contains.push(value);
    else throw new Error(`unknown runnable expectation ${JSON.stringify(part)}`);
  }
  return expect;
}

function runBlock(block, edge, cwd) {
  const code = block.code
    .split('\n')
    .filter((l) => !PLACEHOLDER_LINE.test(l))
    .join('\n')
    .replaceAll('http://127.0.0.1:8787', edge);
  const script = [
    'set -eo pipefail',
    // Each response's status goes to stderr, so piping the body (| jq .) still works.
    "curl() { command curl -w '%{stderr}__STATUS__ %{http_code}\\n' \"$@\"; }",
    process.env.CACHEFRONT_BIN
      ? `cachefront() { '${process.env.CACHEFRONT_BIN}' "$@"; }`
      : `cachefront() { cargo run -q --manifest-path '${path.join(repoRoot, 'Cargo.toml')}' -p cachefront-cli -- "$@"; }`,
    code,
  ].join('\n');
  return spawnSync('bash', ['-c', script], {
    cwd,
    encoding: 'utf8',
    env: { ...process.env, EDGE: edge, CACHEFRONT_ENDPOINT: edge, CACHEFRONT_PURGE_TOKEN: TOKEN },
    timeout: 300_000,
  });
}

describe('runnable examples in docs/ answer as documented', () => {
  const blocks = runnableBlocks();
  let origin;
  let worker;
  let cwd;

  before(async () => {
    origin = await startOrigin((req, res) => {
      res.writeHead(200, { 'content-type': 'text/html', 'cache-control': 'public, max-age=60' });
      res.end('<!doctype html><title>origin</title>');
    });
    worker = await startWorker({
      vars: {
        ORIGINS: originsVar([{ name: 'primary', origin }]),
        PURGE_TOKEN: TOKEN,
        // As docs/purge.md's prefix example says to configure it.
        PURGE_PREFIX_TAGS: '/products/,/blog/',
      },
    });
    cwd = mkdtempSync(path.join(tmpdir(), 'cachefront-docs-'));
  });

  after(async () => {
    await worker?.stop();
    await origin?.close();
    if (cwd) rmSync(cwd, { recursive: true, force: true });
  });

  test('the purge, state, health and configuration pages have runnable examples', () => {
    const pages = new Set(blocks.map((b) => b.file));
    for (const page of ['docs/purge.md', 'docs/ops/disaster-recovery.md', 'docs/origins.md', 'docs/configuration.md']) {
      assert.ok(pages.has(page), `${page} has no runnable example (found: ${[...pages].join(', ')})`);
    }
  });

  for (const block of blocks) {
    test(`${block.file}:${block.line}`, () => {
      const run = runBlock(block, new URL(worker.url).origin, cwd);
      const output = `${run.stdout}${run.stderr}`;
      const where = `${block.file}:${block.line}\n${block.code}\n--- output:\n${output}`;
      assert.equal(run.status, block.expect.exit, `exit status ${run.status}: ${where}`);
      if (block.expect.status !== null) {
        const statuses = [...run.stderr.matchAll(/__STATUS__ (\d+)/g)].map((m) => Number(m[1]));
        assert.ok(statuses.length > 0, `no curl ran: ${where}`);
        for (const status of statuses) assert.equal(status, block.expect.status, where);
      }
      for (const text of block.expect.contains) assert.ok(run.stdout.includes(text), `output lacks ${JSON.stringify(text)}: ${where}`);
    });
  }
});
