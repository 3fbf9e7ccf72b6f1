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
  private readonly kept = new Map<string, number>();

  constructor(
    private readonly orm: Orm,
    private readonly vault: Vault,
  ) {}

  async keep(identity: PresentedIdentityInput): Promise<void> {
    const id = identityId(identity);
    if ((this.kept.get(id) ?? 0) >= identity.expiresAt) return;
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
    // One statement: a newer identity replaces an older one, never the other way round, however requests race.
    await fork(this.orm)
      .createQueryBuilder(PresentedIdentitySchema)
      .insert(row)
      .onConflict('id')
      .merge(['token', 'expiresAt', 'issuedAt', 'updatedAt'])
      .where({ expiresAt: { $lt: row.expiresAt } })
      .execute();
    if (this.kept.size >= 50_000) this.kept.clear();
    this.kept.set(id, Math.max(this.kept.get(id) ?? 0, identity.expiresAt));
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
