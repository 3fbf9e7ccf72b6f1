import { describe, expect, it } from 'vitest';
import { loadConfig, MAX_SECRETS_TTL_SECONDS } from '../../lib/config.js';

const dev = { DEVELOPMENT_MODE: 'true' };
const prod = { CREDENTIALS_ENCRYPTION_KEY: 'k', OAUTH_TOOL_REDIRECT_URI: 'https://broker.example.com/api/v1/auth/tool/callback' };

describe('loadConfig', () => {
  it('has the documented defaults', () => {
    const c = loadConfig(dev);
    expect(c.port).toBe(3000);
    expect(c.secretsTtlSeconds).toBe(2_592_000);
    expect(c.redirectUri).toBe('http://localhost:3000/api/v1/auth/tool/callback');
    expect(c.temporal).toEqual({ address: undefined, namespace: 'default', taskQueue: 'credential-broker' });
    expect(c.toolsConfigPath).toBe('config/tools.yaml');
    expect(loadConfig(prod).developmentMode).toBe(false);
  });

  it('refuses a TTL above 30 days with a clear message', () => {
    expect(() => loadConfig({ ...dev, SECRETS_TTL_SECONDS: String(MAX_SECRETS_TTL_SECONDS + 1) })).toThrow(
      /SECRETS_TTL_SECONDS must not exceed 2592000/,
    );
    expect(() => loadConfig({ ...dev, SECRETS_TTL_SECONDS: 'soon' })).toThrow(/SECRETS_TTL_SECONDS/);
    expect(loadConfig({ ...dev, SECRETS_TTL_SECONDS: '60' }).secretsTtlSeconds).toBe(60);
  });

  it('requires the callback path and https outside development mode', () => {
    expect(() => loadConfig({ ...prod, OAUTH_TOOL_REDIRECT_URI: 'https://b.example.com/callback' })).toThrow(
      /path must be \/api\/v1\/auth\/tool\/callback/,
    );
    expect(() => loadConfig({ ...prod, OAUTH_TOOL_REDIRECT_URI: 'http://b.example.com/api/v1/auth/tool/callback' })).toThrow(/https/);
    expect(loadConfig({ ...dev, OAUTH_TOOL_REDIRECT_URI: 'http://localhost:9/api/v1/auth/tool/callback' }).redirectUri).toContain(
      'http://localhost:9',
    );
    expect(() => loadConfig({ ...dev, OAUTH_TOOL_REDIRECT_URI: 'not a url' })).toThrow(/not a URL/);
  });

  it('refuses to start in production without an encryption key', () => {
    expect(() => loadConfig({ OAUTH_TOOL_REDIRECT_URI: prod.OAUTH_TOOL_REDIRECT_URI })).toThrow(/CREDENTIALS_ENCRYPTION_KEY is required/);
  });

  it('hosts the client metadata document on an HTTPS public origin by default, and checks a configured URL', () => {
    expect(loadConfig(prod).clientMetadataUrl).toBe('https://broker.example.com/oauth/client-metadata.json');
    // A plain-HTTP origin (development) cannot be a client_id: the feature is off unless a URL is given.
    expect(loadConfig(dev).clientMetadataUrl).toBeNull();
    expect(loadConfig({ ...prod, OAUTH_CLIENT_METADATA_URL: 'none' }).clientMetadataUrl).toBeNull();
    expect(loadConfig({ ...dev, OAUTH_CLIENT_METADATA_URL: 'https://static.example.com/broker/client.json' }).clientMetadataUrl).toBe(
      'https://static.example.com/broker/client.json',
    );
    for (const bad of [
      'http://broker.example.com/client.json',
      'https://broker.example.com/',
      'https://broker.example.com',
      'https://broker.example.com/a/../client.json',
      'https://broker.example.com/a/%2e%2e/client.json',
      'https://broker.example.com/client.json#x',
      'https://broker.example.com/client.json?v=1',
      'https://user:pw@broker.example.com/client.json',
      'client.json',
    ]) {
      expect(() => loadConfig({ ...prod, OAUTH_CLIENT_METADATA_URL: bad }), bad).toThrow(/OAUTH_CLIENT_METADATA_URL must be an https URL/);
    }
  });

  it('builds the outbound policy settings and refuses a malformed allowlist', () => {
    expect(loadConfig(dev).security.outbound).toEqual({ allowHttp: true, allowLoopback: true, allowlist: [] });
    expect(loadConfig(prod).security.outbound).toEqual({ allowHttp: false, allowLoopback: false, allowlist: [] });
    expect(loadConfig({ ...prod, OAUTH_ALLOW_HTTP_PROVIDERS: 'true' }).security.outbound).toMatchObject({
      allowHttp: true,
      allowLoopback: true,
    });
    const strict = loadConfig({ ...dev, OUTBOUND_ALLOW_LOOPBACK: 'false', OUTBOUND_ALLOWLIST: 'idp.corp.example, 10.1.0.0/16,127.0.0.1' });
    expect(strict.security.outbound).toEqual({
      allowHttp: true,
      allowLoopback: false,
      allowlist: ['idp.corp.example', '10.1.0.0/16', '127.0.0.1'],
    });
    expect(() => loadConfig({ ...dev, OUTBOUND_ALLOWLIST: 'http://x/y' })).toThrow(/OUTBOUND_ALLOWLIST/);
    expect(() => loadConfig({ ...dev, OUTBOUND_ALLOWLIST: '10.0.0.0/99' })).toThrow(/OUTBOUND_ALLOWLIST/);
    expect(() => loadConfig({ ...dev, METRICS_TOKEN: 'short' })).toThrow(/METRICS_TOKEN/);
  });

  it('lets the Web UI on another port decode payloads: the codec CORS default follows TEMPORAL_UI_PORT', () => {
    expect(loadConfig(dev).security.codecOrigins).toEqual(['http://localhost:8233']);
    expect(loadConfig({ ...dev, TEMPORAL_UI_PORT: '9233' }).security.codecOrigins).toEqual(['http://localhost:9233']);
    expect(loadConfig({ ...dev, TEMPORAL_UI_PORT: '9233', CODEC_CORS_ORIGINS: 'https://ui.example.com' }).security.codecOrigins).toEqual([
      'https://ui.example.com',
    ]);
    expect(loadConfig(prod).security.codecOrigins).toEqual([]);
  });
});
