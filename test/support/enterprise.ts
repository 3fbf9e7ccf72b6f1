import { randomUUID } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import * as jose from 'jose';
import * as oidc from 'openid-client';
import Provider, { errors, type KoaContextWithOIDC } from 'oidc-provider';
import { consent } from './browser.js';
import { introspectAt } from './introspect.js';

export const TOKEN_EXCHANGE = 'urn:ietf:params:oauth:grant-type:token-exchange';
export const JWT_BEARER = 'urn:ietf:params:oauth:grant-type:jwt-bearer';
const ID_TOKEN = 'urn:ietf:params:oauth:token-type:id_token';
const ID_JAG = 'urn:ietf:params:oauth:token-type:id-jag';
const ACCESS_TOKEN = 'urn:ietf:params:oauth:token-type:access_token';

/** The broker's client at the identity provider: the agents' single sign-on client, whose ID tokens it exchanges. */
export const IDP_CLIENT = { client_id: 'broker-at-idp', client_secret: 'idp-client-secret' };
const SSO_REDIRECT = 'http://127.0.0.1:9/sso-callback';
/** An API that trusts this provider checks its access tokens by introspection, as this client. */
const INTROSPECTOR = { client_id: 'api-resource-server', client_secret: 'api-introspection-secret' };

export interface IdentityProvider {
  issuer: string;
  jwksUri: string;
  provider: Provider;
  /** The tool authorization servers this provider issues identity assertion grants for: issuer → the client id named. */
  audiences: Map<string, string>;
  /** Users whose exchanges are refused from now on (disabled in the enterprise directory). */
  disabled: Set<string>;
  /** Every token exchange it answered: the requested type, audience, resource, and the token it issued. */
  exchanges: { requested: string; audience?: string; resource?: string; issued: string }[];
  /** A user's real ID token: signs in at the provider's login page and redeems the code (PKCE), as an SSO client. */
  signIn(login: string): Promise<string>;
  /** What an API protected by this provider learns of an access token (RFC 7662). */
  introspect(token: string): Promise<{ active: boolean; sub?: unknown; aud?: unknown }>;
  close(): Promise<void>;
}

/**
 * An enterprise identity provider: a real oidc-provider that signs users in (its own login pages) and, through its
 * `registerGrantType` extension point, answers RFC 8693 token exchanges of the ID tokens it issued — for an identity
 * assertion grant (ID-JAG, a JWT it signs for another authorization server) or for its own access token (on behalf of).
 */
