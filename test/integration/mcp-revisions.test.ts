import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ToolConfig } from '../../lib/tools.js';
import { freshOwner, startHarness, type Harness } from '../support/harness.js';
import { providerUrlBehind, listMcpTools } from '../support/flows.js';
import { startMcpServer, type McpTestServer } from '../support/mcp-server.js';
import { startModernMcpServer, type ModernMcpServer } from '../support/mcp-server-v2.js';

/**
 * MCP servers as clients meet them across revisions of the authorization spec (issue: speak every authorization
 * server's language, items 1 and 2): resource metadata at the root location naming the origin as the resource,
 * and 2025-03-26 servers with no resource metadata (authorization server metadata at the origin, or nothing at all
 * and that revision's default endpoints). Each is a real oidc-provider behind a real SDK server; the broker gets
 * only the MCP URL, and the token it obtains must open the server.
 */
const servers: Record<string, McpTestServer> = {};
let modern: ModernMcpServer;
let modernOnly: ModernMcpServer;
let h: Harness;

beforeAll(async () => {
  servers.root = await startMcpServer({ metadata: 'root' });
  servers.legacy = await startMcpServer({ metadata: '2025-03-26' });
  // A 2025-03-26 server may name its scope in the challenge (there is no other place for it).
  // Machine access by discovery: a pre-registered client-credentials client at the MCP server's authorization server.
  servers.machine = await startMcpServer({
    challengeScope: 'mcp:tools',
    clients: [{ client_id: 'mcp-machine', client_secret: 'mcp-machine-secret', redirect_uris: [], grant_types: ['client_credentials'] }],
  });
  // A server that will name another authorization server (the one of `target`).
  servers.moving = await startMcpServer({ challengeScope: 'mcp:tools' });
  servers.target = await startMcpServer({ challengeScope: 'mcp:tools', acceptAnyResource: true });
  servers.defaults = await startMcpServer({ metadata: '2025-03-26-defaults', challengeScope: 'mcp:tools offline_access' });
  // A server that answers initialize without a token: only what comes after is challenged, naming its scope.
  servers.open = await startMcpServer({
    openInitialize: true,
    challengeScope: 'mcp:tools',
    scopesSupported: ['mcp:tools', 'mcp:admin', 'mcp:audit'],
  });
  const tools: ToolConfig[] = Object.entries(servers).map(([id, server]) => ({
    id,
    tool_type: 'mcp',
    connection_params: { type: 'streamable-http', url: server.url },
    auth:
      id === 'machine' ? { type: 'client_credentials', client_id: 'mcp-machine', client_secret: 'mcp-machine-secret' } : { type: 'oauth2' },
    manifest: [],
  }));
  // 2026-07-28 servers (the official SDK v2), their tokens from `target`'s authorization server.
  modern = await startModernMcpServer(servers.target);
  modernOnly = await startModernMcpServer(servers.target, { legacy: 'reject' });
  for (const [id, server] of [
    ['modern', modern],
    ['modern-only', modernOnly],
  ] as const)
    tools.push({
      id,
      tool_type: 'mcp',
      connection_params: { type: 'streamable-http', url: server.url },
      auth: { type: 'oauth2' },
      manifest: [],
    });
  h = await startHarness({ extraTools: tools, env: { DISCOVERY_TTL_SECONDS: '1' } });
});
afterAll(async () => {
  await h?.close();
  for (const s of Object.values(servers)) await s.close();
  await modern?.close();
  await modernOnly?.close();
});

