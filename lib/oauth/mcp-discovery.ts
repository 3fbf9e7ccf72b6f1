/**
 * Client side of the MCP authorization specification: from nothing but an MCP server's URL to its authorization
 * server's metadata, the resource indicator and the scopes to ask for. Revisions 2025-06-18 and later through
 * protected resource metadata (RFC 9728); servers on 2025-03-26 (none) through authorization server metadata at
 * the MCP server's origin, then that revision's default endpoints.
 */

import { OutboundError } from '../net/outbound.js';

export class DiscoveryError extends Error {
  constructor(
    readonly code: 'resource_metadata_not_found' | 'authorization_server_not_found' | 'pkce_not_supported' | 'invalid_metadata',
    message: string,
    /** Transient failures (network, 5xx) are worth retrying; a server that publishes nothing is not. */
    readonly transient = false,
  ) {
    super(message);
  }
}

export interface BearerChallenge {
  /** The probe's HTTP status (401: the server asked for authorization). */
  status?: number;
  resourceMetadata?: string;
  scope?: string;
  error?: string;
}

export interface McpAuthorization {
  /**
   * The `resource` parameter (RFC 8707) of every request: what the protected resource metadata names (the MCP
   * URL, or a prefix of it); none for a 2025-03-26 server, which knows no resource indicators.
   */
  resource: string | undefined;
  issuer: string;
  serverMetadata: Record<string, unknown> & { issuer: string };
  /** From the 401 challenge, else the resource's `scopes_supported`, else none. */
  scopes: string[];
  /** The resource's `scopes_supported`. */
  scopesSupported: string[];
}

/** Parses the Bearer parameters of a WWW-Authenticate header (RFC 6750, RFC 9728). */
export function parseBearerChallenge(header: string | null): BearerChallenge {
  if (!header) return {};
  const bearer = /(?:^|,\s*)Bearer\s+(.*)$/i.exec(header)?.[1] ?? (/^Bearer$/i.test(header.trim()) ? '' : undefined);
  if (bearer === undefined) return {};
  const params: Record<string, string> = {};
  for (const m of bearer.matchAll(/([A-Za-z_][A-Za-z0-9_-]*)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]+))/g)) {
    params[m[1]!.toLowerCase()] = (m[2] ?? m[3] ?? '').replace(/\\(.)/g, '$1');
  }
  return {
    ...(params.resource_metadata ? { resourceMetadata: params.resource_metadata } : {}),
    ...(params.scope ? { scope: params.scope } : {}),
    ...(params.error ? { error: params.error } : {}),
  };
}

/** The canonical resource URI of an MCP server (RFC 8707): no fragment, lower-case scheme and host. */
export function canonicalResource(url: string): string {
  const u = new URL(url);
  u.hash = '';
  const text = u.href;
  return u.pathname === '/' && !u.search && !url.endsWith('/') ? text.slice(0, -1) : text;
}

/** RFC 9728 well-known locations: path-specific first, then the root. */
export function protectedResourceMetadataUrls(mcpUrl: string): string[] {
  const u = new URL(mcpUrl);
  const path = u.pathname.replace(/\/$/, '');
  const urls = path ? [`${u.origin}/.well-known/oauth-protected-resource${path}`] : [];
  urls.push(`${u.origin}/.well-known/oauth-protected-resource`);
  return urls;
}

/** Authorization server metadata locations in the order the MCP specification gives (RFC 8414, then OpenID). */
export function authorizationServerMetadataUrls(issuer: string): string[] {
  const u = new URL(issuer);
  const path = u.pathname.replace(/\/$/, '');
  if (!path) return [`${u.origin}/.well-known/oauth-authorization-server`, `${u.origin}/.well-known/openid-configuration`];
  return [
    `${u.origin}/.well-known/oauth-authorization-server${path}`,
    `${u.origin}/.well-known/openid-configuration${path}`,
    `${u.origin}${path}/.well-known/openid-configuration`,
  ];
}

/**
 * The resource a protected resource metadata document names, when it covers the MCP URL: the URL itself, or a
 * prefix of it at a path-segment boundary (RFC 9728 §3.3, as the official SDKs check it). Null otherwise.
 */
