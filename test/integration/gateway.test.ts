import { request as httpRequest } from 'node:http';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { ElicitationCompleteNotificationSchema, McpError, type CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { AuditEventSchema } from '../../lib/db/entities.js';
import { fork } from '../../lib/db/orm.js';
import type { ToolConfig } from '../../lib/tools.js';
import { TestGateway } from '../support/gateway.js';
import { startHarness, type Harness } from '../support/harness.js';
import { startMcpServer, type McpTestServer } from '../support/mcp-server.js';
import { startProtectedApi, type ProtectedApi } from '../support/protected-api.js';

/**
 * The gateway (issue: agents use a user's credential without ever holding it). Real parts only: MCP servers
 * built with the official SDK (Streamable HTTP and HTTP+SSE) behind a real oidc-provider, discovered from their
 * URL; an HTTP API that checks tokens at the same provider; the official SDK client as the agent; the broker as
 * deployed (agent keys, signed identities, RBAC, HTTPS through the proxy).
 */
const ROLES = `
roles:
  user: { description: everything, scopes: ["tool:*:use", "tool:*:revoke", "tool:*:call:*", "tool:*:proxy:*"] }
  limited: { description: whoami only, scopes: ["tool:*:use", "tool:remote:call:whoami"] }
`;
const USERS = `
default_roles: [user]
users:
  limited@example.com: [limited]
`;
const CALLBACK = 'https://broker.test/api/v1/auth/tool/callback';

let h: Harness;
let gw: TestGateway;
let remote: McpTestServer;
let legacy: McpTestServer;
let plain: McpTestServer;
let api: ProtectedApi;
const keys: Record<string, string> = {};
/** Every byte any agent received from the gateway in this file. */
const received: string[] = [];
/** The content type of every answer to an agent's POST. */
const answerTypes: string[] = [];

beforeAll(async () => {
  gw = await TestGateway.start();
  // The challenge names only mcp:tools: mcp:admin is left for a step-up.
  remote = await startMcpServer({
    gatewayTools: true,
    stateful: true,
    challengeScope: 'mcp:tools',
    clients: [{ client_id: 'api-tool', client_secret: 'api-tool-secret', redirect_uris: [CALLBACK] }],
  });
  legacy = await startMcpServer({ transport: 'sse', gatewayTools: true });
  plain = await startMcpServer({ gatewayTools: true, jsonResponse: true });
  api = await startProtectedApi((token) => remote.introspect(token));
  const manifest = [
    { name: 'whoami', description: 'The subject of the token', inputSchema: { type: 'object', properties: {} } },
    { name: 'echo', description: 'Echo a message', inputSchema: { type: 'object', properties: { message: { type: 'string' } } } },
  ];
  const tools: ToolConfig[] = [
    { id: 'remote', tool_type: 'mcp', connection_params: { type: 'streamable-http', url: remote.url }, auth: { type: 'oauth2' }, manifest },
    { id: 'legacy', tool_type: 'mcp', connection_params: { type: 'sse', url: legacy.url }, auth: { type: 'oauth2' }, manifest: [] },
    {
      id: 'plain',
      tool_type: 'mcp',
      connection_params: { type: 'streamable-http', url: plain.url },
      auth: { type: 'oauth2' },
      manifest: [],
    },
    {
      id: 'api',
      tool_type: 'api',
      connection_params: { type: 'http', url: `${api.origin}/v1`, headers: { 'x-api-version': '2026-11-01' } },
      auth: { type: 'oauth2', issuer: remote.issuer, client_id: 'api-tool', client_secret: 'api-tool-secret', scopes: ['mcp:tools'] },
      expose_token: false,
      manifest: [],
    },
  ];
  h = await startHarness({
    extraTools: tools,
    production: {
      trust: { jwks_cooldown_seconds: 0, trusted_issuers: [gw.trustConfig().trusted_issuers[0]!] },
      rolesYaml: ROLES,
      usersYaml: USERS,
      env: { OUTBOUND_ALLOW_LOOPBACK: 'true', RATE_LIMIT_CALLBACK_IP_PER_MINUTE: '10000', RATE_LIMIT_IP_PER_MINUTE: '100000' },
    },
  });
  for (const id of ['assistant', 'other-agent']) {
    await h.services.agents.create(id, { scopes: ['tool:*:use', 'tool:*:call:*', 'tool:*:proxy:*'] });
    keys[id] = (await h.services.agents.issueKey(id)).key;
  }
});
afterAll(async () => {
  await h?.close();
  await remote?.close();
  await legacy?.close();
  await plain?.close();
  await api?.close();
  await gw?.close();
});

async function headersOf(agent: string, user: string): Promise<Record<string, string>> {
  return { authorization: `Bearer ${keys[agent]}`, 'x-user-identity': await gw.sign(user), 'x-forwarded-proto': 'https' };
}

/** A fetch that keeps a copy of every byte of every answer, so the test can look for tokens in them. */
const recording: typeof fetch = async (input, init) => {
  const res = await fetch(input, init);
  if (init?.method === 'POST') answerTypes.push(res.headers.get('content-type') ?? '');
  if (!res.body) return res;
  const [mine, theirs] = res.body.tee();
  void (async () => {
    const decoder = new TextDecoder();
    try {
      for await (const chunk of mine as unknown as AsyncIterable<Uint8Array>) received.push(decoder.decode(chunk, { stream: true }));
    } catch {
      // The stream was closed (the client hung up): what arrived is kept.
    }
  })();
  return new Response(theirs, { status: res.status, statusText: res.statusText, headers: res.headers });
};

/** The official SDK client, pointed at the gateway as any agent framework would be. */
async function agentClient(agent: string, user: string, toolId = 'remote'): Promise<Client & { completed: string[] }> {
  const transport = new StreamableHTTPClientTransport(new URL(`${h.baseUrl}/api/v1/mcp/${toolId}`), {
    requestInit: { headers: await headersOf(agent, user) },
    fetch: recording,
  });
  const client = Object.assign(new Client({ name: 'test-agent', version: '1.0.0' }, { capabilities: { elicitation: { url: {} } } }), {
    completed: [] as string[],
  });
  client.setNotificationHandler(ElicitationCompleteNotificationSchema, (n) => {
    client.completed.push(n.params.elicitationId);
  });
  await client.connect(transport);
  return client;
}

/** An HTTP request whose path goes on the wire exactly as given. */
function rawRequest(method: string, path: string, headers: Record<string, string>): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(`${h.baseUrl}/`, { method, path, headers }, (res) => {
      let body = '';
      res.on('data', (c: Buffer) => (body += c.toString()));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('error', reject);
    req.end();
  });
}

