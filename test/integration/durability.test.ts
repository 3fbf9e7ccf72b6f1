import type { ChildProcess } from 'node:child_process';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, afterEach, beforeAll, describe, expect, inject, it, vi } from 'vitest';
import { AuditTrail } from '../../lib/audit.js';
import { AuditEventSchema } from '../../lib/db/entities.js';
import { MikroORM } from '@mikro-orm/core';
import { PostgreSqlDriver } from '@mikro-orm/postgresql';
import { entities } from '../../lib/db/entities.js';
import { fork } from '../../lib/db/orm.js';
import { createLogger } from '../../lib/log.js';
import { authorize, CREDENTIAL_PATH, latestRow, waitForStatus } from '../support/flows.js';
import { type FaultProxy, harnessBehindProxy } from '../support/fault-proxy.js';
import { canControlPostgres, killHard, postgres, spawnWorker } from '../support/processes.js';
import { freshOwner, startHarness, type Harness } from '../support/harness.js';

/**
 * Lose nothing when parts fail: each numbered point of the durability issue, one fault at a time, against the
 * real parts (PostgreSQL stopped and started, a worker process killed, the provider answering 503).
 */
const usesPostgres = Boolean(inject('databaseUrl'));
const canRestartPostgres = canControlPostgres(inject('databaseUrl'));

function refreshTokenOf(body: string): string | null {
  return new URLSearchParams(body).get('refresh_token');
}

describe.skipIf(!canRestartPostgres)('1 and 4: PostgreSQL away', () => {
  let h: Harness;
  let proxy: FaultProxy;
  beforeAll(async () => {
    ({ h, proxy } = await harnessBehindProxy((proxied) =>
      startHarness({ ...proxied, accessTokenTtlSeconds: 3600, env: { AUDIT_BUFFER_ROWS: '3', HOT_CACHE_MS: '10000' } }),
    ));
  });
  afterEach(() => postgres('start'));
  afterAll(async () => {
    postgres('start');
    await h?.close();
    await proxy?.close();
  });

  it('keeps a rotated refresh token the provider sent while the database was down, and stores it when it is back', async () => {
    const who = freshOwner('pg-refresh');
    await authorize(h, who);
    const before = (await latestRow(h, who))!;
    proxy.mode = 'hold';
    proxy.matches = (body) => body.includes('grant_type=refresh_token');
    const forced = h.call('POST', CREDENTIAL_PATH, who, { force_refresh: true });
    await proxy.nextHeld();
    postgres('stop');
    // The provider rotates the refresh token and answers while the database is down.
    await proxy.releaseHeld();
    proxy.mode = 'pass';
    await sleep(8_000);
    postgres('start');
    await forced;
    await vi.waitFor(async () => expect((await latestRow(h, who))!.tokenGeneration).toBe(before.tokenGeneration + 1), {
      timeout: 60_000,
      interval: 500,
    });
    await vi.waitFor(() => expect(h.api.broker.inFlight).toBe(0), { timeout: 10_000 });
    // The stored refresh token is the rotated one: the next refresh works, and no refresh token was used twice.
    const again = await h.call('POST', CREDENTIAL_PATH, who, { force_refresh: true });
    expect(again.status, again.text).toBe(200);
    expect((await latestRow(h, who))!.tokenGeneration).toBe(before.tokenGeneration + 2);
    expect((await h.introspect(again.json.access_token)).active).toBe(true);
    const spent = proxy.forwarded.map(refreshTokenOf).filter((t): t is string => t !== null);
    expect(new Set(spent).size).toBe(spent.length);
    expect((await latestRow(h, who))!.status).toBe('active');
    const refreshed = await fork(h.services.orm).find(AuditEventSchema, {
      credentialId: before.id,
      eventType: 'credential.refreshed',
      outcome: 'success',
    });
    expect(refreshed.length).toBe(2);
  });

  it('writes the audit rows of the outage once the database is back, and stops issuing when the buffer is full', async () => {
    // After the last test's restart: the pool may still hold a connection from before it.
    await vi.waitFor(async () => expect((await fetch(`${h.baseUrl}/readyz`)).status).toBe(200), { timeout: 30_000, interval: 250 });
    const who = freshOwner('pg-audit');
    const { accessToken } = await authorize(h, who);
    // Warm this process's hot-path cache, so reads are answered from memory during the outage.
    expect((await h.call('POST', CREDENTIAL_PATH, who)).status).toBe(200);
    await h.services.audit.flush();
    postgres('stop');
    const marker = `denied-${Date.now()}`;
    const served: number[] = [];
    // Each read is an issued credential, each identity-less request a denial: audit rows with nowhere to go.
    for (let i = 0; i < 5; i++) {
      served.push((await h.call('POST', CREDENTIAL_PATH, who)).status);
      await fetch(`${h.baseUrl}${CREDENTIAL_PATH}`, { method: 'POST', headers: { 'x-agent-id': marker } });
    }
    // Three rows fit the buffer (AUDIT_BUFFER_ROWS=3); then no credential leaves unaudited.
    expect(served.slice(0, 2)).toEqual([200, 200]);
    const refused = await h.call('POST', CREDENTIAL_PATH, who);
    expect(refused.status).toBe(503);
    expect(refused.json.error.code).toBe('audit_unavailable');
    expect(refused.text).not.toContain(accessToken);
    postgres('start');
    await vi.waitFor(() => expect(h.services.audit.backlog).toBe(0), { timeout: 30_000, interval: 250 });
    const issued = await fork(h.services.orm).find(AuditEventSchema, { agentId: who.agent, eventType: 'credential.issued' });
    // Two before the outage, and those served during it that the buffer took.
    expect(issued.length).toBeGreaterThanOrEqual(2 + served.filter((s) => s === 200).length - 1);
    expect((await h.call('POST', CREDENTIAL_PATH, who)).status).toBe(200);
  });
});

