import cors from 'cors';
import express, { Router, type Request, type RequestHandler } from 'express';
import { z } from 'zod';
import type { Payload } from '@temporalio/common';
import type { AuditTrail } from '../../lib/audit.js';
import { hasScope, type Rbac } from '../identity/rbac.js';
import { IdentityError, type TrustManager } from '../identity/trust.js';
import type { EncryptionCodec } from '../../lib/temporal/codec.js';
import { ApiError, parseOr400 } from '../errors.js';

export interface CodecDeps {
  codec: EncryptionCodec;
  trust: TrustManager | null;
  rbac: Rbac | null;
  audit: AuditTrail;
  developmentMode: boolean;
  /** Where the Temporal Web UI runs: its browser calls this endpoint. */
  allowedOrigins: string[];
}

/** The largest body the codec endpoint reads. */
export const CODEC_BODY_LIMIT = '512kb';

declare module 'express-serve-static-core' {
  interface Request {
    /** The operator the codec endpoint authenticated. */
    operator?: string;
  }
}

const b64 = z
  .string()
  .max(700_000)
  .regex(/^[A-Za-z0-9+/=_-]*$/);
export const body = z.object({
  payloads: z.array(z.object({ metadata: z.record(z.string(), b64).default({}), data: b64.default('') })).max(1000),
});

/**
 * The codec server for the Temporal Web UI (/codec/encode, /codec/decode). Only authenticated operators may
 * decode: the UI passes the operator's access token, verified like a user identity, and the operator needs
 * `credential:admin`. (Payloads never hold secrets in any case; this guards the metadata they do hold.)
 */
export function codecRoutes(deps: CodecDeps): Router {
  const router = Router();
  const origins = new Set(deps.allowedOrigins);
  router.use(cors({ origin: (origin, cb) => cb(null, origin !== undefined && origins.has(origin)), maxAge: 600 }));
  // Who is asking comes from a header: known before a byte of the body is read, so strangers cost nothing.
  const authenticated: RequestHandler = async (req, _res, next) => {
    try {
      req.operator = await authenticateOperator(req, deps);
      next();
    } catch (err) {
      next(err);
    }
  };
  // A history page's payloads are small (metadata, never tokens): a bound well above what the Web UI sends.
  const json = express.json({ limit: CODEC_BODY_LIMIT, type: () => true });
  for (const op of ['encode', 'decode'] as const) {
    router.post(`/${op}`, authenticated, json, async (req, res) => {
      const operator = req.operator!;
      const { payloads } = parseOr400(body, req.body ?? {}, 'body');
      let out: Payload[];
      try {
        out = await deps.codec[op](payloads.map(fromJson));
      } catch {
        throw new ApiError('payload_not_decodable', 'a payload could not be processed with the configured keys');
      }
      if (op === 'decode') {
        await deps.audit.record(null, {
          eventType: 'codec.decode',
          outcome: 'success',
          actor: `operator:${operator}`,
          requestId: req.id,
          ip: req.ip ?? null,
          detail: { payloads: payloads.length },
        });
      }
      res.json({ payloads: out.map(toJson) });
    });
  }
  return router;
}

async function authenticateOperator(req: Request, deps: CodecDeps): Promise<string> {
  if (!deps.trust) {
    if (deps.developmentMode) return 'development';
    throw new ApiError('operator_authentication_required', 'the codec server needs a trusted operator identity');
  }
  const header = req.get('authorization');
  const token = header?.match(/^Bearer (.+)$/i)?.[1];
  let operator: string;
  try {
    operator = (await deps.trust.verify(token)).userId;
  } catch (err) {
    const code = err instanceof IdentityError ? err.code : 'identity_invalid';
    await deps.audit.record(null, {
      eventType: 'codec.denied',
      outcome: 'denied',
      actor: 'unauthenticated',
      requestId: req.id,
      ip: req.ip ?? null,
      detail: { code },
    });
    throw new ApiError('operator_authentication_required', 'a valid operator access token is required');
  }
  if (deps.rbac && !hasScope(deps.rbac.scopesOf(operator), 'credential:admin')) {
    await deps.audit.record(null, {
      eventType: 'codec.denied',
      outcome: 'denied',
      actor: `operator:${operator}`,
      requestId: req.id,
      ip: req.ip ?? null,
      detail: { code: 'operator_not_permitted' },
    });
    throw new ApiError('operator_not_permitted', 'decoding payloads needs credential:admin');
  }
  return operator;
}

function fromJson(p: { metadata: Record<string, string>; data: string }): Payload {
  return {
    metadata: Object.fromEntries(Object.entries(p.metadata).map(([k, v]) => [k, Buffer.from(v, 'base64')])),
    data: Buffer.from(p.data, 'base64'),
  };
}

function toJson(p: Payload): { metadata: Record<string, string>; data: string } {
  return {
    metadata: Object.fromEntries(
      Object.entries(p.metadata ?? {}).map(([k, v]) => [k, Buffer.from(v ?? new Uint8Array()).toString('base64')]),
    ),
    data: Buffer.from(p.data ?? new Uint8Array()).toString('base64'),
  };
}
