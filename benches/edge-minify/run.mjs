// What EDGE_MINIFY_JS / EDGE_MINIFY_CSS cost on a cache miss, in workerd:
// the same origin files fetched through two Cachefront workers, one with
// edge minification on and one with it off, each request a fresh URL (a
// miss, so the transform runs every time). Reported per request: the CPU
// time the workerd process spent (user + system, from /proc; what Workers'
// CPU limit counts, give or take the runtime's own work) on each side and
// its difference, and the median wall time of each side. The CPU difference
// slightly understates the transform, since the "on" side then handles a
// smaller body; the wall difference understates it more (the smaller body
// also travels faster). A request pays this once per stored entry: hits
// serve the stored result.
//
// Usage: node benches/edge-minify/run.mjs [requests per file and side]
// (Linux: reads /proc; CPU ticks are 10 ms, so use 20+ requests.)
// Needs build/ with oxc (CACHEFRONT_WORKER_FEATURES=js-minify bash
// scripts/build-worker.sh) and npm ci.
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { gzipSync } from 'node:zlib';
import { originsVar, repoRoot, startOrigin, startWorker } from '../../tests/e2e/harness.mjs';

const requests = Number(process.argv[2] ?? 9);
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

const FILES = [
  'node_modules/react/cjs/react.production.js',
  'node_modules/underscore/underscore-umd.js',
  'node_modules/js-yaml/dist/js-yaml.cjs.js',
  'node_modules/moment/moment.js',
  'node_modules/acorn/dist/acorn.js',
  'node_modules/jquery/dist/jquery.js',
  'node_modules/lodash/lodash.js',
  'www/css/site.css',
  'node_modules/bootstrap/dist/css/bootstrap.css',
];
const bodies = new Map(FILES.map((file, i) => [`/f${i}`, readFileSync(path.join(repoRoot, file))]));

const origin = await startOrigin((req, res) => {
  const key = req.url.split('?')[0];
  const body = bodies.get(key);
  if (!body) {
    res.writeHead(404).end();
    return;
  }
  const css = FILES[Number(key.slice(2))].endsWith('.css');
  res.writeHead(200, {
    'content-type': css ? 'text/css' : 'text/javascript',
    'cache-control': 'public, max-age=600',
  });
  res.end(body);
});
const vars = {
  ORIGINS: originsVar([{ name: 'primary', origin }]),
  REQUEST_LOG: 'off',
  // Large enough for every file here; the default is 256 KiB.
  EDGE_MINIFY_MAX_BYTES: String(1024 * 1024),
};
const on = await startWorker({ vars: { ...vars, EDGE_MINIFY_JS: 'on', EDGE_MINIFY_CSS: 'on' } });
const off = await startWorker({ vars });

/** CPU seconds (user + system) of the workerd processes under a wrangler. */
function workerdCpu(worker) {
  const pids = [];
  const walk = (pid) => {
    let children = '';
    try {
      children = execFileSync('ps', ['-o', 'pid=', '--ppid', String(pid)], { encoding: 'utf8' });
    } catch {
      return; // no children
    }
    for (const child of children.split(/\s+/).filter(Boolean)) {
      pids.push(child);
      walk(child);
    }
  };
  walk(worker.pid);
  let ticks = 0;
  for (const pid of pids) {
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
      const comm = stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')'));
      if (!comm.includes('workerd')) continue;
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      ticks += Number(fields[11]) + Number(fields[12]); // utime, stime
    } catch {
      // gone
    }
  }
  return ticks / Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }));
}

async function miss(worker, key, n) {
  const started = process.hrtime.bigint();
  const res = await fetch(`${worker.url}${key}?n=${n}`);
  const body = Buffer.from(await res.arrayBuffer());
  const ms = Number(process.hrtime.bigint() - started) / 1e6;
  return { ms, body, status: res.headers.get('x-minify'), cache: res.headers.get('cache-status') };
}

try {
  // Warm both isolates (first requests compile the wasm).
  for (const w of [on, off]) for (let i = 0; i < 3; i++) await miss(w, '/f0', `warm${i}`);
  console.log(`workerd via wrangler dev; ${requests} misses per file and side, interleaved; medians\n`);
  console.log('| file | bytes | gzip out/in | CPU ms, off | CPU ms, on | CPU ms, transform | wall ms, off | wall ms, on | x-minify |');
  console.log('| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |');
  for (const [key, source] of bodies) {
    const offMs = [];
    const onMs = [];
    let offCpu = 0;
    let onCpu = 0;
    let last;
    for (let i = 0; i < requests; i++) {
      let cpu = workerdCpu(off);
      offMs.push((await miss(off, key, `off${i}`)).ms);
      offCpu += workerdCpu(off) - cpu;
      cpu = workerdCpu(on);
      last = await miss(on, key, `on${i}`);
      onCpu += workerdCpu(on) - cpu;
      onMs.push(last.ms);
    }
    const [offPer, onPer] = [(offCpu * 1e3) / requests, (onCpu * 1e3) / requests];
    const name = FILES[Number(key.slice(2))].replace('node_modules/', '');
    const gz = (gzipSync(last.body, { level: 9 }).length / gzipSync(source, { level: 9 }).length).toFixed(3);
    console.log(
      `| ${name} | ${source.length} | ${gz} | ${offPer.toFixed(1)} | ${onPer.toFixed(1)} | ${(onPer - offPer).toFixed(1)} | ${median(offMs).toFixed(1)} | ${median(onMs).toFixed(1)} | ${last.status} |`,
    );
  }
} finally {
  await on.stop();
  await off.stop();
  await origin.close();
}
