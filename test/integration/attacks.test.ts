import type * as jose from 'jose';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { AgentRegistry } from '../../api/identity/agents.js';
import { AuditEventSchema } from '../../lib/db/entities.js';
import { fork } from '../../lib/db/orm.js';
import { credentialWorkflowId } from '../../lib/domain.js';
import type { ToolConfig } from '../../lib/tools.js';
import { CookieJar } from '../support/browser.js';
import { CREDENTIAL_PATH } from '../support/flows.js';
import { TestGateway } from '../support/gateway.js';
import { startHarness, type Harness } from '../support/harness.js';
import { startMcpServer, type McpTestServer } from '../support/mcp-server.js';
import { startCanary, startMaliciousMcp, type Canary, type MaliciousMode, type MaliciousServer } from '../support/hostile-servers.js';

/**
 * Regression tests for what an attacker found in production mode (issue: close the holes an attacker finds).
 * The broker runs as deployed: agent keys, gateway-signed identities from two trusted gateways, RBAC, HTTPS
 * through the proxy, and an outbound policy that allows only 127.0.0.1 (the real servers of the test) while a
 * canary on 127.0.0.2 stands for everything internal.
 */
const ROLES = `
roles:
  user: { description: all tools, scopes: ["tool:*:use", "tool:*:revoke"] }
  admin: { description: admin, inherits: [user], scopes: ["credential:admin"] }
`;
const USERS = `
default_roles: [user]
users:
  admin@example.com: [admin]
`;
const METRICS_TOKEN = 'metrics-scraper-token-0123456789';
const SSRF_MODES: MaliciousMode[] = ['challenge_to_canary', 'issuer_on_canary', 'registration_on_canary', 'redirect_to_canary'];

let h: Harness;
let gw: TestGateway;
let partner: TestGateway;
let canary: Canary;
let genuine: McpTestServer;
const malicious = new Map<string, MaliciousServer>();
const keys: Record<string, string> = {};

const mcpTool = (id: string, url: string): ToolConfig => ({
  id,
  tool_type: 'mcp',
  connection_params: { type: 'streamable-http', url },
  auth: { type: 'oauth2' },
  manifest: [],
});

beforeAll(async () => {
  gw = await TestGateway.start();
  partner = await TestGateway.start();
  partner.issuer = 'https://partner-gateway.test';
  canary = await startCanary();
  for (const mode of SSRF_MODES) malicious.set(mode, await startMaliciousMcp(mode, { canary }));
  // The mix-up server points at a genuine provider (a real oidc-provider that serves many resources).
  genuine = await startMcpServer({ acceptAnyResource: true });
  malicious.set(
    'mix_up',
    await startMaliciousMcp('mix_up', {
      canary,
      genuine: { authorizationEndpoint: `${genuine.issuer}/auth`, registrationEndpoint: `${genuine.issuer}/reg` },
    }),
  );
  const { agent_claim: _defaultOn, ...first } = gw.trustConfig().trusted_issuers[0]!;
  h = await startHarness({
    extraTools: [...malicious].map(([mode, server]) => mcpTool(mode.replaceAll('_', '-'), server.url)),
    production: {
      trust: {
        jwks_cooldown_seconds: 0,
        trusted_issuers: [
          { ...first, user_namespace: '' },
          { ...partner.trustConfig().trusted_issuers[0]!, user_namespace: 'partner' },
        ],
      },
      rolesYaml: ROLES,
      usersYaml: USERS,
      env: {
        OUTBOUND_ALLOW_LOOPBACK: 'false',
        OUTBOUND_ALLOWLIST: '127.0.0.1',
        METRICS_TOKEN,
        // A metadata-document URL is configured: the broker must still not offer it to a server without RFC 9207.
        OAUTH_CLIENT_METADATA_URL: 'https://broker.test/oauth/client-metadata.json',
        RATE_LIMIT_CALLBACK_IP_PER_MINUTE: '10000',
      },
    },
  });
  for (const id of ['intruder-a', 'intruder-b']) {
    await h.services.agents.create(id);
    keys[id] = (await h.services.agents.issueKey(id)).key;
  }
});
afterAll(async () => {
  await h?.close();
  for (const server of malicious.values()) await server.close();
  await canary?.close();
  await genuine?.close();
  await gw?.close();
  await partner?.close();
});

