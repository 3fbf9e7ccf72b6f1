import * as oidc from 'openid-client';
import type { OutboundPolicy } from '../net/outbound.js';
import type { Tool } from '../tools.js';
import { brokerClientMetadata } from './client-metadata.js';
import { DiscoveryError, discoverMcpAuthorization, originOf } from './mcp-discovery.js';
import { quirkFetch } from './quirks.js';
import { clientAuthFor } from './client-auth.js';
import { bindsWithDpop } from './dpop.js';
import type { ClientKeys } from './client-keys.js';
import type { ClientRegistrations, RegisteredClient } from './registrations.js';

/** Seconds an authorization server may take to answer one request. */
export const OAUTH_HTTP_TIMEOUT_SECONDS = 10;

export interface OAuthClientOptions {
  /** Plain-HTTP authorization servers are accepted only in development mode. */
  allowInsecure: boolean;
  /** Every request to an authorization or MCP server goes through it (scheme, addresses, redirects, size). */
  outbound: OutboundPolicy;
  /** Injected in tests to control the network without monkey-patching (wraps the outbound policy's fetch). */
  fetch?: typeof fetch;
  /** Where dynamic registrations are kept (needed for MCP servers that publish only their URL). */
  registrations?: ClientRegistrations;
  redirectUri?: string;
  /** Our Client ID Metadata Document's HTTPS URL (our client_id where servers support such documents). */
  clientMetadataUrl?: string | null;
  /**
   * How long what was discovered from an MCP server's URL is reused; then discovery runs again, so a server that
   * names another authorization server is followed (and registered with) by the next authorization or refresh.
   */
  discoveryTtlMs?: number;
  /** Signing keys for `private_key_jwt` client authentication. */
  clientKeys?: ClientKeys;
  /** Whether agents may read access tokens (EXPOSE_TOKENS; a tool's `expose_token` overrides): see bindsWithDpop. */
  exposeTokens?: boolean;
}

/** Default for OAuthClientOptions.discoveryTtlMs. */
export const DISCOVERY_TTL_MS = 10 * 60_000;

export interface ToolClient {
  config: oidc.Configuration;
  /** False when the tool names endpoints but no issuer: the callback's `iss` cannot be checked. */
  issuerKnown: boolean;
  revocationSupported: boolean;
  /** The `resource` parameter (RFC 8707) sent with authorization and token requests, for MCP servers. */
  resource?: string;
  /** The scopes to ask for: the tool's, else what the MCP server's challenge or metadata names. */
  scopes: string[];
  /** What a step-up may ask for: the tool's allowed_scopes, else its scopes, else what the MCP server supports. */
  allowedScopes: string[];
  /** Endpoints learned from an MCP server, not configured by the operator. */
  discovered: boolean;
  /**
   * Every authorization response must carry `iss` (RFC 9207): the server says it sends one, or its endpoints are
   * spread over more than one origin (the shape of a mix-up, where only `iss` ties the response to the server meant).
   */
  requireIss: boolean;
  /** Tokens are bound to the credential's DPoP key (RFC 9449): the server supports it and the tool does not opt out. */
  dpop: boolean;
}

/** Builds (and caches per tool) the openid-client configuration for a tool's authorization server. */
export class OAuthClients {
  private readonly cache = new Map<string, { client: Promise<ToolClient>; until: number }>();

  constructor(private readonly opts: OAuthClientOptions) {}

  /** The fetch every OAuth and discovery request uses: the outbound policy's (or a test's). */
  private get fetchImpl(): typeof fetch {
    return this.opts.fetch ?? (this.opts.outbound.fetch as typeof fetch);
  }

  forTool(tool: Tool): Promise<ToolClient> {
    const cached = this.cache.get(tool.id);
    if (cached && cached.until > Date.now()) return cached.client;
    const client = this.build(tool);
    // Configured endpoints do not change under us; discovered ones are looked up again after a while.
    const until = isDiscovered(tool) ? Date.now() + (this.opts.discoveryTtlMs ?? DISCOVERY_TTL_MS) : Infinity;
    const entry = { client, until };
    // A failed discovery is not cached: the next attempt tries again.
    client.catch(() => {
      if (this.cache.get(tool.id) === entry) this.cache.delete(tool.id);
    });
    this.cache.set(tool.id, entry);
    return client;
  }

  /**
   * The tool's enterprise identity provider (`enterprise`, `token_exchange`), as the broker's client there: built
   * like a configured tool's authorization server (its issuer's metadata, its token endpoint, its client auth).
   */
  forIdentityProvider(tool: Tool): Promise<ToolClient> {
    const idp = tool.auth.identity_provider;
    if (!idp) return Promise.reject(new DiscoveryError('invalid_metadata', `tool ${tool.id} has no identity provider`));
    const { issuer, token_url, client_id, client_secret, token_endpoint_auth_method } = idp;
    const auth = {
      type: 'oauth2' as const,
      issuer,
      token_url,
      client_id,
      client_secret,
      token_endpoint_auth_method,
      dpop: tool.auth.dpop,
      scopeList: [],
    };
    return this.forTool({ ...tool, id: `${tool.id}\0identity-provider`, toolType: 'api', auth });
  }

