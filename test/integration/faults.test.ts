import type { ChildProcess } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { Connection } from '@temporalio/client';
import { afterAll, afterEach, beforeAll, describe, expect, inject, it, vi } from 'vitest';
import { createActivities } from '../../activities/index.js';
import { authorize, CREDENTIAL_PATH, latestRow, waitForStatus } from '../support/flows.js';
import { type FaultProxy, harnessBehindProxy } from '../support/fault-proxy.js';
import { canControlPostgres, killHard, postgres, spawnWorker, startTemporalOnFile } from '../support/processes.js';
import { freshOwner, startHarness, type Harness } from '../support/harness.js';

const usesPostgres = Boolean(inject('databaseUrl'));

function refreshTokenOf(body: string): string | null {
  return new URLSearchParams(body).get('refresh_token');
}

// Separate worker processes share the database with the test: that takes a server database (CI: PostgreSQL).
describe.skipIf(!usesPostgres)('a worker killed mid-flight', () => {
  let h: Harness;
  let proxy: FaultProxy;
  const workers: ChildProcess[] = [];

  beforeAll(async () => {
    ({ h, proxy } = await harnessBehindProxy((proxied) => startHarness({ ...proxied, externalWorker: true, accessTokenTtlSeconds: 8 })));
  });
  afterEach(async () => {
    for (const w of workers.splice(0)) await killHard(w);
  });
  afterAll(async () => {
    await h?.close();
    await proxy?.close();
  });

  it('during the code exchange: after a restart the credential is active and nothing is lost', async () => {
    workers.push(spawnWorker(h.workerEnv));
    const who = freshOwner('kill-exchange');
    const first = await h.call('POST', CREDENTIAL_PATH, who);
    expect(first.status).toBe(202);
    proxy.mode = 'hold';
    proxy.matches = (body) => body.includes('grant_type=authorization_code');
    const page = h.consent(first.json.authorization_url, { login: who.user });
    await proxy.nextHeld();
    await killHard(workers[0]!);
    proxy.dropHeld();
    proxy.mode = 'pass';
    workers.push(spawnWorker(h.workerEnv));
    expect([200, 202]).toContain((await page).status);
    // The exchange is retried on the new worker once the dead attempt's start-to-close timeout (20 s) passes.
    const status = await waitForStatus(h, who, 'active', 60_000);
    expect(status.ended_at).toBeNull();
    const token = await h.call('POST', CREDENTIAL_PATH, who);
    expect(token.status).toBe(200);
    expect((await h.introspect(token.json.access_token)).active).toBe(true);
  });

  it('during a refresh with a rotating refresh token: active after restart, no refresh token spent twice', async () => {
    workers.push(spawnWorker(h.workerEnv));
    const who = freshOwner('kill-refresh');
    proxy.mode = 'pass';
    await authorize(h, who);
    proxy.mode = 'hold';
    proxy.matches = (body) => body.includes('grant_type=refresh_token');
    await proxy.nextHeld();
    await killHard(workers[0]!);
    proxy.dropHeld();
    proxy.mode = 'pass';
    workers.push(spawnWorker(h.workerEnv));
    await vi.waitFor(async () => expect((await latestRow(h, who))!.tokenGeneration).toBeGreaterThanOrEqual(3), {
      timeout: 60_000,
      interval: 500,
    });
    const token = await h.call('POST', CREDENTIAL_PATH, who);
    expect(token.status).toBe(200);
    expect((await h.introspect(token.json.access_token)).active).toBe(true);
    const spent = proxy.forwarded.map(refreshTokenOf).filter((t): t is string => t !== null);
    expect(spent.length).toBeGreaterThanOrEqual(2);
    expect(new Set(spent).size).toBe(spent.length);
  });
});

describe('the authorization server failing for a while', () => {
  let h: Harness;
  let proxy: FaultProxy;
  beforeAll(async () => {
    ({ h, proxy } = await harnessBehindProxy((proxied) => startHarness({ ...proxied, accessTokenTtlSeconds: 30 })));
  });
  afterAll(async () => {
    await h?.close();
    await proxy?.close();
  });

  it('keeps serving the active token, retries with backoff, shows the provider unhealthy, and recovers', async () => {
    const who = freshOwner('provider-down');
    const { accessToken } = await authorize(h, who);
    proxy.matches = (body) => body.includes('grant_type=refresh_token');
    proxy.mode = 'fail';
    await vi.waitFor(() => expect(proxy.failed.length).toBeGreaterThanOrEqual(2), { timeout: 20_000, interval: 200 });
    const during = await h.call('POST', CREDENTIAL_PATH, who);
    expect(during.status).toBe(200);
    expect(during.json.access_token).toBe(accessToken);
    const metrics = await (await fetch(`${h.baseUrl}/metrics`)).text();
    expect(metrics).toMatch(/broker_provider_healthy\{tool="sandbox"\} 0/);
    expect(metrics).toMatch(/broker_provider_errors_total\{tool="sandbox",code="(temporarily|provider)_unavailable"\} [1-9]/);
    proxy.mode = 'pass';
    await vi.waitFor(async () => expect((await latestRow(h, who))!.tokenGeneration).toBeGreaterThanOrEqual(2), {
      timeout: 30_000,
      interval: 250,
    });
    const after = await h.call('POST', CREDENTIAL_PATH, who);
    expect(after.json.access_token).not.toBe(accessToken);
    expect((await h.introspect(after.json.access_token)).active).toBe(true);
    expect(await (await fetch(`${h.baseUrl}/metrics`)).text()).toMatch(/broker_provider_healthy\{tool="sandbox"\} 1/);
  });
});