describe('3 and 5: a token that ran out while the provider is down', () => {
  let h: Harness;
  let proxy: FaultProxy;
  beforeAll(async () => {
    ({ h, proxy } = await harnessBehindProxy((proxied) => startHarness({ ...proxied, accessTokenTtlSeconds: 6, refreshSkewSeconds: 2 })));
  });
  afterAll(async () => {
    await h?.close();
    await proxy?.close();
  });

  it("answers every read within a second (503 with Retry-After), sends one request per credential to Temporal, follows the provider's Retry-After, and recovers at once", async () => {
    const who = freshOwner('late-refresh');
    const { accessToken } = await authorize(h, who);
    proxy.matches = (body) => body.includes('grant_type=refresh_token');
    proxy.retryAfterSeconds = 2;
    proxy.mode = 'fail';
    // Until it expires, the current token is served.
    expect((await h.call('POST', CREDENTIAL_PATH, who)).json.access_token).toBe(accessToken);
    await vi.waitFor(async () => expect((await h.call('POST', CREDENTIAL_PATH, who)).status).toBe(503), { timeout: 20_000, interval: 250 });
    const logsBefore = h.logs.length;
    const started = Date.now();
    const reads = await Promise.all(
      Array.from({ length: 50 }, async () => {
        const t0 = Date.now();
        const res = await fetch(`${h.baseUrl}${CREDENTIAL_PATH}`, {
          method: 'POST',
          headers: { 'x-agent-id': who.agent, 'x-user-id': who.user },
        });
        return { status: res.status, retryAfter: res.headers.get('retry-after'), ms: Date.now() - t0, body: await res.text() };
      }),
    );
    expect(Date.now() - started).toBeLessThan(3_000);
    for (const r of reads) {
      expect(r.status).toBe(503);
      expect(r.retryAfter).toBe('1');
      expect(r.ms).toBeLessThan(1_600);
      expect(JSON.parse(r.body).error.code).toBe('credential_unavailable');
    }
    // One Temporal request per credential in flight in this process, however many readers.
    expect(h.api.broker.inFlight).toBeLessThanOrEqual(1);
    const warnings = h.logs.slice(logsBefore).filter((l) => l.includes('credential_unavailable'));
    expect(warnings.length).toBeLessThanOrEqual(1);
    expect(h.logs.slice(logsBefore).filter((l) => /"level":50/.test(l) && l.includes('request failed'))).toEqual([]);
    // The provider said 2 s: attempts come no faster than that, however often agents ask.
    await vi.waitFor(() => expect(proxy.failed.length).toBeGreaterThanOrEqual(5), { timeout: 20_000, interval: 200 });
    const gaps = proxy.failedAt.slice(1).map((t, i) => t - proxy.failedAt[i]!);
    expect(Math.min(...gaps)).toBeGreaterThanOrEqual(1_800);
    // Back: a fresh token within a few seconds.
    proxy.mode = 'pass';
    const back = Date.now();
    await vi.waitFor(async () => expect((await h.call('POST', CREDENTIAL_PATH, who)).status).toBe(200), { timeout: 15_000, interval: 200 });
    expect(Date.now() - back).toBeLessThan(8_000);
    expect((await h.call('POST', CREDENTIAL_PATH, who)).json.access_token).not.toBe(accessToken);
  });
});

