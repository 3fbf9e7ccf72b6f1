import { OWNER_ID_PATTERN, type CredentialOwner } from '../domain.js';
import { secretsEqual, type Vault } from '../vault/crypto.js';

/** Where a `credential.reauthorization_required` event's link leads: it starts a new authorization for that owner. */
export const RECONNECT_PATH = '/api/v1/auth/tool/reconnect';

/** How long such a link may start an authorization. */
export const RECONNECT_LINK_SECONDS = 7 * 24 * 3600;

function signature(vault: Vault, owner: CredentialOwner, expires: number): string {
  return vault.deriveToken('reconnect', `${owner.agentId}\n${owner.userId}\n${owner.toolId}\n${expires}`);
}

/**
 * A link only the broker can make (signed with the vault's key) that starts the owner's authorization again. It
 * carries no secret and grants nothing by itself: the start page it leads to still checks that the browser's
 * user is the owner.
 */
export function reconnectUrl(vault: Vault, publicOrigin: string, owner: CredentialOwner, now = Date.now()): string {
  const expires = Math.floor(now / 1000) + RECONNECT_LINK_SECONDS;
  const q = new URLSearchParams({ agent: owner.agentId, user: owner.userId, tool: owner.toolId, expires: String(expires) });
  q.set('sig', signature(vault, owner, expires));
  return `${publicOrigin}${RECONNECT_PATH}?${q}`;
}

/** The owner a reconnect link names, if the broker made it and it has not expired; else null. */
export function verifyReconnect(vault: Vault, query: Record<string, unknown>, now = Date.now()): CredentialOwner | null {
  const [agentId, userId, toolId, expiresText, sig] = ['agent', 'user', 'tool', 'expires', 'sig'].map((k) =>
    typeof query[k] === 'string' ? (query[k] as string) : '',
  );
  const expires = Number(expiresText);
  if (![agentId, userId, toolId].every((id) => OWNER_ID_PATTERN.test(id!)) || !Number.isInteger(expires) || !sig) return null;
  if (expires * 1000 < now) return null;
  const owner = { agentId: agentId!, userId: userId!, toolId: toolId! };
  return secretsEqual(sig, signature(vault, owner, expires)) ? owner : null;
}
