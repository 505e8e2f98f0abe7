// The public HTTP cache test suite (https://cache-tests.fyi, npm package
// `http-cache-tests`) against the worker in workerd: the suite's own origin
// server on loopback behind the worker, its command-line client sending every
// test through the worker. Prints the counts the suite's results page shows
// (required tests passed/failed, optimal, checks, harness/setup/dependency
// failures) and lists the failed required tests by id.
//
// Usage: node benches/conformance/run.mjs [--suite DIR] [--json results.json]
//          [--var NAME=VALUE]...   (extra worker variables, e.g. CACHE_SERVER_ERRORS=explicit)
//          [--baseline FILE | --write-baseline FILE]
//
// As a gate (scripts/test.sh): `--baseline benches/conformance/baseline.json`
// fails the run when a test id that passed in the committed baseline does not
// pass now. The suite's client is load-sensitive (its own timeouts), so each
// such id is first run once more on its own against the same worker; only an
// id that fails that too is a regression. `--write-baseline` records the
// current result of every test id (commit it when a change is meant).
// Without --suite, the npm release (0.4.5, 2021; installed into
// benches/conformance/node_modules on first use). The suite has moved on
// since: to measure against its current tests, pass --suite with a checkout
// of https://github.com/http-tests/cache-tests after `npm install` in it
// (both layouts are understood).
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { freePort, startWorker } from '../../tests/e2e/harness.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const option = (name) => (process.argv.includes(name) ? process.argv[process.argv.indexOf(name) + 1] : null);
const jsonOut = option('--json');
const baselineFile = option('--baseline');
const writeBaselineFile = option('--write-baseline');
const extraVars = Object.fromEntries(
  process.argv.flatMap((arg, i) => (arg === '--var' ? [process.argv[i + 1].split(/=(.*)/s).slice(0, 2)] : [])),
);
const suiteDir = option('--suite') ? path.resolve(option('--suite')) : path.join(here, 'node_modules', 'http-cache-tests');
if (!option('--suite') && !existsSync(suiteDir)) {
  const npm = spawnSync('npm', ['ci', '--ignore-scripts', '--no-audit', '--no-fund'], { cwd: here, stdio: 'inherit' });
  if (npm.status !== 0) throw new Error('npm ci in benches/conformance failed');
}
// The npm release keeps its engine at the top; the repository under test-engine/.
const engine = existsSync(path.join(suiteDir, 'test-engine')) ? 'test-engine' : '.';
const version = JSON.parse(readFileSync(path.join(suiteDir, 'package.json'), 'utf8')).version;

const port = await freePort();
const server = spawn(process.execPath, [path.join(suiteDir, engine, 'server', 'server.mjs')], {
  env: { ...process.env, npm_config_port: String(port), npm_config_protocol: 'http', npm_config_pidfile: path.join(here, '.server.pid') },
  stdio: ['ignore', 'pipe', 'inherit'],
  detached: true,
});
await new Promise((resolve, reject) => {
  server.stdout.on('data', (d) => String(d).includes('Listening') && resolve());
  server.on('exit', (code) => reject(new Error(`suite server exited with ${code}`)));
});

const worker = await startWorker({
  vars: {
    ORIGINS: JSON.stringify([{ name: 'cache-tests', url: `http://127.0.0.1:${port}` }]),
    REQUEST_LOG: 'off',
    // The worker forwards only allow-listed request headers (docs/caching.md,
    // security model); an operator names the others their origin reads, as
    // here: the suite's client numbers its requests in `Req-Num`, which its
    // origin reads to pick the answer, and its origin varies on `Foo`, `Bar`,
    // `Baz` and `Abc`. (Unlisted, a varied field is asked for again once the
    // origin names it, which the suite counts as a retry.)
    FORWARD_REQUEST_HEADERS: 'req-num,foo,bar,baz,abc',
    ...extraVars,
  },
});
/** Runs the suite's client: every test (id ''), or one test id on its own. */
const runClient = (id) => spawnSync(process.execPath, ['--no-warnings', path.join(suiteDir, engine, 'cli.mjs')], {
  env: { ...process.env, npm_config_base: worker.url, npm_config_id: id, npm_package_config_id: id },
  encoding: 'utf8',
  maxBuffer: 64 * 1024 * 1024,
});
// The symbol the client prints for one test run on its own (after "==== Results").
const soloKind = (stdout) => {
  const after = stdout.slice(stdout.lastIndexOf('==== Results'));
  const line = after.split('\n')[1] ?? '';
  return line.split(' - ')[0].trim();
};
let results;
const retried = new Map();
try {
  const client = runClient('');
  if (client.status !== 0) throw new Error(`suite client failed: ${client.stderr}`);
  results = JSON.parse(client.stdout.slice(client.stdout.indexOf('{')));
  if (baselineFile) {
    // Ids that passed in the baseline and not now: each gets one more run, alone.
    const baseline = JSON.parse(readFileSync(baselineFile, 'utf8')).results;
    const importSuite = async (p) => (await import(pathToFileURL(path.join(suiteDir, p)).href)).default;
    // A copy: the index module's array is extended below for the report.
    const allSuites = [...(await importSuite('tests/index.mjs'))];
    if (engine === '.') allSuites.push(await importSuite('tests/surrogate-control.mjs'));
    const displayLib = await import(pathToFileURL(path.join(suiteDir, engine === '.' ? 'lib/display.mjs' : 'test-engine/lib/results.mjs')).href);
    for (const [id, kind] of Object.entries(baseline)) {
      if (kind !== 'pass') continue;
      const now = displayLib.determineTestResult(allSuites, id, results)[2];
      if (now === '✅') continue;
      retried.set(id, soloKind(runClient(id).stdout));
    }
  }
} finally {
  await worker.stop();
  try { process.kill(-server.pid, 'SIGTERM'); } catch { /* gone */ }
}
if (jsonOut) writeFileSync(jsonOut, JSON.stringify(results, null, 2));