describe.skipIf(!usesPostgres)('2: a worker killed while its refresh was at the provider', () => {
  let h: Harness;
  let proxy: FaultProxy;
  const workers: ChildProcess[] = [];
  beforeAll(async () => {
    ({ h, proxy } = await harnessBehindProxy((proxied) => startHarness({ ...proxied, externalWorker: true, accessTokenTtlSeconds: 3600 })));
  });
  afterEach(async () => {
    for (const w of workers.splice(0)) await killHard(w);
  });
  afterAll(async () => {
    await h?.close();
    await proxy?.close();
  });

  it('retries within seconds (heartbeat), and when the provider had rotated the token says plainly why the user is needed again', async () => {
    workers.push(spawnWorker(h.workerEnv));
    const who = freshOwner('kill-rotated');
    await authorize(h, who);
    proxy.mode = 'hold';
    proxy.matches = (body) => body.includes('grant_type=refresh_token');
    const forced = h.call('POST', CREDENTIAL_PATH, who, { force_refresh: true });
    await proxy.nextHeld();
    await killHard(workers[0]!);
    // The provider rotates the token; its answer dies with the worker.
    await proxy.forwardHeldAndDrop();
    proxy.mode = 'pass';
    const killedAt = Date.now();
    workers.push(spawnWorker(h.workerEnv));
    const status = await waitForStatus(h, who, 'reauthorization_required', 60_000);
    expect(status.end_reason).toBe('refresh_interrupted');
    // Noticed through the heartbeat timeout (10 s), not the start-to-close timeout (minutes).
    expect(Date.now() - killedAt).toBeLessThan(30_000);
    const audit = await fork(h.services.orm).find(AuditEventSchema, {
      agentId: who.agent,
      eventType: 'credential.refreshed',
      outcome: 'failure',
    });
    expect(audit.map((a) => (a.detail as { code: string }).code)).toContain('refresh_interrupted');
    await forced.catch(() => undefined);
    // The next request starts a new authorization for the user.
    expect((await h.call('POST', CREDENTIAL_PATH, who)).status).toBe(202);
  });
});

describe('the audit buffer', () => {
  it('keeps rows for an unreachable database in order, up to its bound, and reports saturation', async () => {
    // A database that is not there (nothing listens on port 1); connected lazily, as after a restart.
    const orm = await MikroORM.init({
      entities,
      driver: PostgreSqlDriver,
      clientUrl: 'postgres://postgres@127.0.0.1:1/nowhere',
      connect: false,
      allowGlobalContext: false,
    });
    const lines: string[] = [];
    const log = createLogger('info', { write: (l: string) => void lines.push(l) } as unknown as NodeJS.WritableStream);
    const trail = new AuditTrail(log, orm, 3);
    try {
      for (let i = 0; i < 4; i++)
        await trail.record(null, { eventType: i % 2 ? 'codec.decode' : 'auth.denied', outcome: 'success', actor: 'test' });
      expect(trail.backlog).toBe(3);
      expect(trail.saturated).toBe(true);
      // Every event is in the log all the same, the dropped one too, and the drop is said at error level.
      expect(lines.filter((l) => l.includes('"audit"')).length).toBe(4);
      expect(lines.some((l) => l.includes('audit buffer full'))).toBe(true);
    } finally {
      await orm.close();
    }
  });
});
