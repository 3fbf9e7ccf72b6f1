import { startTemporalDevServer } from '../test/support/temporal.js';
import type { ChildProcess } from 'node:child_process';
import { Session } from 'node:inspector/promises';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { randomUUID } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { bundleWorkflowCode, DefaultLogger, Runtime, Worker } from '@temporalio/worker';
import { secretContext } from '../lib/credentials/records.js';
import { CredentialSchema } from '../lib/db/entities.js';
import { fork } from '../lib/db/orm.js';
import { credentialWorkflowId } from '../lib/domain.js';
import { consent } from '../test/support/browser.js';
import { freshOwner, startStack, type Harness, type RunSettings } from '../test/support/stack.js';
import type { CredentialState, CredentialWorkflowInput } from '../workflows/messages.js';
import { AgentIdKey, CredentialStatusKey, ToolIdKey, UserIdKey } from '../workflows/messages.js';
import { planRefreshAt } from '../workflows/schedule.js';
import { WORKFLOWS_PATH } from '../worker/worker.js';
import { bareApp } from './bare-route.js';
import { autocannon, spawnServer } from './spawn.js';
import { gatewayBench } from './gateway.js';
import { mintRefreshTokens } from './seed.js';

/**
 * `npm run bench`: figures against baselines measured in the same run, on this machine. Sizes can be scaled
 * down with BENCH_SCALE (e.g. 0.1) for a quick look.
 */
const scale = Number(process.env.BENCH_SCALE ?? 1);
const n = (x: number) => Math.max(1, Math.round(x * scale));
const results: Record<string, unknown> = {};

Runtime.install({ logger: new DefaultLogger('WARN') });
const env = await startTemporalDevServer();
const tmp = resolve(import.meta.dirname, '..', 'data', 'bench');
mkdirSync(tmp, { recursive: true });
const bundle = await bundleWorkflowCode({ workflowsPath: WORKFLOWS_PATH, logger: quiet() });
const bundlePath = resolve(tmp, 'workflow-bundle.js');
writeFileSync(bundlePath, bundle.code);
const runSettings: RunSettings = {
  temporalAddress: env.address,
  workflowBundlePath: bundlePath,
  databaseUrl: process.env.DATABASE_URL ?? '',
};
console.log(`database: ${runSettings.databaseUrl ? 'PostgreSQL' : 'SQLite'}; scale ${scale}`);

const only = process.env.BENCH_ONLY?.split(',');
const selected = (name: string) => !only || only.includes(name);
try {
  if (selected('token')) await tokenFetch();
  if (selected('completion')) await authorizationCompletion();
  if (selected('storm')) await refreshStorm();
  if (selected('scale')) await liveWorkflows();
  if (selected('history')) await historyBound();
  if (selected('gateway')) results.gateway = await gatewayBench(runSettings, scale);
} finally {
  await env.teardown();
}
writeFileSync(resolve(tmp, 'results.json'), `${JSON.stringify(results, null, 2)}\n`);
console.log(`\nresults written to data/bench/results.json`);
process.exit(0);

