import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import express from 'express';
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import Provider, { errors } from 'oidc-provider';
import { z } from 'zod';
import { fetchTrusting } from './tls-proxy.js';

export interface McpTestServer {
  /** The MCP endpoint, the only thing a tool needs to know. */
  url: string;
  issuer: string;
  provider: Provider;
  /** Registered clients at the authorization server (dynamic registration). */
  registeredClients(): Promise<number>;
  /** Client ID Metadata Documents this server fetched, by URL. */
  fetchedDocuments: string[];
  close(): Promise<void>;
}

export interface McpServerOptions {
  /** Mount the authorization server under a path: an issuer with a path (`…/tenant1`). */
  issuerPath?: string;
  /** Serve authorization server metadata without `code_challenge_methods_supported`. */
  hidePkce?: boolean;
  /** Put a `scope` in the 401 challenge (otherwise clients fall back to `scopes_supported`). */
  challengeScope?: string;
  scopesSupported?: string[];
  /**
   * Accept Client ID Metadata Documents (oidc-provider's experimental feature, draft 02): the server fetches
   * a client's document from its HTTPS client_id, trusting this certificate.
   */
  clientIdMetadataDocuments?: { ca: string };
  /** Dynamic client registration (on unless false). */
  registration?: boolean;
  /** Issue tokens for any resource indicator (a provider shared by many resources). */
  acceptAnyResource?: boolean;
}

const TOOLS = ['echo', 'add', 'admin'];

/**
 * A real remote MCP server (the official TypeScript SDK, streamable HTTP) that requires a bearer token and
 * publishes protected resource metadata (RFC 9728), in front of a real authorization server (oidc-provider
 * with dynamic registration and resource indicators). Tokens are checked by introspection.
 */