// Classify every result the way the suite's own results page does.
const load = (p) => import(pathToFileURL(path.join(suiteDir, p)).href);
const { default: suites } = await load('tests/index.mjs');
if (engine === '.') {
  // The old CLI adds the Surrogate-Control tests to its index itself.
  const { default: surrogate } = await load('tests/surrogate-control.mjs');
  suites.push(surrogate);
}
const display = await load(engine === '.' ? 'lib/display.mjs' : 'test-engine/lib/results.mjs');
// determineTestResult answers [icon, colour, symbol]; the symbol names the kind.
const kinds = { '✅': 'pass', '⛔️': 'fail', '⚠️': 'optional_fail', Y: 'yes', N: 'no', '🔹': 'setup_fail', '⁉️': 'harness_fail', '⚪️': 'dependency_fail', '↻': 'retry', '-': 'untested' };
const byType = new Map();
const failedRequired = [];
let required = 0;
for (const suite of suites) {
  for (const t of suite.tests) {
    const name = kinds[display.determineTestResult(suites, t.id, results)[2]] ?? 'unknown';
    byType.set(name, (byType.get(name) ?? 0) + 1);
    if (t.kind === 'required' || t.kind === undefined) {
      required += 1;
      if (name !== 'pass') failedRequired.push(`${t.id} (${name}): ${t.name}`);
    }
  }
}
const count = (name) => byType.get(name) ?? 0;
console.log(`http-cache-tests ${version} (${suiteDir}) through the worker in workerd${Object.keys(extraVars).length ? `, with ${JSON.stringify(extraVars)}` : ""}`);
console.log(`required tests: ${required - failedRequired.length} of ${required} passed`);
console.log(`all results by kind: ${JSON.stringify(Object.fromEntries(byType))}`);
console.log(`failed, harness-failed or dependency-failed required tests (${failedRequired.length}):`);
for (const line of failedRequired) console.log(`  ${line}`);
process.exitCode = count('harness_fail') > 0 ? 1 : 0;

const current = {};
for (const suite of suites) {
  for (const t of suite.tests) current[t.id] = kinds[display.determineTestResult(suites, t.id, results)[2]] ?? 'unknown';
}
if (writeBaselineFile) {
  const sorted = Object.fromEntries(Object.entries(current).sort(([a], [b]) => a.localeCompare(b)));
  writeFileSync(writeBaselineFile, `${JSON.stringify({ suite: `http-cache-tests ${version}`, vars: extraVars, results: sorted }, null, 1)}\n`);
  console.log(`baseline written to ${writeBaselineFile}`);
}
if (baselineFile) {
  const baseline = JSON.parse(readFileSync(baselineFile, 'utf8')).results;
  const regressions = [];
  for (const [id, kind] of Object.entries(baseline)) {
    if (kind !== 'pass' || current[id] === 'pass') continue;
    const alone = kinds[retried.get(id)] ?? 'unknown';
    if (alone === 'pass') {
      console.log(`gate: ${id} was ${current[id]} in the full run, passed when run again on its own (load-sensitive)`);
    } else {
      regressions.push(`${id}: ${current[id]} in the full run, ${alone} on its own`);
    }
  }
  const gained = Object.keys(current).filter((id) => current[id] === 'pass' && baseline[id] !== 'pass');
  if (gained.length) console.log(`gate: passing now, not in the baseline (update it with --write-baseline): ${gained.join(', ')}`);
  if (regressions.length) {
    console.log(`gate: ${regressions.length} test(s) that passed in ${baselineFile} no longer pass:`);
    for (const line of regressions) console.log(`  ${line}`);
    process.exitCode = 1;
  } else {
    console.log(`gate: every test that passed in ${baselineFile} passes`);
  }
}
