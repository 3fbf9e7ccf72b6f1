import * as oidc from 'openid-client';
import { describe, expect, it } from 'vitest';
import { normalizeSlackTokenResponse, quirkFetch, scopeParams } from '../../lib/oauth/quirks.js';
import { clientSecretBasic } from '../../lib/oauth/client-auth.js';
import { planStepUp } from '../../api/gateway/links.js';
import { loadProviderCatalog, parseProviderCatalog } from '../../lib/providers.js';
import { parseTools } from '../../lib/tools.js';

const catalog = loadProviderCatalog();
const tool = (yaml: string) => parseTools(`tools:\n${yaml}`, { ID: 'client-id', SECRET: 'client-secret' }, catalog)[0]!;

describe('the provider catalog', () => {
  it('ships the required providers and a generic entry', () => {
    for (const name of [
      'atlassian',
      'stripe',
      'cloudflare',
      'canva',
      'github',
      'google',
      'microsoft',
      'slack',
      'linear',
      'notion',
      'salesforce',
      'generic',
    ]) {
      expect(catalog.has(name), name).toBe(true);
    }
  });

  it('refuses unknown fields and unknown providers with clear errors', () => {
    expect(() => parseProviderCatalog('providers: { x: { description: d, colour: red } }')).toThrow(/providers\.x: .*colour/);
    expect(() => parseProviderCatalog('providers: { x: {} }')).toThrow(/providers\.x\.description/);
    expect(() => tool('  - { id: t, provider: nope, auth: { client_id: x } }')).toThrow(/tool t: provider nope is not in the catalog/);
  });

  it('lets a tool name a provider and override what it must', () => {
    const gh = tool('  - { id: gh, provider: github, auth: { client_id: "${ID}", client_secret: "${SECRET}", scopes: [repo] } }');
    expect(gh.auth).toMatchObject({
      authorization_url: 'https://github.com/login/oauth/authorize',
      token_endpoint_auth_method: 'client_secret_post',
      scopeList: ['repo'],
      client_id: 'client-id',
    });
    expect(gh.toolType).toBe('api');
    const mcp = tool('  - { id: stripe, provider: stripe }');
    expect(mcp).toMatchObject({ toolType: 'mcp', connection: { type: 'streamable-http', url: 'https://mcp.stripe.com' } });
  });
});

describe('quirks that change a request', () => {
  it('Google asks for offline access with a consent prompt', () => {
    const google = tool('  - { id: g, provider: google, auth: { client_id: x, authorization_params: { hd: example.com } } }');
    expect(google.auth.authorization_params).toEqual({ access_type: 'offline', prompt: 'consent', hd: 'example.com' });
    expect(google.auth.issuer).toBe('https://accounts.google.com');
    // An app in testing: the catalog knows its refresh tokens die after 7 days (the expiring warning needs it).
    expect(tool('  - { id: gt, provider: google_testing, auth: { client_id: x } }').auth.refresh_token_lifetime_seconds).toBe(604800);
    expect(google.auth.refresh_token_lifetime_seconds).toBeUndefined();
  });

  it('Atlassian asks for its API audience, consent and offline_access', () => {
    const a = tool('  - { id: a, provider: atlassian_api, auth: { client_id: x, client_secret: y } }');
    expect(a.auth.authorization_params).toEqual({ audience: 'api.atlassian.com', prompt: 'consent' });
    expect(a.auth.scopeList).toContain('offline_access');
  });

  it('Slack puts user scopes in user_scope, comma-separated; others use scope with spaces', () => {
    const slack = tool('  - { id: s, provider: slack, auth: { client_id: x, client_secret: y } }');
    expect(scopeParams(slack, ['search:read', 'channels:history'])).toEqual({ user_scope: 'search:read,channels:history' });
    const linear = tool('  - { id: l, provider: linear, auth: { client_id: x, client_secret: y } }');
    expect(scopeParams(linear, ['read', 'write'])).toEqual({ scope: 'read,write' });
    const gh = tool('  - { id: gh, provider: github, auth: { client_id: x, client_secret: y } }');
    expect(scopeParams(gh, ['repo', 'read:user'])).toEqual({ scope: 'repo read:user' });
    expect(scopeParams(gh, [])).toEqual({});
  });

  it('client_secret_post sends the secret in the body, client_secret_basic in the header', async () => {
    const seen: { body: string; auth: string | null }[] = [];
    const fakeFetch = (async (_url: string, init: RequestInit) => {
      seen.push({ body: String(init.body), auth: new Headers(init.headers).get('authorization') });
      return new Response(JSON.stringify({ access_token: 'at', token_type: 'bearer' }), {
        headers: { 'content-type': 'application/json' },
      });
    }) as unknown as typeof fetch;
    for (const method of [oidc.ClientSecretPost('s3cret'), oidc.ClientSecretBasic('s3cret')]) {
      const config = new oidc.Configuration(
        { issuer: 'https://as.example.com', token_endpoint: 'https://as.example.com/token' },
        'cid',
        {},
        method,
      );
      config[oidc.customFetch] = fakeFetch;
      await oidc.refreshTokenGrant(config, 'rt');
    }
    expect(seen[0]!.body).toContain('client_secret=s3cret');
    expect(seen[0]!.auth).toBeNull();
    expect(seen[1]!.body).not.toContain('client_secret');
    expect(seen[1]!.auth).toMatch(/^Basic /);
  });
});

