import type { Request, RequestHandler } from 'express';
import { ipKeyGenerator, rateLimit } from 'express-rate-limit';
import { isIPv4 } from 'node:net';
import { ApiError } from './errors.js';

/** Per-minute limits, keyed by client IP or by the authenticated agent; a refusal is a JSON 429. */
export function limiter(perMinute: number, by: 'ip' | 'agent'): RequestHandler {
  const limit = rateLimit({
    windowMs: 60_000,
    limit: perMinute,
    // One set of RateLimit headers (the address limit's) is enough for a client to pace itself.
    // draft-7: the draft-8 header also carries a hash of the key, computed on every request.
    standardHeaders: by === 'ip' ? 'draft-7' : false,
    legacyHeaders: false,
    keyGenerator: by === 'agent' ? (req: Request) => `agent:${req.caller?.agentId ?? 'none'}` : clientIpKey,
    handler: (_req, _res, next) =>
      next(new ApiError('rate_limited', `too many requests from this ${by === 'ip' ? 'address' : 'agent'}; slow down`)),
  });
  // A request is counted once by each limiter, however many routes (or a fast lane and then Express) apply it.
  const counted = new WeakSet<object>();
  return (req, res, next) => {
    if (counted.has(req)) return next();
    counted.add(req);
    return limit(req, res, next);
  };
}

const MAPPED_IPV4 = /^::ffff:(\d{1,3}(?:\.\d{1,3}){3})$/i;

/**
 * The IP limiter's key: an IPv4 address as it is (also when the socket reports it IPv4-mapped, as a server
 * listening on `::` does), an IPv6 address by its /56 (the library's rule). The IPv4 cases skip the library's
 * full IPv6 parse, which cost ~5% of the token hot path.
 */
export function clientIpKey(req: { ip?: string | undefined }): string {
  const ip = req.ip;
  if (!ip) return 'unknown';
  const mapped = MAPPED_IPV4.exec(ip);
  if (mapped) return mapped[1]!;
  return isIPv4(ip) ? ip : ipKeyGenerator(ip);
}
