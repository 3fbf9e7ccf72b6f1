import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { secretContext } from '../../lib/credentials/records.js';
import { addSandboxTool, authorize, CREDENTIAL_PATH, latestRow, withdrawGrant, type Who } from '../support/flows.js';
import { harnessBehindProxy, type FaultProxy } from '../support/fault-proxy.js';
import { freshOwner, startHarness, type Harness } from '../support/harness.js';
import { killHard, spawnWorker } from '../support/processes.js';
import { WebhookReceiver, type Received } from '../support/webhook-receiver.js';

const FAST_RETRIES = { WEBHOOK_RETRY_INITIAL_SECONDS: '1', WEBHOOK_RETRY_MAX_INTERVAL_SECONDS: '2', WEBHOOK_TIMEOUT_SECONDS: '2' };

/** Subscribes `who.agent` (or, with allAgents, the operator) at a path of the receiver; the receiver learns the secret. */
async function subscribe(h: Harness, rx: WebhookReceiver, who: Who, path: string, extra: Record<string, unknown> = {}) {
  const res = await h.call('POST', '/api/v1/webhooks', who, { url: `${rx.url}${path}`, ...extra });
  expect(res.status, res.text).toBe(201);
  expect(res.json.secret).toMatch(/^whsec_[A-Za-z0-9+/]{43}=$/);
  rx.secrets.set(path, res.json.secret);
  return res.json as { id: string; secret: string };
}

/** Waits until the receiver has a verified event of this type for this credential owner, and returns it. */
async function eventOf(rx: WebhookReceiver, path: string, type: string, who: Who, timeout = 20_000): Promise<Received> {
  return vi.waitFor(
    () => {
      const found = rx
        .at(path)
        .find((r) => r.event.type === type && r.event.data.user_id === who.user && r.event.data.agent_id === who.agent);
      expect(found, `${type} for ${who.user} at ${path}`).toBeDefined();
      return found!;
    },
    { timeout, interval: 100 },
  );
}

/** The tokens a credential holds now, straight from the vault (to prove no event carries them). */
async function tokensOf(h: Harness, who: Who): Promise<string[]> {
  const row = (await latestRow(h, who))!;
  const owner = { agentId: who.agent, userId: who.user, toolId: 'sandbox' };
  return [
    h.services.vault.decrypt(row.accessToken!, secretContext(owner, row.id, 'access_token')),
    h.services.vault.decrypt(row.refreshToken!, secretContext(owner, row.id, 'refresh_token')),
  ];
}

