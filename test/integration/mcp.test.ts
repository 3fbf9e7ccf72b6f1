import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ClientRegistrationSchema } from '../../lib/db/entities.js';
import { fork } from '../../lib/db/orm.js';
import { OAuthClients } from '../../lib/oauth/client.js';
import { ClientRegistrations } from '../../lib/oauth/registrations.js';
import { toTool, type ToolConfig } from '../../lib/tools.js';
import { freshOwner, startHarness, type Harness } from '../support/harness.js';
import { providerUrlBehind, listMcpTools } from '../support/flows.js';
import { MCP_TEST_TOOLS, startMcpServer, type McpTestServer } from '../support/mcp-server.js';
import { fetchTrusting, startTlsProxy, type TlsProxy } from '../support/tls-proxy.js';

const mcpTool = (id: string, server: McpTestServer, manifest: ToolConfig['manifest'] = []): ToolConfig => ({
  id,
  tool_type: 'mcp',
  connection_params: { type: 'streamable-http', url: server.url },
  auth: { type: 'oauth2' },
  manifest,
});
const MANIFEST: ToolConfig['manifest'] = [
  {
    name: 'echo',
    description: 'Echo a message',
    inputSchema: { type: 'object', properties: { message: { type: 'string' } }, required: ['message'] },
  },
  {
    name: 'add',
    description: 'Add numbers',
    inputSchema: { type: 'object', properties: { a: { type: 'number' }, c: { type: 'number' } } },
  },
  { name: 'search', description: 'Search', inputSchema: { type: 'object' } },
];

/** One raw JSON-RPC request with a token, as an agent would send it, so a 401/403 and its challenge are visible. */
async function rpc(url: string, token: string, method: string, params?: unknown): Promise<{ status: number; challenge: string }> {
  const res = await fetch(url, {
    method: 'POST',
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json', accept: 'application/json, text/event-stream' },
    body: JSON.stringify({ jsonrpc: '2.0', id: 1, method, ...(params === undefined ? {} : { params }) }),
  });
  await res.text();
  return { status: res.status, challenge: res.headers.get('www-authenticate') ?? '' };
}

/** Calls the `admin` tool, which needs the wider scope. */
const callAdmin = (url: string, token: string) => rpc(url, token, 'tools/call', { name: 'admin', arguments: {} });

let h: Harness;
let withPath: McpTestServer;
let noChallengeScope: McpTestServer;
let noPkce: McpTestServer;
let withDocuments: McpTestServer;
/** The broker's public HTTPS origin: a TLS-terminating proxy in front of it, as in a deployment. */
let tls: TlsProxy;
let metadataUrl: string;

beforeAll(async () => {
  tls = await startTlsProxy();
  metadataUrl = `${tls.origin}/oauth/client-metadata.json`;
  withPath = await startMcpServer({
    issuerPath: '/tenant1',
    challengeScope: 'mcp:tools',
    scopesSupported: ['mcp:tools', 'mcp:admin', 'mcp:audit', 'mcp:reports'],
  });
  noChallengeScope = await startMcpServer({ scopesSupported: ['mcp:tools'] });
  noPkce = await startMcpServer({ hidePkce: true });
  withDocuments = await startMcpServer({ clientIdMetadataDocuments: { ca: tls.ca } });
  // The broker has an HTTPS URL for its metadata document, so it offers it wherever a server supports them;
  // the other servers here do not advertise support and get dynamic registration.
  h = await startHarness({
    extraTools: [
      mcpTool('mcp-path', withPath, MANIFEST),
      mcpTool('mcp-plain', noChallengeScope),
      mcpTool('mcp-no-pkce', noPkce),
      mcpTool('mcp-cimd', withDocuments),
    ],
    env: { OAUTH_CLIENT_METADATA_URL: metadataUrl },
  });
  tls.forwardTo(h.baseUrl);
});
afterAll(async () => {
  await h?.close();
  for (const s of [withPath, noChallengeScope, noPkce, withDocuments]) await s?.close();
  await tls?.close();
});

