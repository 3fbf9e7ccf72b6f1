import type { IncomingMessage, ServerResponse } from 'node:http';
import type { TLSSocket } from 'node:tls';
import type { Express, RequestHandler } from 'express';
import proxyaddr from 'proxy-addr';
import type { Logger } from '../../lib/log.js';
import { track } from '../context.js';
import { ApiError, respondWithError } from '../errors.js';

/**
 * What a fast lane needs to stand in front of Express for the gateway's ordinary requests (a proxied call, an MCP
 * `tools/call`): the gateway's own work per call is small, and Express's pipeline around it cost several times as
 * much. A lane answers only requests it can answer exactly as Express would; everything else (a refusal, a
 * browser's CORS request, plain HTTP where HTTPS is required) goes to Express unchanged.
 */
export interface LaneSettings {
  developmentMode: boolean;
  /** Express's compiled `trust proxy` function, so a lane sees the same client address and protocol. */
  trust: (address: string, hop: number) => boolean;
  /** The per-address limiter Express applies to the gateway (the same store: one count per request). */
  perIp: RequestHandler;
  /** The Express application (the limiter's checks read its settings). */
  app: Express;
  /** The headers Express's security middleware sets on every answer. */
  securityHeaders: [string, string][];
  log: Logger;
}

export interface Lane {
  takes(req: IncomingMessage): boolean;
  serve(req: IncomingMessage, res: ServerResponse, express: () => void): Promise<void>;
}

/** Checks every lane makes before it may answer instead of Express: no CORS request, HTTPS where required. */
export function plainRequest(settings: LaneSettings, req: IncomingMessage): boolean {
  if (req.headers.origin !== undefined) return false;
  return settings.developmentMode || protocolOf(settings, req) === 'https';
}

/** Express 5's `req.protocol`, for the same HTTPS rule. */
function protocolOf(settings: LaneSettings, req: IncomingMessage): string {
  const proto = (req.socket as TLSSocket).encrypted ? 'https' : 'http';
  if (!settings.trust(req.socket.remoteAddress ?? '', 0)) return proto;
  const header = req.headers['x-forwarded-proto'];
  return (typeof header === 'string' && header ? header : proto).split(',')[0]!.trim();
}

/** The lane answers: the headers Express would set, the request id, the request's metrics and log line. */
export function answerHere(settings: LaneSettings, req: IncomingMessage, res: ServerResponse, route: string): void {
  const { securityHeaders } = settings;
  for (let i = 0; i < securityHeaders.length; i++) res.setHeader(securityHeaders[i]![0], securityHeaders[i]![1]);
  track(settings.log, req, res, () => route);
}

/** The per-address limit Express applies, in its store (its RateLimit headers too); throws its 429. */
export function countAgainstLimit(settings: LaneSettings, req: IncomingMessage, res: ServerResponse): Promise<void> {
  // The limiter reads the client address (and its checks the settings) as Express provides them.
  Object.assign(req, { ip: proxyaddr(req, settings.trust), app: settings.app });
  return new Promise((resolve, reject) =>
    settings.perIp(req as never, res as never, (err?: unknown) => (err === undefined ? resolve() : reject(err))),
  );
}

/**
 * The request body, at most `limit` bytes; null when the request has none. Past the limit, 413: the rest is read
 * and dropped (the connection stays usable and the answer reaches the agent).
 */
export function readBody(req: IncomingMessage, limit: number): Promise<Buffer | null> {
  if (req.headers['content-length'] === undefined && req.headers['transfer-encoding'] === undefined) return Promise.resolve(null);
  return new Promise((resolve, reject) => {
    const tooLarge = () => new ApiError('payload_too_large', 'the request body is too large');
    if (Number(req.headers['content-length'] ?? 0) > limit) {
      req.resume();
      return reject(tooLarge());
    }
    const chunks: Buffer[] = [];
    let size = 0;
    const onData = (chunk: Buffer) => {
      size += chunk.length;
      if (size <= limit) return void chunks.push(chunk);
      req.off('data', onData);
      req.resume();
      reject(tooLarge());
    };
    req.on('data', onData);
    req.once('end', () => resolve(Buffer.concat(chunks)));
    req.once('error', reject);
  });
}

/**
 * Counts the request against the per-address limit before anything else (as Express does, so the limit also
 * guards identification); a request over it is answered here. True: go on.
 */
export async function withinLimit(settings: LaneSettings, req: IncomingMessage, res: ServerResponse, route: string): Promise<boolean> {
  try {
    await countAgainstLimit(settings, req, res);
    return true;
  } catch (err) {
    answerHere(settings, req, res, route);
    respondWithError(settings.log, err, res);
    return false;
  }
}