async function as(agent: string, user: string, opts: { gateway?: TestGateway; claims?: jose.JWTPayload } = {}) {
  return {
    headers: { authorization: `Bearer ${keys[agent]}`, 'x-user-identity': await (opts.gateway ?? gw).sign(user, { claims: opts.claims }) },
  };
}

async function auditCodes(eventType: string, where: Record<string, unknown> = {}): Promise<string[]> {
  const rows = await fork(h.services.orm).find(AuditEventSchema, { eventType, ...where });
  return rows.map((e) => String((e.detail as { code?: string } | null)?.code));
}

/** The user's whole journey in their own browser, with their own identity at the broker's pages. */
async function connect(agent: string, user: string, gateway = gw, path = CREDENTIAL_PATH): Promise<string> {
  const first = await h.call('POST', path, await as(agent, user, { gateway }));
  expect(first.status, first.text).toBe(202);
  const page = await h.consent(first.json.authorization_url, { login: user, identity: await gateway.sign(user) });
  expect(page.status, page.html).toBe(200);
  const second = await h.call('POST', path, await as(agent, user, { gateway }));
  expect(second.status, second.text).toBe(200);
  return second.json.access_token;
}

describe('1. consent belongs to the browser that passed the start page', () => {
  it("refuses a victim who completes the attacker's lifted provider URL in another browser; nothing is stored", async () => {
    const attacker = 'mallory@example.com';
    const victim = 'victim@example.com';
    const request = await h.call('POST', CREDENTIAL_PATH, await as('intruder-a', attacker));
    expect(request.status).toBe(202);
    // Mallory's browser passes the start page as herself, and stops at the redirect to the provider.
    const malloryBrowser = new CookieJar();
    const lifted = await h.consent(request.json.authorization_url, {
      login: attacker,
      identity: await gw.sign(attacker),
      jar: malloryBrowser,
      stopAtProvider: true,
    });
    expect(lifted.providerUrl?.origin).toBe(new URL(h.sandbox.issuer).origin);
    expect(malloryBrowser.names(h.publicOrigin).some((n) => n.startsWith('__Host-acb-consent-'))).toBe(true);

    // The victim opens the lifted URL in their own browser and consents at the genuine provider.
    const victimBrowser = new CookieJar();
    const withoutIdentity = await h.consent(lifted.providerUrl!.href, { login: victim, jar: victimBrowser });
    expect(withoutIdentity.status).toBe(403);
    expect(withoutIdentity.html).toContain('not started in this browser');
    const status = await h.call('GET', CREDENTIAL_PATH, await as('intruder-a', attacker));
    expect(status.json.status).toBe('awaiting_authorization');
    expect((await h.call('POST', CREDENTIAL_PATH, await as('intruder-a', attacker))).status).toBe(202);
    expect(await auditCodes('authorization.callback', { userId: attacker, outcome: 'denied' })).toContain('consent_browser_mismatch');

    // Mallory's own browser, presenting the victim's identity at the callback, is refused too.
    const mixed = await h.consent(lifted.providerUrl!.href, { login: victim, identity: await gw.sign(victim), jar: malloryBrowser });
    expect(mixed.status).toBe(403);
    expect(await auditCodes('authorization.callback', { userId: attacker, outcome: 'denied' })).toContain('session_mismatch');

    // The authorization stayed pending for the right browser: Mallory can connect her own account only.
    const own = await h.consent(request.json.authorization_url, {
      login: attacker,
      identity: await gw.sign(attacker),
      jar: new CookieJar(),
    });
    expect(own.status, own.html).toBe(200);
    const token = (await h.call('POST', CREDENTIAL_PATH, await as('intruder-a', attacker))).json.access_token;
    expect((await h.introspect(token)).sub).toBe(attacker);
  });

  it('sets the consent cookie __Host-, Secure, HttpOnly, SameSite=Lax, for the one request', async () => {
    const first = await h.call('POST', CREDENTIAL_PATH, await as('intruder-a', 'cookie@example.com'));
    const start = new URL(first.json.authorization_url);
    const res = await fetch(`${h.baseUrl}${start.pathname}${start.search}`, {
      redirect: 'manual',
      headers: { 'x-forwarded-proto': 'https', 'x-user-identity': await gw.sign('cookie@example.com') },
    });
    expect(res.status).toBe(302);
    const [cookie] = res.headers.getSetCookie();
    expect(cookie).toMatch(new RegExp(`^__Host-acb-consent-${start.searchParams.get('request')}=`));
    expect(cookie).toMatch(/; Path=\//);
    expect(cookie).toMatch(/; HttpOnly/);
    expect(cookie).toMatch(/; Secure/);
    expect(cookie).toMatch(/; SameSite=Lax/);
  });
});

describe('2. SSRF: URLs learned from an MCP server pass the outbound policy', () => {
  it.each(SSRF_MODES)('a server whose %s never makes the broker reach the canary, and the agent hears only a code', async (mode) => {
    const res = await h.call(
      'POST',
      `/api/v1/credentials/${mode.replaceAll('_', '-')}`,
      await as('intruder-a', `ssrf-${mode}@example.com`),
    );
    expect(res.status, res.text).toBe(502);
    expect(res.json.error.code).toBe('outbound_refused');
    expect(res.text).not.toMatch(/127\.0\.0\.2|canary|secret-settings/);
    expect(canary.hits).toEqual([]);
  });
});

describe("3. mix-up: a malicious MCP server cannot collect a genuine provider's code", () => {
  it("does not offer the shared metadata-document client id to a server without RFC 9207, and refuses the genuine issuer's response", async () => {
    const server = malicious.get('mix_up')!;
    const user = 'mixup@example.com';
    const first = await h.call('POST', '/api/v1/credentials/mix-up', await as('intruder-a', user));
    expect(first.status, first.text).toBe(202);
    let iss: string | null = null;
    const done = await h.consent(first.json.authorization_url, {
      login: user,
      identity: await gw.sign(user),
      editCallback: (url) => (iss = url.searchParams.get('iss')),
    });
    // The user consented at the genuine provider with a client id registered at the attacker, not our document URL.
    expect(server.registrations).toBe(1);
    expect(iss).toBe(genuine.issuer);
    expect(done.status).toBe(400);
    const status = await vi.waitFor(
      async () => {
        const res = await h.call('GET', '/api/v1/credentials/mix-up', await as('intruder-a', user));
        expect(res.json.status).toBe('authorization_failed');
        return res.json;
      },
      { timeout: 10_000 },
    );
    // Refused by the broker (the response's iss is not the issuer it asked), not by the provider.
    expect(status.end_reason).toBe('invalid_response');
    // The code and the PKCE verifier never reached the attacker's token endpoint.
    expect(server.tokenRequests).toEqual([]);
  });

  it('requires iss in the authorization response of a discovered server', async () => {
    const server = malicious.get('mix_up')!;
    const user = 'no-iss@example.com';
    const first = await h.call('POST', '/api/v1/credentials/mix-up', await as('intruder-b', user));
    expect(first.status, first.text).toBe(202);
    const page = await h.consent(first.json.authorization_url, {
      login: user,
      identity: await gw.sign(user),
      editCallback: (url) => url.searchParams.delete('iss'),
    });
    expect(page.status).toBe(400);
    const status = await vi.waitFor(
      async () => {
        const res = await h.call('GET', '/api/v1/credentials/mix-up', await as('intruder-b', user));
        expect(res.json.status).toBe('authorization_failed');
        return res.json;
      },
      { timeout: 10_000 },
    );
    expect(status.end_reason).toBe('iss_missing');
    expect(server.tokenRequests).toEqual([]);
  });
});

describe('4. the codec endpoint', () => {
  const post = (headers: Record<string, string>, body: string, https = true) =>
    fetch(`${h.baseUrl}/codec/decode`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...(https ? { 'x-forwarded-proto': 'https' } : {}), ...headers },
      body,
    });

  it('authenticates before it reads a byte of the body, bounds the body, and needs HTTPS in production', async () => {
    const huge = `{"payloads":[${'x'.repeat(4_900_000)}`;
    // Not valid JSON: a server that parsed first would answer 400 invalid_json, not 401.
    const anonymous = await post({}, huge);
    expect(anonymous.status).toBe(401);
    expect(((await anonymous.json()) as { error: { code: string } }).error.code).toBe('operator_authentication_required');
    const operator = { authorization: `Bearer ${await gw.sign('admin@example.com')}` };
    const tooLarge = await post(operator, JSON.stringify({ payloads: [{ metadata: {}, data: 'A'.repeat(600_000) }] }));
    expect(tooLarge.status).toBe(413);
    const plain = await post(operator, '{"payloads":[]}', false);
    expect(plain.status).toBe(400);
    expect(((await plain.json()) as { error: { code: string } }).error.code).toBe('https_required');
    expect((await post(operator, '{"payloads":[]}')).status).toBe(200);
  });
});

