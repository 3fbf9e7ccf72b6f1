/** Pure domain vocabulary shared by workflows, activities and the API (no I/O, workflow-safe). */

export const CREDENTIAL_STATUSES = [
  'awaiting_authorization',
  'active',
  'refreshing',
  'expired',
  'revoked',
  'reauthorization_required',
  'authorization_timed_out',
  'authorization_failed',
] as const;
export type CredentialStatus = (typeof CREDENTIAL_STATUSES)[number];

const TERMINAL: ReadonlySet<string> = new Set([
  'expired',
  'revoked',
  'reauthorization_required',
  'authorization_timed_out',
  'authorization_failed',
]);

export function isTerminal(status: string): boolean {
  return TERMINAL.has(status);
}

export interface CredentialOwner {
  agentId: string;
  userId: string;
  toolId: string;
}

/** Readable and deterministic: every request for the same credential converges on one workflow. */
export function credentialWorkflowId(owner: CredentialOwner): string {
  return `credential:${encodeURIComponent(owner.agentId)}:${encodeURIComponent(owner.userId)}:${encodeURIComponent(owner.toolId)}`;
}

/** Ids of agents, users and tools: printable, bounded, no path or control characters. */
export const OWNER_ID_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._@+:=-]{0,199}$/;

/**
 * The user of a machine credential (client credentials): one per (agent, tool), shared by every user of the
 * agent. Not a valid user id, so no real user can ever be mistaken for it.
 */
export const MACHINE_USER = '*machine*';

/** Readable and deterministic, like credentialWorkflowId, for machine credentials. */
export function machineWorkflowId(agentId: string, toolId: string): string {
  return `machine:${encodeURIComponent(agentId)}:${encodeURIComponent(toolId)}`;
}

/** Temporal's default limit on workflow ids (limit.maxIDLength). */
export const MAX_WORKFLOW_ID_LENGTH = 1000;

/** False when the owner's ids, encoded into a workflow id, would exceed Temporal's limit. */
export function workflowIdFits(owner: CredentialOwner): boolean {
  const id = owner.userId === MACHINE_USER ? machineWorkflowId(owner.agentId, owner.toolId) : credentialWorkflowId(owner);
  return id.length <= MAX_WORKFLOW_ID_LENGTH;
}