describe('webhooks', () => {
  let h: Harness;
  let rx: WebhookReceiver;
  beforeAll(async () => {
    rx = await WebhookReceiver.start();
    h = await startHarness({ authorizationTimeoutSeconds: 8, env: FAST_RETRIES });
  });
  afterAll(async () => {
    await h?.close();
    await rx?.close();
  });

  it('signs every event (Standard Webhooks), tells active and revoked, and never carries a secret', async () => {
    const who = freshOwner('wh-main');
    const sub = await subscribe(h, rx, who, '/main');
    const listed = await h.call('GET', '/api/v1/webhooks', who);
    expect(listed.json.items).toEqual([expect.objectContaining({ id: sub.id, all_agents: false, agent_id: who.agent })]);
    expect(listed.text).not.toContain(sub.secret);

    await authorize(h, who);
    const active = await eventOf(rx, '/main', 'credential.active', who);
    expect(active.event.data).toMatchObject({ tool_id: 'sandbox', scope: 'tools.read tools.write', step_up: false });
    expect(active.id).toBe(active.event.data.event_id);
    const secrets = [...(await tokensOf(h, who)), h.sandbox.clientSecret, sub.secret];

    expect((await h.call('DELETE', CREDENTIAL_PATH, who)).status).toBe(200);
    const revoked = await eventOf(rx, '/main', 'credential.revoked', who);
    expect(revoked.event.data).toMatchObject({ status: 'revoked', revoked_by: expect.stringContaining(who.agent) });

    for (const raw of rx.raw) for (const secret of secrets) expect(raw).not.toContain(secret);
    const deliveries = await h.call('GET', `/api/v1/webhooks/${sub.id}/deliveries`, who);
    expect(deliveries.json.items.map((d: { event_type: string }) => d.event_type).sort()).toEqual([
      'credential.active',
      'credential.revoked',
    ]);
    for (const d of deliveries.json.items) expect(d).toMatchObject({ status: 'delivered', attempts: 1, last_status_code: 200 });
  });

  it('sends each agent only its own events, and only the types it asked for; the operator gets every agent', async () => {
    const who = freshOwner('wh-filter');
    const other = freshOwner('wh-other');
    await subscribe(h, rx, who, '/only-revoked', { events: ['credential.revoked'] });
    await subscribe(h, rx, other, '/other');
    const operator = await subscribe(h, rx, who, '/operator', { all_agents: true });
    await authorize(h, who);
    expect((await h.call('DELETE', CREDENTIAL_PATH, who)).status).toBe(200);
    await eventOf(rx, '/only-revoked', 'credential.revoked', who);
    await eventOf(rx, '/operator', 'credential.active', who);
    await eventOf(rx, '/operator', 'credential.revoked', who);
    expect(rx.at('/only-revoked').filter((r) => r.event.type !== 'credential.revoked')).toEqual([]);
    expect(rx.at('/other').filter((r) => r.event.data.agent_id === who.agent)).toEqual([]);
    // The run's database is shared: the operator's subscription would receive every later test's events.
    expect((await h.call('DELETE', `/api/v1/webhooks/${operator.id}?all_agents=true`, who)).status).toBe(204);
  });

  it('tells a declined authorization and one the user never finished', async () => {
    const declined = freshOwner('wh-declined');
    await subscribe(h, rx, declined, '/declined');
    const first = await h.call('POST', CREDENTIAL_PATH, declined);
    await h.consent(first.json.authorization_url, { login: declined.user, deny: true });
    expect((await eventOf(rx, '/declined', 'authorization.failed', declined)).event.data).toMatchObject({
      status: 'authorization_failed',
      reason: 'access_denied',
    });

    const idle = freshOwner('wh-idle');
    await subscribe(h, rx, idle, '/idle');
    expect((await h.call('POST', CREDENTIAL_PATH, idle)).status).toBe(202);
    expect((await eventOf(rx, '/idle', 'authorization.timed_out', idle)).event.data.status).toBe('authorization_timed_out');
  });

  it('tells reauthorization_required when the provider refuses the grant', async () => {
    const who = freshOwner('wh-reauth');
    await subscribe(h, rx, who, '/reauth');
    await authorize(h, who);
    await withdrawGrant(h, who);
    await h.call('POST', CREDENTIAL_PATH, who, { force_refresh: true });
    const event = await eventOf(rx, '/reauth', 'credential.reauthorization_required', who);
    expect(event.event.data).toMatchObject({ reason: 'invalid_grant' });

    // The event's link starts the authorization again and leads to the start page (which checks the user).
    const link = new URL(String(event.event.data.authorization_url));
    expect(link.href.startsWith(`${h.publicOrigin}/api/v1/auth/tool/reconnect?`)).toBe(true);
    const tampered = new URL(link);
    tampered.searchParams.set('user', 'someone-else');
    expect((await fetch(tampered, { redirect: 'manual' })).status).toBe(400);
    const reconnect = await fetch(link, { redirect: 'manual' });
    expect(reconnect.status).toBe(302);
    const start = reconnect.headers.get('location')!;
    expect(start).toContain('/api/v1/auth/tool/start?');
    expect((await h.consent(start, { login: who.user })).status).toBe(200);
    expect((await h.call('GET', CREDENTIAL_PATH, who)).json.status).toBe('active');
    const again = await fetch(link, { redirect: 'manual' });
    expect(again.status).toBe(200);
    expect(await again.text()).toContain('Already connected');
  });

  it('retries while the receiver is down, with the same webhook-id, and shows the attempts', async () => {
    const who = freshOwner('wh-down');
    const sub = await subscribe(h, rx, who, '/down');
    let refusals = 0;
    rx.answer = (r) => (r.path === '/down' && refusals++ < 2 ? 503 : 200);
    try {
      await authorize(h, who);
      await vi.waitFor(() => expect(rx.at('/down').length).toBe(3), { timeout: 20_000, interval: 100 });
    } finally {
      rx.answer = () => 200;
    }
    const attempts = rx.at('/down');
    expect(new Set(attempts.map((a) => a.id)).size).toBe(1);
    expect(new Set(attempts.map((a) => a.body)).size).toBe(1);
    const [delivery] = (await h.call('GET', `/api/v1/webhooks/${sub.id}/deliveries`, who)).json.items;
    await vi.waitFor(async () => {
      const [d] = (await h.call('GET', `/api/v1/webhooks/${sub.id}/deliveries`, who)).json.items;
      expect(d).toMatchObject({ status: 'delivered', attempts: 3, last_status_code: 200 });
    });

    // Sent again on request: the same id, so the receiver can tell it already has it.
    const again = await h.call('POST', `/api/v1/webhooks/${sub.id}/deliveries/${delivery.id}/redeliver`, who);
    expect(again.status).toBe(202);
    await vi.waitFor(() => expect(rx.at('/down').length).toBe(4), { timeout: 10_000, interval: 100 });
    expect(rx.at('/down')[3]!.id).toBe(attempts[0]!.id);
  });

  it('signs with the new secret after a rotation, and sends nothing after a delete', async () => {
    const who = freshOwner('wh-rotate');
    const sub = await subscribe(h, rx, who, '/rotate');
    const rotated = await h.call('POST', `/api/v1/webhooks/${sub.id}/rotate-secret`, who);
    expect(rotated.status).toBe(200);
    expect(rotated.json.secret).not.toBe(sub.secret);
    rx.secrets.set('/rotate', rotated.json.secret);
    await authorize(h, who);
    await eventOf(rx, '/rotate', 'credential.active', who);

    expect((await h.call('DELETE', `/api/v1/webhooks/${sub.id}`, who)).status).toBe(204);
    expect((await h.call('GET', `/api/v1/webhooks/${sub.id}`, who)).json.error.code).toBe('webhook_not_found');
    expect((await h.call('DELETE', CREDENTIAL_PATH, who)).status).toBe(200);
    await new Promise((r) => setTimeout(r, 1500));
    expect(rx.received.filter((r) => r.path === '/rotate' && r.event.type === 'credential.revoked')).toEqual([]);
  });

  it('offboards with receipts: revoked at the provider, the provider failing (with its code), nothing to revoke', async () => {
    const user = `leaver-${Date.now()}`;
    const agent = freshOwner('wh-offboard').agent;
    // The same provider, but its revocation endpoint refuses (the receiver answers 401 to anything unsigned).
    addSandboxTool(h, 'sandbox-badrevoke', { revocation_url: `${rx.url}/revocation` });
    const who = { agent, user };
    await subscribe(h, rx, who, '/offboard');
    const { accessToken } = await authorize(h, who);
    const failing = await h.call('POST', '/api/v1/credentials/sandbox-badrevoke', who);
    await h.consent(failing.json.authorization_url, { login: user });
    expect((await h.call('GET', '/api/v1/credentials/sandbox-badrevoke', who)).json.status).toBe('active');
    const pending = { agent: `${agent}-2`, user };
    expect((await h.call('POST', CREDENTIAL_PATH, pending)).status).toBe(202);

    const offboard = await h.call('POST', `/api/v1/admin/users/${user}/revoke-all`, who, {});
    expect(offboard.status, offboard.text).toBe(200);
    const receipts = Object.fromEntries(offboard.json.revoked.map((r: Record<string, string>) => [`${r.agent_id}/${r.tool_id}`, r]));
    expect(receipts[`${agent}/sandbox`]).toMatchObject({ status: 'revoked', revocation: 'revoked_at_provider' });
    expect(receipts[`${agent}/sandbox-badrevoke`]).toMatchObject({
      status: 'revoked',
      revocation: 'provider_failed',
      provider_error: expect.any(String),
    });
    expect(receipts[`${pending.agent}/sandbox`]).toMatchObject({ status: 'revoked', revocation: 'nothing_to_revoke' });
    expect((await h.introspect(accessToken)).active).toBe(false);

    const audit = await h.call('GET', `/api/v1/admin/audit?user_id=${user}&event_type=admin.offboard`, who);
    expect(audit.json.items[0].detail.receipts).toEqual(offboard.json.revoked);
    const revoked = await eventOf(rx, '/offboard', 'credential.revoked', who);
    expect(['revoked_at_provider', 'provider_failed']).toContain(revoked.event.data.revocation);
  });

  it('refuses targets the outbound policy refuses, other agents\u2019 subscriptions, and malformed requests with 4xx', async () => {
    const who = freshOwner('wh-bad');
    for (const url of [
      'ftp://example.com/hook',
      'http://10.1.2.3/hook',
      'http://169.254.169.254/latest',
      'not a url',
      'https://example.com/#x',
    ]) {
      const res = await h.call('POST', '/api/v1/webhooks', who, { url });
      expect(res.status, url).toBe(400);
      expect(res.json.error.code).toBe('invalid_webhook_url');
    }
    const bad = await h.call('POST', '/api/v1/webhooks', who, { url: `${rx.url}/x`, events: ['credential.nonsense'] });
    expect(bad.json.error.code).toBe('invalid_request');
    const sub = await subscribe(h, rx, who, '/mine');
    const stranger = freshOwner('wh-stranger');
    for (const [method, path] of [
      ['GET', `/api/v1/webhooks/${sub.id}`],
      ['DELETE', `/api/v1/webhooks/${sub.id}`],
      ['POST', `/api/v1/webhooks/${sub.id}/rotate-secret`],
      ['GET', `/api/v1/webhooks/${sub.id}/deliveries`],
    ] as const) {
      const res = await h.call(method, path, stranger);
      expect(res.status, `${method} ${path}`).toBe(404);
    }
    expect((await h.call('GET', '/api/v1/webhooks/not-a-uuid', who)).status).toBe(404);
    expect((await h.call('POST', `/api/v1/webhooks/${sub.id}/deliveries/${sub.id}/redeliver`, who)).json.error.code).toBe(
      'delivery_not_found',
    );
  });
});

