import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { UniqueConstraintViolationException } from '@mikro-orm/core';
import * as jose from 'jose';
import { AgentKeySchema, AgentSchema, UsedAssertionSchema, type Agent } from '../../lib/db/entities.js';
import { fork, type Orm } from '../../lib/db/orm.js';
import { OWNER_ID_PATTERN } from '../../lib/domain.js';

/** Refused agent authentication; deliberately vague about which part failed. */
export class AgentAuthError extends Error {
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

export interface AuthenticatedAgent {
  agentId: string;
  scopes: string[];
  method: 'api_key' | 'assertion';
}

export interface AgentRegistryOptions {
  /** The `aud` agents put in their signed assertions (the broker's public origin). */
  assertionAudience: string;
  assertionMaxAgeSeconds?: number;
  clockSkewSeconds?: number;
  /**
   * How long a verified key stays cached in this process: a key revoked (or an agent disabled) by another
   * process stops working here within it; the process that revoked it clears its cache at once.
   */
  cacheTtlMs?: number;
}

/** One key read per second per key and process: revocation reaches every API process within about a second. */
export const DEFAULT_KEY_CACHE_MS = 1_000;
export const DEFAULT_AGENT_SCOPES = ['tool:*:use', 'tool:*:revoke'];
const KEY_FORMAT = /^acb_([0-9a-f]{16})_([A-Za-z0-9_-]{43})$/;
const ASSERTION_ALGORITHMS = ['RS256', 'PS256', 'ES256', 'ES384', 'EdDSA', 'Ed25519'];

/**
 * Agents and how they prove who they are: secret keys (stored as SHA-256 hashes; the secrets are 256 random
 * bits, so a slow hash adds nothing) or JWT assertions signed with a key registered for the agent.
 */
export class AgentRegistry {
  private readonly cache = new Map<string, { agent: AuthenticatedAgent; until: number }>();
  private readonly remoteKeys = new Map<string, { url: string; keys: jose.JWTVerifyGetKey }>();
  private inserts = 0;

  constructor(
    private readonly orm: Orm,
    private readonly opts: AgentRegistryOptions,
  ) {}

  async create(agentId: string, opts: { scopes?: string[]; description?: string } = {}): Promise<Agent> {
    if (!OWNER_ID_PATTERN.test(agentId))
      throw new AgentAuthError('invalid_agent_id', 'agent ids are 1-200 letters, digits and . _ @ + : = -');
    const em = fork(this.orm);
    if (await em.findOne(AgentSchema, { id: agentId })) throw new AgentAuthError('agent_exists', `agent ${agentId} already exists`);
    const agent = em.create(AgentSchema, {
      id: agentId,
      description: opts.description ?? null,
      scopes: opts.scopes ?? DEFAULT_AGENT_SCOPES,
      createdAt: new Date(),
    });
    await em.flush();
    return agent;
  }

  async get(agentId: string): Promise<Agent | null> {
    return fork(this.orm).findOne(AgentSchema, { id: agentId });
  }

  async list(): Promise<Agent[]> {
    return fork(this.orm).find(AgentSchema, {}, { orderBy: { id: 'asc' } });
  }

  /** Issues a key and returns it; only its hash is kept, so this is the one time it can be seen. */
  async issueKey(agentId: string, label?: string): Promise<{ keyId: string; key: string }> {
    await this.requireAgent(agentId);
    const keyId = randomBytes(8).toString('hex');
    const secret = randomBytes(32).toString('base64url');
    const em = fork(this.orm);
    em.create(AgentKeySchema, { id: keyId, agentId, secretHash: sha256(secret), label: label ?? null, createdAt: new Date() });
    await em.flush();
    return { keyId, key: `acb_${keyId}_${secret}` };
  }

  async revokeKey(keyId: string): Promise<boolean> {
    const n = await fork(this.orm).nativeUpdate(AgentKeySchema, { id: keyId, revokedAt: null }, { revokedAt: new Date() });
    this.cache.clear();
    return n === 1;
  }

  async setScopes(agentId: string, scopes: string[]): Promise<void> {
    await this.update(agentId, { scopes });
  }

  async setPublicKeys(agentId: string, keys: { jwksUrl?: string; jwks?: { keys: Record<string, unknown>[] } }): Promise<void> {
    if (Boolean(keys.jwksUrl) === Boolean(keys.jwks)) throw new AgentAuthError('invalid_keys', 'give exactly one of a JWKS URL or a JWKS');
    if (keys.jwks) createLocalKeys(keys.jwks);
    await this.update(agentId, { jwksUrl: keys.jwksUrl ?? null, jwks: keys.jwks ?? null });
    this.remoteKeys.delete(agentId);
  }

  async disable(agentId: string): Promise<void> {
    await this.update(agentId, { disabledAt: new Date() });
  }