describe('quirks that change how a response is read', () => {
  it('Slack: the user token nested under authed_user becomes a standard token response', async () => {
    const slack = tool('  - { id: s, provider: slack, auth: { client_id: x, client_secret: y } }');
    const slackAnswer = {
      ok: true,
      app_id: 'A1',
      authed_user: {
        id: 'U1',
        scope: 'search:read',
        access_token: 'xoxp-user',
        token_type: 'user',
        refresh_token: 'xoxe-r',
        expires_in: 43200,
      },
      team: { id: 'T1' },
    };
    const base = (async () =>
      new Response(JSON.stringify(slackAnswer), { headers: { 'content-type': 'application/json' } })) as unknown as typeof fetch;
    const config = new oidc.Configuration(
      { issuer: 'https://slack.com', token_endpoint: slack.auth.token_url! },
      'cid',
      {},
      oidc.ClientSecretPost('y'),
    );
    config[oidc.customFetch] = quirkFetch(slack, slack.auth.token_url!, base);
    const tokens = await oidc.refreshTokenGrant(config, 'xoxe-old');
    expect(tokens).toMatchObject({
      access_token: 'xoxp-user',
      refresh_token: 'xoxe-r',
      expires_in: 43200,
      scope: 'search:read',
      token_type: 'bearer',
    });
  });

  it('Slack: ok:false errors become OAuth errors (invalid_grant is permanent)', () => {
    expect(normalizeSlackTokenResponse(200, { ok: false, error: 'invalid_refresh_token' })).toEqual({
      status: 400,
      body: { error: 'invalid_grant' },
    });
    expect(normalizeSlackTokenResponse(200, { ok: false, error: 'ratelimited' })).toEqual({ status: 400, body: { error: 'ratelimited' } });
  });

  it('GitHub: a token without expiry or refresh token is read as non-expiring', async () => {
    const base = (async () =>
      new Response(JSON.stringify({ access_token: 'gho_x', token_type: 'bearer', scope: 'repo' }), {
        headers: { 'content-type': 'application/json' },
      })) as unknown as typeof fetch;
    const config = new oidc.Configuration(
      { issuer: 'https://github.com', token_endpoint: 'https://github.com/login/oauth/access_token' },
      'cid',
      {},
      oidc.ClientSecretPost('y'),
    );
    config[oidc.customFetch] = base;
    const tokens = await oidc.refreshTokenGrant(config, 'unused');
    expect(tokens.expires_in).toBeUndefined();
    expect(tokens.refresh_token).toBeUndefined();
  });
});

describe('client_secret_basic', () => {
  it('form-encodes id and secret as RFC 6749 §2.3.1 says, leaving letters, digits and *-._ as they are', async () => {
    const headers = new Headers();
    void clientSecretBasic('s3cr3t:with space&more')(
      { issuer: 'https://as.example.com' },
      { client_id: 'pre-registered-client.v2_x' },
      new URLSearchParams(),
      headers,
    );
    const decoded = Buffer.from(headers.get('authorization')!.replace(/^Basic /, ''), 'base64').toString();
    expect(decoded).toBe('pre-registered-client.v2_x:s3cr3t%3Awith+space%26more');
  });
});

describe('step-up planning', () => {
  it('asks for what is held and what is missing, and for nothing when everything is held', () => {
    expect(planStepUp('mcp:tools', ['mcp:tools', 'mcp:admin'])).toEqual({ missing: ['mcp:admin'], scopes: ['mcp:tools', 'mcp:admin'] });
    expect(planStepUp('a b c', ['b'])).toEqual({ missing: [], scopes: ['a', 'b', 'c'] });
    expect(planStepUp(null, ['x', 'x'])).toEqual({ missing: ['x'], scopes: ['x'] });
  });
});
