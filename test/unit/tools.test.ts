import { describe, expect, it } from 'vitest';
import { parseTools } from '../../lib/tools.js';

const valid = `
tools:
  - id: github
    tool_type: api
    connection_params: { type: http, url: https://api.github.com }
    auth:
      type: oauth2
      authorization_url: https://github.com/login/oauth/authorize
      token_url: https://github.com/login/oauth/access_token
      client_id: \${GH_ID}
      client_secret: \${GH_SECRET}
      scopes: repo read:user
    manifest:
      - name: list_repositories
        description: List repositories
        inputSchema: { type: object, properties: { per_page: { type: integer, minimum: 1 } } }
`;

describe('parseTools', () => {
  it('parses a tool and expands environment references', () => {
    const [tool] = parseTools(valid, { GH_ID: 'id-1', GH_SECRET: 'secret-1' });
    expect(tool!.id).toBe('github');
    expect(tool!.auth.client_id).toBe('id-1');
    expect(tool!.auth.client_secret).toBe('secret-1');
    expect(tool!.auth.scopeList).toEqual(['repo', 'read:user']);
    expect(tool!.manifest[0]!.name).toBe('list_repositories');
  });

  it('names the tool and the variable when a reference is not set', () => {
    expect(() => parseTools(valid, { GH_ID: 'x' })).toThrow(/tool github: environment variable GH_SECRET is referenced but not set/);
  });

  it('names the tool and field for a bad value', () => {
    const bad = valid.replace('https://github.com/login/oauth/access_token', 'not-a-url');
    expect(() => parseTools(bad, { GH_ID: 'a', GH_SECRET: 'b' })).toThrow(/tool github: auth\.token_url: must be an absolute URL/);
  });

  it('refuses unknown fields and missing endpoints', () => {
    expect(() => parseTools(valid.replace('tool_type: api', 'tool_type: api\n    colour: blue'), { GH_ID: 'a', GH_SECRET: 'b' })).toThrow(
      /tool github: .*colour/,
    );
    const noToken = valid.replace(/\n\s+token_url: .*/, '');
    expect(() => parseTools(noToken, { GH_ID: 'a', GH_SECRET: 'b' })).toThrow(
      /tool github: auth: give both authorization_url and token_url, or neither/,
    );
  });

  it('needs endpoints or an issuer, except for an MCP server known only by its URL', () => {
    const bare = `tools:\n  - { id: api, tool_type: api, connection_params: { type: http, url: https://x.example }, auth: { type: oauth2, client_id: c } }`;
    expect(() => parseTools(bare, {})).toThrow(/tool api: auth: give either issuer/);
    const mcp = parseTools(
      `tools:\n  - { id: mcp, tool_type: mcp, connection_params: { type: streamable-http, url: https://mcp.example/mcp }, auth: { type: oauth2 } }`,
      {},
    );
    expect(mcp[0]!.auth.client_id).toBeUndefined();
  });

  it('validates manifest input schemas as JSON Schema', () => {
    const bad = valid.replace('type: integer, minimum: 1', 'type: integer, minimum: "one"');
    expect(() => parseTools(bad, { GH_ID: 'a', GH_SECRET: 'b' })).toThrow(
      /tool github: manifest\[0\] \(list_repositories\)\.inputSchema: not a valid JSON Schema/,
    );
    const missing = valid.replace('description: List repositories', '');
    expect(() => parseTools(missing, { GH_ID: 'a', GH_SECRET: 'b' })).toThrow(/manifest\.0\.description/);
  });

  it('refuses duplicate ids and broken YAML', () => {
    const twice = valid + valid.replace('tools:\n', '');
    expect(() => parseTools(twice, { GH_ID: 'a', GH_SECRET: 'b' })).toThrow(/tool github: defined twice/);
    expect(() => parseTools('tools: [', {})).toThrow(/not valid YAML/);
    expect(parseTools('tools: []', {})).toEqual([]);
  });

  it('takes enterprise tools (ID-JAG, token exchange) with their identity provider, and says what is missing', () => {
    const tool = (auth: string) => `
tools:
  - id: corp
    tool_type: mcp
    connection_params: { type: streamable-http, url: https://mcp.example.com/mcp }
    auth: ${auth}
`;
    const idp = 'identity_provider: { issuer: https://idp.example.com, client_id: broker, client_secret: s }';
    const [corp] = parseTools(tool(`{ type: enterprise, client_id: c, client_secret: s, ${idp} }`), {});
    expect(corp!.auth.identity_provider).toMatchObject({ issuer: 'https://idp.example.com', client_id: 'broker' });
    expect(parseTools(tool(`{ type: token_exchange, ${idp} }`), {})[0]!.auth.type).toBe('token_exchange');
    expect(() => parseTools(tool('{ type: enterprise, client_id: c }'), {})).toThrow(/auth\.identity_provider: is required for enterprise/);
    expect(() => parseTools(tool(`{ type: enterprise, ${idp} }`), {})).toThrow(/auth\.client_id: is required for enterprise/);
    expect(() => parseTools(tool(`{ type: oauth2, ${idp} }`), {})).toThrow(/only for enterprise and token_exchange/);
    const apiTool = tool(`{ type: enterprise, client_id: c, ${idp} }`).replace('tool_type: mcp', 'tool_type: api');
    expect(() => parseTools(apiTool, {})).toThrow(/enterprise needs issuer or token_url/);
  });
});
