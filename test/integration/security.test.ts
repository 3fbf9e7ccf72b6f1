import { randomUUID } from 'node:crypto';
import * as jose from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AuditEventSchema } from '../../lib/db/entities.js';
import { fork } from '../../lib/db/orm.js';
import { CREDENTIAL_PATH } from '../support/flows.js';
import { TestGateway, unsignedToken } from '../support/gateway.js';
import { startHarness, type Harness } from '../support/harness.js';

const ROLES = `
roles:
  user: { description: all tools, scopes: ["tool:*:use", "tool:*:revoke"] }
  admin: { description: admin, inherits: [user], scopes: ["credential:admin"] }
  outsider: { description: another tool only, scopes: ["tool:other:use"] }
`;
const USERS = `
default_roles: [user]
users:
  admin@example.com: [admin]
  outsider@example.com: [outsider]
`;

let h: Harness;
let gw: TestGateway;
const keys: Record<string, string> = {};
let assertionKey: Awaited<ReturnType<typeof jose.generateKeyPair>>['privateKey'];

beforeAll(async () => {
  gw = await TestGateway.start();
  h = await startHarness({
    production: {
      trust: gw.trustConfig(),
      rolesYaml: ROLES,
      usersYaml: USERS,
      env: { CORS_ORIGINS: 'https://app.example.com', RATE_LIMIT_CALLBACK_IP_PER_MINUTE: '40' },
    },
  });
  const agents = h.services.agents;
  for (const id of ['agent-a', 'agent-b']) {
    await agents.create(id);
    keys[id] = (await agents.issueKey(id)).key;
  }
  await agents.create('agent-admin', { scopes: ['tool:*:use', 'tool:*:revoke', 'credential:admin'] });
  keys['agent-admin'] = (await agents.issueKey('agent-admin')).key;
  await agents.create('agent-narrow', { scopes: ['tool:other:use'] });
  keys['agent-narrow'] = (await agents.issueKey('agent-narrow')).key;
  const pair = await jose.generateKeyPair('ES256', { extractable: true });
  assertionKey = pair.privateKey;
  await agents.create('agent-jwt');
  await agents.setPublicKeys('agent-jwt', { jwks: { keys: [{ ...(await jose.exportJWK(pair.publicKey)), kid: 'a1', alg: 'ES256' }] } });
});
afterAll(async () => {
  await h?.close();
  await gw?.close();
});

async function as(agent: string, user: string, claims: jose.JWTPayload = {}) {
  return { headers: { authorization: `Bearer ${keys[agent]}`, 'x-user-identity': await gw.sign(user, { claims }) } };
}

function assertion(claims: jose.JWTPayload = {}) {
  const now = Math.floor(Date.now() / 1000);
  return new jose.SignJWT({
    iss: 'agent-jwt',
    sub: 'agent-jwt',
    aud: h.publicOrigin,
    iat: now,
    exp: now + 60,
    jti: randomUUID(),
    ...claims,
  })
    .setProtectedHeader({ alg: 'ES256', kid: 'a1' })
    .sign(assertionKey);
}

/** Alice (or someone) authorizes through agent A with her own browser; returns the access token. */
async function connect(agent: string, user: string): Promise<string> {
  const first = await h.call('POST', CREDENTIAL_PATH, await as(agent, user));
  expect(first.status).toBe(202);
  expect(first.json.authorization_url.startsWith('https://broker.test/api/v1/auth/tool/start?')).toBe(true);
  const page = await h.consent(first.json.authorization_url, { login: user, identity: await gw.sign(user) });
  expect(page.status, page.html).toBe(200);
  const second = await h.call('POST', CREDENTIAL_PATH, await as(agent, user));
  expect(second.status).toBe(200);
  return second.json.access_token;
}

async function auditEvents(where: Record<string, unknown>) {
  return fork(h.services.orm).find(AuditEventSchema, where, { orderBy: { at: 'desc' } });
}