  private async build(tool: Tool): Promise<ToolClient> {
    const { auth } = tool;
    // An MCP server known by its URL alone, for users (authorization code) or for machines (client credentials).
    if (isDiscovered(tool)) return this.buildMcp(tool);
    const clientAuth = await this.clientAuth(tool, auth.token_endpoint_auth_method, auth.client_secret);
    const metadata: Partial<oidc.ClientMetadata> = auth.client_secret ? { client_secret: auth.client_secret } : {};
    const execute = this.opts.allowInsecure ? [oidc.allowInsecureRequests] : [];
    let config: oidc.Configuration;
    if (auth.issuer) {
      config = await oidc.discovery(new URL(auth.issuer), auth.client_id!, metadata, clientAuth, {
        execute,
        timeout: OAUTH_HTTP_TIMEOUT_SECONDS,
        [oidc.customFetch]: this.fetchImpl,
      });
      // A plain copy: the metadata object also carries helper methods.
      const server = JSON.parse(JSON.stringify(config.serverMetadata())) as oidc.ServerMetadata;
      if (auth.authorization_url || auth.token_url || auth.revocation_url) {
        config = new oidc.Configuration(
          {
            ...server,
            authorization_endpoint: auth.authorization_url ?? server.authorization_endpoint,
            token_endpoint: auth.token_url ?? server.token_endpoint,
            revocation_endpoint: auth.revocation_url ?? server.revocation_endpoint,
          },
          auth.client_id!,
          metadata,
          clientAuth,
        );
      }
    } else {
      config = new oidc.Configuration(
        {
          issuer: new URL(auth.token_url!).origin,
          ...(auth.authorization_url ? { authorization_endpoint: auth.authorization_url } : {}),
          token_endpoint: auth.token_url!,
          ...(auth.revocation_url ? { revocation_endpoint: auth.revocation_url } : {}),
        },
        auth.client_id!,
        metadata,
        clientAuth,
      );
    }
    this.configure(config, tool);
    return {
      config,
      issuerKnown: Boolean(auth.issuer),
      revocationSupported: Boolean(config.serverMetadata().revocation_endpoint),
      scopes: auth.scopeList,
      allowedScopes: auth.allowed_scopes ?? auth.scopeList,
      discovered: false,
      requireIss: false,
      dpop: bindsWithDpop(tool, config.serverMetadata(), this.opts.exposeTokens),
    };
  }

  /** The public keys the broker signs client assertions with (`private_key_jwt`), for /oauth/jwks.json. */
  jwks(tools: Tool[]): Promise<{ keys: unknown[] }> {
    return this.opts.clientKeys ? this.opts.clientKeys.jwks(tools) : Promise.resolve({ keys: [] });
  }

  /** How this tool authenticates at its token endpoint: a signed assertion with its key, a secret, or nothing. */
  private async clientAuth(tool: Tool, method: string | undefined, secret: string | undefined): Promise<oidc.ClientAuth> {
    if (method !== 'private_key_jwt') return clientAuthFor(method, secret);
    if (!this.opts.clientKeys) throw new DiscoveryError('invalid_metadata', 'private_key_jwt needs the broker’s client keys');
    return this.opts.clientKeys.clientAuth(tool);
  }

  /** What every configuration gets, however it was built: transport policy, the tool's quirks, a timeout. */
  private configure(config: oidc.Configuration, tool: Tool): void {
    if (this.opts.allowInsecure) oidc.allowInsecureRequests(config);
    const tokenEndpoint = config.serverMetadata().token_endpoint;
    const baseFetch = this.fetchImpl;
    config[oidc.customFetch] = tokenEndpoint ? quirkFetch(tool, tokenEndpoint, baseFetch) : baseFetch;
    // Well under the activities' start-to-close timeout: an attempt never outlives its slot and races its retry.
    config.timeout = OAUTH_HTTP_TIMEOUT_SECONDS;
  }