// 1. The agent's hot path against a bare Express route returning constant JSON, measured twice: with the API
// in this process beside the worker and the sandbox (the `npm start` shape), and with the API and the bare
// route each in a process of their own (the deployed shape: docker-compose runs the API apart from the worker).
async function tokenFetch(): Promise<void> {
  const limits = { RATE_LIMIT_IP_PER_MINUTE: '100000000', RATE_LIMIT_AGENT_PER_MINUTE: '100000000', LOG_LEVEL: 'warn' };
  const h = await startStack(runSettings, { env: limits });
  h.services.log.level = 'warn';
  const children: ChildProcess[] = [];
  try {
    const who = freshOwner('bench');
    const first = await h.call('POST', '/api/v1/credentials/sandbox', who);
    await h.consent(first.json.authorization_url, { login: who.user });
    const bareServer = createServer(bareApp());
    await new Promise<void>((r) => bareServer.listen(0, '127.0.0.1', r));
    const barePort = (bareServer.address() as AddressInfo).port;
    const headers = { 'x-agent-id': who.agent, 'x-user-id': who.user };
    const seconds = Math.max(3, Math.round(10 * scale));
    const cannon = (url: string, extra: Record<string, string>) => autocannon(url, { seconds, method: 'POST', headers: extra });
    const inProcess = {
      baseline: await profiled('bare-route', () => cannon(`http://127.0.0.1:${barePort}/bare`, {})),
      broker: await profiled('token-fetch', () => cannon(`${h.baseUrl}/api/v1/credentials/sandbox`, headers)),
    };
    bareServer.close();

    const bareChild = await spawnServer(['bench/bare-route.ts'], {}, children);
    const apiChild = await spawnServer(['api/main.ts'], { ...h.workerEnv, ...limits }, children);
    const separate = {
      baseline: await cannon(`${bareChild}/bare`, {}),
      broker: await cannon(`${apiChild}/api/v1/credentials/sandbox`, headers),
    };
    results.tokenFetch = {
      inProcess: { ...inProcess, throughputRatio: round(inProcess.broker.rps / inProcess.baseline.rps) },
      separateProcesses: { ...separate, throughputRatio: round(separate.broker.rps / separate.baseline.rps) },
    };
    console.log(`\n[token fetch] 32 connections, ${seconds} s each`);
    for (const [label, m] of [
      ['API in its own process (deployed shape)', separate],
      ['API beside worker and sandbox (npm start)', inProcess],
    ] as const) {
      console.log(`  ${label}`);
      console.log(`    bare route : ${round(m.baseline.rps)} req/s, p50 ${m.baseline.p50} ms, p99 ${m.baseline.p99} ms`);
      console.log(
        `    broker     : ${round(m.broker.rps)} req/s, p50 ${m.broker.p50} ms, p99 ${m.broker.p99} ms (non-2xx ${m.broker.non2xx}, errors ${m.broker.errors})`,
      );
      console.log(`    ratio      : ${pct(m.broker.rps / m.baseline.rps)} of the bare route's throughput (target ≥ 60%)`);
    }
  } finally {
    for (const child of children) child.kill('SIGTERM');
    await Promise.all(children.filter((c) => c.exitCode === null).map((c) => new Promise((r) => c.once('exit', r))));
    await h.close();
  }
}

/** With BENCH_PROFILE=<dir>, a CPU profile of this process while `work` runs (open it in Chrome DevTools). */
async function profiled<T>(name: string, work: () => Promise<T>): Promise<T> {
  const dir = process.env.BENCH_PROFILE;
  if (!dir) return work();
  const session = new Session();
  session.connect();
  await session.post('Profiler.enable');
  await session.post('Profiler.start');
  try {
    return await work();
  } finally {
    const { profile } = await session.post('Profiler.stop');
    mkdirSync(dir, { recursive: true });
    writeFileSync(resolve(dir, `${name}.cpuprofile`), JSON.stringify(profile));
    session.disconnect();
  }
}

