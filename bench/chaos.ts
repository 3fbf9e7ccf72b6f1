import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { Connection } from '@temporalio/client';
import { bundleWorkflowCode } from '@temporalio/worker';
import { stringify as stringifyYaml } from 'yaml';
import { CALLBACK_PATH } from '../lib/config.js';
import { AuditEventSchema, CredentialSchema } from '../lib/db/entities.js';
import { fork, migrate, openOrm } from '../lib/db/orm.js';
import { isTerminal } from '../lib/domain.js';
import { SANDBOX_SCOPES, startSandbox } from '../sandbox/provider.js';
import { consent } from '../test/support/browser.js';
import { canControlPostgres, postgres, startTemporalOnFile } from '../test/support/processes.js';
import { WORKFLOWS_PATH } from '../worker/worker.js';

/**
 * `npm run chaos`: the deployed shape (an API process, a worker process, a Temporal server on a file,
 * PostgreSQL, and a real oidc-provider that rotates refresh tokens with no grace period) with N credentials
 * authorized through the real consent flow, then random faults for a bounded time: worker and API SIGKILL,
 * Temporal stop and start, a PostgreSQL restart and a 10 s stop, provider 503 windows. Agents read their tokens
 * all along. After a settle phase it prints what survived, what was lost and why, refresh-token reuses, audit
 * rows lost, and read availability per fault. It exits 1 on a credential lost other than in the documented
 * worker-death window, a refresh-token reuse not caused by a worker's death, or a lost audit row.
 *
 * CHAOS_CREDENTIALS (60), CHAOS_SECONDS (480), CHAOS_SETTLE_SECONDS (120), CHAOS_ACCESS_TTL_SECONDS (30),
 * CHAOS_GRACE_SECONDS (0: the provider keeps a rotated refresh token valid this long), DATABASE_URL (the
 * PostgreSQL server to use; a fresh database is made on it), CHAOS_SEED (the fault order).
 */
const N = Number(process.env.CHAOS_CREDENTIALS ?? 60);
const SECONDS = Number(process.env.CHAOS_SECONDS ?? 480);
const SETTLE = Number(process.env.CHAOS_SETTLE_SECONDS ?? 120);
const ACCESS_TTL = Number(process.env.CHAOS_ACCESS_TTL_SECONDS ?? 30);
const GRACE = Number(process.env.CHAOS_GRACE_SECONDS ?? 0);
/** How long the provider's answer takes to come back after it acted (the window a worker can die in). */
const LATENCY_MS = Number(process.env.CHAOS_PROVIDER_LATENCY_MS ?? 150);
const SEED = Number(process.env.CHAOS_SEED ?? Date.now() % 2147483646) + 1;
/** A small seeded generator (Park–Miller); faults and sampling draw from separate ones, so a seed fixes the faults. */
function generator(seed: number): () => number {
  let x = seed;
  const next = () => (x = (x * 48271) % 2147483647) / 2147483647;
  for (let i = 0; i < 10; i++) next();
  return next;
}
const random = generator(SEED);
const sample = generator(SEED + 7919);
const adminUrl = process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test';

type Fault = 'worker_kill' | 'api_kill' | 'temporal_restart' | 'postgres_restart' | 'postgres_stop_10s' | 'provider_503';
const FAULTS: Fault[] = ['worker_kill', 'api_kill', 'temporal_restart', 'postgres_restart', 'postgres_stop_10s', 'provider_503'];
const faultLog: { fault: Fault; from: number; to: number; refreshesInFlight?: number }[] = [];
let currentFault: Fault | 'none' = 'none';

const work = mkdtempSync(join(tmpdir(), 'broker-chaos-'));
const log = (msg: string) => console.log(`[chaos ${((Date.now() - started) / 1000).toFixed(0).padStart(4)} s] ${msg}`);
const started = Date.now();

// PostgreSQL: a fresh database on the given server, and the local cluster's controls for the faults.
const canRestartPostgres = canControlPostgres(adminUrl);
const dbName = `broker_chaos_${process.pid}`;
const databaseUrl = (() => {
  const u = new URL(adminUrl);
  u.pathname = `/${dbName}`;
  return u.href;
})();
await adminSql(`create database ${dbName}`);
const orm = await openOrm({ databaseUrl, dataDir: work });
await migrate(orm);

