import type { AuthorizationRequest, Credential } from './db/entities.js';
import type { Orm } from './db/orm.js';
import type { CredentialOwner } from './domain.js';
import type { SecretContext } from './vault/crypto.js';

/** The vault context of one secret column of one row: its ciphertext opens nowhere else (agent, user, tool, row, field). */
export function secretContext(owner: CredentialOwner, recordId: string, field: string): SecretContext {
  return { agentId: owner.agentId, userId: owner.userId, toolId: owner.toolId, recordId, field };
}

/** Whose a credential or authorization request row is. */
export function ownerOf(row: Credential | AuthorizationRequest): CredentialOwner {
  return { agentId: row.agentId, userId: row.userId, toolId: row.toolId };
}

const ACTIVE_SQL =
  'select id, access_token, token_type, scope, access_expires_at from credentials ' +
  "where agent_id = ? and user_id = ? and tool_id = ? and status = 'active' and deleted_at is null " +
  'order by created_at desc limit 1';

export interface ActiveRow {
  id: string;
  access_token: string | null;
  token_type: string | null;
  scope: string | null;
  access_expires_at: Date | string | number | null;
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
