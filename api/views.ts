import type { AuditEvent, Credential } from '../lib/db/entities.js';

/** The upstream account a credential's consent landed on, or null when unknown. */
export function accountView(row: Credential): { id: string; name: string | null } | null {
  return row.accountId ? { id: row.accountId, name: row.accountName ?? null } : null;
}

/** A credential's metadata as the API shows it: never a token. */
export function credentialView(row: Credential, opts: { withOwner?: boolean } = {}): Record<string, unknown> {
  return {
    status: row.status,
    credential_id: row.id,
    ...(opts.withOwner ? { agent_id: row.agentId, user_id: row.userId } : {}),
    tool_id: row.toolId,
    scope: row.scope ?? null,
    expires_at: row.accessExpiresAt?.toISOString() ?? null,
    credential_expires_at: row.ttlExpiresAt?.toISOString() ?? null,
    refresh_token_expires_at: row.refreshExpiresAt?.toISOString() ?? null,
    account: accountView(row),
    created_at: row.createdAt.toISOString(),
    updated_at: row.updatedAt.toISOString(),
    ended_at: row.deletedAt?.toISOString() ?? null,
    end_reason: row.endReason ?? null,
  };
}

export function auditView(e: AuditEvent): Record<string, unknown> {
  return {
    id: e.id,
    at: e.at.toISOString(),
    event_type: e.eventType,
    outcome: e.outcome,
    actor: e.actor,
    agent_id: e.agentId ?? null,
    user_id: e.userId ?? null,
    tool_id: e.toolId ?? null,
    credential_id: e.credentialId ?? null,
    request_id: e.requestId ?? null,
    ip: e.ip ?? null,
    detail: e.detail ?? null,
  };
}
