import { startTemporalDevServer } from '../test/support/temporal.js';
import { execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { bundleWorkflowCode } from '@temporalio/worker';
import { WORKFLOWS_PATH } from '../worker/worker.js';

/**
 * `npm run conformance`: the official MCP conformance suite's client authorization scenarios against the broker
 * (conformance/client.ts). The suite needs Node 22: the npm package `node@22` provides it in a folder of its own
 * (.tools/conformance, git-ignored), so the service keeps running on the machine's Node 20. Scenarios the broker
 * does not claim are listed, each with its reason, in conformance/expected-failures.yaml; any other failure, or a
 * listed scenario that starts passing, fails the run.
 */
const ROOT = resolve(import.meta.dirname, '..');
const TOOLS = resolve(ROOT, '.tools', 'conformance');
const SUITE_VERSION = '0.1.16';
const NODE_VERSION = '22.23.3';
const suite = resolve(TOOLS, 'node_modules', '@modelcontextprotocol', 'conformance', 'dist', 'index.js');
const node22 = resolve(TOOLS, 'node_modules', '.bin', 'node');

if (!existsSync(suite) || !existsSync(node22)) {
  mkdirSync(TOOLS, { recursive: true });
  writeFileSync(resolve(TOOLS, 'package.json'), JSON.stringify({ name: 'conformance-tools', private: true }));
  console.error(`installing @modelcontextprotocol/conformance ${SUITE_VERSION} and node ${NODE_VERSION} into ${TOOLS}`);
  execFileSync(
    'npm',
    [
      'install',
      '--prefix',
      TOOLS,
      '--no-audit',
      '--no-fund',
      '--silent',
      `@modelcontextprotocol/conformance@${SUITE_VERSION}`,
      `node@${NODE_VERSION}`,
    ],
    { stdio: 'inherit' },
  );
}

const env = await startTemporalDevServer();
let code: number;
try {
  const bundle = await bundleWorkflowCode({
    workflowsPath: WORKFLOWS_PATH,
    logger: { log() {}, trace() {}, debug() {}, info() {}, warn() {}, error: console.error },
  });
  const bundlePath = resolve(TOOLS, 'workflow-bundle.js');
  writeFileSync(bundlePath, bundle.code);
  const runFile = resolve(TOOLS, 'run.json');
  // The embedded database: each scenario's service gets a fresh one of its own.
  writeFileSync(runFile, JSON.stringify({ temporalAddress: env.address, workflowBundlePath: bundlePath, databaseUrl: '' }));
  const output = resolve(TOOLS, 'results');
  const expected = new Set(
    readFileSync(resolve(ROOT, 'conformance', 'expected-failures.yaml'), 'utf8')
      .split('\n')
      .map((l) => /^\s*-\s*(\S+)/.exec(l)?.[1])
      .filter((x): x is string => Boolean(x)),
  );
  // One scenario at a time: each starts the whole service, and in parallel they starve each other on small machines.
  const listed = execFileSync(node22, [suite, 'list'], { encoding: 'utf8' });
  const scenarios = process.env.CONFORMANCE_SCENARIO
    ? [process.env.CONFORMANCE_SCENARIO]
    : [...listed.matchAll(/^\s*-\s*(auth\/\S+)/gm)].map((m) => m[1]!);
  const rows: { scenario: string; passed: boolean; checks: string }[] = [];
  for (const scenario of scenarios) {
    const out = await runScenario(scenario, runFile, output);
    const summary = /Passed: (\d+)\/(\d+), (\d+) failed/.exec(out);
    const passed = /OVERALL: PASSED/.test(out);
    rows.push({ scenario, passed, checks: summary ? `${summary[1]}/${summary[2]}` : '—' });
    console.log(`${passed ? 'pass' : 'FAIL'}  ${scenario}  (${summary ? `${summary[1]}/${summary[2]} checks` : 'no summary'})`);
  }
  const unexpected = rows.filter((r) => !r.passed && !expected.has(r.scenario));
  const stale = rows.filter((r) => r.passed && expected.has(r.scenario));
  console.log(
    `\n${rows.filter((r) => r.passed).length}/${rows.length} scenarios passed; expected failures: ${[...expected].join(', ') || 'none'}`,
  );
  for (const r of unexpected) console.log(`unexpected failure: ${r.scenario}`);
  for (const r of stale) console.log(`now passing, remove from conformance/expected-failures.yaml: ${r.scenario}`);
  writeFileSync(resolve(TOOLS, 'summary.json'), JSON.stringify(rows, null, 2));
  code = unexpected.length || stale.length ? 1 : 0;
} finally {
  await env.teardown();
}
process.exit(code);

/** Runs one scenario with the suite (on Node 22) and returns what it printed. */
function runScenario(scenario: string, runFile: string, output: string): Promise<string> {
  const args = [
    suite,
    'client',
    '--command',
    `${process.execPath} --import tsx ${resolve(ROOT, 'conformance', 'client.ts')}`,
    '--scenario',
    scenario,
    '--timeout',
    '120000',
    '-o',
    output,
  ];
  return new Promise((done) => {
    const child = spawn(node22, args, {
      cwd: ROOT,
      env: { ...process.env, CONFORMANCE_RUN_FILE: runFile },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let text = '';
    child.stdout.on('data', (d: Buffer) => (text += d.toString()));
    child.stderr.on('data', (d: Buffer) => (text += d.toString()));
    child.on('exit', () => done(text));
  });
}