describe('what the broker publishes', () => {
  it('serves its client metadata document on the HTTPS public origin, to anyone, with no secret', async () => {
    const res = await fetch(`${h.baseUrl}/oauth/client-metadata.json`, { headers: { 'x-forwarded-proto': 'https' } });
    expect(res.status).toBe(200);
    const doc = (await res.json()) as Record<string, unknown>;
    expect(doc).toMatchObject({
      client_id: 'https://broker.test/oauth/client-metadata.json',
      client_uri: 'https://broker.test',
      redirect_uris: ['https://broker.test/api/v1/auth/tool/callback'],
      token_endpoint_auth_method: 'none',
    });
    expect(Object.keys(doc).filter((k) => /secret|key|jwks/i.test(k))).toEqual([]);
  });
});

describe('agents prove who they are', () => {
  it('refuses development-mode headers in production', async () => {
    const res = await h.call('POST', CREDENTIAL_PATH, { agent: 'agent-a', user: 'alice@example.com' });
    expect(res.status).toBe(401);
    expect(res.json.error.code).toBe('agent_authentication_required');
  });

  it('refuses an unknown, malformed or revoked key without saying which', async () => {
    const identity = await gw.sign('alice@example.com');
    const real = keys['agent-a']!;
    // The real key with its last character changed (to one it is not: a fixed 'A' equals it once in 64 runs).
    const tampered = real.slice(0, -1) + (real.endsWith('A') ? 'B' : 'A');
    for (const bad of ['acb_0123456789abcdef_' + 'x'.repeat(43), 'not-a-key', tampered]) {
      const res = await h.call('POST', CREDENTIAL_PATH, { headers: { authorization: `Bearer ${bad}`, 'x-user-identity': identity } });
      expect(res.status).toBe(401);
      expect(res.json.error.code).toBe('agent_credential_invalid');
      expect(res.text).not.toContain('agent-a');
    }
    const temp = await h.services.agents.issueKey('agent-b', 'temporary');
    const ok = await h.call('GET', CREDENTIAL_PATH, { headers: { authorization: `Bearer ${temp.key}`, 'x-user-identity': identity } });
    expect(ok.status).toBe(404);
    await h.services.agents.revokeKey(temp.keyId);
    const revoked = await h.call('GET', CREDENTIAL_PATH, { headers: { authorization: `Bearer ${temp.key}`, 'x-user-identity': identity } });
    expect(revoked.json.error.code).toBe('agent_credential_invalid');
    const denials = await auditEvents({ eventType: 'auth.denied' });
    expect(denials.some((e) => (e.detail as { code?: string })?.code === 'agent_credential_invalid')).toBe(true);
  });

  it('accepts a signed agent assertion once, and refuses a replay, a wrong audience and an expired one', async () => {
    const identity = await gw.sign('jwt-user@example.com');
    const token = await assertion();
    const first = await h.call('GET', CREDENTIAL_PATH, { headers: { authorization: `Bearer ${token}`, 'x-user-identity': identity } });
    expect(first.status).toBe(404);
    expect(first.json.error.code).toBe('credential_not_found');
    const replay = await h.call('GET', CREDENTIAL_PATH, { headers: { authorization: `Bearer ${token}`, 'x-user-identity': identity } });
    expect(replay.json.error.code).toBe('agent_assertion_replayed');
    const wrongAud = await h.call('GET', CREDENTIAL_PATH, {
      headers: { authorization: `Bearer ${await assertion({ aud: 'https://elsewhere.test' })}`, 'x-user-identity': identity },
    });
    expect(wrongAud.json.error.code).toBe('agent_assertion_invalid');
    const past = Math.floor(Date.now() / 1000) - 3600;
    const expired = await h.call('GET', CREDENTIAL_PATH, {
      headers: { authorization: `Bearer ${await assertion({ iat: past, exp: past + 60 })}`, 'x-user-identity': identity },
    });
    expect(expired.json.error.code).toBe('agent_assertion_invalid');
  });

  it('requires HTTPS (through the proxy) outside development mode', async () => {
    const res = await fetch(`${h.baseUrl}${CREDENTIAL_PATH}`, {
      method: 'POST',
      headers: (await as('agent-a', 'alice@example.com')).headers,
    });
    expect(res.status).toBe(400);
    expect(((await res.json()) as { error: { code: string } }).error.code).toBe('https_required');
  });
});