export async function startIdentityProvider(opts: { accessTokenResource?: string } = {}): Promise<IdentityProvider> {
  const server: Server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const issuer = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const { privateKey, publicKey } = await jose.generateKeyPair('ES256', { extractable: true });
  const kid = 'idp-key-1';
  const signingKey = { ...(await jose.exportJWK(privateKey)), kid, alg: 'ES256', use: 'sig' };
  const provider = new Provider(issuer, {
    clients: [
      {
        ...IDP_CLIENT,
        redirect_uris: [SSO_REDIRECT],
        grant_types: ['authorization_code', TOKEN_EXCHANGE],
        response_types: ['code'],
      },
      { ...INTROSPECTOR, redirect_uris: [], grant_types: [], response_types: [] },
    ],
    jwks: { keys: [signingKey] },
    clientDefaults: { id_token_signed_response_alg: 'ES256' },
    pkce: { required: () => true },
    scopes: ['openid', 'email'],
    features: {
      devInteractions: { enabled: true },
      resourceIndicators: {
        enabled: true,
        defaultResource: () => opts.accessTokenResource ?? issuer,
        useGrantedResource: () => true,
        getResourceServerInfo: (_ctx, indicator) => {
          if (indicator !== opts.accessTokenResource) throw new errors.InvalidTarget();
          return { scope: 'api:read', audience: indicator, accessTokenTTL: 600, accessTokenFormat: 'opaque' };
        },
      },
      introspection: { enabled: true },
    },
    findAccount: async (_ctx, sub) => ({ accountId: sub, claims: async () => ({ sub, email: `${sub}@example.test` }) }),
    cookies: { keys: ['idp-cookie-key'] },
  });
  const audiences = new Map<string, string>();
  const disabled = new Set<string>();
  const exchanges: IdentityProvider['exchanges'] = [];

  provider.registerGrantType(
    TOKEN_EXCHANGE,
    async (ctx: KoaContextWithOIDC) => {
      const p = ctx.oidc.params as Record<string, string | undefined>;
      const client = ctx.oidc.client!;
      if (p.subject_token_type !== ID_TOKEN || !p.subject_token) throw new errors.InvalidRequest('subject_token must be an ID token');
      let sub: string;
      try {
        // Only ID tokens this provider issued to the client now asking (RFC 8693 §2.1, the ID-JAG profile).
        const { payload } = await jose.jwtVerify(p.subject_token, publicKey, { issuer, audience: client.clientId });
        sub = String(payload.sub);
      } catch {
        throw new errors.InvalidGrant('the subject token is not a valid ID token for this client');
      }
      if (disabled.has(sub)) throw new errors.InvalidGrant('the user is disabled');
      if (p.requested_token_type === ID_JAG) {
        const named = p.audience ? audiences.get(p.audience) : undefined;
        if (!named || !p.resource) throw new errors.InvalidTarget('no identity assertions for this audience');
        const grant = await new jose.SignJWT({ client_id: named, resource: p.resource, ...(p.scope ? { scope: p.scope } : {}) })
          .setProtectedHeader({ alg: 'ES256', kid, typ: 'oauth-id-jag+jwt' })
          .setIssuer(issuer)
          .setSubject(sub)
          .setAudience(p.audience!)
          .setIssuedAt()
          .setExpirationTime('5m')
          .setJti(randomUUID())
          .sign(privateKey);
        exchanges.push({ requested: ID_JAG, audience: p.audience, resource: p.resource, issued: grant });
        ctx.body = { access_token: grant, issued_token_type: ID_JAG, token_type: 'N_A', expires_in: 300 };
        return;
      }
      if (p.requested_token_type !== ACCESS_TOKEN || !opts.accessTokenResource || p.resource !== opts.accessTokenResource)
        throw new errors.InvalidTarget('unsupported requested_token_type or resource');
      const scope = 'api:read';
      const grant = new provider.Grant({ accountId: sub, clientId: client.clientId });
      grant.addResourceScope(p.resource, scope);
      const token = new provider.AccessToken({ accountId: sub, client, grantId: await grant.save(), gty: 'token_exchange', scope });
      token.resourceServer = new provider.ResourceServer(p.resource, {
        scope,
        audience: p.resource,
        accessTokenTTL: 600,
        accessTokenFormat: 'opaque',
      });
      const value = await token.save();
      exchanges.push({ requested: ACCESS_TOKEN, resource: p.resource, issued: value });
      ctx.body = { access_token: value, issued_token_type: ACCESS_TOKEN, token_type: 'Bearer', expires_in: token.expiration, scope };
    },
    ['subject_token', 'subject_token_type', 'requested_token_type', 'audience', 'resource', 'scope'],
  );
  const callback = provider.callback();
  server.on('request', (req, res) => void callback(req, res));

  return {
    issuer,
    jwksUri: `${issuer}/jwks`,
    provider,
    audiences,
    disabled,
    exchanges,
    async signIn(login) {
      const config = await oidc.discovery(new URL(issuer), IDP_CLIENT.client_id, IDP_CLIENT.client_secret, undefined, {
        execute: [oidc.allowInsecureRequests],
      });
      const verifier = oidc.randomPKCECodeVerifier();
      const state = oidc.randomState();
      const url = oidc.buildAuthorizationUrl(config, {
        redirect_uri: SSO_REDIRECT,
        scope: 'openid email',
        state,
        code_challenge: await oidc.calculatePKCECodeChallenge(verifier),
        code_challenge_method: 'S256',
      });
      const { callbackUrl } = await consent(url.href, SSO_REDIRECT, { login, stopAtCallback: true });
      const tokens = await oidc.authorizationCodeGrant(config, callbackUrl, { pkceCodeVerifier: verifier, expectedState: state });
      return tokens.id_token!;
    },
    async introspect(token) {
      const res = await introspectAt(issuer, { id: INTROSPECTOR.client_id, secret: INTROSPECTOR.client_secret }, token);
      return (await res.json()) as { active: boolean; sub?: unknown; aud?: unknown };
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

export interface AssertionCheck {
  /** Identity assertion grants redeemed (their ids: each is accepted once). */
  redeemed: Set<string>;
}

/**
 * Teaches a tool's authorization server (an oidc-provider) the RFC 7523 JWT bearer grant for identity assertion
 * grants from `idp`: signed by it, typed `oauth-id-jag+jwt`, for this server, for the client presenting it, for this
 * resource, once. The access token is the user's (the grant's subject), opaque, checked by introspection as usual.
 */
export function acceptIdentityAssertions(
  provider: Provider,
  at: { issuer: string; resource: string; scopes: string[]; ttlSeconds?: number },
  idp: { issuer: string; jwksUri: string },
): AssertionCheck {
  const keys = jose.createRemoteJWKSet(new URL(idp.jwksUri));
  const redeemed = new Set<string>();
  provider.registerGrantType(
    JWT_BEARER,
    async (ctx: KoaContextWithOIDC) => {
      const p = ctx.oidc.params as Record<string, string | undefined>;
      const client = ctx.oidc.client!;
      let claims: jose.JWTPayload;
      try {
        ({ payload: claims } = await jose.jwtVerify(p.assertion ?? '', keys, {
          issuer: idp.issuer,
          audience: at.issuer,
          typ: 'oauth-id-jag+jwt',
          requiredClaims: ['sub', 'jti', 'exp'],
        }));
      } catch {
        throw new errors.InvalidGrant('the identity assertion grant does not verify');
      }
      if (claims.client_id !== client.clientId) throw new errors.InvalidGrant('the grant was issued for another client');
      if (claims.resource !== at.resource) throw new errors.InvalidTarget('the grant is for another resource');
      if (redeemed.has(claims.jti!)) throw new errors.InvalidGrant('the grant was already used');
      redeemed.add(claims.jti!);
      const asked = String(p.scope ?? claims.scope ?? at.scopes.join(' ')).split(' ');
      const scope = at.scopes.filter((s) => asked.includes(s)).join(' ');
      const grant = new provider.Grant({ accountId: claims.sub!, clientId: client.clientId });
      grant.addResourceScope(at.resource, scope);
      const token = new provider.AccessToken({ accountId: claims.sub!, client, grantId: await grant.save(), gty: 'jwt-bearer', scope });
      // DPoP (RFC 9449): a proof of a key with the request binds the token to that key.
      const proof = ctx.get('dpop');
      if (proof) {
        try {
          const { protectedHeader, payload } = await jose.jwtVerify(proof, jose.EmbeddedJWK, { typ: 'dpop+jwt', maxTokenAge: 60 });
          if (payload.htm !== 'POST' || payload.htu !== `${at.issuer}/token`) throw new Error('wrong htm or htu');
          token.setThumbprint('jkt', await jose.calculateJwkThumbprint(protectedHeader.jwk!));
        } catch {
          throw new errors.InvalidDpopProof('the DPoP proof does not verify');
        }
      }
      token.resourceServer = new provider.ResourceServer(at.resource, {
        scope: at.scopes.join(' '),
        audience: at.resource,
        accessTokenTTL: at.ttlSeconds ?? 3600,
        accessTokenFormat: 'opaque',
      });
      const value = await token.save();
      ctx.body = { access_token: value, token_type: token.tokenType, expires_in: token.expiration, scope };
    },
    ['assertion', 'scope'],
  );
  return { redeemed };
}
