import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { toNodeHandler } from '@modelcontextprotocol/node';
import {
  createMcpHandler,
  getOAuthProtectedResourceMetadataUrl,
  McpServer,
  OAuthError,
  OAuthErrorCode,
  requireBearerAuth,
} from '@modelcontextprotocol/server';
import { z } from 'zod';

export interface ModernMcpServer {
  url: string;
  /** The protocol era of every request that reached a tool: `modern` (2026-07-28) or `legacy` (2025 revisions). */
  eras: string[];
  close(): Promise<void>;
}

/**
 * A remote MCP server of the 2026-07-28 revision (the stateless protocol: `server/discover`, no `initialize`
 * needed, no sessions), built with the official TypeScript SDK v2: in its default dual-era mode it also answers
 * clients of the 2025 revisions; with `legacy: 'reject'` only 2026-07-28 clients. It requires a bearer token (RFC 9728 challenge) that `authorizationServer`
 * issued for it, checked by introspection there.
 */
export async function startModernMcpServer(
  authorizationServer: {
    issuer: string;
    introspect(token: string): Promise<{ active: boolean; sub?: unknown; aud?: unknown; client_id?: unknown; exp?: unknown } | null>;
  },
  /** `reject`: answer 2026-07-28 clients only (every older client is refused). */
  opts: { legacy?: 'stateless' | 'reject' } = {},
): Promise<ModernMcpServer> {
  const server: Server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const origin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const url = new URL(`${origin}/mcp`);
  const eras: string[] = [];
  const handler = createMcpHandler(
    (ctx) => {
      const mcp = new McpServer({ name: 'modern-mcp', version: '1.0.0' });
      mcp.registerTool(
        'whoami',
        { description: 'The subject of the token this server received', inputSchema: z.object({}) },
        async (_args, c) => {
          eras.push(ctx.era);
          return { content: [{ type: 'text', text: String(c.http?.authInfo?.extra?.sub) }] };
        },
      );
      return mcp;
    },
    { legacy: opts.legacy ?? 'stateless' },
  );
  const gate = requireBearerAuth({
    resourceMetadataUrl: getOAuthProtectedResourceMetadataUrl(url),
    verifier: {
      async verifyAccessToken(token: string) {
        const info = await authorizationServer.introspect(token);
        if (!info?.active || info.aud !== url.href) throw new OAuthError(OAuthErrorCode.InvalidToken, 'the token is not valid here');
        return { token, clientId: String(info.client_id), scopes: [], expiresAt: Number(info.exp), extra: { sub: info.sub } };
      },
    },
  });
  const mcp = toNodeHandler(handler);
  server.on('request', (req, res) => {
    void (async () => {
      if (req.url === '/.well-known/oauth-protected-resource/mcp') {
        res.writeHead(200, { 'content-type': 'application/json' });
        return void res.end(
          JSON.stringify({ resource: url.href, authorization_servers: [authorizationServer.issuer], scopes_supported: ['mcp:tools'] }),
        );
      }
      if (req.url !== '/mcp') return void res.writeHead(404).end();
      const auth = await gate(new Request(url, { headers: { authorization: req.headers.authorization ?? '' } }));
      if (auth instanceof Response) {
        res.writeHead(auth.status, Object.fromEntries(auth.headers));
        return void res.end(await auth.text());
      }
      (req as typeof req & { auth: unknown }).auth = auth;
      await mcp(req, res);
    })().catch(() => {
      if (!res.headersSent) res.writeHead(500).end();
    });
  });
  return {
    url: url.href,
    eras,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