// 2. Callback received → active and visible to a waiting agent, against a bare signal → activity → completion.
async function authorizationCompletion(): Promise<void> {
  const h = await startStack(runSettings, { env: { RATE_LIMIT_CALLBACK_IP_PER_MINUTE: '100000', LOG_LEVEL: 'warn' } });
  h.services.log.level = 'warn';
  const count = n(40);
  try {
    const broker: number[] = [];
    for (let i = 0; i < count; i++) {
      const who = freshOwner(`complete-${i}`);
      const first = await h.call('POST', '/api/v1/credentials/sandbox', who);
      const page = await consent(first.json.authorization_url, h.callbackPrefix, { login: who.user, stopAtCallback: true });
      const waiting = h.call('GET', '/api/v1/credentials/sandbox?wait=30', who);
      await sleep(20);
      const t0 = performance.now();
      const callback = fetch(page.callbackUrl);
      const waited = await waiting;
      broker.push(performance.now() - t0);
      await (await callback).text();
      if (waited.json.status !== 'active') throw new Error(`authorization ${i} ended ${waited.json.status}`);
    }
    const baseBundle = await bundleWorkflowCode({ workflowsPath: resolve(import.meta.dirname, 'workflows.ts'), logger: quiet() });
    const taskQueue = `bench-baseline-${randomUUID()}`;
    const worker = await Worker.create({
      connection: env.nativeConnection,
      taskQueue,
      workflowBundle: { code: baseBundle.code },
      activities: { noop: async () => {} },
    });
    const baseline: number[] = [];
    await worker.runUntil(async () => {
      for (let i = 0; i < count; i++) {
        const handle = await env.client.workflow.start('signalThenActivity', { taskQueue, workflowId: `baseline-${randomUUID()}` });
        await sleep(20);
        const t0 = performance.now();
        await handle.signal('go');
        await handle.result();
        baseline.push(performance.now() - t0);
      }
    });
    const b = stats(broker);
    const s = stats(baseline);
    results.authorizationCompletion = { count, broker: b, baseline: s, p50Ratio: round(b.p50 / s.p50), p99Ratio: round(b.p99 / s.p99) };
    console.log(`\n[authorization completion] ${count} authorizations, callback → active seen by a waiting agent`);
    console.log(`  baseline (signal → activity → completion): p50 ${s.p50} ms, p99 ${s.p99} ms`);
    console.log(`  broker (callback → code exchange → active): p50 ${b.p50} ms, p99 ${b.p99} ms`);
    console.log(`  ratio      : ${round(b.p50 / s.p50)}× the baseline at p50, ${round(b.p99 / s.p99)}× at p99`);
  } finally {
    await h.close();
  }
}

// 3. A refresh storm: many credentials whose access tokens expire within the same minute.
async function refreshStorm(): Promise<void> {
  const skewSeconds = 60;
  const h = await startStack(runSettings, { refreshSkewSeconds: skewSeconds, env: { LOG_LEVEL: 'warn' } });
  h.services.log.level = 'warn';
  const farFuture = Date.now() + 24 * 3600_000;
  try {
    // The storm: credentials whose access tokens all expire within the same minute.
    const stormSize = n(1000);
    const stormAgent = `bench-storm-${randomUUID().slice(0, 8)}`;
    const accounts = Array.from({ length: stormSize }, (_, i) => `storm-${i}`);
    const refreshTokens = await mintRefreshTokens(h.sandbox, accounts);
    const stormStart = Date.now();
    const expiries: Map<string, number> = new Map();
    await pool(stormSize, 32, async (i) => {
      const owner = { agentId: stormAgent, userId: accounts[i]!, toolId: 'sandbox' };
      const credentialId = randomUUID();
      const expiresAt = stormStart + 90_000 + Math.floor(Math.random() * 60_000);
      expiries.set(credentialId, expiresAt);
      const acquiredAt = expiresAt - 3600_000;
      const em = fork(h.services.orm);
      const now = new Date();
      em.create(CredentialSchema, {
        id: credentialId,
        ...owner,
        workflowId: credentialWorkflowId(owner),
        status: 'active',
        accessToken: h.services.vault.encrypt('expired-placeholder', secretContext(owner, credentialId, 'access_token')),
        refreshToken: h.services.vault.encrypt(refreshTokens[i]!, secretContext(owner, credentialId, 'refresh_token')),
        tokenType: 'bearer',
        scope: 'tools.read tools.write',
        accessExpiresAt: new Date(expiresAt),
        acquiredAt: new Date(acquiredAt),
        ttlExpiresAt: new Date(farFuture),
        tokenGeneration: 1,
        createdAt: now,
        updatedAt: now,
      });
      await em.flush();
      const state = sleepingState(credentialId, farFuture);
      Object.assign(state, {
        accessExpiresAt: expiresAt,
        acquiredAt,
        hasRefreshToken: true,
        refreshAt: planRefreshAt({ acquiredAt, accessExpiresAt: expiresAt, skewMs: skewSeconds * 1000, random: Math.random() }),
      });
      await startActive(h, owner, state);
    });
    console.log(
      `\n[refresh storm] ${stormSize} credentials expiring between +90 s and +150 s (skew ${skewSeconds} s, 20% jitter); waiting…`,
    );
    await waitUntil(
      async () => (await fork(h.services.orm).count(CredentialSchema, { agentId: stormAgent, tokenGeneration: { $gte: 2 } })) >= stormSize,
      240_000,
    );
    const rows = await fork(h.services.orm).find(CredentialSchema, { agentId: stormAgent });
    const leads = rows.map((r) => (expiries.get(r.id)! - r.lastRefreshedAt!.getTime()) / 1000);
    const refreshTimes = rows.map((r) => (r.lastRefreshedAt!.getTime() - stormStart) / 1000);
    const late = leads.filter((l) => l <= 0).length;
    const l = stats(leads);
    const t = stats(refreshTimes);
    results.refreshStorm = {
      credentials: stormSize,
      refreshedBeforeExpiry: stormSize - late,
      late,
      secondsBeforeExpiry: l,
      refreshedAtSecondsAfterStart: t,
    };
    console.log(`  refreshed before expiry: ${stormSize - late}/${stormSize}`);
    console.log(`  seconds before expiry: min ${l.min}, p50 ${l.p50}, max ${l.max}`);
    console.log(`  refresh times spread from +${t.min} s to +${t.max} s after the storm began (p50 +${t.p50} s)`);
  } finally {
    await h.close();
  }
}

