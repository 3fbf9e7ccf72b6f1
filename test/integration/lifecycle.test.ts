import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { AuthorizationRequestSchema } from '../../lib/db/entities.js';
import { fork } from '../../lib/db/orm.js';
import { credentialWorkflowId } from '../../lib/domain.js';
import { consent } from '../support/browser.js';
import { authorize, CREDENTIAL_PATH, latestRow, providerUrlBehind } from '../support/flows.js';
import { freshOwner, startHarness, type Harness } from '../support/harness.js';

let h: Harness;

beforeAll(async () => {
  h = await startHarness();
});
afterAll(async () => {
  await h?.close();
});

describe('credential lifecycle over HTTP', () => {
  it('asks for authorization, then serves a token the provider says is active', async () => {
    const who = freshOwner();
    const first = await h.call('POST', CREDENTIAL_PATH, who);
    expect(first.status).toBe(202);
    expect(first.json.status).toBe('authorization_required');
    expect(Date.parse(first.json.expires_at)).toBeGreaterThan(Date.now());
    // The link leads to our start page, which sends the browser on to the provider.
    expect(new URL(first.json.authorization_url).origin).toBe(h.baseUrl);
    const authUrl = await providerUrlBehind(first.json.authorization_url);
    expect(authUrl.origin).toBe(h.sandbox.issuer);
    expect(authUrl.searchParams.get('code_challenge_method')).toBe('S256');
    expect(authUrl.searchParams.get('redirect_uri')).toBe(h.callbackPrefix);

    const pending = await h.call('GET', CREDENTIAL_PATH, who);
    expect(pending.json.status).toBe('awaiting_authorization');
    expect(pending.json.authorization_url).toBe(first.json.authorization_url);

    const waiting = h.call('GET', `${CREDENTIAL_PATH}?wait=30`, who);
    const page = await consent(first.json.authorization_url, h.callbackPrefix, { login: who.user });
    expect(page.status).toBe(200);
    expect(page.html).toContain('Connected');
    const waited = await waiting;
    expect(waited.status).toBe(200);
    expect(waited.json.status).toBe('active');
    expect(waited.json).not.toHaveProperty('access_token');

    const second = await h.call('POST', CREDENTIAL_PATH, who);
    expect(second.status).toBe(200);
    expect(second.json).toMatchObject({ status: 'active', token_type: expect.stringMatching(/bearer/i), scope: 'tools.read tools.write' });
    expect(Date.parse(second.json.expires_at)).toBeGreaterThan(Date.now());
    expect(page.html).not.toContain(second.json.access_token);
    const introspection = await h.introspect(second.json.access_token);
    expect(introspection.active).toBe(true);
    expect(introspection.sub).toBe(who.user);
  });

  it('converges concurrent requests on one workflow and one authorization', async () => {
    const who = freshOwner('concurrent');
    const answers = await Promise.all([1, 2, 3, 4].map(() => h.call('POST', CREDENTIAL_PATH, who)));
    for (const a of answers) expect(a.status).toBe(202);
    expect(new Set(answers.map((a) => a.json.authorization_url)).size).toBe(1);
    const runs = [];
    for await (const wf of h.client.workflow.list({
      query: `WorkflowId = '${credentialWorkflowId({ agentId: who.agent, userId: who.user, toolId: 'sandbox' })}'`,
    }))
      runs.push(wf);
    expect(runs).toHaveLength(1);
  });

  it('revokes at the provider, ends the workflow and keeps the row marked revoked', async () => {
    const who = freshOwner('revoke');
    const { accessToken } = await authorize(h, who);
    expect((await h.introspect(accessToken)).active).toBe(true);

    const revoked = await h.call('DELETE', CREDENTIAL_PATH, who);
    expect(revoked.status).toBe(200);
    expect(revoked.json.status).toBe('revoked');
    expect((await h.introspect(accessToken)).active).toBe(false);

    const row = await latestRow(h, who);
    expect(row).toMatchObject({ status: 'revoked', accessToken: null, refreshToken: null });
    expect(row!.deletedAt).toBeInstanceOf(Date);
    const description = await h.client.workflow.getHandle(row!.workflowId).describe();
    expect(description.status.name).toBe('COMPLETED');

    expect((await h.call('DELETE', CREDENTIAL_PATH, who)).json.error.code).toBe('credential_not_found');
    const again = await h.call('POST', CREDENTIAL_PATH, who);
    expect(again.status).toBe(202);
    expect(again.json.authorization_url).toBeTruthy();
  });

  it('tells the user when they declined at the provider, and ends the authorization', async () => {
    const who = freshOwner('deny');
    const first = await h.call('POST', CREDENTIAL_PATH, who);
    const page = await consent(first.json.authorization_url, h.callbackPrefix, { login: who.user, deny: true });
    expect(page.callbackUrl.searchParams.get('error')).toBe('access_denied');
    expect(page.status).toBe(400);
    expect(page.html).toContain('access_denied');
    await vi.waitFor(async () => expect((await latestRow(h, who))?.status).toBe('authorization_failed'), { timeout: 10_000 });
  });

  it('refuses a forged, a reused and a missing state with a clear page', async () => {
    const forged = await fetch(`${h.callbackPrefix}?state=forged-state-value&code=abc`);
    expect(forged.status).toBe(400);
    expect(await forged.text()).toContain('not known here');

    const missing = await fetch(`${h.callbackPrefix}?code=abc`);
    expect(missing.status).toBe(400);
    expect(await missing.text()).toContain('incomplete');

    const who = freshOwner('reuse');
    const first = await h.call('POST', CREDENTIAL_PATH, who);
    const page = await consent(first.json.authorization_url, h.callbackPrefix, { login: who.user });
    expect(page.status).toBe(200);
    const replay = await fetch(page.callbackUrl);
    expect(replay.status).toBe(400);
    expect(await replay.text()).toContain('already been used');
    // The authorization link itself, opened again after success: not an error, the account is connected.
    const again = await fetch(first.json.authorization_url, { redirect: 'manual' });
    expect(again.status).toBe(200);
    expect(await again.text()).toContain('already connected');

    const injected = await fetch(`${h.callbackPrefix}?state=%3Cscript%3Ealert(1)%3C%2Fscript%3E&code=x`);
    expect(await injected.text()).not.toContain('<script>');
  });

  it('stores the state hashed and the PKCE verifier encrypted', async () => {
    const who = freshOwner('pkce');
    const first = await h.call('POST', CREDENTIAL_PATH, who);
    const state = (await providerUrlBehind(first.json.authorization_url)).searchParams.get('state')!;
    const row = await latestRow(h, who);
    const request = await fork(h.services.orm).findOneOrFail(AuthorizationRequestSchema, { credentialId: row!.id });
    expect(request.stateHash).not.toBe(state);
    expect(request.stateHash).toMatch(/^[0-9a-f]{64}$/);
    expect(request.codeVerifier!.startsWith('v1.')).toBe(true);
  });

  it('lets operators find each authorization by typed search attributes', async () => {
    const who = freshOwner('search');
    await authorize(h, who);
    await vi.waitFor(
      async () => {
        const found = [];
        for await (const wf of h.client.workflow.list({
          query: `AgentId = '${who.agent}' AND UserId = '${who.user}' AND ToolId = 'sandbox' AND CredentialStatus = 'active'`,
        })) {
          found.push(wf.workflowId);
        }
        expect(found).toEqual([credentialWorkflowId({ agentId: who.agent, userId: who.user, toolId: 'sandbox' })]);
      },
      { timeout: 15_000, interval: 300 },
    );
    // The Web UI's list shows a summary line, the workflow page the current phase.
    const handle = h.client.workflow.getHandle(credentialWorkflowId({ agentId: who.agent, userId: who.user, toolId: 'sandbox' }));
    expect(await (await handle.describe()).staticSummary()).toBe(`credential · ${who.agent} · ${who.user} · sandbox`);
    const metadata = await handle.query<{ currentDetails?: string }>('__temporal_workflow_metadata');
    expect(metadata.currentDetails).toBe('phase **active**');
  });
});

