import type { ServerResponse } from 'node:http';
import type { ErrorRequestHandler, RequestHandler } from 'express';
import type { z } from 'zod';
import { BrokerError } from './broker.js';
import { isDatabaseUnreachable } from '../lib/db/outage.js';
import { ERROR_CATALOG, isErrorCode, type ErrorCode } from './error-catalog.js';
import type { Logger } from '../lib/log.js';
import { denials } from '../lib/metrics.js';

/** An error with a stable code for callers to switch on, sent as `{"error": {"code", "message"}}`. */
export class ApiError extends Error {
  readonly status: number;

  constructor(
    readonly code: ErrorCode,
    message: string,
    readonly opts: {
      /** Sent as Retry-After. */
      retryAfterSeconds?: number;
      /**
       * An expected condition (a provider or the database away): logged at warn once a minute per key (a
       * credential, say), not at error on every request.
       */
      expectedKey?: string;
      /** Another 4xx than the catalog's, where a library says which (`bad_request`). */
      status?: number;
    } = {},
  ) {
    super(message);
    this.status = opts.status ?? ERROR_CATALOG[code].status;
  }
}

/** A code from elsewhere (an identity or agent error, a workflow's end reason) as a catalog code. */
export function catalogCode(code: string, fallback: ErrorCode): ErrorCode {
  return isErrorCode(code) ? code : fallback;
}

/** Keys of expected conditions logged in the last minute (bounded). */
const recentlyLogged = new Map<string, number>();

function firstInAMinute(key: string): boolean {
  const now = Date.now();
  const last = recentlyLogged.get(key);
  if (last !== undefined && now - last < 60_000) return false;
  if (recentlyLogged.size >= 10_000) recentlyLogged.clear();
  recentlyLogged.set(key, now);
  return true;
}

/** Validates input with a zod schema; a failure is a 400 `invalid_request` naming each problem. */
export function parseOr400<T>(schema: z.ZodType<T>, value: unknown, where: string): T {
  const r = schema.safeParse(value);
  if (!r.success) {
    throw new ApiError(
      'invalid_request',
      `invalid ${where}: ${r.error.issues.map((i) => `${i.path.join('.') || '(root)'} ${i.message}`).join('; ')}`,
    );
  }
  return r.data;
}

export const notFound: RequestHandler = (_req, _res, next) => next(new ApiError('not_found', 'no such endpoint'));

/** Maps body-parser and our own errors to clear 4xx answers; anything else is a 500 with no detail. */
export function errorHandler(log: Logger): ErrorRequestHandler {
  return (err, req, res, _next) => respondWithError(req.log ?? log, err, res);
}

/** The error answer on any response (Express's, or one a fast lane answers without it), logged and counted. */
export function respondWithError(log: Logger, err: unknown, res: ServerResponse): void {
  const e = toApiError(err);
  if (e.opts.expectedKey !== undefined) {
    if (firstInAMinute(`${e.code}\0${e.opts.expectedKey}`)) log.warn({ code: e.code, status: e.status }, e.message);
  } else if (e.status >= 500) {
    log.error({ err: { name: (err as Error)?.name, message: (err as Error)?.message } }, 'request failed');
  } else {
    log.info({ code: e.code, status: e.status }, 'request refused');
  }
  if (e.status < 500) denials.inc({ code: e.code });
  if (res.headersSent) return;
  if (e.opts.retryAfterSeconds) res.setHeader('Retry-After', String(e.opts.retryAfterSeconds));
  sendJson(res, e.status, { error: { code: e.code, message: e.message } });
}

/** A JSON answer on a plain Node response, as Express's `res.status(s).json(v)` sends it. */
export function sendJson(res: ServerResponse, status: number, value: unknown): void {
  const body = JSON.stringify(value);
  res.statusCode = status;
  res.setHeader('Content-Type', 'application/json; charset=utf-8');
  res.setHeader('Content-Length', Buffer.byteLength(body));
  res.end(body);
}

function toApiError(err: unknown): ApiError {
  if (err instanceof ApiError) return err;
  if (err instanceof BrokerError) return new ApiError(catalogCode(err.code, 'internal_error'), err.message);
  const type = (err as { type?: unknown })?.type;
  switch (type) {
    case 'entity.parse.failed':
      return new ApiError('invalid_json', 'the request body is not valid JSON');
    case 'entity.too.large':
      return new ApiError('payload_too_large', 'the request body is too large');
    case 'encoding.unsupported':
    case 'charset.unsupported':
      return new ApiError('unsupported_encoding', 'the request body encoding is not supported');
    default:
      break;
  }
  const status = (err as { status?: unknown })?.status;
  if (typeof status === 'number' && status >= 400 && status < 500)
    return new ApiError('bad_request', 'the request is malformed', { status });
  if (isDatabaseUnreachable(err)) {
    return new ApiError('service_unavailable', 'a backing service is unavailable; try again', {
      retryAfterSeconds: 1,
      expectedKey: 'database',
    });
  }
  return new ApiError('internal_error', 'the request could not be completed');
}
