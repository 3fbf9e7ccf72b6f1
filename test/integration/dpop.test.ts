import { createHash } from 'node:crypto';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { McpError, type CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import * as jose from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CredentialSchema } from '../../lib/db/entities.js';
import { fork } from '../../lib/db/orm.js';
import type { ToolConfig } from '../../lib/tools.js';
import { freshOwner, startHarness, type Harness } from '../support/harness.js';
import { startMcpServer, type McpTestServer } from '../support/mcp-server.js';

/**
 * DPoP (RFC 9449) against real parts: an MCP server (the official SDK) whose authorization server (oidc-provider)
 * binds tokens to the key a DPoP proof shows, and which, as a resource server, accepts a bound token only with a
 * proof of that key (and its nonce). The broker holds a key per credential; the agent never holds token or key.
 */
let h: Harness;
let mcp: McpTestServer;
const NONCE = 'server-nonce-1';

beforeAll(async () => {
  mcp = await startMcpServer({ gatewayTools: true, dpopNonce: NONCE });
  const tools: ToolConfig[] = [
    // Agents never read this tool's tokens: they are bound to the broker's key where the server supports it.
    {
      id: 'bound',
      tool_type: 'mcp',
      connection_params: { type: 'streamable-http', url: mcp.url },
      auth: { type: 'oauth2' },
      expose_token: false,
      manifest: [],
    },
    // Agents read this one's tokens: they stay bearer tokens unless the tool asks for DPoP.
    {
      id: 'readable',
      tool_type: 'mcp',
      connection_params: { type: 'streamable-http', url: mcp.url },
      auth: { type: 'oauth2' },
      manifest: [],
    },
  ];
  h = await startHarness({ extraTools: tools });
});
afterAll(async () => {
  await h?.close();
  await mcp?.close();
});

/** Calls a tool through the gateway; a -32042 is a link the user opens (signing in as `login`), then the call again. */
async function callAsUser(who: { agent: string; user: string }, toolId: string, name: string): Promise<CallToolResult> {
  const client = new Client({ name: 'dpop-agent', version: '1.0.0' }, { capabilities: {} });
  await client.connect(
    new StreamableHTTPClientTransport(new URL(`${h.baseUrl}/api/v1/mcp/${toolId}`), {
      requestInit: { headers: { 'x-agent-id': who.agent, 'x-user-id': who.user } },
    }),
  );
  try {
    try {
      return (await client.callTool({ name, arguments: {} })) as CallToolResult;
    } catch (err) {
      if (!(err instanceof McpError) || err.code !== -32042) throw err;
      const [first] = (err.data as { elicitations: { url: string }[] }).elicitations;
      const page = await h.consent(first!.url, { login: who.user });
      expect(page.status).toBe(200);
      return (await client.callTool({ name, arguments: {} })) as CallToolResult;
    }
  } finally {
    await client.close();
  }
}

const text = (r: CallToolResult) => (r.content[0] as { text: string }).text;

async function rowOf(who: { agent: string; user: string }, toolId: string) {
  return fork(h.services.orm).findOneOrFail(
    CredentialSchema,
    { agentId: who.agent, userId: who.user, toolId },
    { orderBy: { createdAt: 'desc' } },
  );
}

describe('DPoP', () => {
  it('binds the tokens to a key only the broker holds; the gateway proves it on every call (with the server’s nonce)', async () => {
    const who = freshOwner('dpop');
    const before = new Set(mcp.tokensSeen);
    expect(text(await callAsUser(who, 'bound', 'whoami'))).toBe(who.user);
    const row = await rowOf(who, 'bound');
    expect(row.tokenType?.toLowerCase()).toBe('dpop');
    expect(row.dpopKey).toBeTruthy();
    expect(row.dpopKey).not.toContain('"d"');

    // The token the server saw is bound to a key (cnf.jkt), and is useless without a proof of that key.
    const token = [...mcp.tokensSeen].find((t) => !before.has(t))!;
    const info = await mcp.introspect(token);
    expect(info?.cnf?.jkt).toMatch(/^[\w-]{43}$/);
    const init = { jsonrpc: '2.0', id: 1, method: 'tools/list', params: {} };
    const post = (headers: Record<string, string>) =>
      fetch(mcp.url, {
        method: 'POST',
        headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream', ...headers },
        body: JSON.stringify(init),
      });
    const asBearer = await post({ authorization: `Bearer ${token}` });
    expect(asBearer.status).toBe(401);
    // A thief's own key: the proof verifies, but not for the key the token is bound to.
    const thief = await jose.generateKeyPair('ES256');
    const proof = await new jose.SignJWT({
      htm: 'POST',
      htu: mcp.url,
      ath: createHash('sha256').update(token).digest('base64url'),
      nonce: NONCE,
    })
      .setProtectedHeader({ alg: 'ES256', typ: 'dpop+jwt', jwk: await jose.exportJWK(thief.publicKey) })
      .setIssuedAt()
      .setJti(crypto.randomUUID())
      .sign(thief.privateKey);
    const stolen = await post({ authorization: `DPoP ${token}`, dpop: proof });
    expect(stolen.status).toBe(401);
    expect(stolen.headers.get('www-authenticate')).toMatch(/invalid_dpop_proof/);

    // The credentials API says it is active but hands out nothing: a bound token is of use only through the gateway.
    const read = await h.call('POST', '/api/v1/credentials/bound', who);
    expect(read.status).toBe(200);
    expect(read.json).toMatchObject({ status: 'active' });
    expect(read.json.access_token).toBeUndefined();
  });

  it('keeps the key across refreshes: the refreshed token is bound to it too', async () => {
    const who = freshOwner('dpop-refresh');
    expect(text(await callAsUser(who, 'bound', 'whoami'))).toBe(who.user);
    const first = await rowOf(who, 'bound');
    const refreshed = await h.call('POST', '/api/v1/credentials/bound', who, { force_refresh: true });
    expect(refreshed.status, refreshed.text).toBe(200);
    const second = await rowOf(who, 'bound');
    expect(second.tokenGeneration).toBeGreaterThan(first.tokenGeneration);
    expect(second.dpopKey).toBe(first.dpopKey);
    const before = new Set(mcp.tokensSeen);
    expect(text(await callAsUser(who, 'bound', 'whoami'))).toBe(who.user);
    const token = [...mcp.tokensSeen].find((t) => !before.has(t))!;
    expect((await mcp.introspect(token))?.cnf?.jkt).toMatch(/^[\w-]{43}$/);
  });

  it('leaves tokens agents read as bearer tokens unless the tool asks for DPoP', async () => {
    const who = freshOwner('dpop-readable');
    expect(text(await callAsUser(who, 'readable', 'whoami'))).toBe(who.user);
    const row = await rowOf(who, 'readable');
    expect(row.tokenType?.toLowerCase()).toBe('bearer');
    expect(row.dpopKey).toBeNull();
    const read = await h.call('POST', '/api/v1/credentials/readable', who);
    expect((await mcp.introspect(read.json.access_token))?.cnf).toBeUndefined();
  });
});
