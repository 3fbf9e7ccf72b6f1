import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { exportJWK, generateKeyPair } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
// The package as it ships: built by `npm test`'s pretest (`npm run client:build`).
import {
  agentAssertion,
  BrokerApiError,
  BrokerClient,
  ERROR_CODES,
  verifyWebhook,
  WebhookVerificationError,
} from '../../clients/typescript/dist/index.js';
import { gatewayTransport, withConsent } from '../../clients/typescript/dist/mcp.js';
import { ERROR_CATALOG } from '../../api/error-catalog.js';
import { consent } from '../support/browser.js';
import { freshOwner, startHarness, type Harness } from '../support/harness.js';
import { startMcpServer, type McpTestServer } from '../support/mcp-server.js';

let h: Harness;
let remote: McpTestServer;
beforeAll(async () => {
  remote = await startMcpServer({ gatewayTools: true });
  h = await startHarness({
    extraTools: [
      {
        id: 'remote',
        tool_type: 'mcp',
        connection_params: { type: 'streamable-http', url: remote.url },
        auth: { type: 'oauth2' },
        manifest: [],
      },
    ],
  });
});
afterAll(async () => {
  await h?.close();
  await remote?.close();
});

const clientFor = (who: { agent: string; user: string }) =>
  new BrokerClient({ baseUrl: h.baseUrl, identity: { development: { agentId: who.agent, userId: who.user } } });

describe('the typed client (@credential-broker/client), against the running service', () => {
  it('gets or authorizes, waits for the user, refreshes, revokes; errors carry the stable codes', async () => {
    const broker = clientFor(freshOwner('client'));
    const first = await broker.getOrAuthorize('sandbox');
    if (first.status !== 'authorization_required') throw new Error('expected a link first');
    const waiting = broker.waitForAuthorization('sandbox');
    expect((await h.consent(first.authorizationUrl, { login: 'client-user' })).status).toBe(200);
    expect((await waiting).status).toBe('active');

    const active = await broker.getOrAuthorize('sandbox');
    expect(active).toMatchObject({ status: 'active', accessToken: expect.any(String), scope: 'tools.read tools.write' });
    const refreshed = await broker.refresh('sandbox');
    expect(refreshed.status === 'active' && refreshed.accessToken).not.toBe(active.status === 'active' && active.accessToken);
    expect((await broker.revoke('sandbox')).status).toBe('revoked');

    const missing = await broker.getOrAuthorize('no-such-tool').catch((e: unknown) => e);
    expect(missing).toBeInstanceOf(BrokerApiError);
    expect(missing).toMatchObject({ code: 'tool_not_found', status: 404 });
    // The client's list of codes is the catalog's.
    expect([...ERROR_CODES].sort()).toEqual(Object.keys(ERROR_CATALOG).sort());
  });

  it('stops waiting when its signal aborts', async () => {
    const broker = clientFor(freshOwner('client-abort'));
    await broker.getOrAuthorize('sandbox');
    const stop = new AbortController();
    const started = Date.now();
    const waiting = broker.waitForAuthorization('sandbox', { signal: stop.signal });
    setTimeout(() => stop.abort(), 300);
    await expect(waiting).rejects.toThrow();
    expect(Date.now() - started).toBeLessThan(5_000);
  });

  it('calls an MCP tool through the gateway, hands the consent link to the caller, and retries once consented', async () => {
    const who = freshOwner('client-mcp');
    const broker = clientFor(who);
    const agent = new Client({ name: 'typed-client-test', version: '1.0.0' });
    await agent.connect(gatewayTransport(broker, 'remote'));
    const links: string[] = [];
    const result = await withConsent(broker, 'remote', () => agent.callTool({ name: 'whoami', arguments: {} }), {
      onConsentNeeded: async (need) => {
        links.push(need.url);
        // The user follows the link in their browser.
        await consent(need.url, h.callbackPrefix, { login: who.user });
      },
    });
    expect(links).toHaveLength(1);
    expect(JSON.stringify(result.content)).toContain(who.user);
    await agent.close();
  });

  it('verifies webhook deliveries the broker signed, and refuses a tampered one', async () => {
    const who = freshOwner('client-webhook');
    const broker = clientFor(who);
    const received: { ok: boolean; type?: string }[] = [];
    let secret = '';
    const server: Server = createServer((req, res) => {
      let body = '';
      req.on('data', (c) => (body += c));
      req.on('end', () => {
        try {
          received.push({ ok: true, type: verifyWebhook(secret, req.headers as Record<string, string>, body).type });
          verifyWebhook(secret, req.headers as Record<string, string>, body.replace('sandbox', 'sandboy'));
        } catch (err) {
          // The tampered copy must be refused as such.
          received.push({ ok: err instanceof WebhookVerificationError });
        }
        res.writeHead(200).end();
      });
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const sub = await h.call('POST', '/api/v1/webhooks', who, {
      url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/`,
      events: ['authorization.timed_out', 'credential.revoked'],
    });
    secret = sub.json.secret;
    await broker.getOrAuthorize('sandbox');
    await broker.revoke('sandbox');
    await expect.poll(() => received.length, { timeout: 15_000 }).toBe(2);
    expect(received).toEqual([{ ok: true, type: 'credential.revoked' }, { ok: true }]);
    server.close();
  });

  it('signs single-use agent assertions the broker accepts once', async () => {
    const { publicKey, privateKey } = await generateKeyPair('ES256');
    const agentId = freshOwner('client-signer').agent;
    await h.services.agents.create(agentId, { scopes: ['tool:*:use'] });
    await h.services.agents.setPublicKeys(agentId, { jwks: { keys: [{ ...(await exportJWK(publicKey)), kid: 'k1', alg: 'ES256' }] } });
    const assertion = await agentAssertion({ agentId, privateKey, kid: 'k1', audience: h.services.config.security.assertionAudience });
    expect(await h.services.agents.authenticate(`Bearer ${assertion}`)).toMatchObject({ agentId, method: 'assertion' });
    await expect(h.services.agents.authenticate(`Bearer ${assertion}`)).rejects.toMatchObject({ code: 'agent_assertion_replayed' });
  });
});