// The provider, behind a proxy that counts every refresh token presented twice and can answer 503.
const apiPort = await freePort();
const redirectUri = `http://127.0.0.1:${apiPort}${CALLBACK_PATH}`;
const sandbox = await startSandbox({ redirectUris: [redirectUri], accessTokenTtlSeconds: ACCESS_TTL });
const tokenProxy = await startTokenProxy(`${sandbox.issuer}/token`);

// Temporal on a file, so a restart keeps every workflow.
const temporalPort = await freePort();
const temporalDb = join(work, 'temporal.db');
let temporal = startTemporal();
await waitFor(async () => {
  const connection = await Connection.connect({ address: `127.0.0.1:${temporalPort}`, connectTimeout: 1000 });
  await connection.close();
  return true;
}, 60);

const bundlePath = join(work, 'workflow-bundle.js');
writeFileSync(
  bundlePath,
  (
    await bundleWorkflowCode({
      workflowsPath: WORKFLOWS_PATH,
      logger: { log() {}, trace() {}, debug() {}, info() {}, warn() {}, error: (m: string) => console.error(m) },
    })
  ).code,
);
const toolsFile = join(work, 'tools.yaml');
writeFileSync(
  toolsFile,
  stringifyYaml({
    tools: [
      {
        id: 'sandbox',
        tool_type: 'api',
        connection_params: { type: 'http', url: sandbox.issuer },
        auth: {
          type: 'oauth2',
          issuer: sandbox.issuer,
          token_url: tokenProxy.url,
          client_id: sandbox.clientId,
          client_secret: sandbox.clientSecret,
          scopes: SANDBOX_SCOPES,
        },
      },
    ],
  }),
);
const env: Record<string, string> = {
  DEVELOPMENT_MODE: 'true',
  PORT: String(apiPort),
  DATA_DIR: work,
  DATABASE_URL: databaseUrl,
  TEMPORAL_ADDRESS: `127.0.0.1:${temporalPort}`,
  TEMPORAL_TASK_QUEUE: 'chaos',
  OAUTH_TOOL_REDIRECT_URI: redirectUri,
  CREDENTIALS_ENCRYPTION_KEY: `chaos:${randomBytes(32).toString('base64')}`,
  TOOLS_CONFIG: toolsFile,
  WORKFLOW_BUNDLE_PATH: bundlePath,
  WORKER_METRICS_PORT: '0',
  REFRESH_SKEW_SECONDS: String(Math.max(2, Math.floor(ACCESS_TTL / 2))),
  RATE_LIMIT_IP_PER_MINUTE: '10000000',
  RATE_LIMIT_AGENT_PER_MINUTE: '10000000',
  RATE_LIMIT_CALLBACK_IP_PER_MINUTE: '10000000',
  LOG_LEVEL: 'warn',
};

// The two processes of the deployment, restarted by this supervisor whenever they die.
const processes: Record<'api' | 'worker', { child: ChildProcess | null; down: boolean }> = {
  api: { child: null, down: false },
  worker: { child: null, down: false },
};
function launch(name: 'api' | 'worker'): void {
  const child = spawn(process.execPath, ['--import', 'tsx', name === 'api' ? 'api/main.ts' : 'worker/main.ts'], {
    env: { ...process.env, ...env },
    stdio: ['ignore', 'ignore', 'ignore'],
  });
  processes[name].child = child;
  child.once('exit', () => {
    if (processes[name].child === child) processes[name].child = null;
  });
}
let supervising = true;
const supervisor = (async () => {
  while (supervising) {
    for (const name of ['api', 'worker'] as const) if (!processes[name].child && !processes[name].down) launch(name);
    await sleep(500);
  }
})();
const base = `http://127.0.0.1:${apiPort}`;
await waitFor(async () => (await fetch(`${base}/readyz`).catch(() => null))?.status === 200, 60);
log(
  `deployed: API ${base}, worker, Temporal 127.0.0.1:${temporalPort} (file), PostgreSQL ${dbName}, provider ${sandbox.issuer} (access tokens ${ACCESS_TTL} s, rotating, grace ${GRACE} s, answers ${LATENCY_MS} ms after acting)`,
);