  /** Verifies `Authorization: Bearer …` (a key or a signed assertion) and returns the agent. */
  async authenticate(header: string | undefined): Promise<AuthenticatedAgent> {
    const match = header ? /^Bearer ([\x21-\x7e]{1,8192})$/i.exec(header) : null;
    if (!match) throw new AgentAuthError('agent_authentication_required', 'an agent credential is required (Authorization: Bearer …)');
    const credential = match[1]!;
    const cached = this.cache.get(credential);
    if (cached && cached.until > Date.now()) return cached.agent;
    const agent = credential.split('.').length === 3 ? await this.verifyAssertion(credential) : await this.verifyKey(credential);
    if (agent.method === 'api_key') {
      if (this.cache.size > 10_000) this.cache.clear();
      this.cache.set(credential, { agent, until: Date.now() + (this.opts.cacheTtlMs ?? DEFAULT_KEY_CACHE_MS) });
    }
    return agent;
  }

  private async verifyKey(credential: string): Promise<AuthenticatedAgent> {
    const invalid = new AgentAuthError('agent_credential_invalid', 'the agent credential is not valid');
    const m = KEY_FORMAT.exec(credential);
    if (!m) throw invalid;
    const em = fork(this.orm);
    const key = await em.findOne(AgentKeySchema, { id: m[1]! });
    const presented = Buffer.from(sha256(m[2]!), 'hex');
    if (!key || key.revokedAt || !timingSafeEqual(presented, Buffer.from(key.secretHash, 'hex'))) throw invalid;
    const agent = await em.findOne(AgentSchema, { id: key.agentId });
    if (!agent || agent.disabledAt) throw invalid;
    return { agentId: agent.id, scopes: agent.scopes, method: 'api_key' };
  }

  private async verifyAssertion(token: string): Promise<AuthenticatedAgent> {
    const invalid = new AgentAuthError('agent_assertion_invalid', 'the agent assertion is not valid');
    let claims: jose.JWTPayload;
    try {
      claims = jose.decodeJwt(token);
    } catch {
      throw invalid;
    }
    if (typeof claims.iss !== 'string') throw invalid;
    const agent = await this.get(claims.iss);
    if (!agent || agent.disabledAt || (!agent.jwksUrl && !agent.jwks)) throw invalid;
    let payload: jose.JWTPayload;
    try {
      ({ payload } = await jose.jwtVerify(token, this.keysFor(agent), {
        issuer: agent.id,
        subject: agent.id,
        audience: this.opts.assertionAudience,
        algorithms: ASSERTION_ALGORITHMS,
        maxTokenAge: this.opts.assertionMaxAgeSeconds ?? 300,
        clockTolerance: this.opts.clockSkewSeconds ?? 30,
        requiredClaims: ['jti', 'exp', 'iat'],
      }));
    } catch {
      throw invalid;
    }
    await this.spendAssertion(agent.id, String(payload.jti), payload.exp!);
    return { agentId: agent.id, scopes: agent.scopes, method: 'assertion' };
  }

  /** Each assertion works once: its id is recorded until it would have expired anyway. */
  private async spendAssertion(agentId: string, jti: string, exp: number): Promise<void> {
    const em = fork(this.orm);
    try {
      await em.insert(UsedAssertionSchema, {
        id: sha256(`${agentId}\0${jti}`),
        agentId,
        expiresAt: new Date((exp + (this.opts.clockSkewSeconds ?? 30)) * 1000),
      });
    } catch (err) {
      if (err instanceof UniqueConstraintViolationException) {
        throw new AgentAuthError('agent_assertion_replayed', 'the agent assertion was already used');
      }
      throw err;
    }
    if (++this.inserts % 500 === 0) await em.nativeDelete(UsedAssertionSchema, { expiresAt: { $lt: new Date() } });
  }

  private keysFor(agent: Agent): jose.JWTVerifyGetKey {
    if (agent.jwks) return createLocalKeys(agent.jwks);
    const cached = this.remoteKeys.get(agent.id);
    if (cached && cached.url === agent.jwksUrl) return cached.keys;
    const keys = jose.createRemoteJWKSet(new URL(agent.jwksUrl!), { timeoutDuration: 5000 });
    this.remoteKeys.set(agent.id, { url: agent.jwksUrl!, keys });
    return keys;
  }

  private async requireAgent(agentId: string): Promise<Agent> {
    const agent = await this.get(agentId);
    if (!agent) throw new AgentAuthError('agent_not_found', `agent ${agentId} does not exist`);
    return agent;
  }

  private async update(agentId: string, changes: Partial<Agent>): Promise<void> {
    await this.requireAgent(agentId);
    await fork(this.orm).nativeUpdate(AgentSchema, { id: agentId }, changes);
    this.cache.clear();
  }
}

function createLocalKeys(jwks: { keys: Record<string, unknown>[] }): jose.JWTVerifyGetKey {
  try {
    return jose.createLocalJWKSet(jwks as jose.JSONWebKeySet);
  } catch {
    throw new AgentAuthError('invalid_keys', 'the JWKS is not valid');
  }
}

function sha256(value: string): string {
  return createHash('sha256').update(value).digest('hex');
}