describe('webhooks: time to live', () => {
  let h: Harness;
  let rx: WebhookReceiver;
  beforeAll(async () => {
    rx = await WebhookReceiver.start();
    h = await startHarness({ secretsTtlSeconds: 6, refreshTokenTtlSeconds: 4, env: { ...FAST_RETRIES, EXPIRING_WARNING_SECONDS: '2' } });
  });
  afterAll(async () => {
    await h?.close();
    await rx?.close();
  });

  it('warns before the refresh token dies and before the TTL, then tells credential.expired', async () => {
    const who = freshOwner('wh-ttl');
    await subscribe(h, rx, who, '/ttl');
    await authorize(h, who);
    const status = (await h.call('GET', CREDENTIAL_PATH, who)).json;
    const refreshDies = Date.parse(status.refresh_token_expires_at);
    const ttlEnds = Date.parse(status.credential_expires_at);
    // The provider said when its refresh token dies (refresh_token_expires_in); the status answer shows both ends.
    expect(refreshDies).toBeGreaterThan(Date.now());
    expect(refreshDies).toBeLessThan(ttlEnds);

    const first = await eventOf(rx, '/ttl', 'credential.expiring', who);
    expect(first.event.data).toMatchObject({ reason: 'refresh_token', expires_at: status.refresh_token_expires_at });
    // Two seconds ahead (the lead), not at once.
    expect(Date.parse(first.event.timestamp)).toBeGreaterThanOrEqual(refreshDies - 2_000 - 200);
    const expired = await eventOf(rx, '/ttl', 'credential.expired', who);
    expect(expired.event.data.status).toBe('expired');
    const warnings = rx.at('/ttl').filter((r) => r.event.type === 'credential.expiring');
    expect(warnings.map((w) => w.event.data.reason)).toEqual(['refresh_token', 'ttl']);
    expect(warnings[1]!.event.data.expires_at).toBe(status.credential_expires_at);
    expect(Date.parse(warnings[1]!.event.timestamp)).toBeLessThan(Date.parse(expired.event.timestamp));
  });
});