// N credentials, each through the real consent flow.
const owners = Array.from({ length: N }, (_, i) => ({ agent: `chaos-agent-${i % 5}`, user: `chaos-user-${i}@example.com` }));
const call = (method: string, who: { agent: string; user: string }, body?: unknown) =>
  fetch(`${base}/api/v1/credentials/sandbox`, {
    method,
    headers: { 'x-agent-id': who.agent, 'x-user-id': who.user, ...(body ? { 'content-type': 'application/json' } : {}) },
    ...(body ? { body: JSON.stringify(body) } : {}),
    signal: AbortSignal.timeout(10_000),
  });
for (let i = 0; i < N; i += 5) {
  await Promise.all(
    owners.slice(i, i + 5).map(async (who) => {
      const first = (await (await call('POST', who)).json()) as { authorization_url: string };
      const page = await consent(first.authorization_url, redirectUri, { login: who.user });
      if (page.status !== 200) throw new Error(`consent for ${who.user} answered ${page.status}`);
    }),
  );
}
log(`${N} credentials authorized through the consent flow`);

// Agents read their tokens all along: every answer is timed and filed under the fault of the moment.
interface Read {
  at: number;
  ms: number;
  status: number;
  fault: Fault | 'none';
}
const reads = new Map<string, Read[]>(owners.map((o) => [o.user, []]));
const served = new Map<string, number>(owners.map((o) => [o.user, 0]));
let invalidServed = 0;
let reading = true;
const readers = owners.map(async (who, i) => {
  await sleep((i * 1500) / N);
  while (reading) {
    const at = Date.now();
    const fault = currentFault;
    let status: number;
    try {
      const res = await call('POST', who);
      status = res.status;
      // The credential is gone and needs the user again: an agent would show the link, not read on.
      if (status === 202) {
        reads.get(who.user)!.push({ at, ms: Date.now() - at, status, fault });
        break;
      }
      const body = (await res.json().catch(() => ({}))) as { access_token?: string };
      if (status === 200) {
        served.set(who.user, served.get(who.user)! + 1);
        // Now and then, ask the provider whether what we served is really valid.
        if (sample() < 0.05 && body.access_token && !(await introspect(body.access_token))) invalidServed++;
      }
    } catch {
      status = 0;
    }
    reads.get(who.user)!.push({ at, ms: Date.now() - at, status, fault });
    await sleep(1500);
  }
});

// Faults, one at a time, at random.
const faultsEnd = Date.now() + SECONDS * 1000;
const available = FAULTS.filter((f) => canRestartPostgres || !f.startsWith('postgres'));
const bag: Fault[] = [];
while (Date.now() < faultsEnd) {
  await sleep(8_000 + random() * 12_000);
  if (Date.now() >= faultsEnd) break;
  // Every kind of fault comes once per round, in a random order.
  if (!bag.length) bag.push(...shuffle(available));
  const fault = bag.pop()!;
  const entry: (typeof faultLog)[number] = { fault, from: Date.now(), to: 0 };
  currentFault = fault;
  switch (fault) {
    case 'worker_kill':
      entry.refreshesInFlight = tokenProxy.inFlight;
      await kill('worker', 1_000 + random() * 2_000);
      break;
    case 'api_kill':
      await kill('api', 1_000);
      break;
    case 'temporal_restart': {
      const exited = new Promise((r) => temporal.once('exit', r));
      temporal.kill('SIGTERM');
      await exited;
      await sleep(3_000);
      temporal = startTemporal();
      await sleep(3_000);
      break;
    }
    case 'postgres_restart':
      postgres('stop');
      postgres('start');
      await sleep(2_000);
      break;
    case 'postgres_stop_10s':
      postgres('stop');
      await sleep(10_000);
      postgres('start');
      await sleep(2_000);
      break;
    case 'provider_503':
      tokenProxy.failing = true;
      await sleep(20_000);
      tokenProxy.failing = false;
      break;
  }
  // The fault lasts until the deployment answers as ready again (database and Temporal reachable).
  await waitFor(async () => (await fetch(`${base}/readyz`, { signal: AbortSignal.timeout(2_000) }).catch(() => null))?.status === 200, 120);
  if (fault === 'worker_kill') await sleep(3_000);
  entry.to = Date.now();
  currentFault = 'none';
  faultLog.push(entry);
  log(`${fault}${entry.refreshesInFlight !== undefined ? ` (refreshes at the provider: ${entry.refreshesInFlight})` : ''}`);
}