export async function startMcpServer(opts: McpServerOptions = {}): Promise<McpTestServer> {
  const server: Server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const origin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const asPath = opts.issuerPath ?? '';
  const issuer = `${origin}${asPath}/oauth`;
  const resource = `${origin}/mcp`;
  const scopesSupported = opts.scopesSupported ?? ['mcp:tools', 'mcp:admin'];
  const introspector = { client_id: 'mcp-resource-server', client_secret: 'resource-server-secret' };

  const fetchedDocuments: string[] = [];
  const trusting = opts.clientIdMetadataDocuments ? fetchTrusting(opts.clientIdMetadataDocuments.ca) : null;
  const provider = new Provider(issuer, {
    clients: [{ ...introspector, redirect_uris: [], grant_types: [], response_types: [] }],
    pkce: { required: () => true },
    scopes: ['openid', 'offline_access', ...scopesSupported],
    features: {
      devInteractions: { enabled: true },
      registration: { enabled: opts.registration !== false },
      ...(opts.clientIdMetadataDocuments ? { clientIdMetadataDocument: { enabled: true, ack: 'draft-02' } } : {}),
      revocation: { enabled: true },
      introspection: { enabled: true },
      resourceIndicators: {
        enabled: true,
        defaultResource: () => resource,
        useGrantedResource: () => true,
        getResourceServerInfo: (_ctx, indicator) => {
          if (indicator !== resource && !opts.acceptAnyResource) throw new errors.InvalidTarget();
          return { scope: scopesSupported.join(' '), audience: indicator, accessTokenTTL: 3600, accessTokenFormat: 'opaque' };
        },
      },
    },
    issueRefreshToken: async (_ctx, client) => client.grantTypeAllowed('refresh_token'),
    findAccount: async (_ctx, sub) => ({ accountId: sub, claims: async () => ({ sub }) }),
    cookies: { keys: ['mcp-test-cookie-key'] },
    // The provider's own fetch refuses loopback addresses (SSRF protection); here our broker is on loopback.
    ...(opts.clientIdMetadataDocuments
      ? {
          fetch: ((url, init) => {
            fetchedDocuments.push(String(url));
            return trusting!(url, init);
          }) as typeof fetch,
        }
      : {}),
  });
  let registrations = 0;
  provider.on('registration_create.success', () => {
    registrations++;
  });
  const providerCallback = provider.callback();

  const app = express();
  // Authorization server metadata, optionally without PKCE (to check that the broker refuses it).
  app.get(`/.well-known/oauth-authorization-server${asPath}/oauth`, async (_req, res) => {
    const metadata = (await (await fetch(`${issuer}/.well-known/openid-configuration`)).json()) as Record<string, unknown>;
    if (opts.hidePkce) delete metadata.code_challenge_methods_supported;
    res.json(metadata);
  });
  app.get('/.well-known/oauth-protected-resource/mcp', (_req, res) => {
    res.json({ resource, authorization_servers: [issuer], scopes_supported: scopesSupported, bearer_methods_supported: ['header'] });
  });
  app.use(`${asPath}/oauth`, (req, res) => {
    req.url = req.originalUrl.slice(`${asPath}/oauth`.length) || '/';
    void providerCallback(req, res);
  });
  app.post('/mcp', express.json(), async (req, res) => {
    const token = /^Bearer (.+)$/i.exec(req.get('authorization') ?? '')?.[1];
    const info = token ? await introspect(token) : null;
    if (!info?.active || info.aud !== resource) {
      const scope = opts.challengeScope ? `, scope="${opts.challengeScope}"` : '';
      res
        .status(401)
        .set('WWW-Authenticate', `Bearer resource_metadata="${origin}/.well-known/oauth-protected-resource/mcp"${scope}`)
        .json({ error: 'unauthorized' });
      return;
    }
    // The `admin` tool needs the wider scope: without it, 403 insufficient_scope names the scopes needed.
    const call = req.body as { method?: string; params?: { name?: string } };
    const granted = String(info.scope ?? '').split(' ');
    if (call?.method === 'tools/call' && call.params?.name === 'admin' && !granted.includes('mcp:admin')) {
      res
        .status(403)
        .set(
          'WWW-Authenticate',
          `Bearer error="insufficient_scope", scope="mcp:tools mcp:admin", resource_metadata="${origin}/.well-known/oauth-protected-resource/mcp"`,
        )
        .json({ error: 'insufficient_scope' });
      return;
    }
    const mcp = new McpServer({ name: 'test-mcp', version: '1.0.0' });
    mcp.registerTool('admin', { description: 'Administer', inputSchema: {} }, async () => ({
      content: [{ type: 'text', text: 'administered' }],
    }));
    mcp.registerTool('echo', { description: 'Echo a message', inputSchema: { message: z.string() } }, async ({ message }) => ({
      content: [{ type: 'text', text: message }],
    }));
    mcp.registerTool('add', { description: 'Add two numbers', inputSchema: { a: z.number(), b: z.number() } }, async ({ a, b }) => ({
      content: [{ type: 'text', text: String(a + b) }],
    }));
    const transport = new StreamableHTTPServerTransport({ sessionIdGenerator: undefined });
    res.on('close', () => {
      void transport.close();
      void mcp.close();
    });
    await mcp.connect(transport);
    await transport.handleRequest(req, res, req.body);
  });
  server.on('request', app);

  async function introspect(token: string): Promise<{ active: boolean; aud?: unknown; scope?: unknown } | null> {
    const res = await fetch(`${issuer}/token/introspection`, {
      method: 'POST',
      headers: {
        authorization: `Basic ${Buffer.from(`${introspector.client_id}:${introspector.client_secret}`).toString('base64')}`,
        'content-type': 'application/x-www-form-urlencoded',
      },
      body: new URLSearchParams({ token }),
    });
    return res.ok ? ((await res.json()) as { active: boolean; aud?: unknown; scope?: unknown }) : null;
  }

  return {
    url: resource,
    issuer,
    provider,
    registeredClients: async () => registrations,
    fetchedDocuments,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

export const MCP_TEST_TOOLS = TOOLS;