function text(result: unknown): string {
  return ((result as CallToolResult).content[0] as { text: string }).text;
}

async function elicitation(call: Promise<unknown>): Promise<{ url: string; elicitationId: string; message: string }> {
  const err = await call.then(
    () => null,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(McpError);
  expect((err as McpError).code).toBe(-32042);
  const [first] = (err as McpError & { data: { elicitations: { mode: string; url: string; elicitationId: string; message: string }[] } })
    .data.elicitations;
  expect(first!.mode).toBe('url');
  return first!;
}

async function consentAt(url: string, user: string): Promise<void> {
  const page = await h.consent(url, { login: user, identity: await gw.sign(user) });
  expect(page.status, page.html).toBe(200);
}

describe('MCP through the gateway', () => {
  it('lists the manifest before consent, asks for consent with -32042, then calls as the user', async () => {
    const user = 'alice@example.com';
    const agent = await agentClient('assistant', user);
    expect((await agent.listTools()).tools.map((t) => t.name).sort()).toEqual(['echo', 'whoami']);
    const asked = await elicitation(agent.callTool({ name: 'whoami', arguments: {} }));
    // The same link the credentials API gives.
    const api = await h.call('POST', '/api/v1/credentials/remote', { headers: await headersOf('assistant', user) });
    expect(api.json.authorization_url).toBe(asked.url);
    await consentAt(asked.url, user);
    // The open event stream hears that the elicitation is complete.
    await vi.waitFor(() => expect(agent.completed).toEqual([asked.elicitationId]), { timeout: 10_000 });
    expect(text(await agent.callTool({ name: 'whoami', arguments: {} }))).toBe(user);
    expect(text(await agent.callTool({ name: 'echo', arguments: { message: 'argument-canary' } }))).toBe('argument-canary');
    // After consent, tools/list is the server's own list.
    expect((await agent.listTools()).tools.map((t) => t.name).sort()).toEqual(['add', 'admin', 'count', 'echo', 'leak', 'wait', 'whoami']);
    await agent.close();
  });

  it('never lets another user or another agent reach the first user upstream', async () => {
    const other = await agentClient('assistant', 'bob@example.com');
    await elicitation(other.callTool({ name: 'whoami', arguments: {} }));
    const otherAgent = await agentClient('other-agent', 'alice@example.com');
    await elicitation(otherAgent.callTool({ name: 'whoami', arguments: {} }));
    await other.close();
    await otherAgent.close();
  });

  it('relays progress in order', async () => {
    const agent = await agentClient('assistant', 'alice@example.com');
    const progress: number[] = [];
    const result = await agent.callTool({ name: 'count', arguments: {} }, undefined, { onprogress: (p) => progress.push(p.progress) });
    expect(text(result)).toBe('counted');
    expect(progress).toEqual([1, 2, 3]);
    await agent.close();
  });

  it('relays cancellation, resources and ping', async () => {
    const agent = await agentClient('assistant', 'alice@example.com');
    const stop = new AbortController();
    const call = agent.callTool({ name: 'wait', arguments: {} }, undefined, { signal: stop.signal });
    setTimeout(() => stop.abort(), 300);
    await expect(call).rejects.toThrow();
    await vi.waitFor(() => expect(remote.cancellations).toBe(1), { timeout: 3_000 });
    expect((await agent.listResources()).resources.map((r) => r.uri)).toEqual(['test://profile']);
    const read = await agent.readResource({ uri: 'test://profile' });
    expect((read.contents[0] as { text: string }).text).toBe('profile of alice@example.com');
    await agent.ping();
    await agent.close();
  });

  it('refreshes once when the upstream rejects the token, and succeeds with a new one', async () => {
    const agent = await agentClient('assistant', 'alice@example.com');
    const before = new Set(remote.tokensSeen);
    remote.rejectTokensSeen();
    expect(text(await agent.callTool({ name: 'whoami', arguments: {} }))).toBe('alice@example.com');
    expect([...remote.tokensSeen].filter((t) => !before.has(t))).toHaveLength(1);
    await agent.close();
  });

  it('turns a scope challenge into a step-up link', async () => {
    const agent = await agentClient('assistant', 'alice@example.com');
    const asked = await elicitation(agent.callTool({ name: 'admin', arguments: {} }));
    expect(asked.message).toMatch(/more permissions/);
    await consentAt(asked.url, 'alice@example.com');
    await vi.waitFor(async () => expect(text(await agent.callTool({ name: 'admin', arguments: {} }))).toBe('administered'), {
      timeout: 10_000,
    });
    await agent.close();
  });

  it('redacts a token an upstream echoes back', async () => {
    const agent = await agentClient('assistant', 'alice@example.com');
    expect(text(await agent.callTool({ name: 'leak', arguments: {} }))).toBe('you sent Bearer [redacted]');
    await agent.close();
  });

  it('lists and calls only what access control allows, and audits the denial', async () => {
    const user = 'limited@example.com';
    const agent = await agentClient('assistant', user);
    expect((await agent.listTools()).tools.map((t) => t.name)).toEqual(['whoami']);
    const err = await agent.callTool({ name: 'echo', arguments: { message: 'hi' } }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(McpError);
    expect((err as McpError).code).toBe(-32003);
    expect((err as McpError & { data: { code: string } }).data.code).toBe('user_not_permitted');
    // The row joins the next group commit (the answer does not wait for it).
    await vi.waitFor(async () => {
      const rows = await fork(h.services.orm).find(AuditEventSchema, { eventType: 'gateway.tool_call', userId: user, outcome: 'denied' });
      expect(rows.map((r) => (r.detail as { name: string }).name)).toContain('echo');
    });
    await agent.close();
  });

  it('refuses a session id presented by another caller', async () => {
    const agent = await agentClient('assistant', 'alice@example.com');
    const sessionId = (agent.transport as StreamableHTTPClientTransport).sessionId!;
    const replay = await fetch(`${h.baseUrl}/api/v1/mcp/remote`, {
      method: 'POST',
      headers: {
        ...(await headersOf('assistant', 'bob@example.com')),
        'content-type': 'application/json',
        accept: 'application/json, text/event-stream',
        'mcp-session-id': sessionId,
        'mcp-protocol-version': '2025-11-25',
      },
      body: JSON.stringify({ jsonrpc: '2.0', id: 9, method: 'tools/call', params: { name: 'whoami', arguments: {} } }),
    });
    expect(replay.status).toBe(404);
    expect(((await replay.json()) as { error: { code: string } }).error.code).toBe('mcp_session_not_found');
    await agent.close();
  });

  it('asks for a new authorization when the upstream refuses even the refreshed token', async () => {
    const user = 'erin@example.com';
    const agent = await agentClient('assistant', user);
    await consentAt((await elicitation(agent.callTool({ name: 'whoami', arguments: {} }))).url, user);
    expect(text(await agent.callTool({ name: 'whoami', arguments: {} }))).toBe(user);
    remote.rejectEverything(true);
    try {
      const again = await elicitation(agent.callTool({ name: 'whoami', arguments: {} }));
      expect(again.message).toMatch(/Connect your/);
      const status = await h.call('GET', '/api/v1/credentials/remote', { headers: await headersOf('assistant', user) });
      expect(status.json.status).toBe('awaiting_authorization');
      remote.rejectEverything(false);
      await consentAt(again.url, user);
      expect(text(await agent.callTool({ name: 'whoami', arguments: {} }))).toBe(user);
    } finally {
      remote.rejectEverything(false);
    }
    await agent.close();
  });

  it('relays calls the upstream answers in one JSON body, tokens replaced, and carries on when the upstream forgot the session', async () => {
    const user = 'erin@example.com';
    const agent = await agentClient('assistant', user, 'plain');
    await consentAt((await elicitation(agent.callTool({ name: 'whoami', arguments: {} }))).url, user);
    answerTypes.length = 0;
    for (let i = 0; i < 3; i++) expect(text(await agent.callTool({ name: 'whoami', arguments: {} }))).toBe(user);
    expect(text(await agent.callTool({ name: 'leak', arguments: {} }))).toBe('you sent Bearer [redacted]');
    // The agent side of the SDK answers in event streams; a JSON answer is the upstream's, relayed by the lane.
    expect(answerTypes.filter((t) => t.startsWith('application/json')).length).toBeGreaterThanOrEqual(3);
    await agent.close();

    const again = await agentClient('assistant', 'alice@example.com');
    expect(text(await again.callTool({ name: 'whoami', arguments: {} }))).toBe('alice@example.com');
    await remote.endSessions();
    expect(text(await again.callTool({ name: 'whoami', arguments: {} }))).toBe('alice@example.com');
    expect(text(await again.callTool({ name: 'whoami', arguments: {} }))).toBe('alice@example.com');
    await again.close();
  });

  it('speaks to an HTTP+SSE upstream the same way', async () => {
    const user = 'carol@example.com';
    const agent = await agentClient('assistant', user, 'legacy');
    const asked = await elicitation(agent.callTool({ name: 'whoami', arguments: {} }));
    await consentAt(asked.url, user);
    expect(text(await agent.callTool({ name: 'whoami', arguments: {} }))).toBe(user);
    await agent.close();
  });
});

describe('HTTP proxy', () => {
  const path = (p: string) => `/api/v1/proxy/api${p}`;

  it('answers with a link before consent, then proxies as the user without forwarding the agent’s own headers', async () => {
    const user = 'dave@example.com';
    const who = { headers: { ...(await headersOf('assistant', user)), cookie: 'session=agent-cookie', 'x-user-id': 'mallory' } };
    const first = await h.call('GET', path('/me'), who);
    expect(first.status).toBe(403);
    expect(first.json.error.code).toBe('authorization_required');
    await consentAt(first.json.authorization_url, user);
    const me = await h.call('GET', path('/me?verbose=1'), who);
    expect(me.status, me.text).toBe(200);
    received.push(me.text);
    expect(me.json.sub).toBe(user);
    expect(me.json.url).toBe('/v1/me?verbose=1');
    expect(me.json.headers['x-api-version']).toBe('2026-11-01');
    for (const h of ['cookie', 'x-user-identity', 'x-user-id', 'x-agent-id', 'x-forwarded-proto'])
      expect(me.json.headers).not.toHaveProperty(h);
    const posted = await h.call('POST', path('/echo'), who, { hello: 'world' });
    expect(posted.status).toBe(200);
    expect(posted.json.body).toEqual({ hello: 'world' });
    received.push(posted.text);
    // expose_token: false — the credentials API says active but never hands the token out.
    const cred = await h.call('POST', '/api/v1/credentials/api', who);
    expect(cred.status).toBe(200);
    expect(cred.json.status).toBe('active');
    expect(cred.json).not.toHaveProperty('access_token');
  });

  it('refuses paths that could leave the base URL before anything leaves', async () => {
    const who = { headers: await headersOf('assistant', 'dave@example.com') };
    const before = api.requests.length;
    for (const p of [
      '/../admin',
      '/%2e%2e/admin',
      '/a/%2E%2E/%2e%2e/x',
      '/a%2fb',
      '//evil.test/x',
      '/x@evil.test',
      '/a\\b',
      '/http://evil.test/',
    ]) {
      // Sent as written: fetch would resolve the dot segments before they reach the broker.
      const res = await rawRequest('GET', path(p), who.headers);
      expect(res.status, p).toBe(400);
      expect(JSON.parse(res.body).error.code, p).toBe('invalid_proxy_path');
    }
    expect(api.requests.length).toBe(before);
  });

  it('refreshes once on 401 and passes 429 with Retry-After through', async () => {
    const who = { headers: await headersOf('assistant', 'dave@example.com') };
    api.rejectTokensSeen();
    const me = await h.call('GET', path('/me'), who);
    expect(me.status).toBe(200);
    const slow = await fetch(`${h.baseUrl}${path('/slow-down')}`, { headers: who.headers });
    expect(slow.status).toBe(429);
    expect(slow.headers.get('retry-after')).toBe('7');
  });

  it('answers alike whether its fast lane or Express serves the request (a browser’s CORS request goes to Express)', async () => {
    const who = await headersOf('assistant', 'dave@example.com');
    const lane = await fetch(`${h.baseUrl}${path('/me?x=1')}`, { headers: who });
    const viaExpress = await fetch(`${h.baseUrl}${path('/me?x=1')}`, { headers: { ...who, origin: 'https://elsewhere.test' } });
    for (const res of [lane, viaExpress]) {
      expect(res.status).toBe(200);
      const body = (await res.json()) as { sub: string; url: string };
      expect(body).toMatchObject({ sub: 'dave@example.com', url: '/v1/me?x=1' });
      expect(res.headers.get('x-request-id')).toMatch(/^[0-9a-f-]{36}$/);
      for (const header of ['strict-transport-security', 'x-content-type-options', 'x-frame-options', 'referrer-policy', 'ratelimit'])
        expect(res.headers.get(header), header).toBeTruthy();
    }
    // Plain HTTP where HTTPS is required, and a refusal: Express answers with its codes, whichever lane looked first.
    const plain = await fetch(`${h.baseUrl}${path('/me')}`, { headers: { ...who, 'x-forwarded-proto': 'http' } });
    expect(plain.status).toBe(400);
    expect(((await plain.json()) as { error: { code: string } }).error.code).toBe('https_required');
    const unknown = await fetch(`${h.baseUrl}/api/v1/proxy/nope/me`, { headers: who });
    expect(((await unknown.json()) as { error: { code: string } }).error.code).toBe('tool_not_found');
  });

  it('never hands the agent a token the API echoes, in a header, a body, a gzip body or split across chunks', async () => {
    const who = await headersOf('assistant', 'dave@example.com');
    const before = api.tokensSeen.size;
    for (const query of ['', '?gzip=1', '?chunked=1']) {
      for (const headers of [who, { ...who, origin: 'https://elsewhere.test' }]) {
        const res = await fetch(`${h.baseUrl}${path(`/leak${query}`)}`, { headers });
        expect(res.status, query).toBe(200);
        expect(res.headers.get('content-encoding')).toBeNull();
        const text = await res.text();
        received.push(text, res.headers.get('x-echo') ?? '');
        // The API's tokens are gateway-only, and its server supports DPoP: they are bound to the broker's key.
        expect(JSON.parse(text), query).toEqual({ seen: 'DPoP [redacted]', again: 'token=[redacted]' });
        expect(res.headers.get('x-echo')).toBe('DPoP [redacted]');
      }
    }
    expect(api.tokensSeen.size).toBeGreaterThanOrEqual(Math.max(1, before));
    for (const encoding of ['gzip, br', 'deflate', 'deflate-raw']) {
      const res = await fetch(`${h.baseUrl}${path(`/leak?encoding=${encodeURIComponent(encoding)}`)}`, { headers: who });
      const text = await res.text();
      received.push(text);
      expect(res.status, encoding).toBe(200);
      expect(JSON.parse(text), encoding).toEqual({ seen: 'DPoP [redacted]', again: 'token=[redacted]' });
    }
    // An encoding the broker cannot decode cannot be checked for tokens: refused, not relayed.
    const zstd = await fetch(`${h.baseUrl}${path('/leak?encoding=zstd')}`, { headers: who });
    expect(zstd.status).toBe(502);
    expect(((await zstd.json()) as { error: { code: string } }).error.code).toBe('upstream_encoding_unsupported');
    const empty = await fetch(`${h.baseUrl}${path('/leak?encoding=empty')}`, { headers: who });
    expect(empty.status).toBe(204);
  });

  it('counts each request once against the per-address limit, whichever lane serves it', async () => {
    const who = await headersOf('assistant', 'dave@example.com');
    const remaining = async (headers: Record<string, string>) => {
      const res = await fetch(`${h.baseUrl}${path('/me')}`, { headers });
      await res.arrayBuffer();
      return Number(/remaining=(\d+)/.exec(res.headers.get('ratelimit') ?? '')?.[1]);
    };
    const first = await remaining(who);
    expect(await remaining(who)).toBe(first - 1);
    expect(await remaining({ ...who, origin: 'https://elsewhere.test' })).toBe(first - 2);
    expect(await remaining(who)).toBe(first - 3);
  });

  it('denies a method the agent is not granted, with a stable code', async () => {
    await h.services.agents.setScopes('other-agent', ['tool:*:use', 'tool:api:proxy:GET']);
    const who = { headers: await headersOf('other-agent', 'dave@example.com') };
    const res = await h.call('DELETE', path('/thing'), who);
    expect(res.status).toBe(403);
    expect(res.json.error.code).toBe('agent_not_permitted');
  });
});

describe('what the agents received', () => {
  it('audits and counts every call', async () => {
    const rows = await fork(h.services.orm).find(AuditEventSchema, {
      eventType: 'gateway.tool_call',
      outcome: 'ok',
      userId: 'alice@example.com',
    });
    expect(rows.length).toBeGreaterThan(3);
    expect(rows[0]!.detail).toMatchObject({ name: expect.any(String), durationMs: expect.any(Number) });
    expect(JSON.stringify(rows.map((r) => r.detail))).not.toContain('argument-canary');
    const proxied = await fork(h.services.orm).find(AuditEventSchema, { eventType: 'gateway.proxy_request', outcome: 'ok' });
    expect(proxied[0]!.detail).toMatchObject({ method: expect.any(String), path: expect.stringMatching(/^\/v1\//), status: 200 });
    const metrics = await fetch(`${h.baseUrl}/metrics`, { headers: { 'x-forwarded-proto': 'https' } }).then((r) => r.text());
    expect(metrics).toMatch(/broker_gateway_calls_total\{tool="remote",kind="mcp",outcome="ok"\} \d+/);
    expect(metrics).toMatch(/broker_gateway_calls_total\{tool="api",kind="http",outcome="ok"\} \d+/);
  });

  it('holds none of the tokens the upstreams saw', () => {
    const tokens = [...remote.tokensSeen, ...legacy.tokensSeen, ...plain.tokensSeen, ...api.tokensSeen];
    expect(tokens.length).toBeGreaterThanOrEqual(4);
    const all = received.join('\n');
    expect(all.length).toBeGreaterThan(1000);
    for (const t of tokens) expect(all.includes(t)).toBe(false);
  });
});