// Settle: everything up, then wait for every credential to be active again (or for good reasons not).
log('faults over; settling');
const settleEnd = Date.now() + SETTLE * 1000;
while (Date.now() < settleEnd) {
  // Settled: each original credential is active, or has ended (and says why).
  const firsts = await Promise.all(
    owners.map((who) => fork(orm).findOne(CredentialSchema, { agentId: who.agent, userId: who.user }, { orderBy: { createdAt: 'asc' } })),
  );
  if (firsts.every((c) => c && (c.status === 'active' || isTerminal(c.status)))) break;
  await sleep(2_000);
}
// A last full refresh cycle after the settle, so every survivor has refreshed at least once since the faults.
await sleep(Math.min(ACCESS_TTL, 30) * 1000);
reading = false;
await Promise.all(readers);

// Results: each owner's first credential, the one authorized before the faults, survived or not (a later row
// is a new authorization its agent started after losing it).
const finals = await Promise.all(
  owners.map(async (who) => {
    const first = await fork(orm).findOne(CredentialSchema, { agentId: who.agent, userId: who.user }, { orderBy: { createdAt: 'asc' } });
    return { who, status: first?.status ?? 'missing', end_reason: first?.endReason ?? null };
  }),
);
const active = finals.filter((f) => f.status === 'active');
const lost = finals.filter((f) => f.status !== 'active');
const byCause = new Map<string, number>();
for (const l of lost)
  byCause.set(`${l.status}: ${l.end_reason ?? 'unknown'}`, (byCause.get(`${l.status}: ${l.end_reason ?? 'unknown'}`) ?? 0) + 1);
const windowLosses = lost.filter((l) => l.end_reason === 'refresh_interrupted').length;
const otherLosses = lost.length - windowLosses;

// Audit: every 200 the agents received has its credential.issued row.
const em = fork(orm);
let auditLost = 0;
for (const who of owners) {
  const rows = await em.count(AuditEventSchema, { agentId: who.agent, userId: who.user, eventType: 'credential.issued' });
  auditLost += Math.max(0, served.get(who.user)! - rows);
}
const refreshesDone = await em.count(AuditEventSchema, {
  agentId: { $like: 'chaos-agent-%' },
  eventType: 'credential.refreshed',
  outcome: 'success',
});
const rows = await em.find(CredentialSchema, { agentId: { $like: 'chaos-agent-%' } }, { fields: ['tokenGeneration'] });

// Reuses: each attributed to the last fault that began before it.
const reuseCauses = tokenProxy.reuses.map((at) => [...faultLog].reverse().find((f) => f.from <= at)?.fault ?? 'none');
const unexplainedReuses = reuseCauses.filter((c) => c !== 'worker_kill').length;

