import type { AuthorizationRequest, Credential } from './db/entities.js';
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