// 4. Thousands of live credential workflows on one worker: what they cost it.
async function liveWorkflows(): Promise<void> {
  const h = await startStack(runSettings, { env: { LOG_LEVEL: 'warn' } });
  h.services.log.level = 'warn';
  try {
    const live = n(10_000);
    const scaleAgent = `bench-scale-${randomUUID().slice(0, 8)}`;
    global.gc?.();
    const before = process.memoryUsage();
    const farFuture = Date.now() + 24 * 3600_000;
    const t0 = performance.now();
    await pool(live, 64, async (i) => {
      const owner = { agentId: scaleAgent, userId: `user-${i}`, toolId: 'sandbox' };
      await startActive(h, owner, sleepingState(randomUUID(), farFuture));
    });
    const startSeconds = (performance.now() - t0) / 1000;
    await waitUntil(async () => (await countRunning(h, scaleAgent)) >= live, 300_000);
    await sleep(2000);
    global.gc?.();
    const after = process.memoryUsage();
    const perWorkflowKb = (after.rss - before.rss) / live / 1024;
    results.scale = {
      liveWorkflows: live,
      startSeconds: round(startSeconds),
      rssBeforeMb: mb(before.rss),
      rssAfterMb: mb(after.rss),
      heapBeforeMb: mb(before.heapUsed),
      heapAfterMb: mb(after.heapUsed),
      rssPerWorkflowKb: round(perWorkflowKb),
    };
    console.log(`\n[scale] ${live} live credential workflows on one worker (API and worker in this one process)`);
    console.log(`  started in ${round(startSeconds)} s (${Math.round(live / startSeconds)} per second)`);
    console.log(
      `  process RSS ${mb(before.rss)} MB before → ${mb(after.rss)} MB with ${live} live (heap ${mb(before.heapUsed)} → ${mb(after.heapUsed)} MB)`,
    );
    console.log(
      `  a sleeping workflow holds a timer on the server, not memory here: the worker keeps only its sticky cache (${perWorkflowKb > 0 ? `${round(perWorkflowKb)} KB per workflow` : 'no measurable growth'})`,
    );
  } finally {
    await h.close();
  }
}

