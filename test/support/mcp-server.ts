import { randomUUID } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import express from 'express';
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import { SSEServerTransport } from '@modelcontextprotocol/sdk/server/sse.js';
import Provider, { errors } from 'oidc-provider';
import { z } from 'zod';
import { fetchTrusting } from './tls-proxy.js';
import { introspectAt } from './introspect.js';
import { checkTokenUse, dpopChallenge, type TokenBinding } from './dpop-check.js';

export interface McpTestServer {
  /** The MCP endpoint, the only thing a tool needs to know. */
  url: string;
  issuer: string;
  provider: Provider;
  /** Registered clients at the authorization server (dynamic registration). */
  registeredClients(): Promise<number>;
  /** Client ID Metadata Documents this server fetched, by URL. */
  fetchedDocuments: string[];
  /** Every bearer token this server was sent (the gateway tests scan what the agent received for them). */
  tokensSeen: Set<string>;
  /** From now on, 401 for every token seen so far (a token the upstream stopped accepting). */
  rejectTokensSeen(): void;
  /** While on, 401 for every token, even a freshly refreshed one (the user's grant no longer opens the server). */
  rejectEverything(on: boolean): void;
  /** Tool calls of `wait` that ended because the caller cancelled them. */
  cancellations: number;
  /** Ends every session (stateful only), as a restarted server would: their ids are unknown from now on. */
  endSessions(): Promise<void>;
  /** From now on, the protected resource metadata names this authorization server instead (a server that moved). */
  pointTo(issuer: string): void;
  /** Checks a token at the authorization server (for an API protected by the same provider). */
  introspect(token: string): Promise<Introspection | null>;
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
  /** The older HTTP+SSE transport (GET /mcp, POST /mcp/messages) instead of Streamable HTTP. */
  transport?: 'streamable-http' | 'sse';
  /** Streamable HTTP with sessions (Mcp-Session-Id; cancellation reaches the running call) instead of stateless. */
  stateful?: boolean;
  /** Answer requests with one JSON body instead of an event stream (Streamable HTTP allows both). */
  jsonResponse?: boolean;
  /** Let an unauthenticated `initialize` through (stateless only): only the requests after it are challenged. */
  openInitialize?: boolean;
  /** Also serve `whoami`, `count` (progress) and `leak` (echoes its token), the gateway tests' tools. */
  gatewayTools?: boolean;
  /**
   * Where the server's authorization metadata lives: `path` (RFC 9728, path-specific, the default); `root` (its
   * protected resource metadata at the root location, naming the origin as the resource); `2025-03-26` (no
   * resource metadata: the authorization server at the MCP server's origin with RFC 8414 metadata there);
   * `2025-03-26-defaults` (the same, publishing no metadata at all: the revision's default endpoints).
   */
  metadata?: 'path' | 'root' | '2025-03-26' | '2025-03-26-defaults';
  /** Keep introspection answers this long (a resource server's usual cache; the benchmark's upstream). */
  introspectionCacheMs?: number;
  /** Proofs for DPoP-bound tokens must carry this nonce (RFC 9449 §9): the first try without it is refused. */
  dpopNonce?: string;
  /** Pre-registered clients (a tool configured with its client id, an HTTP API protected by this provider). */
  clients?: { client_id: string; client_secret: string; redirect_uris: string[]; grant_types?: string[] }[];
}

const TOOLS = ['echo', 'add', 'admin'];

/** What the authorization server says of a token (RFC 7662), `cnf.jkt` when it is DPoP-bound. */
type Introspection = { active: boolean; sub?: unknown; aud?: unknown; scope?: unknown; token_type?: unknown } & TokenBinding;

/**
 * A real remote MCP server (the official TypeScript SDK, streamable HTTP) that requires a bearer token and
 * publishes protected resource metadata (RFC 9728), in front of a real authorization server (oidc-provider
 * with dynamic registration and resource indicators). Tokens are checked by introspection.
 */
