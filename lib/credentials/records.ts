import { AuthorizationRequestSchema, CredentialSchema, type AuthorizationRequest, type Credential } from '../db/entities.js';
import { fork, type Em, type Orm } from '../db/orm.js';
import { sha256Hex } from '../vault/crypto.js';
import type { CredentialOwner } from '../domain.js';
import type { SecretContext } from '../vault/crypto.js';

/** The vault context of one secret column of one row: its ciphertext opens nowhere else (agent, user, tool, row, field). */
export function secretContext(owner: CredentialOwner, recordId: string, field: string): SecretContext {
  return { agentId: owner.agentId, userId: owner.userId, toolId: owner.toolId, recordId, field };
}

/** Whose a credential or authorization request row is. */
export function ownerOf(row: Credential | AuthorizationRequest): CredentialOwner {
  return { agentId: row.agentId, userId: row.userId, toolId: row.toolId };
}

const ACTIVE_SQL =
  'select id, access_token, token_type, scope, access_expires_at, dpop_key from credentials ' +
  "where agent_id = ? and user_id = ? and tool_id = ? and status = 'active' and deleted_at is null " +
  'order by created_at desc limit 1';

export interface ActiveRow {
  id: string;
  access_token: string | null;
  token_type: string | null;
  scope: string | null;
  access_expires_at: Date | string | number | null;
  /** Encrypted; null when the tokens are not DPoP-bound. */
  dpop_key: string | null;
}

/** PostgreSQL returns Dates; SQLite returns what MikroORM stored (epoch milliseconds or ISO text). */
export function toDate(value: Date | string | number): Date {
  if (value instanceof Date) return value;
  return new Date(typeof value === 'string' && /^\d+$/.test(value) ? Number(value) : value);
}

/**
 * The hot path's one read: an owner's newest active row, as stored (ciphertext). Plain SQL on the shared pool: the
 * ORM's hydration costs several times the query itself, and a read needs no unit of work.
 */
export async function readActiveRow(orm: Orm, owner: CredentialOwner): Promise<ActiveRow | undefined> {
  const rows = (await orm.em.getConnection().execute(ACTIVE_SQL, [owner.agentId, owner.userId, owner.toolId])) as ActiveRow[];
  return rows[0];
}

export type CredentialFilter = Partial<Pick<Credential, 'agentId' | 'userId' | 'toolId' | 'status'>>;

/**
 * The API's one door to the credential and authorization-request tables: every read, and the callback's single
 * write (claiming a state). Everything else is written by the credential's workflow, through CredentialStore.
 */
export class CredentialRecords {
  constructor(private readonly orm: Orm) {}

  /** The hot path's read (see readActiveRow). */
  activeRow(owner: CredentialOwner): Promise<ActiveRow | undefined> {
    return readActiveRow(this.orm, owner);
  }

  /** An owner's newest row, ended or not. */
  latest(owner: CredentialOwner, em: Em = fork(this.orm)): Promise<Credential | null> {
    return em.findOne(CredentialSchema, { ...owner }, { orderBy: { createdAt: 'desc' } });
  }

  byId(id: string): Promise<Credential | null> {
    return fork(this.orm).findOne(CredentialSchema, { id });
  }

  /** A page of rows, newest first (admin). */
  list(filter: CredentialFilter, page: { limit: number; offset: number }): Promise<Credential[]> {
    return fork(this.orm).find(CredentialSchema, filter, {
      orderBy: { createdAt: 'desc', id: 'asc' },
      limit: page.limit,
      offset: page.offset,
    });
  }

  /**
   * Notes that an agent used the credential: usage metadata, the one column the API writes besides the callback's
   * claim (the workflow owns everything about the credential itself). Skipped when written within the last minute.
   */
  async markUsed(id: string, now = new Date()): Promise<void> {
    const minuteAgo = new Date(now.getTime() - 60_000);
    await fork(this.orm).nativeUpdate(
      CredentialSchema,
      { id, $or: [{ lastUsedAt: null }, { lastUsedAt: { $lt: minuteAgo } }] },
      { lastUsedAt: now },
    );
  }

  /** A user's credentials that have not ended (offboarding). */
  liveOf(userId: string): Promise<Credential[]> {
    return fork(this.orm).find(CredentialSchema, { userId, deletedAt: null });
  }

  /** The authorization request a provider's `state` belongs to (states are stored hashed). */
  requestByState(state: string): Promise<AuthorizationRequest | null> {
    return fork(this.orm).findOne(AuthorizationRequestSchema, { stateHash: sha256Hex(state) });
  }

  request(id: string): Promise<AuthorizationRequest | null> {
    return fork(this.orm).findOne(AuthorizationRequestSchema, { id });
  }

  /** Single use: only the first callback to claim a request goes on; its parameters are stored encrypted. */
  async claimCallback(requestId: string, encryptedParams: string): Promise<boolean> {
    const claimed = await fork(this.orm).nativeUpdate(
      AuthorizationRequestSchema,
      { id: requestId, consumedAt: null },
      { consumedAt: new Date(), callbackParams: encryptedParams },
    );
    return claimed === 1;
  }
}