describe('webhooks: the provider failing for a while', () => {
  let h: Harness;
  let proxy: FaultProxy;
  let rx: WebhookReceiver;
  beforeAll(async () => {
    rx = await WebhookReceiver.start();
    ({ h, proxy } = await harnessBehindProxy((proxied) => startHarness({ ...proxied, accessTokenTtlSeconds: 30, env: FAST_RETRIES })));
  });
  afterAll(async () => {
    await h?.close();
    await proxy?.close();
    await rx?.close();
  });

  it('tells refresh_failing once the retries ran out (the token still served), then recovered', async () => {
    const who = freshOwner('wh-failing');
    await subscribe(h, rx, who, '/failing');
    await authorize(h, who);
    proxy.matches = (body) => body.includes('grant_type=refresh_token');
    proxy.mode = 'fail';
    const failing = await eventOf(rx, '/failing', 'credential.refresh_failing', who, 40_000);
    expect(failing.event.data).toMatchObject({ failed_refreshes: 1 });
    // Still live: the current token is served while it lasts (the faults test shows it served).
    expect(['active', 'refreshing']).toContain((await h.call('GET', CREDENTIAL_PATH, who)).json.status);
    proxy.mode = 'pass';
    await eventOf(rx, '/failing', 'credential.recovered', who, 40_000);
  }, 90_000);
});