export async function startMcpServer(opts: McpServerOptions = {}): Promise<McpTestServer> {
  const server: Server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const origin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const layout = opts.metadata ?? 'path';
  const named = { issuer: '' };
  const legacy = layout.startsWith('2025-03-26');
  const asPath = opts.issuerPath ?? '';
  // 2025-03-26: the authorization server is the MCP server's origin, with that revision's endpoint paths.
  const issuer = legacy ? origin : `${origin}${asPath}/oauth`;
  const resource = layout === 'root' ? origin : `${origin}/mcp`;
  named.issuer = issuer;
  const metadataUrl =
    layout === 'root' ? `${origin}/.well-known/oauth-protected-resource` : `${origin}/.well-known/oauth-protected-resource/mcp`;
  const scopesSupported = opts.scopesSupported ?? ['mcp:tools', 'mcp:admin'];
  const introspector = { client_id: 'mcp-resource-server', client_secret: 'resource-server-secret' };

  const fetchedDocuments: string[] = [];
  const trusting = opts.clientIdMetadataDocuments ? fetchTrusting(opts.clientIdMetadataDocuments.ca) : null;
  const provider = new Provider(issuer, {
    clients: [
      { ...introspector, redirect_uris: [], grant_types: [], response_types: [] },
      ...(opts.clients ?? []).map((c) =>
        // Clients of grants without a browser (client credentials, the JWT bearer grant added by `enterprise.ts`).
        c.grant_types && !c.grant_types.includes('authorization_code')
          ? { ...c, grant_types: c.grant_types, response_types: [] }
          : { ...c, grant_types: ['authorization_code', 'refresh_token'], response_types: ['code' as const] },
      ),
    ],
    pkce: { required: () => true },
    scopes: ['openid', 'offline_access', ...scopesSupported],
    features: {
      devInteractions: { enabled: true },
      clientCredentials: { enabled: true },
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
    ...(legacy ? { routes: { authorization: '/authorize', token: '/token', registration: '/register' } } : {}),
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
  if (!legacy) {
    // Authorization server metadata, optionally without PKCE (to check that the broker refuses it).
    app.get(`/.well-known/oauth-authorization-server${asPath}/oauth`, async (_req, res) => {
      const metadata = (await (await fetch(`${issuer}/.well-known/openid-configuration`)).json()) as Record<string, unknown>;
      if (opts.hidePkce) delete metadata.code_challenge_methods_supported;
      res.json(metadata);
    });
    app.get(new URL(metadataUrl).pathname, (_req, res) => {
      res.json({
        resource,
        authorization_servers: [named.issuer],
        scopes_supported: scopesSupported,
        bearer_methods_supported: ['header'],
      });
    });
    app.use(`${asPath}/oauth`, (req, res) => {
      req.url = req.originalUrl.slice(`${asPath}/oauth`.length) || '/';
      void providerCallback(req, res);
    });
  } else if (layout === '2025-03-26') {
    app.get('/.well-known/oauth-authorization-server', async (_req, res) => {
      res.json(await (await fetch(`${issuer}/.well-known/openid-configuration`)).json());
    });
  } else {
    app.use('/.well-known', (_req, res) => void res.status(404).end());
  }
  const tokensSeen = new Set<string>();
  const rejected = new Set<string>();
  const dpopState = { jtis: new Set<string>(), ...(opts.dpopNonce ? { nonce: opts.dpopNonce } : {}) };
  let rejectAll = false;
  const counters = { cancellations: 0 };
  /** Stateful Streamable HTTP sessions, by id. */
  const sessions = new Map<string, StreamableHTTPServerTransport>();
  const challenge = (res: express.Response) => {
    const scope = opts.challengeScope ? `, scope="${opts.challengeScope}"` : '';
    const pointer = legacy ? 'realm="mcp"' : `resource_metadata="${metadataUrl}"`;
    res.status(401).set('WWW-Authenticate', `Bearer ${pointer}${scope}`).json({ error: 'unauthorized' });
  };
  /** The token's introspection when it may use this server; otherwise answers 401 and returns null. */
  const authenticate = async (req: express.Request, res: express.Response) => {
    const presented = /^(Bearer|DPoP) (.+)$/i.exec(req.get('authorization') ?? '');
    const token = presented?.[2];
    if (token) tokensSeen.add(token);
    const info = token && !rejected.has(token) && !rejectAll ? await checked(token) : null;
    if (!info?.active || (info.aud !== resource && !opts.acceptAnyResource)) {
      challenge(res);
      return null;
    }
    // A DPoP-bound token only with a proof of its key; a bearer token only as one.
    const use = { method: req.method, url: `${origin}${req.originalUrl}`, scheme: presented![1]!, token: token!, proof: req.get('dpop') };
    const refusal = await checkTokenUse(use, info, dpopState);
    if (refusal) {
      res.status(401).set(dpopChallenge(refusal, dpopState.nonce)).json({ error: refusal });
      return null;
    }
    return { ...info, token: token! };
  };
  const mcpFor = (info: { sub?: unknown; token: string }) => {
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
    if (!opts.gatewayTools) return mcp;
    mcp.registerTool('whoami', { description: 'The subject of the token this server received', inputSchema: {} }, async () => ({
      content: [{ type: 'text', text: String(info.sub) }],
    }));
    mcp.registerTool('count', { description: 'Counts to three, with progress', inputSchema: {} }, async (_args, extra) => {
      const progressToken = extra._meta?.progressToken;
      for (let i = 1; i <= 3; i++) {
        if (progressToken !== undefined)
          await extra.sendNotification({
            method: 'notifications/progress',
            params: { progressToken, progress: i, total: 3, message: `step ${i}` },
          });
        await new Promise((r) => setTimeout(r, 20));
      }
      return { content: [{ type: 'text', text: 'counted' }] };
    });
    mcp.registerTool('wait', { description: 'Waits five seconds, or until cancelled', inputSchema: {} }, async (_args, extra) => {
      const cancelled = await new Promise<boolean>((resolve) => {
        const timer = setTimeout(() => resolve(false), 5_000);
        extra.signal.addEventListener('abort', () => {
          clearTimeout(timer);
          resolve(true);
        });
      });
      if (cancelled) counters.cancellations++;
      return { content: [{ type: 'text', text: cancelled ? 'cancelled' : 'waited' }] };
    });
    mcp.registerResource('profile', 'test://profile', { mimeType: 'text/plain' }, async (uri) => ({
      contents: [{ uri: uri.href, text: `profile of ${String(info.sub)}` }],
    }));
    // A hostile (or careless) server: it echoes the credential it was sent.
    mcp.registerTool('leak', { description: 'Echoes the Authorization header', inputSchema: {} }, async () => ({
      content: [{ type: 'text', text: `you sent Bearer ${info.token}` }],
    }));
    return mcp;
  };
  /** The `admin` tool needs the wider scope: without it, 403 insufficient_scope names the scopes needed. */
  const needsWiderScope = (req: express.Request, res: express.Response, scope: unknown) => {
    const call = req.body as { method?: string; params?: { name?: string } };
    const granted = String(scope ?? '').split(' ');
    if (call?.method !== 'tools/call' || call.params?.name !== 'admin' || granted.includes('mcp:admin')) return false;
    res
      .status(403)
      .set('WWW-Authenticate', `Bearer error="insufficient_scope", scope="mcp:tools mcp:admin", resource_metadata="${metadataUrl}"`)
      .json({ error: 'insufficient_scope' });
    return true;
  };
  if (opts.transport === 'sse') {
    const sessions = new Map<string, SSEServerTransport>();
    app.get('/mcp', async (req, res) => {
      const info = await authenticate(req, res);
      if (!info) return;
      const transport = new SSEServerTransport('/mcp/messages', res);
      sessions.set(transport.sessionId, transport);
      res.on('close', () => sessions.delete(transport.sessionId));
      await mcpFor(info).connect(transport);
    });
    // A Streamable HTTP probe (discovery) hears the same challenge.
    app.post('/mcp', async (req, res) => {
      if (await authenticate(req, res)) res.status(405).end();
    });
    app.post('/mcp/messages', express.json(), async (req, res) => {
      const info = await authenticate(req, res);
      if (!info || needsWiderScope(req, res, info.scope)) return;
      const transport = sessions.get(String(req.query.sessionId));
      if (!transport) return void res.status(404).end();
      await transport.handlePostMessage(req, res, req.body);
    });
  } else if (opts.stateful) {
    app.all('/mcp', express.json(), async (req, res) => {
      const info = await authenticate(req, res);
      if (!info || needsWiderScope(req, res, info.scope)) return;
      const id = req.get('mcp-session-id');
      let transport = id ? sessions.get(id) : undefined;
      if (!transport) {
        if (id) return void res.status(404).json({ jsonrpc: '2.0', id: null, error: { code: -32001, message: 'Session not found' } });
        const created = new StreamableHTTPServerTransport({
          sessionIdGenerator: () => randomUUID(),
          enableJsonResponse: opts.jsonResponse ?? false,
          onsessioninitialized: (sid) => void sessions.set(sid, created),
        });
        created.onclose = () => created.sessionId && sessions.delete(created.sessionId);
        await mcpFor(info).connect(created);
        transport = created;
      }
      await transport.handleRequest(req, res, req.body);
    });
  } else {
    app.post('/mcp', express.json(), async (req, res) => {
      const open = opts.openInitialize && (req.body as { method?: unknown })?.method === 'initialize' && !req.get('authorization');
      const info = open ? { token: '', scope: '' } : await authenticate(req, res);
      if (!info || needsWiderScope(req, res, info.scope)) return;
      const mcp = mcpFor(info);
      const transport = new StreamableHTTPServerTransport({
        sessionIdGenerator: undefined,
        enableJsonResponse: opts.jsonResponse ?? false,
      });
      res.on('close', () => {
        void transport.close();
        void mcp.close();
      });
      await mcp.connect(transport);
      await transport.handleRequest(req, res, req.body);
    });
  }
  // 2025-03-26: the authorization server answers at the origin, after the MCP routes.
  if (legacy) app.use((req, res) => void providerCallback(req, res));
  server.on('request', app);

  const cache = new Map<string, { info: Awaited<ReturnType<typeof introspect>>; until: number }>();
  async function checked(token: string) {
    if (!opts.introspectionCacheMs) return introspect(token);
    const hit = cache.get(token);
    if (hit && hit.until > Date.now()) return hit.info;
    const info = await introspect(token);
    cache.set(token, { info, until: Date.now() + opts.introspectionCacheMs });
    return info;
  }

  async function introspect(token: string): Promise<Introspection | null> {
    const res = await introspectAt(issuer, { id: introspector.client_id, secret: introspector.client_secret }, token);
    return res.ok ? ((await res.json()) as Introspection) : null;
  }

  return {
    url: `${origin}/mcp`,
    issuer,
    provider,
    registeredClients: async () => registrations,
    fetchedDocuments,
    tokensSeen,
    rejectTokensSeen: () => {
      for (const t of tokensSeen) rejected.add(t);
    },
    rejectEverything: (on) => {
      rejectAll = on;
    },
    endSessions: async () => {
      const open = [...sessions.values()];
      sessions.clear();
      await Promise.all(open.map((t) => t.close()));
    },
    get cancellations() {
      return counters.cancellations;
    },
    pointTo: (other) => {
      named.issuer = other;
    },
    introspect,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

export const MCP_TEST_TOOLS = TOOLS;
