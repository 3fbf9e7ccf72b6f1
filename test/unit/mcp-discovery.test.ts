import { describe, expect, it } from 'vitest';
import {
  authorizationServerMetadataUrls,
  canonicalResource,
  coveringResource,
  parseBearerChallenge,
  protectedResourceMetadataUrls,
} from '../../lib/oauth/mcp-discovery.js';
import { requiresIss } from '../../lib/oauth/client.js';

describe('MCP authorization discovery rules', () => {
  it('parses the Bearer challenge parameters', () => {
    expect(
      parseBearerChallenge(
        'Bearer resource_metadata="https://mcp.example.com/.well-known/oauth-protected-resource/mcp", scope="files:read files:write"',
      ),
    ).toEqual({
      resourceMetadata: 'https://mcp.example.com/.well-known/oauth-protected-resource/mcp',
      scope: 'files:read files:write',
    });
    expect(parseBearerChallenge('Bearer error="insufficient_scope", scope="admin"')).toEqual({
      error: 'insufficient_scope',
      scope: 'admin',
    });
    expect(parseBearerChallenge('Basic realm="x"')).toEqual({});
    expect(parseBearerChallenge(null)).toEqual({});
  });

  it('looks for protected resource metadata at the path-specific location, then the root', () => {
    expect(protectedResourceMetadataUrls('https://mcp.example.com/public/mcp')).toEqual([
      'https://mcp.example.com/.well-known/oauth-protected-resource/public/mcp',
      'https://mcp.example.com/.well-known/oauth-protected-resource',
    ]);
    expect(protectedResourceMetadataUrls('https://mcp.example.com')).toEqual([
      'https://mcp.example.com/.well-known/oauth-protected-resource',
    ]);
  });

  it('orders authorization server metadata locations as the specification does', () => {
    expect(authorizationServerMetadataUrls('https://auth.example.com/tenant1')).toEqual([
      'https://auth.example.com/.well-known/oauth-authorization-server/tenant1',
      'https://auth.example.com/.well-known/openid-configuration/tenant1',
      'https://auth.example.com/tenant1/.well-known/openid-configuration',
    ]);
    expect(authorizationServerMetadataUrls('https://auth.example.com')).toEqual([
      'https://auth.example.com/.well-known/oauth-authorization-server',
      'https://auth.example.com/.well-known/openid-configuration',
    ]);
  });

  it('canonicalizes the resource URI', () => {
    expect(canonicalResource('HTTPS://MCP.Example.com/mcp#frag')).toBe('https://mcp.example.com/mcp');
    expect(canonicalResource('https://mcp.example.com')).toBe('https://mcp.example.com');
    expect(canonicalResource('https://mcp.example.com:443/server/v1')).toBe('https://mcp.example.com/server/v1');
  });

  it('accepts a resource that is the MCP URL or a prefix of it at a path-segment boundary (RFC 9728)', () => {
    const mcp = 'https://mcp.example.com/tenant/mcp';
    expect(coveringResource('https://mcp.example.com/tenant/mcp', mcp)).toBe('https://mcp.example.com/tenant/mcp');
    expect(coveringResource('https://mcp.example.com', mcp)).toBe('https://mcp.example.com');
    expect(coveringResource('https://mcp.example.com/', mcp)).toBe('https://mcp.example.com/');
    expect(coveringResource('https://mcp.example.com/tenant', mcp)).toBe('https://mcp.example.com/tenant');
    expect(coveringResource('https://mcp.example.com/tenant/', mcp)).toBe('https://mcp.example.com/tenant/');
    // Not at a segment boundary, another path, another origin, a query: refused.
    expect(coveringResource('https://mcp.example.com/ten', mcp)).toBeNull();
    expect(coveringResource('https://mcp.example.com/other/mcp', mcp)).toBeNull();
    expect(coveringResource('https://mcp.example.com/tenant/mcp/more', mcp)).toBeNull();
    expect(coveringResource('https://evil.example.com/tenant/mcp', mcp)).toBeNull();
    expect(coveringResource('http://mcp.example.com/tenant/mcp', mcp)).toBeNull();
    expect(coveringResource('https://mcp.example.com/tenant?x=1', mcp)).toBeNull();
    expect(coveringResource('not a url', mcp)).toBeNull();
  });

  it('requires iss from a discovered server that advertises it, or whose endpoints are spread over origins (mix-up)', () => {
    const one = {
      issuer: 'https://as.example.com',
      authorization_endpoint: 'https://as.example.com/authorize',
      token_endpoint: 'https://as.example.com/token',
    };
    expect(requiresIss(one)).toBe(false);
    expect(requiresIss({ ...one, authorization_response_iss_parameter_supported: true })).toBe(true);
    // A genuine provider's authorization endpoint with an attacker's token endpoint: the mix-up shape.
    expect(requiresIss({ ...one, authorization_endpoint: 'https://genuine.example.com/authorize' })).toBe(true);
    expect(requiresIss({ ...one, token_endpoint: 'https://attacker.example.com/token' })).toBe(true);
    expect(requiresIss({ ...one, authorization_endpoint: 'not a url' })).toBe(true);
  });
});
