import { describe, expect, it } from 'vitest';
import {
  authorizationServerMetadataUrls,
  canonicalResource,
  parseBearerChallenge,
  protectedResourceMetadataUrls,
} from '../../lib/oauth/mcp-discovery.js';

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
});