describe('5. long polls', () => {
  async function openWait(who: { headers: Record<string, string> }, signal: AbortSignal) {
    return fetch(`${h.baseUrl}${CREDENTIAL_PATH}?wait=60`, { headers: { ...who.headers, 'x-forwarded-proto': 'https' }, signal }).then(
      async (res) => ({ status: res.status, body: await res.text() }),
      () => ({ status: 0, body: 'aborted' }),
    );
  }

  it('share one watch per credential, wait on the workflow (one update, reused) and stop the moment their callers hang up', async () => {
    const user = 'poller@example.com';
    const who = await as('intruder-a', user);
    expect((await h.call('POST', CREDENTIAL_PATH, who)).status).toBe(202);
    for (let round = 0; round < 2; round++) {
      const callers = Array.from({ length: 5 }, () => new AbortController());
      const answers = callers.map((c) => openWait(who, c.signal));
      await vi.waitFor(() => expect([h.api.waits.waiting, h.api.waits.watching]).toEqual([5, 1]), { timeout: 5_000 });
      for (const c of callers) c.abort();
      await Promise.all(answers);
      await vi.waitFor(() => expect([h.api.waits.waiting, h.api.waits.watching]).toEqual([0, 0]), { timeout: 2_000 });
    }
    // Ten waits in two rounds: one awaitConsent update in the workflow's history (its id is fixed per
    // credential), no timer — abandoned waits left nothing behind to clean up.
    const history = await h.client.workflow
      .getHandle(credentialWorkflowId({ agentId: 'intruder-a', userId: user, toolId: 'sandbox' }))
      .fetchHistory();
    const accepted = (history.events ?? []).filter((e) => e.workflowExecutionUpdateAcceptedEventAttributes);
    const names = accepted.map((e) => e.workflowExecutionUpdateAcceptedEventAttributes?.acceptedRequest?.input?.name);
    expect(names.filter((n) => n === 'awaitConsent')).toHaveLength(1);
    expect((history.events ?? []).filter((e) => e.timerStartedEventAttributes)).toHaveLength(1); // the authorization's deadline
  });

  it('are capped per agent with a 429 and a stable code', async () => {
    const callers: AbortController[] = [];
    const answers: Promise<{ status: number; body: string }>[] = [];
    for (let i = 0; i < 20; i++) {
      const who = await as('intruder-b', `many-${i}@example.com`);
      expect((await h.call('POST', CREDENTIAL_PATH, who)).status).toBe(202);
      const c = new AbortController();
      callers.push(c);
      answers.push(openWait(who, c.signal));
    }
    await vi.waitFor(() => expect(h.api.waits.waiting).toBe(20), { timeout: 5_000 });
    const who = await as('intruder-b', 'one-too-many@example.com');
    expect((await h.call('POST', CREDENTIAL_PATH, who)).status).toBe(202);
    const refused = await h.call('GET', `${CREDENTIAL_PATH}?wait=5`, who);
    expect(refused.status).toBe(429);
    expect(refused.json.error.code).toBe('too_many_waits');
    for (const c of callers) c.abort();
    await Promise.all(answers);
    await vi.waitFor(() => expect(h.api.waits.waiting).toBe(0), { timeout: 2_000 });
  });
});