describe('user identities come signed by the gateway', () => {
  it.each([
    ['missing', async () => undefined, 401, 'user_identity_required'],
    [
      'unsigned (alg none)',
      async () => unsignedToken({ iss: gw.issuer, aud: gw.audience, sub: 'alice@example.com', iat: Math.floor(Date.now() / 1000) }),
      401,
      'identity_algorithm_not_allowed',
    ],
    [
      'signed with another key',
      async () => gw.sign('alice@example.com', { key: (await jose.generateKeyPair('ES256')).privateKey }),
      401,
      'identity_bad_signature',
    ],
    ['expired beyond the skew', async () => gw.sign('alice@example.com', { iatOffset: -4000, ttl: 60 }), 401, 'identity_expired'],
    ['for another audience', async () => gw.sign('alice@example.com', { claims: { aud: 'other' } }), 401, 'identity_wrong_audience'],
    [
      'bound to another agent',
      async () => gw.sign('alice@example.com', { claims: { agent_id: 'agent-b' } }),
      403,
      'identity_agent_mismatch',
    ],
  ])('refuses an identity that is %s, with an audit event and no credential', async (_label, make, status, code) => {
    const identity = await make();
    const res = await h.call('POST', CREDENTIAL_PATH, {
      headers: { authorization: `Bearer ${keys['agent-a']}`, ...(identity ? { 'x-user-identity': identity } : {}) },
    });
    expect(res.status).toBe(status);
    expect(res.json.error.code).toBe(code);
    expect(res.json).not.toHaveProperty('access_token');
    expect(res.json).not.toHaveProperty('authorization_url');
    const denials = await auditEvents({ eventType: 'auth.denied', agentId: null });
    expect(denials.some((e) => (e.detail as { code?: string })?.code === code)).toBe(true);
  });
});

describe('the consenting user is the requesting user', () => {
  it('completes the flow when the browser user is the requesting user', async () => {
    const token = await connect('agent-a', 'alice@example.com');
    expect((await h.introspect(token)).sub).toBe('alice@example.com');
  });

  it('refuses a link opened by another signed-in user, and one opened without signing in', async () => {
    const first = await h.call('POST', CREDENTIAL_PATH, await as('agent-a', 'victim@example.com'));
    expect(first.status).toBe(202);
    const attacker = await h.consent(first.json.authorization_url, { login: 'mallory', identity: await gw.sign('mallory@example.com') });
    expect(attacker.status).toBe(403);
    expect(attacker.html).toContain('for someone else');
    const anonymous = await h.consent(first.json.authorization_url, { login: 'mallory' });
    expect(anonymous.status).toBe(401);
    const status = await h.call('GET', CREDENTIAL_PATH, await as('agent-a', 'victim@example.com'));
    expect(status.json.status).toBe('awaiting_authorization');
    const denied = await auditEvents({ eventType: 'authorization.start', userId: 'victim@example.com', outcome: 'denied' });
    expect(denied.map((e) => (e.detail as { code: string }).code)).toContain('session_mismatch');
    // The victim can still complete their own authorization.
    const own = await h.consent(first.json.authorization_url, {
      login: 'victim@example.com',
      identity: await gw.sign('victim@example.com'),
    });
    expect(own.status).toBe(200);
  });
});

describe('isolation between agents and users', () => {
  it('never lets another agent or another user read, refresh or revoke a credential', async () => {
    const token = await connect('agent-a', 'iso@example.com');
    const otherAgent = await as('agent-b', 'iso@example.com');
    const otherUser = await as('agent-a', 'other@example.com');
    for (const who of [otherAgent, otherUser]) {
      expect((await h.call('GET', CREDENTIAL_PATH, who)).status).toBe(404);
      expect((await h.call('DELETE', CREDENTIAL_PATH, who)).status).toBe(404);
      const post = await h.call('POST', CREDENTIAL_PATH, who, { force_refresh: true });
      expect(post.status).toBe(202);
      expect(post.text).not.toContain(token);
    }
    // A user id header cannot override the signed identity.
    const spoof = await h.call('POST', CREDENTIAL_PATH, {
      headers: { ...otherUser.headers, 'x-user-id': 'iso@example.com', 'x-agent-id': 'agent-a' },
    });
    expect(spoof.text).not.toContain(token);
    const mine = await h.call('POST', CREDENTIAL_PATH, await as('agent-a', 'iso@example.com'));
    expect(mine.json.access_token).toBe(token);
    expect((await h.introspect(token)).active).toBe(true);
  });
});