describe('a remote MCP server that publishes only its URL', () => {
  it('is discovered, registered with, authorized, and the token lists its tools', async () => {
    const who = freshOwner('mcp');
    const first = await h.call('POST', '/api/v1/credentials/mcp-path', who);
    expect(first.status, first.text).toBe(202);
    const provider = await providerUrlBehind(first.json.authorization_url);
    // The issuer has a path (…/tenant1/oauth): its metadata comes from the RFC 8414 path-insertion location.
    expect(provider.href.startsWith(`${withPath.issuer}/auth`)).toBe(true);
    expect(provider.searchParams.get('resource')).toBe(withPath.url);
    expect(provider.searchParams.get('scope')).toBe('mcp:tools');
    expect(provider.searchParams.get('code_challenge_method')).toBe('S256');
    expect(await withPath.registeredClients()).toBe(1);

    const page = await h.consent(first.json.authorization_url, { login: who.user });
    expect(page.status, page.html).toBe(200);
    const active = await h.call('POST', '/api/v1/credentials/mcp-path', who);
    expect(active.status).toBe(200);
    expect(await listMcpTools(withPath.url, active.json.access_token)).toEqual([...MCP_TEST_TOOLS].sort());

    // The broker checks the credential against the server with the official SDK and reports manifest drift.
    const check = await h.call('POST', '/api/v1/credentials/mcp-path/check', who);
    expect(check.status, check.text).toBe(200);
    expect(check.json).toEqual({
      status: 'drift',
      server_tools: ['add', 'admin', 'echo'],
      missing: ['search'],
      changed: [{ name: 'add', fields: ['description', 'inputSchema.properties', 'inputSchema.required'] }],
      extra: ['admin'],
    });
    expect(check.text).not.toContain(active.json.access_token);

    // Refresh carries the resource too, and the refreshed token still works at the MCP server.
    const refreshed = await h.call('POST', '/api/v1/credentials/mcp-path', who, { force_refresh: true });
    expect(refreshed.status).toBe(200);
    expect(refreshed.json.access_token).not.toBe(active.json.access_token);
    expect(await listMcpTools(withPath.url, refreshed.json.access_token)).toEqual([...MCP_TEST_TOOLS].sort());
  });

  it('steps up on insufficient_scope: a new authorization for the wider scope, a bounded number of times', async () => {
    const who = freshOwner('mcp-step-up');
    const first = await h.call('POST', '/api/v1/credentials/mcp-path', who);
    await h.consent(first.json.authorization_url, { login: who.user });
    const narrow = (await h.call('POST', '/api/v1/credentials/mcp-path', who)).json.access_token as string;
    const denied = await callAdmin(withPath.url, narrow);
    expect(denied.status).toBe(403);
    const needed = /scope="([^"]+)"/.exec(denied.challenge)![1]!;
    expect(needed).toBe('mcp:tools mcp:admin');

    const stepUp = await h.call('POST', '/api/v1/credentials/mcp-path', who, { insufficient_scope: needed });
    expect(stepUp.status, stepUp.text).toBe(202);
    expect(stepUp.json.reason).toBe('insufficient_scope');
    expect((await providerUrlBehind(stepUp.json.authorization_url)).searchParams.get('scope')).toBe('mcp:tools mcp:admin');
    // The narrow credential keeps working while the user has not consented yet.
    expect((await h.call('POST', '/api/v1/credentials/mcp-path', who)).json.access_token).toBe(narrow);
    const page = await h.consent(stepUp.json.authorization_url, { login: who.user });
    expect(page.status, page.html).toBe(200);
    const wide = (await h.call('POST', '/api/v1/credentials/mcp-path', who)).json.access_token as string;
    expect(wide).not.toBe(narrow);
    expect((await callAdmin(withPath.url, wide)).status).toBe(200);

    // A repeated challenge for a scope the credential holds does not ask the user again.
    const held = await h.call('POST', '/api/v1/credentials/mcp-path', who, { insufficient_scope: 'mcp:admin' });
    expect(held.status).toBe(409);
    expect(held.json.error.code).toBe('scope_already_granted');

    // Bounded: after two step-ups the broker says so instead of asking the user again and again.
    const second = await h.call('POST', '/api/v1/credentials/mcp-path', who, { insufficient_scope: 'mcp:audit' });
    expect(second.status).toBe(202);
    // The new consent asks for what is held and what is missing: nothing held is dropped.
    expect((await providerUrlBehind(second.json.authorization_url)).searchParams.get('scope')).toBe('mcp:tools mcp:admin mcp:audit');
    // While a step-up waits for the user, asking again returns the same link.
    const again = await h.call('POST', '/api/v1/credentials/mcp-path', who, { insufficient_scope: 'mcp:audit' });
    expect(again.json.authorization_url).toBe(second.json.authorization_url);
    expect((await h.consent(second.json.authorization_url, { login: who.user })).status).toBe(200);
    const third = await h.call('POST', '/api/v1/credentials/mcp-path', who, { insufficient_scope: 'mcp:reports' });
    expect(third.status).toBe(409);
    expect(third.json.error.code).toBe('step_up_limit_reached');
  });

  it('reuses the registration for the same issuer', async () => {
    const who = freshOwner('mcp-again');
    expect((await h.call('POST', '/api/v1/credentials/mcp-path', who)).status).toBe(202);
    expect(await withPath.registeredClients()).toBe(1);
    const rows = await fork(h.services.orm).find(ClientRegistrationSchema, { issuer: withPath.issuer });
    expect(rows).toHaveLength(1);
    expect(rows[0]!.clientSecret ?? 'v1.').toMatch(/^v1\./);
  });

  it('asks for scopes_supported when the challenge names no scope', async () => {
    const who = freshOwner('mcp-scopes');
    const first = await h.call('POST', '/api/v1/credentials/mcp-plain', who);
    expect(first.status, first.text).toBe(202);
    const provider = await providerUrlBehind(first.json.authorization_url);
    expect(provider.searchParams.get('scope')).toBe('mcp:tools');
    expect(provider.searchParams.get('resource')).toBe(noChallengeScope.url);
    const page = await h.consent(first.json.authorization_url, { login: who.user });
    expect(page.status).toBe(200);
    const active = await h.call('POST', '/api/v1/credentials/mcp-plain', who);
    expect(await listMcpTools(noChallengeScope.url, active.json.access_token)).toEqual([...MCP_TEST_TOOLS].sort());
  });

  it('refuses an authorization server that does not advertise PKCE S256, with a clear error', async () => {
    const res = await h.call('POST', '/api/v1/credentials/mcp-no-pkce', freshOwner('mcp-pkce'));
    expect(res.status).toBe(502);
    expect(res.json.error.code).toBe('pkce_not_supported');
    expect(res.json.error.message).toContain('pkce_not_supported');
    expect(await noPkce.registeredClients()).toBe(0);
  });

  it('uses our Client ID Metadata Document as client_id where the server supports it: nothing registered', async () => {
    const who = freshOwner('mcp-cimd');
    const first = await h.call('POST', '/api/v1/credentials/mcp-cimd', who);
    expect(first.status, first.text).toBe(202);
    const provider = await providerUrlBehind(first.json.authorization_url);
    expect(provider.searchParams.get('client_id')).toBe(metadataUrl);
    expect(provider.searchParams.get('resource')).toBe(withDocuments.url);
    expect(provider.searchParams.get('code_challenge_method')).toBe('S256');

    const page = await h.consent(first.json.authorization_url, { login: who.user });
    expect(page.status, page.html).toBe(200);
    // The authorization server fetched our document over HTTPS, through the TLS proxy, from the broker.
    expect(withDocuments.fetchedDocuments).toContain(metadataUrl);
    expect(tls.requests).toContain('/oauth/client-metadata.json');
    expect(await withDocuments.registeredClients()).toBe(0);
    expect(await fork(h.services.orm).count(ClientRegistrationSchema, { issuer: withDocuments.issuer })).toBe(0);

    const active = await h.call('POST', '/api/v1/credentials/mcp-cimd', who);
    expect(active.status).toBe(200);
    expect(await listMcpTools(withDocuments.url, active.json.access_token)).toEqual([...MCP_TEST_TOOLS].sort());
    // A public client: the refresh (rotated by the server) authenticates with nothing but PKCE's binding.
    const refreshed = await h.call('POST', '/api/v1/credentials/mcp-cimd', who, { force_refresh: true });
    expect(refreshed.status, refreshed.text).toBe(200);
    expect(refreshed.json.access_token).not.toBe(active.json.access_token);
    expect(await listMcpTools(withDocuments.url, refreshed.json.access_token)).toEqual([...MCP_TEST_TOOLS].sort());
    // Revocation at the provider works for the public client too.
    expect((await h.call('DELETE', '/api/v1/credentials/mcp-cimd', who)).status).toBe(200);
    expect((await rpc(withDocuments.url, refreshed.json.access_token, 'tools/list')).status).toBe(401);
  });

  it('serves the metadata document publicly, with no secret in it', async () => {
    const res = await fetchTrusting(tls.ca)(metadataUrl);
    expect(res.status).toBe(200);
    expect(res.headers.get('cache-control')).toBe('public, max-age=3600');
    expect(await res.json()).toEqual({
      client_id: metadataUrl,
      client_name: 'Agent credential broker',
      redirect_uris: [h.callbackPrefix],
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
      token_endpoint_auth_method: 'none',
      application_type: 'web',
    });
  });

  it('picks the client in the specification order, and says what to configure when none fits', async () => {
    const closed = await startMcpServer({ clientIdMetadataDocuments: { ca: tls.ca }, registration: false });
    try {
      const base = {
        allowInsecure: true,
        outbound: h.services.outbound,
        registrations: new ClientRegistrations(h.services.orm, h.services.vault),
        redirectUri: h.callbackPrefix,
      };
      const tool = toTool(mcpTool('closed', closed));
      // 1. A pre-registered client wins over everything the server offers.
      const configured = toTool({
        ...mcpTool('closed', closed),
        auth: { type: 'oauth2', client_id: 'configured-client', client_secret: 'configured-secret' },
      });
      expect(
        (await new OAuthClients({ ...base, clientMetadataUrl: metadataUrl }).forTool(configured)).config.clientMetadata().client_id,
      ).toBe('configured-client');
      // 2. Else our metadata document, where the server accepts them.
      const viaDocument = await new OAuthClients({ ...base, clientMetadataUrl: metadataUrl }).forTool(tool);
      expect(viaDocument.config.clientMetadata().client_id).toBe(metadataUrl);
      expect(viaDocument.config.clientMetadata().client_secret).toBeUndefined();
      // 3. Else dynamic registration, which this server does not offer: the error says what would work.
      await expect(new OAuthClients({ ...base, clientMetadataUrl: null }).forTool(tool)).rejects.toThrow(
        /offers no dynamic registration; configure client_id for this tool or give the broker an HTTPS OAUTH_CLIENT_METADATA_URL/,
      );
    } finally {
      await closed.close();
    }
  });
});