export function coveringResource(named: string, mcpUrl: string): string | null {
  let n: URL;
  try {
    n = new URL(named);
  } catch {
    return null;
  }
  const m = new URL(mcpUrl);
  if (n.origin !== m.origin || n.search || n.hash) return null;
  const prefix = n.pathname.endsWith('/') ? n.pathname : `${n.pathname}/`;
  return n.pathname === m.pathname || m.pathname.startsWith(prefix) ? canonicalResource(named) : null;
}

export async function discoverMcpAuthorization(mcpUrl: string, fetchImpl: typeof fetch = fetch): Promise<McpAuthorization> {
  const challenge = await probe(mcpUrl, fetchImpl);
  const candidates = challenge.resourceMetadata ? [challenge.resourceMetadata] : protectedResourceMetadataUrls(mcpUrl);
  const prm = await firstJson(candidates, fetchImpl);
  if (!prm) return legacyAuthorization(mcpUrl, challenge, fetchImpl);
  const servers = prm.json.authorization_servers;
  if (!Array.isArray(servers) || typeof servers[0] !== 'string') {
    throw new DiscoveryError('invalid_metadata', 'the protected resource metadata names no authorization server');
  }
  let resource = canonicalResource(mcpUrl);
  if (typeof prm.json.resource === 'string') {
    const covering = coveringResource(prm.json.resource, mcpUrl);
    if (!covering)
      throw new DiscoveryError('invalid_metadata', `the protected resource metadata is for ${prm.json.resource}, not ${resource}`);
    resource = covering;
  }
  const issuer = servers[0];
  const as = await firstJson(authorizationServerMetadataUrls(issuer), fetchImpl);
  if (!as) throw new DiscoveryError('authorization_server_not_found', `no authorization server metadata for ${issuer}`);
  if (as.json.issuer !== issuer)
    throw new DiscoveryError('invalid_metadata', `the authorization server metadata names issuer ${String(as.json.issuer)}, not ${issuer}`);
  requirePkce(as.json, issuer);
  const supported = Array.isArray(prm.json.scopes_supported)
    ? (prm.json.scopes_supported as unknown[]).filter((s): s is string => typeof s === 'string')
    : [];
  const scopes = challenge.scope ? challenge.scope.split(' ').filter(Boolean) : supported;
  return { resource, issuer, serverMetadata: as.json as McpAuthorization['serverMetadata'], scopes, scopesSupported: supported };
}

/**
 * A server on the 2025-03-26 revision publishes no protected resource metadata: its authorization server is at
 * its own origin (the "authorization base URL"), with RFC 8414 metadata there, or else that revision's default
 * endpoints (`/authorize`, `/token`, `/register`), for which PKCE S256 is required by the revision itself.
 */
async function legacyAuthorization(mcpUrl: string, challenge: BearerChallenge, fetchImpl: typeof fetch): Promise<McpAuthorization> {
  const origin = new URL(mcpUrl).origin;
  const scopes = challenge.scope ? challenge.scope.split(' ').filter(Boolean) : [];
  const as = await firstJson([`${origin}/.well-known/oauth-authorization-server`], fetchImpl);
  if (as) {
    // That revision puts the metadata at the MCP server's origin whatever the issuer's path: the issuer must be on
    // that origin (the server speaks for itself), not elsewhere.
    if (originOf(as.json.issuer) !== origin)
      throw new DiscoveryError(
        'invalid_metadata',
        `the authorization server metadata names issuer ${String(as.json.issuer)}, not one at ${origin}`,
      );
    requirePkce(as.json, origin);
    // No resource metadata to name scopes: the challenge's, else what the authorization server supports
    // (without OpenID Connect's identity scopes, which an MCP server does not need).
    const supported = Array.isArray(as.json.scopes_supported)
      ? (as.json.scopes_supported as unknown[]).filter((s): s is string => typeof s === 'string' && !OIDC_SCOPES.has(s))
      : [];
    return {
      resource: undefined,
      issuer: String(as.json.issuer),
      serverMetadata: as.json as McpAuthorization['serverMetadata'],
      scopes: scopes.length ? scopes : supported,
      scopesSupported: supported,
    };
  }
  // No metadata anywhere: that revision's defaults, but only for a server that asked for authorization at all.
  if (challenge.status !== 401)
    throw new DiscoveryError('resource_metadata_not_found', `no protected resource or authorization server metadata for ${mcpUrl}`);
  return {
    resource: undefined,
    issuer: origin,
    serverMetadata: {
      issuer: origin,
      authorization_endpoint: `${origin}/authorize`,
      token_endpoint: `${origin}/token`,
      registration_endpoint: `${origin}/register`,
      code_challenge_methods_supported: ['S256'],
    },
    scopes,
    scopesSupported: [],
  };
}

