import { randomUUID } from 'node:crypto';
import { SignJWT, type CryptoKey, type KeyObject } from 'jose';

export interface AgentAssertionOptions {
  agentId: string;
  /** The agent's private key (its public half registered with the broker: `npm run agents -- set-jwks`). */
  privateKey: CryptoKey | KeyObject;
  /** The broker's public origin (its `AGENT_ASSERTION_AUDIENCE`). */
  audience: string;
  alg?: string;
  kid?: string;
  /** Lifetime (the broker accepts at most 300 s). */
  ttlSeconds?: number;
}

/** A single-use signed agent assertion (`iss` = `sub` = the agent, a fresh `jti`): `Authorization: Bearer <it>`. */
export function agentAssertion(opts: AgentAssertionOptions): Promise<string> {
  const now = Math.floor(Date.now() / 1000);
  return new SignJWT({})
    .setProtectedHeader({ alg: opts.alg ?? 'ES256', ...(opts.kid ? { kid: opts.kid } : {}) })
    .setIssuer(opts.agentId)
    .setSubject(opts.agentId)
    .setAudience(opts.audience)
    .setIssuedAt(now)
    .setExpirationTime(now + (opts.ttlSeconds ?? 60))
    .setJti(randomUUID())
    .sign(opts.privateKey);
}