console.log('\n[chaos] results');
console.log(`  seed           : ${SEED - 1}`);
console.log(
  `  duration       : ${SECONDS} s of faults (${faultLog.length}: ${summarize(faultLog.map((f) => f.fault))}), settle ≤ ${SETTLE} s`,
);
console.log(
  `  credentials    : ${active.length} / ${N} active at the end; ${lost.length} lost${lost.length ? ` (${[...byCause].map(([k, v]) => `${v} × ${k}`).join('; ')})` : ''}`,
);
console.log(
  `  refreshes      : ${refreshesDone} succeeded (generations ${Math.min(...rows.map((r) => r.tokenGeneration))}–${Math.max(...rows.map((r) => r.tokenGeneration))})`,
);
const killsInFlight = faultLog.filter((f) => f.fault === 'worker_kill' && (f.refreshesInFlight ?? 0) > 0).length;
console.log(
  `  worker deaths  : ${faultLog.filter((f) => f.fault === 'worker_kill').length} kills, ${killsInFlight} with a refresh at the provider; ${windowLosses} credentials lost in that window (grace ${GRACE} s)`,
);
console.log(
  `  token reuses   : ${tokenProxy.reuses.length} refresh tokens presented again${reuseCauses.length ? ` (after: ${summarize(reuseCauses)})` : ''}; ${tokenProxy.graceAnswers} answered within the grace period`,
);
console.log(`  audit rows lost: ${auditLost} (of ${[...served.values()].reduce((a, b) => a + b, 0)} tokens served)`);
console.log(`  invalid served : ${invalidServed} tokens the provider did not know (sampled 1 in 20)`);
console.log(
  `  reads by fault   ${'fault'.padEnd(18)} ${'reads'.padStart(6)} ${'200'.padStart(7)} ${'≤ 1 s'.padStart(7)} ${'p99'.padStart(8)} ${'slowest'.padStart(9)}`,
);
const allReads = [...reads.values()].flat();
for (const fault of ['none', ...FAULTS] as const) {
  const rs = allReads.filter((r) => r.fault === fault);
  if (!rs.length) continue;
  const ok = rs.filter((r) => r.status === 200).length;
  const fast = rs.filter((r) => r.status !== 0 && r.ms <= 1000).length;
  console.log(
    `                   ${fault.padEnd(18)} ${String(rs.length).padStart(6)} ${pct(ok / rs.length).padStart(7)} ${pct(fast / rs.length).padStart(7)} ${`${percentile(
      rs.map((r) => r.ms),
      0.99,
    )} ms`.padStart(8)} ${String(Math.max(...rs.map((r) => r.ms))).padStart(6)} ms`,
  );
}
let longest = 0;
for (const rs of reads.values()) {
  let runStart: number | null = null;
  for (const r of rs) {
    if (r.status !== 200) runStart ??= r.at;
    else if (runStart !== null) {
      longest = Math.max(longest, r.at - runStart);
      runStart = null;
    }
  }
}
console.log(`  longest run of failed reads for one credential: ${(longest / 1000).toFixed(1)} s`);
mkdirSync(resolve('data', 'bench'), { recursive: true });
writeFileSync(
  resolve('data', 'bench', 'chaos.json'),
  `${JSON.stringify({ N, SECONDS, GRACE, active: active.length, lost: Object.fromEntries(byCause), reuses: tokenProxy.reuses.length, reuseCauses, auditLost, invalidServed, faults: faultLog, longestFailedRunMs: longest }, null, 2)}\n`,
);

// Tear down.
supervising = false;
await supervisor;
for (const p of Object.values(processes)) p.child?.kill('SIGTERM');
await sleep(1_000);
for (const p of Object.values(processes)) p.child?.kill('SIGKILL');
temporal.kill('SIGKILL');
await tokenProxy.close();
await sandbox.close();
await orm.close();
postgres('start');
await adminSql(`drop database if exists ${dbName} with (force)`).catch(() => {});

const failures = [
  ...(otherLosses ? [`${otherLosses} credentials lost outside the worker-death window`] : []),
  ...(unexplainedReuses ? [`${unexplainedReuses} refresh-token reuses not caused by a worker's death`] : []),
  ...(auditLost ? [`${auditLost} audit rows lost`] : []),
];
console.log(failures.length ? `\n[chaos] FAILED: ${failures.join('; ')}` : '\n[chaos] passed');
process.exit(failures.length ? 1 : 0);

// Helpers.

async function kill(name: 'api' | 'worker', downMs: number): Promise<void> {
  processes[name].down = true;
  const child = processes[name].child;
  if (child && child.exitCode === null) {
    const exited = new Promise((r) => child.once('exit', r));
    child.kill('SIGKILL');
    await exited;
  }
  await sleep(downMs);
  processes[name].down = false;
}