describe('a retried refresh', () => {
  let h: Harness;
  let proxy: FaultProxy;
  beforeAll(async () => {
    ({ h, proxy } = await harnessBehindProxy((proxied) => startHarness({ ...proxied })));
  });
  afterAll(async () => {
    await h?.close();
    await proxy?.close();
  });

  it('whose first attempt already stored tokens returns them without spending the rotated refresh token again', async () => {
    const who = freshOwner('retry-refresh');
    await authorize(h, who);
    const row = await latestRow(h, who);
    const activities = createActivities({
      ...h.services,
      redirectUri: h.services.config.redirectUri,
      publicOrigin: h.services.config.publicOrigin,
      webhooks: h.services.config.webhooks,
    });
    const before = proxy.forwarded.length;
    const first = await activities.refreshCredential({ credentialId: row!.id, expectedGeneration: 1 });
    expect(first.generation).toBe(2);
    expect(proxy.forwarded.length).toBe(before + 1);
    // The same attempt again, as after a worker died between storing and reporting back.
    const retried = await activities.refreshCredential({ credentialId: row!.id, expectedGeneration: 1 });
    expect(retried).toEqual(first);
    expect(proxy.forwarded.length).toBe(before + 1);
    const token = await h.call('POST', CREDENTIAL_PATH, who);
    expect((await h.introspect(token.json.access_token)).active).toBe(true);
  });
});

describe('the Temporal server restarting', () => {
  let h: Harness;
  let server: ChildProcess | undefined;
  let port: number;
  const dbFile = join(mkdtempSync(join(tmpdir(), 'temporal-restart-')), 'temporal.db');

  const startServer = () => startTemporalOnFile(port, dbFile);

  async function waitForServer(): Promise<void> {
    await vi.waitFor(
      async () => {
        const c = await Connection.connect({ address: `127.0.0.1:${port}`, connectTimeout: 1000 });
        await c.close();
      },
      { timeout: 30_000, interval: 300 },
    );
  }

  beforeAll(async () => {
    port = await freePort();
    server = startServer();
    await waitForServer();
    h = await startHarness({ temporalAddress: `127.0.0.1:${port}`, accessTokenTtlSeconds: 10 });
  });
  afterAll(async () => {
    await h?.close();
    server?.kill('SIGKILL');
  });

  it('resumes workflows and timers from its persisted database', async () => {
    const who = freshOwner('temporal-restart');
    await authorize(h, who);
    const exited = new Promise((resolve) => server!.once('exit', resolve));
    server!.kill('SIGTERM');
    await exited;
    await sleep(1000);
    server = startServer();
    await waitForServer();
    // The refresh timer (about 5 s after the grant) fires after the restart and the refresh happens.
    await vi.waitFor(async () => expect((await latestRow(h, who))!.tokenGeneration).toBeGreaterThanOrEqual(2), {
      timeout: 60_000,
      interval: 500,
    });
    const token = await h.call('POST', CREDENTIAL_PATH, who);
    expect(token.status).toBe(200);
    expect((await h.introspect(token.json.access_token)).active).toBe(true);
  });
});

const canRestartPostgres = canControlPostgres(inject('databaseUrl'));

describe.skipIf(!canRestartPostgres)('PostgreSQL restarting', () => {
  let h: Harness;
  beforeAll(async () => {
    h = await startHarness();
  });
  afterAll(async () => {
    postgres('start');
    await h?.close();
  });

  it('answers 503 while it is down, loses nothing, and resumes by itself', async () => {
    const who = freshOwner('pg-restart');
    const { accessToken } = await authorize(h, who);
    postgres('stop');
    try {
      // Past the hot-path cache, which would otherwise still answer from memory for a moment.
      await sleep(h.services.config.hotCacheMs + 100);
      const down = await h.call('POST', CREDENTIAL_PATH, who);
      expect(down.status).toBe(503);
      expect(down.json.error.code).toBe('service_unavailable');
      expect(down.text).not.toContain(accessToken);
      expect((await fetch(`${h.baseUrl}/readyz`)).status).toBe(503);
    } finally {
      postgres('start');
    }
    await vi.waitFor(async () => expect((await h.call('POST', CREDENTIAL_PATH, who)).status).toBe(200), { timeout: 30_000, interval: 500 });
    const after = await h.call('POST', CREDENTIAL_PATH, who);
    expect(after.json.access_token).toBe(accessToken);
  });
});

function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = createServer();
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as { port: number };
      s.close(() => resolve(port));
    });
  });
}
