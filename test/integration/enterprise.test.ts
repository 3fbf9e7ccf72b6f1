import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { McpError, type CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import * as jose from 'jose';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { AuditEventSchema, CredentialSchema, PresentedIdentitySchema } from '../../lib/db/entities.js';
import { fork } from '../../lib/db/orm.js';
import { credentialWorkflowId } from '../../lib/domain.js';
import type { ToolConfig } from '../../lib/tools.js';
import {
  acceptIdentityAssertions,
  IDP_CLIENT,
  startIdentityProvider,
  JWT_BEARER,
  type AssertionCheck,
  type IdentityProvider,
} from '../support/enterprise.js';
import { freshOwner, startHarness, type Harness } from '../support/harness.js';
import { historiesOf } from '../support/history.js';
import { startMcpServer, type McpTestServer } from '../support/mcp-server.js';
import { startProtectedApi, type ProtectedApi } from '../support/protected-api.js';

/**
 * Enterprise-managed authorization (the MCP extension; ID-JAG) and plain token exchange, against real servers: an
 * enterprise identity provider (oidc-provider: its login pages issue the user's ID token; token exchange added
 * through `registerGrantType`), an MCP server (the official SDK) whose authorization server (oidc-provider) redeems
 * identity assertion grants (the JWT bearer grant, added the same way), an HTTP API that trusts the identity
 * provider's own tokens. No browser and no consent page once the user is signed in to their enterprise.
 */
let h: Harness;
let idp: IdentityProvider;
let mcp: McpTestServer;
let api: ProtectedApi;
let assertions: AssertionCheck;
let gatewayKey: jose.CryptoKey;
const AS_CLIENT = { client_id: 'broker-at-mcp', client_secret: 'broker-at-mcp-secret' };

beforeAll(async () => {
  // The API checks tokens at the identity provider, which issues them for the API's URL.
  api = await startProtectedApi((token) => idp.introspect(token));
  idp = await startIdentityProvider({ accessTokenResource: `${api.origin}/v1` });
  mcp = await startMcpServer({ gatewayTools: true, clients: [{ ...AS_CLIENT, redirect_uris: [], grant_types: [JWT_BEARER] }] });
  // Short tokens: renewal (a new exchange) shows within seconds.
  assertions = acceptIdentityAssertions(mcp.provider, { issuer: mcp.issuer, resource: mcp.url, scopes: ['mcp:tools'], ttlSeconds: 6 }, idp);
  idp.audiences.set(mcp.issuer, AS_CLIENT.client_id);
  const gateway = await jose.generateKeyPair('ES256', { extractable: true });
  gatewayKey = gateway.privateKey;
  const identityProvider = { issuer: idp.issuer, client_id: IDP_CLIENT.client_id, client_secret: IDP_CLIENT.client_secret };
  const tools: ToolConfig[] = [
    {
      id: 'corp',
      tool_type: 'mcp',
      connection_params: { type: 'streamable-http', url: mcp.url },
      auth: { type: 'enterprise', ...AS_CLIENT, identity_provider: identityProvider },
      manifest: [],
    },
    // The same, its tokens bound to a key of the broker's (DPoP) at the authorization server.
    {
      id: 'corp-bound',
      tool_type: 'mcp',
      connection_params: { type: 'streamable-http', url: mcp.url },
      auth: { type: 'enterprise', ...AS_CLIENT, identity_provider: identityProvider, dpop: true },
      manifest: [],
    },
    {
      id: 'corp-api',
      tool_type: 'api',
      connection_params: { type: 'http', url: `${api.origin}/v1` },
      auth: { type: 'token_exchange', resource: `${api.origin}/v1`, identity_provider: identityProvider },
      manifest: [],
    },
  ];
  h = await startHarness({
    extraTools: tools,
    trust: {
      trusted_issuers: [
        // The enterprise's ID tokens, for the broker's client there: what the tools above exchange.
        { issuer: idp.issuer, jwks_url: `${idp.issuer}/jwks`, audience: IDP_CLIENT.client_id, user_namespace: 'corp' },
        // Another gateway's signed identities, for the same users.
        {
          issuer: 'https://gateway.test',
          jwks: { keys: [await jose.exportJWK(gateway.publicKey)] },
          audience: 'broker',
          user_namespace: 'corp',
        },
      ],
    },
  });
});
afterAll(async () => {
  await h?.close();
  await idp?.close();
  await mcp?.close();
  await api?.close();
});

function as(agent: string, identity: string) {
  return { headers: { 'x-agent-id': agent, 'x-user-identity': identity } };
}

async function callThroughGateway(agent: string, identity: string, name: string): Promise<CallToolResult> {
  const client = new Client({ name: 'enterprise-agent', version: '1.0.0' }, { capabilities: {} });
  await client.connect(
    new StreamableHTTPClientTransport(new URL(`${h.baseUrl}/api/v1/mcp/corp`), {
      requestInit: { headers: { 'x-agent-id': agent, 'x-user-identity': identity } },
    }),
  );
  try {
    return (await client.callTool({ name, arguments: {} })) as CallToolResult;
  } finally {
    await client.close();
  }
}

async function auditOf(agent: string, eventType: string) {
  return fork(h.services.orm).find(AuditEventSchema, { agentId: agent, eventType }, { orderBy: { at: 'asc' } });
}

describe('enterprise-managed authorization (ID-JAG)', () => {
  it('the user’s enterprise sign-in is enough: ID token → identity assertion grant → the tool’s token, no consent', async () => {
    const { agent } = freshOwner('enterprise');
    const idToken = await idp.signIn('alice');
    const before = idp.exchanges.length;

    // Through the gateway: the first call already works, as alice at the tool.
    const result = await callThroughGateway(agent, idToken, 'whoami');
    expect(result.isError ?? false, JSON.stringify(result)).toBe(false);
    expect((result.content[0] as { text: string }).text).toBe('alice');

    // One exchange at the identity provider, for this server and this resource; the grant redeemed once.
    const exchanges = idp.exchanges.slice(before);
    expect(exchanges).toHaveLength(1);
    expect(exchanges[0]).toMatchObject({ requested: 'urn:ietf:params:oauth:token-type:id-jag', audience: mcp.issuer, resource: mcp.url });
    expect(assertions.redeemed.size).toBeGreaterThanOrEqual(1);

    // The credential is alice's, obtained without a browser; the token the agent may read is the user's at the tool.
    const read = await h.call('POST', '/api/v1/credentials/corp', as(agent, idToken));
    expect(read.status, read.text).toBe(200);
    const info = await mcp.introspect(read.json.access_token);
    expect(info).toMatchObject({ active: true, sub: 'alice', aud: mcp.url });
    const row = await fork(h.services.orm).findOneOrFail(CredentialSchema, { agentId: agent, userId: 'corp:alice', toolId: 'corp' });
    expect(row.status).toBe('active');
    const exchanged = await auditOf(agent, 'credential.identity_exchanged');
    expect(exchanged.map((e) => e.outcome)).toEqual(['success']);

    // The identity is kept encrypted; neither it, the grant nor the token is in any workflow history.
    const kept = await fork(h.services.orm).find(PresentedIdentitySchema, { agentId: agent });
    expect(kept).toHaveLength(1);
    expect(kept[0]!.token).not.toContain(idToken.split('.')[1]!);
    const histories = await historiesOf(
      h.client,
      h.services.codec,
      credentialWorkflowId({ agentId: agent, userId: 'corp:alice', toolId: 'corp' }),
    );
    expect(histories.length).toBeGreaterThanOrEqual(1);
    for (const secret of [idToken, exchanges[0]!.issued, read.json.access_token as string]) {
      expect(histories.some((text) => text.includes(secret))).toBe(false);
    }
  });

  it('with DPoP, the redeemed token is bound to the broker’s key, and the gateway proves it', async () => {
    const { agent } = freshOwner('enterprise-dpop');
    const idToken = await idp.signIn('frank');
    const before = new Set(mcp.tokensSeen);
    const client = new Client({ name: 'enterprise-agent', version: '1.0.0' }, { capabilities: {} });
    await client.connect(
      new StreamableHTTPClientTransport(new URL(`${h.baseUrl}/api/v1/mcp/corp-bound`), {
        requestInit: { headers: { 'x-agent-id': agent, 'x-user-identity': idToken } },
      }),
    );
    try {
      const result = (await client.callTool({ name: 'whoami', arguments: {} })) as CallToolResult;
      expect((result.content[0] as { text: string }).text).toBe('frank');
    } finally {
      await client.close();
    }
    const token = [...mcp.tokensSeen].find((t) => !before.has(t))!;
    expect((await mcp.introspect(token))?.cnf?.jkt).toMatch(/^[\w-]{43}$/);
    const row = await fork(h.services.orm).findOneOrFail(CredentialSchema, { agentId: agent, toolId: 'corp-bound' });
    expect(row.tokenType?.toLowerCase()).toBe('dpop');
  });

  it('renews before expiry by exchanging the identity again, with no one involved', async () => {
    const { agent } = freshOwner('enterprise-renew');
    const idToken = await idp.signIn('bob');
    const first = await h.call('POST', '/api/v1/credentials/corp', as(agent, idToken));
    expect(first.status, first.text).toBe(200);
    const where = { agentId: agent, userId: 'corp:bob', toolId: 'corp' };
    await vi.waitFor(
      async () => expect((await fork(h.services.orm).findOneOrFail(CredentialSchema, where)).tokenGeneration).toBeGreaterThanOrEqual(2),
      { timeout: 20_000, interval: 250 },
    );
    await new Promise((r) => setTimeout(r, h.services.config.hotCacheMs + 50));
    const renewed = await h.call('POST', '/api/v1/credentials/corp', as(agent, idToken));
    expect(renewed.json.access_token).not.toBe(first.json.access_token);
    expect(await mcp.introspect(renewed.json.access_token)).toMatchObject({ active: true, sub: 'bob' });
  });

  it('refuses an identity from another issuer (403), and says why the identity provider refused a user (502)', async () => {
    const { agent } = freshOwner('enterprise-refused');
    const fromGateway = await new jose.SignJWT({})
      .setProtectedHeader({ alg: 'ES256' })
      .setIssuer('https://gateway.test')
      .setAudience('broker')
      .setSubject('alice')
      .setIssuedAt()
      .setExpirationTime('5m')
      .sign(gatewayKey);
    const wrong = await h.call('POST', '/api/v1/credentials/corp', as(agent, fromGateway));
    expect(wrong.status, wrong.text).toBe(403);
    expect(wrong.json.error.code).toBe('enterprise_identity_required');

    // The enterprise disabled mallory: the identity provider refuses the exchange; nothing is issued.
    const idToken = await idp.signIn('mallory');
    idp.disabled.add('mallory');
    const refused = await h.call('POST', '/api/v1/credentials/corp', as(agent, idToken));
    expect(refused.status, refused.text).toBe(502);
    expect(refused.json.error.code).toBe('invalid_grant');
    const audit = await auditOf(agent, 'credential.identity_exchanged');
    expect(audit.map((e) => e.detail)).toEqual([{ code: 'invalid_grant', step: 'identity_provider' }]);
    expect(audit[0]!.outcome).toBe('failure');
  });
});

describe('enterprise connections taken back', () => {
  it('a revocation holds (at the provider too) until the user signs in again', async () => {
    const { agent } = freshOwner('enterprise-revoke');
    const idToken = await idp.signIn('dave');
    const first = await h.call('POST', '/api/v1/credentials/corp', as(agent, idToken));
    expect(first.status, first.text).toBe(200);
    const revoked = await h.call('DELETE', '/api/v1/credentials/corp', as(agent, idToken));
    expect(revoked.status, revoked.text).toBe(200);
    expect((await mcp.introspect(first.json.access_token))?.active).toBe(false);
    // The agent still holds dave's ID token: it does not restore the connection on its own.
    const again = await h.call('POST', '/api/v1/credentials/corp', as(agent, idToken));
    expect(again.status, again.text).toBe(403);
    expect(again.json.error.code).toBe('enterprise_identity_required');
    // Dave signs in again (a new ID token, issued after the revocation): the connection is back.
    await new Promise((r) => setTimeout(r, 1_100));
    const restored = await h.call('POST', '/api/v1/credentials/corp', as(agent, await idp.signIn('dave')));
    expect(restored.status, restored.text).toBe(200);
    expect(await mcp.introspect(restored.json.access_token)).toMatchObject({ active: true, sub: 'dave' });
  });

  it('a tool that asks for wider scopes is told no consent can widen an exchanged identity', async () => {
    const { agent } = freshOwner('enterprise-step-up');
    const client = new Client({ name: 'enterprise-agent', version: '1.0.0' }, { capabilities: {} });
    await client.connect(
      new StreamableHTTPClientTransport(new URL(`${h.baseUrl}/api/v1/mcp/corp`), {
        requestInit: { headers: { 'x-agent-id': agent, 'x-user-identity': await idp.signIn('erin') } },
      }),
    );
    try {
      const refused = await client.callTool({ name: 'admin', arguments: {} }).catch((err: unknown) => err);
      expect(refused).toBeInstanceOf(McpError);
      expect((refused as McpError).data).toMatchObject({ code: 'scope_not_allowed' });
    } finally {
      await client.close();
    }
  });
});

describe('token exchange (on behalf of the user)', () => {
  it('an HTTP API that trusts the identity provider gets the user’s token from it, through the proxy', async () => {
    const { agent } = freshOwner('token-exchange');
    const idToken = await idp.signIn('carol');
    const res = await fetch(`${h.baseUrl}/api/v1/proxy/corp-api/profile`, { headers: as(agent, idToken).headers });
    const body = (await res.json()) as { sub?: string; headers?: Record<string, string> };
    expect(res.status, JSON.stringify(body)).toBe(200);
    expect(body.sub).toBe('carol');
    const issued = idp.exchanges.filter((e) => e.requested === 'urn:ietf:params:oauth:token-type:access_token');
    expect(issued.length).toBeGreaterThanOrEqual(1);
    expect(api.tokensSeen.has(issued.at(-1)!.issued)).toBe(true);
    expect(JSON.stringify(body)).not.toContain(issued.at(-1)!.issued);
  });
});