describe('access control', () => {
  it('refuses a user without the tool scope and an agent without the grant, with audit events', async () => {
    const user = await h.call('POST', CREDENTIAL_PATH, await as('agent-a', 'outsider@example.com'));
    expect(user.status).toBe(403);
    expect(user.json.error.code).toBe('user_not_permitted');
    const agent = await h.call('POST', CREDENTIAL_PATH, await as('agent-narrow', 'alice@example.com'));
    expect(agent.status).toBe(403);
    expect(agent.json.error.code).toBe('agent_not_permitted');
    const denials = await auditEvents({ eventType: 'access.denied' });
    expect(denials.map((e) => (e.detail as { code: string }).code)).toEqual(
      expect.arrayContaining(['user_not_permitted', 'agent_not_permitted']),
    );
  });

  it('keeps the admin API to admins', async () => {
    const res = await h.call('GET', '/api/v1/admin/credentials', await as('agent-a', 'alice@example.com'));
    expect(res.status).toBe(403);
    const adminUserWrongAgent = await h.call('GET', '/api/v1/admin/credentials', await as('agent-a', 'admin@example.com'));
    expect(adminUserWrongAgent.json.error.code).toBe('agent_not_permitted');
  });
});

describe('administration and audit', () => {
  it('lists credentials as metadata, revokes one, and offboards a user at every provider', async () => {
    const user = 'leaver@example.com';
    const viaA = await connect('agent-a', user);
    const viaB = await connect('agent-b', user);
    const admin = await as('agent-admin', 'admin@example.com');

    const listed = await h.call('GET', `/api/v1/admin/credentials?user_id=${encodeURIComponent(user)}&status=active`, admin);
    expect(listed.status).toBe(200);
    expect(listed.json.items).toHaveLength(2);
    expect(listed.text).not.toContain(viaA);
    expect(listed.text).not.toContain(viaB);
    const page1 = await h.call('GET', `/api/v1/admin/credentials?user_id=${encodeURIComponent(user)}&limit=1`, admin);
    expect(page1.json.items).toHaveLength(1);
    expect(page1.json.next_offset).toBe(1);

    const offboard = await h.call('POST', `/api/v1/admin/users/${encodeURIComponent(user)}/revoke-all`, admin, {});
    expect(offboard.status).toBe(200);
    expect(offboard.json.revoked).toHaveLength(2);
    for (const r of offboard.json.revoked) expect(r).toMatchObject({ status: 'revoked', revocation: 'revoked_at_provider' });
    expect((await h.introspect(viaA)).active).toBe(false);
    expect((await h.introspect(viaB)).active).toBe(false);

    const audit = await h.call(
      'GET',
      `/api/v1/admin/audit?user_id=${encodeURIComponent(user)}&event_type=credential.ended&from=${new Date(Date.now() - 60_000).toISOString()}`,
      admin,
    );
    expect(audit.status).toBe(200);
    expect(audit.json.items.length).toBe(2);
    for (const e of audit.json.items) expect(e).toMatchObject({ event_type: 'credential.ended', outcome: 'revoked', user_id: user });
    const issued = await h.call('GET', `/api/v1/admin/audit?user_id=${encodeURIComponent(user)}&event_type=credential.issued`, admin);
    expect(issued.json.items.length).toBeGreaterThanOrEqual(2);
    expect(issued.json.items[0].request_id).toBeTruthy();
    expect(issued.json.items[0].ip).toBeTruthy();
  });

  it('revokes a single credential by id', async () => {
    const token = await connect('agent-a', 'single@example.com');
    const admin = await as('agent-admin', 'admin@example.com');
    const listed = await h.call('GET', '/api/v1/admin/credentials?user_id=single%40example.com&status=active', admin);
    const id = listed.json.items[0].credential_id;
    const revoked = await h.call('DELETE', `/api/v1/admin/credentials/${id}`, admin, { reason: 'lost laptop' });
    expect(revoked.status).toBe(200);
    expect(revoked.json.status).toBe('revoked');
    expect((await h.introspect(token)).active).toBe(false);
    expect((await h.call('DELETE', `/api/v1/admin/credentials/${id}`, admin)).json.error.code).toBe('credential_ended');
  });

  it('validates admin queries', async () => {
    const admin = await as('agent-admin', 'admin@example.com');
    for (const q of ['status=bogus', 'limit=0', 'limit=1000', 'from=yesterday', 'colour=blue']) {
      const res = await h.call('GET', `/api/v1/admin/credentials?${q}`.replace('credentials?from', 'audit?from'), admin);
      expect(res.status, q).toBe(400);
      expect(res.json.error.code).toBe('invalid_request');
    }
  });
});