/** The origin of a URL a server gave us, or null when it is not one. */
export function originOf(url: unknown): string | null {
  try {
    return new URL(String(url)).origin;
  } catch {
    return null;
  }
}

const OIDC_SCOPES = new Set(['openid', 'profile', 'email', 'address', 'phone']);

function requirePkce(metadata: Record<string, unknown>, issuer: string): void {
  const methods = metadata.code_challenge_methods_supported;
  if (!Array.isArray(methods) || !methods.includes('S256')) {
    throw new DiscoveryError('pkce_not_supported', `the authorization server ${issuer} does not advertise PKCE S256; refusing to proceed`);
  }
}

/**
 * Unauthenticated MCP requests: a 401 names the resource metadata and, perhaps, the scopes. `initialize` first;
 * a server that lets it through unauthenticated (or speaks a stateless revision without it) is asked
 * `tools/list`, which needs authorization everywhere, so the scopes come from its challenge, not a guess.
 */
async function probe(mcpUrl: string, fetchImpl: typeof fetch): Promise<BearerChallenge> {
  const initialize = await probeWith(mcpUrl, fetchImpl, {
    method: 'initialize',
    params: { protocolVersion: '2025-11-25', capabilities: {}, clientInfo: { name: 'credential-broker', version: '1' } },
  });
  if (initialize.status === 401) return initialize;
  const list = await probeWith(mcpUrl, fetchImpl, { method: 'tools/list', params: {} }, { 'mcp-protocol-version': '2025-11-25' });
  return list.status === 401 ? list : initialize;
}

async function probeWith(
  mcpUrl: string,
  fetchImpl: typeof fetch,
  request: { method: string; params: Record<string, unknown> },
  headers: Record<string, string> = {},
): Promise<BearerChallenge> {
  let res: Response;
  try {
    res = await fetchImpl(mcpUrl, {
      method: 'POST',
      headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream', ...headers },
      body: JSON.stringify({ jsonrpc: '2.0', id: 0, ...request }),
      signal: AbortSignal.timeout(10_000),
    });
  } catch (err) {
    if (err instanceof OutboundError) throw err;
    throw new DiscoveryError('resource_metadata_not_found', `the MCP server is unreachable (${(err as Error).name})`, true);
  }
  await res.body?.cancel();
  if (res.status >= 500) throw new DiscoveryError('resource_metadata_not_found', `the MCP server answered ${res.status}`, true);
  return res.status === 401 ? { status: 401, ...parseBearerChallenge(res.headers.get('www-authenticate')) } : { status: res.status };
}

async function firstJson(urls: string[], fetchImpl: typeof fetch): Promise<{ url: string; json: Record<string, unknown> } | null> {
  for (const url of urls) {
    let res: Response;
    try {
      res = await fetchImpl(url, { headers: { accept: 'application/json' }, signal: AbortSignal.timeout(10_000) });
    } catch (err) {
      if (err instanceof OutboundError) throw err;
      throw new DiscoveryError('authorization_server_not_found', `metadata at ${url} is unreachable (${(err as Error).name})`, true);
    }
    if (res.status >= 500) throw new DiscoveryError('authorization_server_not_found', `metadata at ${url} answered ${res.status}`, true);
    if (!res.ok) {
      await res.body?.cancel();
      continue;
    }
    try {
      const json = (await res.json()) as unknown;
      if (json && typeof json === 'object' && !Array.isArray(json)) return { url, json: json as Record<string, unknown> };
    } catch {
      // not JSON: try the next location
    }
  }
  return null;
}
