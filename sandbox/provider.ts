import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import Provider from 'oidc-provider';
import { persistSandboxState, SandboxAdapter, saveSandboxState } from './memory-adapter.js';
import { handleInteraction } from './interactions.js';

export interface SandboxOptions {
  /** 0 picks a free port. */
  port?: number;
  host?: string;
  clientId?: string;
  clientSecret?: string;
  redirectUris: string[];
  /** Short access tokens make refresh visible within minutes (seconds in tests). */
  accessTokenTtlSeconds?: number;
  /** How long a refresh token lives (default 30 days); the token answer says it (`refresh_token_expires_in`). */
  refreshTokenTtlSeconds?: number;
  /** Keep grants and tokens in this file across restarts (`npm start`: under DATA_DIR). */
  stateFile?: string;
}

export interface Sandbox {
  issuer: string;
  clientId: string;
  clientSecret: string;
  provider: Provider;
  close(): Promise<void>;
}

export const SANDBOX_SCOPES = ['tools.read', 'tools.write'];

/**
 * A real OAuth 2.0 authorization server (panva's oidc-provider) for newcomers and tests: PKCE, refresh-token
 * rotation, revocation, introspection and dynamic registration; any login and password are accepted.
 */
export async function startSandbox(opts: SandboxOptions): Promise<Sandbox> {
  const host = opts.host ?? '127.0.0.1';
  const clientId = opts.clientId ?? 'broker-sandbox';
  const clientSecret = opts.clientSecret ?? 'sandbox-client-secret-do-not-use-in-production';
  if (opts.stateFile) persistSandboxState(opts.stateFile);
  const { createServer } = await import('node:http');
  const server: Server = createServer();
  await new Promise<void>((resolve) => server.listen(opts.port ?? 0, host, resolve));
  const port = (server.address() as AddressInfo).port;
  const issuer = `http://${host === '0.0.0.0' ? 'localhost' : host}:${port}`;
  const provider = new Provider(issuer, {
    adapter: SandboxAdapter,
    clients: [
      {
        client_id: clientId,
        client_secret: clientSecret,
        client_name: 'Credential broker',
        redirect_uris: opts.redirectUris,
        grant_types: ['authorization_code', 'refresh_token', 'client_credentials'],
        response_types: ['code'],
        token_endpoint_auth_method: 'client_secret_basic',
      },
    ],
    pkce: { required: () => true },
    interactions: { url: (_ctx, interaction) => `/interaction/${interaction.uid}` },
    scopes: ['openid', 'offline_access', ...SANDBOX_SCOPES],
    features: {
      devInteractions: { enabled: false },
      revocation: { enabled: true },
      introspection: { enabled: true },
      registration: { enabled: true },
      clientCredentials: { enabled: true },
    },
    ttl: {
      AccessToken: opts.accessTokenTtlSeconds ?? 3600,
      ClientCredentials: opts.accessTokenTtlSeconds ?? 3600,
      AuthorizationCode: 60,
      RefreshToken: opts.refreshTokenTtlSeconds ?? 30 * 24 * 3600,
      Grant: 30 * 24 * 3600,
      Interaction: 3600,
      Session: 24 * 3600,
    },
    rotateRefreshToken: true,
    issueRefreshToken: async (_ctx, client) => client.grantTypeAllowed('refresh_token'),
    findAccount: async (_ctx, sub) => ({ accountId: sub, claims: async () => ({ sub }) }),
    cookies: { keys: ['sandbox-cookie-signing-key-not-secret'] },
  });
  // The token answer says when the refresh token dies (as GitHub, Microsoft and Keycloak do), read from the token itself.
  provider.use(async (ctx, next) => {
    await next();
    const body = ctx.body as { refresh_token?: unknown } | undefined;
    if (ctx.path !== '/token' || ctx.status !== 200 || typeof body?.refresh_token !== 'string') return;
    const token = await provider.RefreshToken.find(body.refresh_token);
    if (token?.exp) Object.assign(body, { refresh_token_expires_in: Math.max(0, token.exp - Math.floor(Date.now() / 1000)) });
  });
  const oidc = provider.callback();
  server.on('request', (req, res) => {
    handleInteraction(provider, req, res)
      .then((handled) => {
        if (!handled) void oidc(req, res);
      })
      .catch(() => {
        if (!res.headersSent)
          res.writeHead(400, { 'content-type': 'text/plain' }).end('this sign-in has expired or is not valid; start again');
      });
  });
  return {
    issuer,
    clientId,
    clientSecret,
    provider,
    close: () =>
      new Promise<void>((resolve) => {
        if (opts.stateFile) saveSandboxState();
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