function startTemporal(): ChildProcess {
  return startTemporalOnFile(temporalPort, temporalDb);
}

async function introspect(token: string): Promise<boolean> {
  const res = await fetch(`${sandbox.issuer}/token/introspection`, {
    method: 'POST',
    headers: {
      authorization: `Basic ${Buffer.from(`${sandbox.clientId}:${sandbox.clientSecret}`).toString('base64')}`,
      'content-type': 'application/x-www-form-urlencoded',
    },
    body: new URLSearchParams({ token }),
  });
  return ((await res.json()) as { active: boolean }).active;
}

/**
 * In front of the provider's token endpoint: forwards, counts a refresh token presented again after it was
 * exchanged (a reuse: the provider revokes the grant), can emulate a provider's grace period (the previous
 * refresh token still answers, with the same new tokens, for GRACE seconds), and can answer 503 for a while.
 */
async function startTokenProxy(target: string) {
  const exchanged = new Map<string, { at: number; status: number; body: string; type: string }>();
  const state = { failing: false, inFlight: 0, reuses: [] as number[], graceAnswers: 0 };
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', async () => {
      const body = Buffer.concat(chunks).toString('utf8');
      if (state.failing) {
        res.writeHead(503, { 'content-type': 'application/json', 'retry-after': '2' }).end('{"error":"temporarily_unavailable"}');
        return;
      }
      const rt = new URLSearchParams(body).get('grant_type') === 'refresh_token' ? new URLSearchParams(body).get('refresh_token') : null;
      const before = rt ? exchanged.get(rt) : undefined;
      if (before) {
        if (GRACE > 0 && Date.now() - before.at <= GRACE * 1000) {
          state.graceAnswers++;
          res.writeHead(before.status, { 'content-type': before.type }).end(before.body);
          return;
        }
        state.reuses.push(Date.now());
      }
      state.inFlight++;
      try {
        const headers: Record<string, string> = {};
        for (const [k, v] of Object.entries(req.headers))
          if (typeof v === 'string' && k !== 'host' && k !== 'content-length') headers[k] = v;
        const upstream = await fetch(target, { method: 'POST', headers, body });
        const text = await upstream.text();
        const type = upstream.headers.get('content-type') ?? 'application/json';
        if (rt && upstream.status === 200) exchanged.set(rt, { at: Date.now(), status: 200, body: text, type });
        // The provider has acted (a refresh token is rotated); its answer is still on its way.
        await sleep(LATENCY_MS);
        res.writeHead(upstream.status, { 'content-type': type }).end(text);
      } catch {
        res.writeHead(502).end();
      } finally {
        state.inFlight--;
      }
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return Object.assign(state, {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/token`,
    close: () =>
      new Promise<void>((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  });
}

async function adminSql(sql: string): Promise<void> {
  const admin = await openOrm({ databaseUrl: adminUrl, dataDir: work });
  try {
    await admin.em.getConnection().execute(sql);
  } finally {
    await admin.close();
  }
}

async function waitFor(check: () => Promise<boolean>, seconds: number): Promise<void> {
  const end = Date.now() + seconds * 1000;
  while (Date.now() < end) {
    if (await check().catch(() => false)) return;
    await sleep(500);
  }
  throw new Error('timed out waiting for the deployment to come up');
}

function freePort(): Promise<number> {
  return new Promise((r) => {
    const s = createServer();
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as AddressInfo;
      s.close(() => r(port));
    });
  });
}

function shuffle<T>(items: T[]): T[] {
  const out = [...items];
  for (let i = out.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [out[i], out[j]] = [out[j]!, out[i]!];
  }
  return out;
}

function summarize(items: string[]): string {
  const counts = new Map<string, number>();
  for (const i of items) counts.set(i, (counts.get(i) ?? 0) + 1);
  return [...counts].map(([k, v]) => `${v} ${k}`).join(', ');
}

function percentile(values: number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))]!;
}

function pct(x: number): string {
  return `${(x * 100).toFixed(1)}%`;
}