describe('authorization across MCP spec revisions', () => {
  it.each([
    ['root', 'resource metadata at the root location: the origin is the resource, and it is what the broker sends'],
    ['legacy', '2025-03-26: authorization server metadata at the MCP server origin, no resource indicator'],
    ['defaults', '2025-03-26 with no metadata at all: the default /authorize, /token and /register'],
  ])('%s — %s', async (id) => {
    const server = servers[id]!;
    const who = freshOwner(`rev-${id}`);
    const first = await h.call('POST', `/api/v1/credentials/${id}`, who);
    expect(first.status, first.text).toBe(202);
    const provider = await providerUrlBehind(first.json.authorization_url);
    expect(provider.origin).toBe(new URL(server.url).origin);
    if (id === 'root') expect(provider.searchParams.get('resource')).toBe(new URL(server.url).origin);
    else expect(provider.searchParams.get('resource')).toBeNull();
    if (id === 'defaults') expect(provider.pathname).toBe('/authorize');
    const page = await h.consent(first.json.authorization_url, { login: who.user });
    expect(page.status, page.html).toBe(200);
    const active = await h.call('POST', `/api/v1/credentials/${id}`, who);
    expect(active.status, active.text).toBe(200);
    expect(await listMcpTools(server.url, active.json.access_token)).toEqual(['add', 'admin', 'echo']);
    // The refresh goes to the same token endpoint.
    const refreshed = await h.call('POST', `/api/v1/credentials/${id}`, who, { force_refresh: true });
    expect(refreshed.status, refreshed.text).toBe(200);
    expect(refreshed.json.access_token).not.toBe(active.json.access_token);
    expect(await listMcpTools(server.url, refreshed.json.access_token)).toEqual(['add', 'admin', 'echo']);
  });

  it('asks for the scope a server challenges after an initialize it let through, not every scope it supports', async () => {
    const who = freshOwner('rev-open');
    const first = await h.call('POST', '/api/v1/credentials/open', who);
    expect(first.status, first.text).toBe(202);
    const provider = await providerUrlBehind(first.json.authorization_url);
    expect(provider.searchParams.get('scope')).toBe('mcp:tools');
    const page = await h.consent(first.json.authorization_url, { login: who.user });
    expect(page.status, page.html).toBe(200);
    const active = await h.call('POST', '/api/v1/credentials/open', who);
    expect(active.status, active.text).toBe(200);
    expect(active.json.scope).toBe('mcp:tools');
    expect(await listMcpTools(servers.open!.url, active.json.access_token)).toEqual(['add', 'admin', 'echo']);
  });

  it('machine access with nothing but the MCP URL: the token endpoint is discovered and the resource sent', async () => {
    const server = servers.machine!;
    const who = freshOwner('rev-machine');
    const res = await h.call('POST', '/api/v1/credentials/machine', who);
    expect(res.status, res.text).toBe(200);
    expect(res.json.status).toBe('active');
    expect(await listMcpTools(server.url, res.json.access_token)).toEqual(['add', 'admin', 'echo']);
    const introspection = await server.introspect(res.json.access_token);
    expect(introspection).toMatchObject({ active: true, aud: server.url, client_id: 'mcp-machine' });
  });

  it('follows a server that names another authorization server, registering there, once discovery is due again', async () => {
    const first = await h.call('POST', '/api/v1/credentials/moving', freshOwner('rev-moving'));
    expect((await providerUrlBehind(first.json.authorization_url)).href.startsWith(servers.moving!.issuer)).toBe(true);
    servers.moving!.pointTo(servers.target!.issuer);
    await new Promise((r) => setTimeout(r, 1_100));
    const second = await h.call('POST', '/api/v1/credentials/moving', freshOwner('rev-moved'));
    expect(second.status, second.text).toBe(202);
    expect((await providerUrlBehind(second.json.authorization_url)).href.startsWith(servers.target!.issuer)).toBe(true);
    expect(await servers.target!.registeredClients()).toBe(1);
  });

  it.each([
    ['modern', 'a 2026-07-28 server that also answers older clients'],
    ['modern-only', 'a 2026-07-28 server that refuses every older client'],
  ])('%s — %s (official SDK v2): discovered, authorized, checked and called through the gateway', async (id) => {
    const server = id === 'modern' ? modern : modernOnly;
    const who = freshOwner(`rev-${id}`);
    const first = await h.call('POST', `/api/v1/credentials/${id}`, who);
    expect(first.status, first.text).toBe(202);
    const provider = await providerUrlBehind(first.json.authorization_url);
    expect(provider.href.startsWith(servers.target!.issuer)).toBe(true);
    expect(provider.searchParams.get('resource')).toBe(server.url);
    const page = await h.consent(first.json.authorization_url, { login: who.user });
    expect(page.status, page.html).toBe(200);
    const check = await h.call('POST', `/api/v1/credentials/${id}/check`, who);
    expect(check.status, check.text).toBe(200);
    expect(check.json.server_tools).toEqual(['whoami']);
    const agent = new Client({ name: 'agent', version: '1.0.0' }, { capabilities: {} });
    await agent.connect(
      new StreamableHTTPClientTransport(new URL(`${h.baseUrl}/api/v1/mcp/${id}`), {
        requestInit: { headers: { 'x-agent-id': who.agent, 'x-user-id': who.user } },
      }),
    );
    try {
      expect((await agent.listTools()).tools.map((t) => t.name)).toEqual(['whoami']);
      // Twice: the first call may go the SDK's way (connecting), the second is relayed by the fast lane.
      for (let i = 0; i < 2; i++) {
        const result = (await agent.callTool({ name: 'whoami', arguments: {} })) as CallToolResult;
        expect((result.content[0] as { text: string }).text).toBe(who.user);
      }
    } finally {
      await agent.close();
    }
    // A server that answers both keeps the older protocol (its results are what every agent understands); one that
    // refuses it is spoken to statelessly: every request in the 2026-07-28 protocol, no initialize, no session.
    expect(new Set(server.eras)).toEqual(new Set([id === 'modern' ? 'legacy' : 'modern']));
  });
});
