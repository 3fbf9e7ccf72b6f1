import { randomUUID } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { RequestHandler } from 'express';
import type { Logger } from '../lib/log.js';
import { httpDuration, httpRequests } from '../lib/metrics.js';

declare module 'express-serve-static-core' {
  interface Request {
    id: string;
    log: Logger;
  }
}

const REQUEST_ID = /^[A-Za-z0-9._-]{1,100}$/;

/** Requests whose id, metrics and log line are already taken care of. */
const tracked = new WeakMap<IncomingMessage, string>();

/** A request id (the caller's, if well-formed) and a child logger; one log line per request, no headers. */
export function requestContext(log: Logger): RequestHandler {
  return (req, res, next) => {
    const id = track(log, req, res, () => (req.route?.path ? `${req.baseUrl}${req.route.path}` : 'unmatched'));
    req.id = id;
    // Made on first use: most requests log nothing at production levels, and a child logger is not free.
    let child: Logger | undefined;
    Object.defineProperty(req, 'log', { get: () => (child ??= log.child({ requestId: id })), configurable: true });
    next();
  };
}

/**
 * The request id (sent back as X-Request-Id), and at the end the request's metrics and log line under `route`:
 * the route pattern, never the raw path, so ids stay out of metric labels. For Express's requests and for those
 * a fast lane answers without it.
 */
export function track(log: Logger, req: IncomingMessage, res: ServerResponse, route: () => string): string {
  // Once per request: a fast lane that hands a request to Express after all has already begun it.
  const known = tracked.get(req);
  if (known) return known;
  const given = req.headers['x-request-id'];
  const id = typeof given === 'string' && REQUEST_ID.test(given) ? given : randomUUID();
  tracked.set(req, id);
  res.setHeader('X-Request-Id', id);
  const started = process.hrtime.bigint();
  res.on('finish', () => {
    const ms = Number(process.hrtime.bigint() - started) / 1e6;
    const path = route();
    const method = req.method ?? 'GET';
    httpRequests.inc({ method, route: path, status: String(res.statusCode) });
    httpDuration.observe({ method, route: path }, ms / 1000);
    if (log.isLevelEnabled('info'))
      log.info({ requestId: id, method, route: path, status: res.statusCode, ms: Math.round(ms * 10) / 10 }, 'request');
  });
  return id;
}