// 5. History per run stays bounded: continue-as-new after a fixed number of refreshes.
async function historyBound(): Promise<void> {
  const cycles = 10;
  const h = await startStack(runSettings, { accessTokenTtlSeconds: 2, maxCyclesPerRun: cycles, env: { LOG_LEVEL: 'warn' } });
  h.services.log.level = 'warn';
  try {
    const who = freshOwner('history');
    const first = await h.call('POST', '/api/v1/credentials/sandbox', who);
    await h.consent(first.json.authorization_url, { login: who.user });
    const refreshes = 25;
    await waitUntil(
      async () => ((await fork(h.services.orm).findOne(CredentialSchema, { agentId: who.agent }))?.tokenGeneration ?? 0) > refreshes,
      180_000,
    );
    const owner = { agentId: who.agent, userId: who.user, toolId: 'sandbox' };
    const lengths: number[] = [];
    for await (const wf of h.client.workflow.list({ query: `WorkflowId = '${credentialWorkflowId(owner)}'` })) {
      lengths.push(wf.historyLength);
    }
    const closed = lengths.filter((_, i) => i > 0);
    const perCycle = (Math.max(...closed) - 10) / cycles;
    const monthlyRuns = Math.ceil(720 / 200);
    results.historyBound = {
      refreshes,
      runs: lengths.length,
      eventsPerRun: lengths,
      eventsPerRefresh: round(perCycle),
      month: { hourlyRefreshes: 720, cyclesPerRun: 200, runs: monthlyRuns, maxEventsPerRun: Math.round(perCycle * 200 + 10) },
    };
    console.log(
      `\n[history] ${refreshes} refreshes with continue-as-new every ${cycles}: ${lengths.length} runs, events per run ${lengths.join(', ')}`,
    );
    console.log(
      `  ≈ ${round(perCycle)} events per refresh; a month of hourly refreshes (720) at the default 200 per run = ${monthlyRuns} runs of ≤ ${Math.round(perCycle * 200 + 10)} events (Temporal's limit is 51,200)`,
    );
  } finally {
    await h.close();
  }
}

function sleepingState(credentialId: string, ttlExpiresAt: number): CredentialState {
  return {
    phase: 'active',
    credentialId,
    authorizationRequestId: null,
    authorizationUrl: null,
    authorizationExpiresAt: null,
    generation: 1,
    acquiredAt: Date.now(),
    accessExpiresAt: null,
    ttlExpiresAt,
    refreshAt: null,
    hasRefreshToken: false,
    scope: 'tools.read',
    failedRefreshes: 0,
    cyclesThisRun: 0,
    endReason: null,
  };
}

async function startActive(h: Harness, owner: { agentId: string; userId: string; toolId: string }, state: CredentialState): Promise<void> {
  const input: CredentialWorkflowInput = { owner, ttlSeconds: 2_592_000, authorizationTimeoutSeconds: 600, refreshSkewSeconds: 60, state };
  await h.client.workflow.start('credentialWorkflow', {
    taskQueue: h.taskQueue,
    workflowId: credentialWorkflowId(owner),
    args: [input],
    typedSearchAttributes: [
      { key: AgentIdKey, value: owner.agentId },
      { key: UserIdKey, value: owner.userId },
      { key: ToolIdKey, value: owner.toolId },
      { key: CredentialStatusKey, value: 'active' },
    ],
  });
}

async function countRunning(h: Harness, agentId: string): Promise<number> {
  const { count } = await h.client.workflow.count(`AgentId = '${agentId}' AND ExecutionStatus = 'Running'`);
  return count;
}

async function pool(count: number, concurrency: number, fn: (i: number) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < count) await fn(next++);
    }),
  );
}

async function waitUntil(check: () => Promise<boolean>, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error('benchmark condition not reached in time');
    await sleep(500);
  }
}

function stats(values: number[]) {
  const s = [...values].sort((a, b) => a - b);
  const at = (q: number) => round(s[Math.min(s.length - 1, Math.floor(q * s.length))]!);
  return { min: round(s[0]!), p50: at(0.5), p99: at(0.99), max: round(s.at(-1)!) };
}

function round(x: number): number {
  return Math.round(x * 100) / 100;
}

function pct(x: number): string {
  return `${Math.round(x * 1000) / 10}%`;
}

function mb(bytes: number): number {
  return Math.round(bytes / 1024 / 1024);
}

function quiet() {
  const none = () => {};
  return { log: none, trace: none, debug: none, info: none, warn: none, error: (m: string) => console.error(m) };
}
