import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Client } from '@temporalio/client';
import { CredentialBroker, type BrokerSettings } from './broker.js';
import type { ApiServices } from './services.js';
import { createApp, requestListener } from './app.js';
import { CredentialWaits } from './waits.js';
import { exchangesIdentity } from '../lib/tools.js';
import { type McpGateway, type McpGatewaySettings } from './gateway/mcp.js';

export interface RunningApi {
  server: Server;
  port: number;
  broker: CredentialBroker;
  /** This process's long polls. */
  waits: CredentialWaits;
  /** This process's MCP gateway sessions. */
  mcp: McpGateway;
  close(): Promise<void>;
}

export interface ApiOptions {
  /** An already-listening server to serve on (tests need the port before the app exists). */
  server?: Server;
  callbackWaitMs?: number;
  broker?: Partial<BrokerSettings>;
  mcp?: Partial<McpGatewaySettings>;
}

export function createBroker(services: ApiServices, temporal: Client, overrides: Partial<BrokerSettings> = {}): CredentialBroker {
  const c = services.config;
  return new CredentialBroker(services.records, services.vault, temporal, {
    taskQueue: c.temporal.taskQueue,
    secretsTtlSeconds: c.secretsTtlSeconds,
    authorizationTimeoutSeconds: c.authorizationTimeoutSeconds,
    refreshSkewSeconds: c.refreshSkewSeconds,
    expiringLeadSeconds: c.expiringWarningSeconds,
    hotCacheMs: c.hotCacheMs,
    exchangesIdentity: (toolId) => {
      const tool = services.tools.get(toolId);
      return tool ? exchangesIdentity(tool) : false;
    },
    ...overrides,
  });
}

/** Listens on config.port (0 picks a free one) and closes gracefully: in-flight requests finish. */
export async function startApi(services: ApiServices, temporal: Client, opts: ApiOptions = {}): Promise<RunningApi> {
  const broker = createBroker(services, temporal, opts.broker);
  const waits = new CredentialWaits();
  const app = createApp({ ...services, broker, temporal, waits, callbackWaitMs: opts.callbackWaitMs, mcpSettings: opts.mcp });
  const mcp = app.locals.mcp as McpGateway;
  let server = opts.server;
  if (server) {
    server.on('request', requestListener(app));
  } else {
    const { createServer } = await import('node:http');
    server = createServer(requestListener(app));
    await new Promise<void>((resolve) => server!.listen(services.config.port, resolve));
  }
  // Requests Node cannot parse (oversized headers, broken framing) still get a JSON answer with a stable code.
  server.on('clientError', (err: NodeJS.ErrnoException, socket) => {
    if (!socket.writable) {
      socket.destroy();
      return;
    }
    const tooLarge = err.code === 'HPE_HEADER_OVERFLOW';
    const body = JSON.stringify({
      error: tooLarge
        ? { code: 'headers_too_large', message: 'the request headers are too large' }
        : { code: 'bad_request', message: 'the request is malformed' },
    });
    socket.end(
      `HTTP/1.1 ${tooLarge ? '431 Request Header Fields Too Large' : '400 Bad Request'}\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`,
    );
  });
  const port = (server.address() as AddressInfo).port;
  services.log.info({ port }, 'api listening');
  const s = server;
  return {
    server: s,
    port,
    broker,
    waits,
    mcp,
    close: () =>
      new Promise<void>((resolve) => {
        // Event streams never end on their own: end the MCP sessions first, or close would wait for them.
        void mcp.close();
        s.close(() => resolve());
        s.closeIdleConnections();
      }),
  };
}