describe('the codec server for the Web UI', () => {
  it('decodes payloads only for authenticated operators with credential:admin', async () => {
    const [encoded] = await h.services.codec.encode([
      { metadata: { encoding: Buffer.from('json/plain') }, data: Buffer.from('{"phase":"active"}') },
    ]);
    const body = {
      payloads: [
        {
          metadata: Object.fromEntries(Object.entries(encoded!.metadata!).map(([k, v]) => [k, Buffer.from(v!).toString('base64')])),
          data: Buffer.from(encoded!.data!).toString('base64'),
        },
      ],
    };
    const post = (headers: Record<string, string>) =>
      fetch(`${h.baseUrl}/codec/decode`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'x-forwarded-proto': 'https', ...headers },
        body: JSON.stringify(body),
      });
    const anonymous = await post({});
    expect(anonymous.status).toBe(401);
    const user = await post({ authorization: `Bearer ${await gw.sign('alice@example.com')}` });
    expect(user.status).toBe(403);
    const operator = await post({ authorization: `Bearer ${await gw.sign('admin@example.com')}` });
    expect(operator.status).toBe(200);
    const decoded = (await operator.json()) as { payloads: { data: string }[] };
    expect(Buffer.from(decoded.payloads[0]!.data, 'base64').toString()).toBe('{"phase":"active"}');
    expect(body.payloads[0]!.data).not.toContain(Buffer.from('{"phase"').toString('base64').slice(0, 8));
  });
});

describe('transport protections', () => {
  it('allows CORS only from configured origins', async () => {
    const preflight = (origin: string) =>
      fetch(`${h.baseUrl}${CREDENTIAL_PATH}`, {
        method: 'OPTIONS',
        headers: { origin, 'access-control-request-method': 'POST', 'x-forwarded-proto': 'https' },
      });
    expect((await preflight('https://app.example.com')).headers.get('access-control-allow-origin')).toBe('https://app.example.com');
    expect((await preflight('https://evil.example.com')).headers.get('access-control-allow-origin')).toBeNull();
  });

  it('rate-limits the browser endpoints per address', async () => {
    let limited: Response | undefined;
    for (let i = 0; i < 60 && !limited; i++) {
      const res = await fetch(`${h.baseUrl}/api/v1/auth/tool/callback?state=x${i}&code=y`, { headers: { 'x-forwarded-proto': 'https' } });
      if (res.status === 429) limited = res;
      else await res.arrayBuffer();
    }
    expect(limited).toBeDefined();
    expect(((await limited!.json()) as { error: { code: string } }).error.code).toBe('rate_limited');
  });
});

describe("the users' page takes only the browser user's own identity", () => {
  it('lists with a browser identity, refuses one issued to an agent (which could otherwise disconnect other agents’ access)', async () => {
    const user = 'alice@example.com';
    const base = { 'x-forwarded-proto': 'https', accept: 'application/json' };
    const browser = await fetch(`${h.baseUrl}/api/v1/me/connections`, { headers: { ...base, 'x-user-identity': await gw.sign(user) } });
    expect(browser.status).toBe(200);
    expect(((await browser.json()) as { user_id: string }).user_id).toBe(user);
    const agentHeld = await gw.sign(user, { claims: { agent_id: 'agent-a' } });
    const refused = await fetch(`${h.baseUrl}/api/v1/me/connections`, { headers: { ...base, 'x-user-identity': agentHeld } });
    expect(refused.status).toBe(403);
    expect(((await refused.json()) as { error: { code: string } }).error.code).toBe('identity_agent_mismatch');
    const post = await fetch(`${h.baseUrl}/api/v1/me/connections/disconnect-all`, {
      method: 'POST',
      headers: { ...base, 'content-type': 'application/json', origin: h.publicOrigin, 'x-user-identity': agentHeld, 'x-csrf-token': 'x' },
      body: '{}',
    });
    expect(post.status).toBe(403);
  });
});