describe('6, 8, 11: identities', () => {
  it('serves users called constructor or toString like anyone else (no 500)', async () => {
    for (const user of ['constructor', 'toString', 'hasOwnProperty']) {
      const res = await h.call('POST', CREDENTIAL_PATH, await as('intruder-a', user));
      expect(res.status, `${user}: ${res.text}`).toBe(202);
    }
  });

  it('checks the agent binding of an identity by default', async () => {
    const res = await h.call('POST', CREDENTIAL_PATH, await as('intruder-a', 'bound@example.com', { claims: { agent_id: 'intruder-b' } }));
    expect(res.status).toBe(403);
    expect(res.json.error.code).toBe('identity_agent_mismatch');
  });

  it("keeps the same subject from two gateways apart: the partner's alice never reads our alice's credential", async () => {
    const token = await connect('intruder-a', 'alice');
    const theirs = await as('intruder-a', 'alice', { gateway: partner });
    const read = await h.call('GET', CREDENTIAL_PATH, theirs);
    expect(read.status).toBe(404);
    const post = await h.call('POST', CREDENTIAL_PATH, theirs);
    expect(post.status).toBe(202);
    expect(post.text).not.toContain(token);
    // Her link is for partner:alice, and our alice's browser cannot complete it either.
    const page = await h.consent(post.json.authorization_url, { login: 'alice', identity: await gw.sign('alice') });
    expect(page.status).toBe(403);
    expect((await h.call('POST', CREDENTIAL_PATH, await as('intruder-a', 'alice'))).json.access_token).toBe(token);
  });
});

