/**
 * Client side of the MCP authorization specification (revision 2025-11-25): from nothing but an MCP server's
 * URL to its authorization server's metadata, the resource indicator and the scopes to ask for.
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
  resourceMetadata?: string;
  scope?: string;
  error?: string;
}

export interface McpAuthorization {
  /** The MCP server's canonical URI: the `resource` parameter (RFC 8707) of every request. */
  resource: string;
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

export async function discoverMcpAuthorization(mcpUrl: string, fetchImpl: typeof fetch = fetch): Promise<McpAuthorization> {
  const resource = canonicalResource(mcpUrl);
  const challenge = await probe(mcpUrl, fetchImpl);
  const candidates = challenge.resourceMetadata ? [challenge.resourceMetadata] : protectedResourceMetadataUrls(mcpUrl);
  const prm = await firstJson(candidates, fetchImpl);
  if (!prm) throw new DiscoveryError('resource_metadata_not_found', `no protected resource metadata for ${resource}`);
  const servers = prm.json.authorization_servers;
  if (!Array.isArray(servers) || typeof servers[0] !== 'string') {
    throw new DiscoveryError('invalid_metadata', 'the protected resource metadata names no authorization server');
  }
  if (typeof prm.json.resource === 'string' && canonicalResource(prm.json.resource) !== resource) {
    throw new DiscoveryError('invalid_metadata', `the protected resource metadata is for ${prm.json.resource}, not ${resource}`);
  }
  const issuer = servers[0];
  const as = await firstJson(authorizationServerMetadataUrls(issuer), fetchImpl);
  if (!as) throw new DiscoveryError('authorization_server_not_found', `no authorization server metadata for ${issuer}`);
  if (as.json.issuer !== issuer)
    throw new DiscoveryError('invalid_metadata', `the authorization server metadata names issuer ${String(as.json.issuer)}, not ${issuer}`);
  const methods = as.json.code_challenge_methods_supported;
  if (!Array.isArray(methods) || !methods.includes('S256')) {
    throw new DiscoveryError('pkce_not_supported', `the authorization server ${issuer} does not advertise PKCE S256; refusing to proceed`);
  }
  const supported = Array.isArray(prm.json.scopes_supported)
    ? (prm.json.scopes_supported as unknown[]).filter((s): s is string => typeof s === 'string')
    : [];
  const scopes = challenge.scope ? challenge.scope.split(' ').filter(Boolean) : supported;
  return { resource, issuer, serverMetadata: as.json as McpAuthorization['serverMetadata'], scopes, scopesSupported: supported };
}

/** An unauthenticated MCP request: a 401 names the resource metadata and, perhaps, the scopes. */
async function probe(mcpUrl: string, fetchImpl: typeof fetch): Promise<BearerChallenge> {
  let res: Response;
  try {
    res = await fetchImpl(mcpUrl, {
      method: 'POST',
      headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream' },
      body: JSON.stringify({
        jsonrpc: '2.0',
        id: 0,
        method: 'initialize',
        params: { protocolVersion: '2025-11-25', capabilities: {}, clientInfo: { name: 'credential-broker', version: '1' } },
      }),
      signal: AbortSignal.timeout(10_000),
    });
  } catch (err) {
    if (err instanceof OutboundError) throw err;
    throw new DiscoveryError('resource_metadata_not_found', `the MCP server is unreachable (${(err as Error).name})`, true);
  }
  await res.body?.cancel();
  if (res.status >= 500) throw new DiscoveryError('resource_metadata_not_found', `the MCP server answered ${res.status}`, true);
  return res.status === 401 ? parseBearerChallenge(res.headers.get('www-authenticate')) : {};
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