describe('webhooks: a worker killed mid-delivery', () => {
  let h: Harness;
  let rx: WebhookReceiver;
  const workers: ReturnType<typeof spawnWorker>[] = [];
  beforeAll(async () => {
    rx = await WebhookReceiver.start();
    h = await startHarness({ externalWorker: true, env: FAST_RETRIES });
  });
  afterAll(async () => {
    for (const w of workers) await killHard(w);
    await h?.close();
    await rx?.close();
  });

  it('loses no event: the next worker sends it again with the same webhook-id', async () => {
    const who = freshOwner('wh-kill');
    const sub = await subscribe(h, rx, who, '/kill');
    workers.push(spawnWorker(h.workerEnv));
    rx.answer = (r) => (r.path === '/kill' && rx.at('/kill').length === 1 ? 'hold' : 200);
    await authorize(h, who);
    await vi.waitFor(() => expect(rx.at('/kill').length).toBe(1), { timeout: 20_000, interval: 100 });
    await killHard(workers[0]!);
    rx.dropHeld();
    workers.push(spawnWorker(h.workerEnv));
    await vi.waitFor(() => expect(rx.at('/kill').length).toBe(2), { timeout: 30_000, interval: 200 });
    const [first, second] = rx.at('/kill');
    expect(second!.id).toBe(first!.id);
    expect(second!.event.type).toBe('credential.active');
    await vi.waitFor(async () => {
      const [d] = (await h.call('GET', `/api/v1/webhooks/${sub.id}/deliveries`, who)).json.items;
      expect(d).toMatchObject({ status: 'delivered', last_status_code: 200 });
    });
  }, 60_000);
});
