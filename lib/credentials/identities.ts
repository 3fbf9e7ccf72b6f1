import { createHash } from 'node:crypto';
import { PresentedIdentitySchema } from '../db/entities.js';
import { fork, type Orm } from '../db/orm.js';
import type { SecretContext, Vault } from '../vault/crypto.js';

/** An identity as presented: whose, from which issuer, until when (epoch seconds). */
export interface PresentedIdentityInput {
  agentId: string;
  userId: string;
  issuer: string;
  token: string;
  expiresAt: number;
  /** When it was issued (epoch seconds), where it says: a credential revoked after that is not restored with it. */
  issuedAt?: number;
}

export interface KeptIdentity {
  token: string;
  expiresAt: Date;
  issuedAt: Date | null;
}

/**
 * The enterprise identities agents present for their users (the verified `X-User-Identity`, when its issuer is a
 * tool's identity provider), kept encrypted per (agent, user, issuer) so that the credential workflows of tools that
 * exchange it (ID-JAG, token exchange) find the newest one — never in a workflow's input, never in clear at rest.
 * A write happens only when a token newer than the one this process last kept arrives (about once per token life).
 */
export class PresentedIdentities {
  /** What this process last kept per row: its expiry and issue time (epoch seconds). */
  private readonly kept = new Map<string, { exp: number; iat: number }>();

  constructor(
    private readonly orm: Orm,
    private readonly vault: Vault,
  ) {}

  async keep(identity: PresentedIdentityInput): Promise<void> {
    const id = identityId(identity);
    const iat = identity.issuedAt ?? 0;
    const known = this.kept.get(id);
    if (known && known.exp >= identity.expiresAt && known.iat >= iat) return;
    const row = {
      id,
      agentId: identity.agentId,
      userId: identity.userId,
      issuer: identity.issuer,
      token: this.vault.encrypt(identity.token, context(identity, id)),
      expiresAt: new Date(identity.expiresAt * 1000),
      issuedAt: identity.issuedAt ? new Date(identity.issuedAt * 1000) : null,
      updatedAt: new Date(),
    };
    // A newer identity (issued later, or living longer) replaces an older one, never the other way round, however
    // requests race: the row is created if missing, then replaced only where it is older (each one statement).
    const em = fork(this.orm);
    await em.createQueryBuilder(PresentedIdentitySchema).insert(row).onConflict('id').ignore().execute();
    const older = row.issuedAt
      ? [{ expiresAt: { $lt: row.expiresAt } }, { issuedAt: { $lt: row.issuedAt } }, { issuedAt: null }]
      : [{ expiresAt: { $lt: row.expiresAt } }];
    const { token, expiresAt, issuedAt, updatedAt } = row;
    await em.nativeUpdate(PresentedIdentitySchema, { id, $or: older }, { token, expiresAt, issuedAt, updatedAt });
    if (this.kept.size >= 50_000) this.kept.clear();
    this.kept.set(id, { exp: Math.max(known?.exp ?? 0, identity.expiresAt), iat: Math.max(known?.iat ?? 0, iat) });
  }

  /** The newest identity presented for this user by this agent, and until when it is valid; null when none was. */
  async find(who: { agentId: string; userId: string; issuer: string }): Promise<KeptIdentity | null> {
    const id = identityId(who);
    const row = await fork(this.orm).findOne(PresentedIdentitySchema, { id });
    if (!row) return null;
    return { token: this.vault.decrypt(row.token, context(who, id)), expiresAt: row.expiresAt, issuedAt: row.issuedAt ?? null };
  }
}

function identityId(who: { agentId: string; userId: string; issuer: string }): string {
  return createHash('sha256').update(`${who.agentId}\0${who.userId}\0${who.issuer}`).digest('hex');
}

/** Bound to its row: a ciphertext moved to another agent, user or issuer does not decrypt. */
function context(who: { agentId: string; userId: string; issuer: string }, id: string): SecretContext {
  return { agentId: who.agentId, userId: who.userId, toolId: `identity:${who.issuer}`, recordId: id, field: 'presented_identity' };
}