describe('request validation', () => {
  const who = { agent: 'agent-validation', user: 'user-validation' };

  it.each([
    ['an unknown tool', 'POST', '/api/v1/credentials/nope', undefined, 404, 'tool_not_found'],
    ['a body that is not JSON', 'POST', CREDENTIAL_PATH, '{"force_refresh":', 400, 'invalid_json'],
    ['an unknown body field', 'POST', CREDENTIAL_PATH, { colour: 'blue' }, 400, 'invalid_request'],
    ['a wrongly typed body field', 'POST', CREDENTIAL_PATH, { force_refresh: 'yes' }, 400, 'invalid_request'],
    ['a body over the size limit', 'POST', CREDENTIAL_PATH, { force_refresh: true, pad: 'x'.repeat(20_000) }, 413, 'payload_too_large'],
    ['a non-numeric wait', 'GET', `${CREDENTIAL_PATH}?wait=soon`, undefined, 400, 'invalid_wait'],
    ['a wait over the limit', 'GET', `${CREDENTIAL_PATH}?wait=600`, undefined, 400, 'invalid_wait'],
    ['an unknown endpoint', 'GET', '/api/v1/nothing', undefined, 404, 'not_found'],
  ])('answers %s with a stable 4xx code', async (_label, method, path, body, status, code) => {
    const res = await h.call(method, path, who, body);
    expect(res.status).toBe(status);
    expect(res.json.error.code).toBe(code);
    expect(res.json.error.message).toBeTruthy();
  });

  it('refuses missing or malformed identity headers', async () => {
    const none = await fetch(`${h.baseUrl}${CREDENTIAL_PATH}`, { method: 'POST' });
    expect(none.status).toBe(401);
    expect(((await none.json()) as { error: { code: string } }).error.code).toBe('agent_authentication_required');
    const bad = await h.call('POST', CREDENTIAL_PATH, { agent: '../../etc', user: 'u' });
    expect(bad.status).toBe(400);
    expect(bad.json.error.code).toBe('invalid_agent_id');
  });

  it('reports no credential before any was requested', async () => {
    const res = await h.call('GET', CREDENTIAL_PATH, { agent: 'agent-none', user: 'user-none' });
    expect(res.status).toBe(404);
    expect(res.json.error.code).toBe('credential_not_found');
  });

  it('answers health and readiness', async () => {
    expect((await fetch(`${h.baseUrl}/healthz`)).status).toBe(200);
    const ready = await fetch(`${h.baseUrl}/readyz`);
    expect(ready.status).toBe(200);
    expect(await ready.json()).toEqual({ status: 'ready', checks: { database: 'ok', temporal: 'ok' } });
  });
});