describe('9. agent key revocation', () => {
  it('takes effect at once in the revoking process and within about a second in another', async () => {
    const other = new AgentRegistry(h.services.orm, { assertionAudience: h.publicOrigin });
    const { key, keyId } = await h.services.agents.issueKey('intruder-a', 'short-lived');
    const header = `Bearer ${key}`;
    expect((await other.authenticate(header)).agentId).toBe('intruder-a');
    const identity = await gw.sign('rev@example.com');
    expect((await h.call('GET', CREDENTIAL_PATH, { headers: { authorization: header, 'x-user-identity': identity } })).status).toBe(404);
    await h.services.agents.revokeKey(keyId);
    const here = await h.call('GET', CREDENTIAL_PATH, { headers: { authorization: header, 'x-user-identity': identity } });
    expect(here.json.error.code).toBe('agent_credential_invalid');
    const revokedAt = Date.now();
    await vi.waitFor(() => expect(other.authenticate(header)).rejects.toMatchObject({ code: 'agent_credential_invalid' }), {
      timeout: 3_000,
      interval: 50,
    });
    expect(Date.now() - revokedAt).toBeLessThan(2_000);
  });
});

describe('10. step-up', () => {
  it('cannot ask for a scope beyond what the tool allows', async () => {
    await connect('intruder-b', 'stepper@example.com');
    const res = await h.call('POST', CREDENTIAL_PATH, await as('intruder-b', 'stepper@example.com'), { insufficient_scope: 'admin' });
    expect(res.status).toBe(403);
    expect(res.json.error.code).toBe('scope_not_allowed');
    expect(await auditCodes('credential.step_up', { userId: 'stepper@example.com', outcome: 'denied' })).toContain('scope_not_allowed');
    const allowed = await h.call('POST', CREDENTIAL_PATH, await as('intruder-b', 'stepper@example.com'), { insufficient_scope: 'openid' });
    expect(allowed.status, allowed.text).toBe(202);
  });
});

describe('13. metrics', () => {
  it('needs the bearer token when METRICS_TOKEN is set', async () => {
    const anonymous = await fetch(`${h.baseUrl}/metrics`);
    expect(anonymous.status).toBe(401);
    expect(((await anonymous.json()) as { error: { code: string } }).error.code).toBe('metrics_authentication_required');
    expect((await fetch(`${h.baseUrl}/metrics`, { headers: { authorization: 'Bearer wrong' } })).status).toBe(401);
    const scraper = await fetch(`${h.baseUrl}/metrics`, { headers: { authorization: `Bearer ${METRICS_TOKEN}` } });
    expect(scraper.status).toBe(200);
    expect(await scraper.text()).toContain('# TYPE');
  });
});
