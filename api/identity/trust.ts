import { readFileSync } from 'node:fs';
import * as jose from 'jose';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';
import { OWNER_ID_PATTERN } from '../../lib/domain.js';

/**
 * The trust manager (as in the seeds): the end user's identity arrives as a JWT signed by a trusted gateway
 * and is verified here (signature, issuer, audience, time with skew, maximum lifetime) before any credential
 * operation uses its subject.
 */
export class TrustConfigError extends Error {
  readonly code = 'invalid_trust_config';
}

/** A refused identity: a stable code, an HTTP status, and a message that leaks nothing about keys. */
export class IdentityError extends Error {
  constructor(
    readonly code: string,
    readonly status: 401 | 403,
    message: string,
  ) {
    super(message);
  }
}

const ASYMMETRIC = ['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'ES256', 'ES384', 'ES512', 'EdDSA', 'Ed25519'] as const;

const issuerSchema = z
  .object({
    issuer: z.string().min(1),
    jwks_url: z.url().optional(),
    jwks: z.object({ keys: z.array(z.record(z.string(), z.unknown())).min(1) }).optional(),
    audience: z.union([z.string().min(1), z.array(z.string().min(1)).min(1)]),
    subject_claim: z.string().default('sub'),
    /** When the token names the agent it was issued for (this claim), it must be the calling agent; null: off. */
    agent_claim: z.string().min(1).nullable().default('agent_id'),
    /** Refuse tokens that do not name the agent at all (a gateway that always binds identities to an agent). */
    require_agent_claim: z.boolean().default(false),
    /**
     * The user namespace of this issuer's subjects: users are `{namespace}:{sub}`, or plain `sub` when empty.
     * Required when several issuers are trusted; issuers that give the same namespace share their users.
     */
    user_namespace: z
      .string()
      .regex(/^([A-Za-z0-9][A-Za-z0-9._-]{0,39})?$/, 'must be 1-40 letters, digits, . _ - (or empty)')
      .optional(),
  })
  .strict()
  .refine((i) => Boolean(i.jwks_url) !== Boolean(i.jwks), { message: 'give exactly one of jwks_url or jwks' });

const trustSchema = z
  .object({
    enabled: z.boolean().default(true),
    verification_mode: z.enum(['strict', 'permissive']).default('strict'),
    clock_skew_tolerance_seconds: z.number().int().min(0).max(3600).default(300),
    enable_time_validation: z.boolean().default(true),
    jwt_default_ttl_seconds: z.number().int().positive().default(3600),
    jwt_max_ttl_seconds: z.number().int().positive().default(86400),
    allowed_algorithms: z.array(z.enum(ASYMMETRIC)).min(1).default(['RS256', 'PS256', 'ES256', 'ES384', 'EdDSA']),
    jwks_cooldown_seconds: z.number().min(0).default(30),
    trusted_issuers: z.array(issuerSchema).default([]),
  })
  .strict();

export type TrustConfig = z.infer<typeof trustSchema>;
export type TrustConfigInput = z.input<typeof trustSchema>;

export interface VerifiedIdentity {
  userId: string;
  issuer: string;
  /** False only in permissive mode when the token failed verification and was accepted anyway. */
  verified: boolean;
  /** The identity names the agent it was issued for (`agent_claim`): an agent's, not a browser's. */
  agentBound?: boolean;
  /** When the token expires and when it was issued (epoch seconds), where it says. */
  expiresAt?: number;
  issuedAt?: number;
  failure?: string;
}

export function parseTrustConfig(input: unknown, developmentMode: boolean): TrustConfig {
  const parsed = trustSchema.safeParse(input ?? {});
  if (!parsed.success) {
    throw new TrustConfigError(
      `trust config: ${parsed.error.issues.map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`).join('; ')}`,
    );
  }
  const c = parsed.data;
  const unnamed = c.trusted_issuers.filter((i) => i.user_namespace === undefined);
  if (c.trusted_issuers.length > 1 && unnamed.length) {
    throw new TrustConfigError(
      `trust config: with several trusted issuers each needs a user_namespace, so that the same subject from two issuers is not one user (give the same namespace to issuers that share their users; missing for ${unnamed.map((i) => i.issuer).join(', ')})`,
    );
  }
  if (!developmentMode) {
    if (!c.enabled) throw new TrustConfigError('trust config: enabled must be true outside development mode');
    if (c.verification_mode !== 'strict')
      throw new TrustConfigError('trust config: verification_mode permissive is for development mode only');
    if (c.trusted_issuers.length === 0)
      throw new TrustConfigError('trust config: at least one trusted issuer is required outside development mode');
  }
  return c;
}

export function loadTrustConfig(path: string, developmentMode: boolean): TrustConfig {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new TrustConfigError(`cannot read trust config ${path}: ${(err as NodeJS.ErrnoException).code ?? 'error'}`);
  }
  let doc: unknown;
  try {
    doc = parseYaml(text);
  } catch (err) {
    throw new TrustConfigError(`trust config is not valid YAML: ${(err as Error).message}`);
  }
  return parseTrustConfig(doc, developmentMode);
}

interface IssuerEntry {
  config: TrustConfig['trusted_issuers'][number];
  keys: jose.JWTVerifyGetKey;
}

export class TrustManager {
  private readonly issuers = new Map<string, IssuerEntry>();

  constructor(
    readonly config: TrustConfig,
    private readonly onWarning: (message: string, detail: Record<string, unknown>) => void = () => {},
  ) {
    for (const i of config.trusted_issuers) {
      const keys = i.jwks_url
        ? jose.createRemoteJWKSet(new URL(i.jwks_url), { cooldownDuration: config.jwks_cooldown_seconds * 1000, timeoutDuration: 5000 })
        : jose.createLocalJWKSet(i.jwks as jose.JSONWebKeySet);
      this.issuers.set(i.issuer, { config: i, keys });
    }
  }

  get enabled(): boolean {
    return this.config.enabled;
  }

  /** Verifies the gateway-signed identity; `agentId` is the already-authenticated calling agent, if any. */
  async verify(token: string | undefined, agentId?: string): Promise<VerifiedIdentity> {
    if (!token) throw new IdentityError('user_identity_required', 401, 'a signed user identity (X-User-Identity) is required');
    try {
      return await this.verifyStrict(token, agentId);
    } catch (err) {
      if (!(err instanceof IdentityError) || this.config.verification_mode !== 'permissive' || err.status === 403) throw err;
      // Permissive (development only): accept what the token claims, loudly.
      let claims: jose.JWTPayload;
      try {
        claims = jose.decodeJwt(token);
      } catch {
        throw err;
      }
      const namespace = typeof claims.iss === 'string' ? this.issuers.get(claims.iss)?.config.user_namespace : undefined;
      const userId = typeof claims.sub === 'string' ? qualify(namespace, claims.sub) : '';
      if (!OWNER_ID_PATTERN.test(userId)) throw err;
      this.onWarning('permissive mode: accepted an identity that failed verification', { code: err.code, userId });
      return {
        userId,
        issuer: String(claims.iss ?? 'unknown'),
        verified: false,
        failure: err.code,
        ...tokenTimes(claims),
      };
    }
  }

  private async verifyStrict(token: string, agentId?: string): Promise<VerifiedIdentity> {
    let header: jose.ProtectedHeaderParameters;
    let unverified: jose.JWTPayload;
    try {
      header = jose.decodeProtectedHeader(token);
      unverified = jose.decodeJwt(token);
    } catch {
      throw new IdentityError('identity_malformed', 401, 'the user identity is not a well-formed JWT');
    }
    if (!header.alg || !(this.config.allowed_algorithms as string[]).includes(header.alg)) {
      throw new IdentityError('identity_algorithm_not_allowed', 401, 'the user identity is not signed with an allowed algorithm');
    }
    const entry = typeof unverified.iss === 'string' ? this.issuers.get(unverified.iss) : undefined;
    if (!entry) throw new IdentityError('identity_untrusted_issuer', 401, 'the user identity was not issued by a trusted issuer');
    const c = this.config;
    let payload: jose.JWTPayload;
    try {
      ({ payload } = await jose.jwtVerify(token, entry.keys, {
        issuer: entry.config.issuer,
        audience: entry.config.audience,
        algorithms: c.allowed_algorithms as string[],
        clockTolerance: c.clock_skew_tolerance_seconds,
        ...(c.enable_time_validation ? {} : { currentDate: new Date((unverified.iat ?? unverified.exp ?? 0) * 1000) }),
      }));
    } catch (err) {
      throw mapJoseError(err);
    }
    this.checkTimes(payload);
    const subject = payload[entry.config.subject_claim];
    const userId = typeof subject === 'string' ? qualify(entry.config.user_namespace, subject) : '';
    if (!OWNER_ID_PATTERN.test(userId)) {
      throw new IdentityError('identity_invalid_subject', 401, 'the user identity has no usable subject');
    }
    const claim = entry.config.agent_claim;
    if (claim && agentId !== undefined) {
      const named = payload[claim];
      if (named === undefined && entry.config.require_agent_claim) {
        throw new IdentityError('identity_agent_missing', 403, 'the user identity does not name the agent it was issued for');
      }
      if (named !== undefined && named !== agentId) {
        throw new IdentityError('identity_agent_mismatch', 403, 'the user identity was issued for another agent');
      }
    }
    return {
      userId,
      issuer: entry.config.issuer,
      verified: true,
      agentBound: Boolean(claim && payload[claim] !== undefined),
      ...tokenTimes(payload),
    };
  }

  private checkTimes(payload: jose.JWTPayload): void {
    const c = this.config;
    if (typeof payload.iat !== 'number' && typeof payload.exp !== 'number') {
      throw new IdentityError('identity_missing_times', 401, 'the user identity must carry iat or exp');
    }
    if (typeof payload.iat === 'number' && typeof payload.exp === 'number' && payload.exp - payload.iat > c.jwt_max_ttl_seconds) {
      throw new IdentityError('identity_lifetime_exceeded', 401, `the user identity lives longer than ${c.jwt_max_ttl_seconds} s`);
    }
    // No issue time to measure from: what is left of its life must still fit the maximum.
    if (
      typeof payload.iat !== 'number' &&
      typeof payload.exp === 'number' &&
      payload.exp - Date.now() / 1000 > c.jwt_max_ttl_seconds + c.clock_skew_tolerance_seconds
    ) {
      throw new IdentityError('identity_lifetime_exceeded', 401, `the user identity lives longer than ${c.jwt_max_ttl_seconds} s`);
    }
    if (!c.enable_time_validation) return;
    const now = Date.now() / 1000;
    if (typeof payload.iat === 'number') {
      if (payload.iat > now + c.clock_skew_tolerance_seconds) {
        throw new IdentityError('identity_not_yet_valid', 401, 'the user identity was issued in the future');
      }
      // No exp: the token lives for the default TTL from its issue time.
      if (typeof payload.exp !== 'number' && payload.iat + c.jwt_default_ttl_seconds < now - c.clock_skew_tolerance_seconds) {
        throw new IdentityError('identity_expired', 401, 'the user identity has expired');
      }
    }
  }
}

/** When a token expires and was issued (epoch seconds), where it says (VerifiedIdentity's times). */
function tokenTimes(claims: jose.JWTPayload): Pick<VerifiedIdentity, 'expiresAt' | 'issuedAt'> {
  return {
    ...(typeof claims.exp === 'number' ? { expiresAt: claims.exp } : {}),
    ...(typeof claims.iat === 'number' ? { issuedAt: claims.iat } : {}),
  };
}

/** Users of different issuers live in their issuers' namespaces (see `user_namespace`). */
function qualify(namespace: string | undefined, subject: string): string {
  return namespace ? `${namespace}:${subject}` : subject;
}

function mapJoseError(err: unknown): IdentityError {
  if (err instanceof jose.errors.JWTExpired) return new IdentityError('identity_expired', 401, 'the user identity has expired');
  if (err instanceof jose.errors.JWTClaimValidationFailed) {
    switch (err.claim) {
      case 'nbf':
      case 'iat':
        return new IdentityError('identity_not_yet_valid', 401, 'the user identity is not valid yet');
      case 'aud':
        return new IdentityError('identity_wrong_audience', 401, 'the user identity is for another audience');
      case 'iss':
        return new IdentityError('identity_untrusted_issuer', 401, 'the user identity was not issued by a trusted issuer');
      default:
        return new IdentityError('identity_invalid_claims', 401, `the user identity has an invalid ${err.claim} claim`);
    }
  }
  if (err instanceof jose.errors.JWKSNoMatchingKey)
    return new IdentityError('identity_unknown_key', 401, 'the user identity is signed with an unknown key');
  if (err instanceof jose.errors.JWSSignatureVerificationFailed)
    return new IdentityError('identity_bad_signature', 401, 'the user identity signature does not verify');
  if (err instanceof jose.errors.JOSEAlgNotAllowed)
    return new IdentityError('identity_algorithm_not_allowed', 401, 'the user identity is not signed with an allowed algorithm');
  const transport = !(err instanceof jose.errors.JOSEError);
  if (transport || err instanceof jose.errors.JWKSTimeout) {
    return new IdentityError('identity_keys_unavailable', 401, 'the issuer keys could not be fetched');
  }
  return new IdentityError('identity_invalid', 401, 'the user identity does not verify');
}
