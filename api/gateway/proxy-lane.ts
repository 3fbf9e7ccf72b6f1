import type { IncomingMessage, ServerResponse } from 'node:http';
import type { TLSSocket } from 'node:tls';
import type { Express, RequestHandler } from 'express';
import proxyaddr from 'proxy-addr';
import { track } from '../context.js';
import { ApiError, respondWithError } from '../errors.js';
import type { GatewayDeps } from './deps.js';
import { forward, hasBody, PROXY_ROUTE, proxyCall, REPLAYABLE_BYTES, type ProxyCall } from './proxy.js';
import { PROXY_PREFIX, proxyToolId } from './proxy-path.js';

export interface LaneSettings {
  developmentMode: boolean;
  /** Express's compiled `trust proxy` function, so the lane sees the same client address and protocol. */
  trust: (address: string, hop: number) => boolean;
  /** The per-address limiter Express applies to the proxy (the same store: one count per request). */
  perIp: RequestHandler;
  /** The Express application the lane stands in front of (the limiter's checks read its settings). */
  app: Express;
  /** The headers Express's security middleware sets on every answer. */
  securityHeaders: [string, string][];
}

/**
 * The HTTP proxy's fast lane. A proxied call's own work is small (a token read, one upstream request), and
 * Express's pipeline around it cost several times as much, so the lane takes the ordinary request before Express:
 * it identifies the caller (the same once-per-request answer Express's gate gives), checks access and the path,
 * counts the request against the per-address limit, then forwards exactly as the Express route does. Anything else goes to Express unchanged
 * and is answered there with its code and audit row: a refusal, a browser's CORS request, an encoded body, plain
 * HTTP where HTTPS is required.
 */
export class ProxyLane {
  constructor(
    private readonly deps: GatewayDeps,
    private readonly settings: LaneSettings,
  ) {}

  takes(req: IncomingMessage): boolean {
    return req.url !== undefined && req.url.startsWith(`${PROXY_PREFIX}/`);
  }

  async serve(req: IncomingMessage, res: ServerResponse, express: () => void): Promise<void> {
    const call = await this.admit(req).catch(() => null);
    if (!call) return express();
    const { securityHeaders } = this.settings;
    for (let i = 0; i < securityHeaders.length; i++) res.setHeader(securityHeaders[i]![0], securityHeaders[i]![1]);
    track(this.deps.log, req, res, () => PROXY_ROUTE);
    try {
      await this.limit(req, res);
      await forward(this.deps, req, res, call, await this.bodyOf(req));
    } catch (err) {
      respondWithError(this.deps.log, err, res);
    }
  }

  /** The call, when the lane may answer it; null: Express answers. */
  private async admit(req: IncomingMessage): Promise<ProxyCall | null> {
    const { gate } = this.deps;
    if (req.headers.origin !== undefined) return null;
    if (hasBody(req.method) && (req.headers['content-encoding'] ?? 'identity') !== 'identity') return null;
    if (!this.settings.developmentMode && this.protocol(req) !== 'https') return null;
    const toolId = proxyToolId(req.url!);
    if (toolId === null) return null;
    const caller = await gate.callerOf(req);
    const call = proxyCall(this.deps, caller, toolId, req.method!, req.url!);
    const use = await gate.refusal(caller, `tool:${call.owner.toolId}:use`);
    if (use || (await gate.refusal(caller, `tool:${call.owner.toolId}:proxy:${req.method}`))) return null;
    return call;
  }

  /** The per-address limit Express applies, in its store (its RateLimit headers too); throws its 429. */
  private limit(req: IncomingMessage, res: ServerResponse): Promise<void> {
    // The limiter reads the client address (and its checks the settings) as Express provides them.
    Object.assign(req, { ip: proxyaddr(req, this.settings.trust), app: this.settings.app });
    return new Promise((resolve, reject) =>
      this.settings.perIp(req as never, res as never, (err?: unknown) => (err === undefined ? resolve() : reject(err))),
    );
  }

  /** Express 5's `req.protocol`, for the same HTTPS rule. */
  private protocol(req: IncomingMessage): string {
    const proto = (req.socket as TLSSocket).encrypted ? 'https' : 'http';
    if (!this.settings.trust(req.socket.remoteAddress ?? '', 0)) return proto;
    const header = req.headers['x-forwarded-proto'];
    return (typeof header === 'string' && header ? header : proto).split(',')[0]!.trim();
  }

  /** The body: held when it can be replayed after a refresh (up to 1 MiB), else streamed. */
  private async bodyOf(req: IncomingMessage): Promise<Buffer | 'stream' | undefined> {
    if (!hasBody(req.method)) return undefined;
    if (req.headers['content-length'] === undefined && req.headers['transfer-encoding'] === undefined) return undefined;
    if (Number(req.headers['content-length'] ?? 0) > REPLAYABLE_BYTES) return 'stream';
    const chunks: Buffer[] = [];
    let size = 0;
    for await (const chunk of req as AsyncIterable<Buffer>) {
      size += chunk.length;
      if (size > REPLAYABLE_BYTES) throw new ApiError('payload_too_large', 'the request body is too large');
      chunks.push(chunk);
    }
    return Buffer.concat(chunks);
  }
}