  /** MCP authorization: discover from the server's URL, then use, or register, a client at its issuer. */
  private async buildMcp(tool: Tool): Promise<ToolClient> {
    const fetchImpl = this.fetchImpl;
    const found = await discoverMcpAuthorization(tool.connection.url, fetchImpl);
    const client = await this.clientFor(tool, found.issuer, found.serverMetadata, fetchImpl);
    const metadata: Partial<oidc.ClientMetadata> = client.clientSecret ? { client_secret: client.clientSecret } : {};
    const config = new oidc.Configuration(
      found.serverMetadata as oidc.ServerMetadata,
      client.clientId,
      metadata,
      await this.clientAuth(tool, client.tokenEndpointAuthMethod, client.clientSecret),
    );
    this.configure(config, tool);
    return {
      config,
      issuerKnown: true,
      revocationSupported: Boolean(found.serverMetadata.revocation_endpoint),
      resource: found.resource,
      scopes: tool.auth.scopeList.length ? tool.auth.scopeList : found.scopes,
      allowedScopes: tool.auth.allowed_scopes ?? [...new Set([...tool.auth.scopeList, ...found.scopes, ...found.scopesSupported])],
      discovered: true,
      requireIss: requiresIss(found.serverMetadata),
      dpop: bindsWithDpop(tool, found.serverMetadata, this.opts.exposeTokens),
    };
  }

  /**
   * Client registration in the specification's order: the tool's pre-registered client; else our Client ID
   * Metadata Document when the server advertises support (nothing to register or store); else a stored
   * dynamic registration, else a new one (RFC 7591).
   */
  private async clientFor(tool: Tool, issuer: string, server: Record<string, unknown>, fetchImpl: typeof fetch): Promise<RegisteredClient> {
    const { auth } = tool;
    if (auth.client_id) {
      return {
        clientId: auth.client_id,
        ...(auth.client_secret ? { clientSecret: auth.client_secret } : {}),
        tokenEndpointAuthMethod: auth.token_endpoint_auth_method ?? 'client_secret_basic',
      };
    }
    // Our metadata document's URL is one client_id shared across every issuer: only where the server says it
    // puts `iss` in its authorization responses (RFC 9207) can a response be tied to the server it came from.
    if (
      server.client_id_metadata_document_supported === true &&
      server.authorization_response_iss_parameter_supported === true &&
      this.opts.clientMetadataUrl
    ) {
      return { clientId: this.opts.clientMetadataUrl, tokenEndpointAuthMethod: 'none' };
    }
    return this.registeredClient(issuer, server, fetchImpl);
  }

  private async registeredClient(issuer: string, server: Record<string, unknown>, fetchImpl: typeof fetch): Promise<RegisteredClient> {
    const { registrations, redirectUri } = this.opts;
    if (!registrations || !redirectUri) throw new DiscoveryError('invalid_metadata', 'dynamic registration is not configured');
    const known = await registrations.find(issuer, redirectUri);
    if (known) return known;
    const endpoint = server.registration_endpoint;
    if (typeof endpoint !== 'string') {
      const documents =
        server.client_id_metadata_document_supported === true
          ? ' or give the broker an HTTPS OAUTH_CLIENT_METADATA_URL (the server accepts client metadata documents)'
          : '';
      throw new DiscoveryError(
        'invalid_metadata',
        `the authorization server ${issuer} offers no dynamic registration; configure client_id for this tool${documents}`,
      );
    }
    const res = await fetchImpl(endpoint, {
      method: 'POST',
      headers: { 'content-type': 'application/json', accept: 'application/json' },
      body: JSON.stringify({
        ...brokerClientMetadata(redirectUri),
        token_endpoint_auth_method: 'client_secret_basic',
      }),
      signal: AbortSignal.timeout(OAUTH_HTTP_TIMEOUT_SECONDS * 1000),
    });
    const body = (await res.json().catch(() => ({}))) as Record<string, unknown>;
    if (!res.ok || typeof body.client_id !== 'string') {
      throw new DiscoveryError(
        'invalid_metadata',
        `dynamic registration at ${issuer} failed (${res.status} ${typeof body.error === 'string' ? body.error : ''})`.trim(),
        res.status >= 500,
      );
    }
    return registrations.save(issuer, redirectUri, {
      clientId: body.client_id,
      ...(typeof body.client_secret === 'string' ? { clientSecret: body.client_secret } : {}),
      tokenEndpointAuthMethod:
        typeof body.token_endpoint_auth_method === 'string' ? body.token_endpoint_auth_method : 'client_secret_basic',
    });
  }
}

/**
 * Whether a discovered authorization server's responses must carry `iss`: it advertises RFC 9207, or its
 * authorization endpoint is on another origin than its issuer or its token endpoint (a server whose endpoints all
 * live at the issuer's origin, and which does not send `iss`, is the common case of revision 2025-06-18 and before).
 */
export function requiresIss(server: Record<string, unknown>): boolean {
  if (server.authorization_response_iss_parameter_supported === true) return true;
  const at = originOf(server.authorization_endpoint);
  return at === null || at !== originOf(server.issuer) || at !== originOf(server.token_endpoint);
}

/** An MCP server known by its URL alone: its authorization server is discovered, not configured. */
function isDiscovered(tool: Tool): boolean {
  return tool.toolType === 'mcp' && !tool.auth.issuer && !tool.auth.authorization_url && !tool.auth.token_url;
}
