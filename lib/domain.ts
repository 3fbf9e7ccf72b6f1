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

/** Row ids the API takes from a path or query (credentials, requests, webhooks, deliveries): lowercase UUIDs. */
export const UUID_PATTERN = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/** Epoch ms as an ISO time, or null (workflow-safe). */
export function isoTime(ms: number | null | undefined): string | null {
  return typeof ms === 'number' ? new Date(ms).toISOString() : null;
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

/**
 * What a credential's workflow tells agents (webhooks), and when. Payloads carry ids, times and reasons, never a
 * secret; the README's event table is checked against this list.
 */
export const LIFECYCLE_EVENTS = {
  'credential.active': 'the user authorized (or re-authorized, or widened by a step-up) and the credential can be used',
  'credential.refresh_failing': 'a refresh failed for a transient reason after its retries; the current token is still served',
  'credential.recovered': 'a refresh succeeded after `credential.refresh_failing`',
  'credential.expiring': 'the credential ends soon: its time to live, or the refresh token the provider said will die',
  'credential.expired': 'the credential reached its time to live and ended',
  'credential.reauthorization_required': 'the provider refused the grant (or gave no refresh token): the user must authorize again',
  'credential.revoked': 'the credential was revoked (by the agent, an admin, or the user) and ended',
  'authorization.failed': 'the authorization could not start or the code exchange failed (the user declined, say)',
  'authorization.timed_out': 'the user did not complete the authorization in time',
} as const;
export type LifecycleEventType = keyof typeof LIFECYCLE_EVENTS;
export const LIFECYCLE_EVENT_TYPES = Object.keys(LIFECYCLE_EVENTS) as LifecycleEventType[];

/** One event, as the workflow records it: never a secret. */
export interface LifecycleEvent {
  /** The event's id: the `webhook-id` of every delivery of it, retries included. */
  id: string;
  type: LifecycleEventType;
  /** Epoch ms (workflow time). */
  at: number;
  owner: CredentialOwner;
  credentialId: string;
  /** Type-specific fields: status, reason, times (ISO), scope, counts. */
  data: Record<string, string | number | boolean | null>;
}

/** What revoking a credential did at its provider: the offboarding receipt. */
export type RevocationOutcome = 'revoked_at_provider' | 'provider_has_no_revocation' | 'provider_failed' | 'nothing_to_revoke';
export interface Revocation {
  outcome: RevocationOutcome;
  /** The provider's error code, when it failed. */
  code?: string;
}

/** How webhook deliveries are retried (the worker's configuration, handed to the delivery workflow). */
export interface WebhookRetry {
  initialIntervalMs: number;
  maximumIntervalMs: number;
  /** How long a delivery keeps being retried before it is marked failed. */
  retryForMs: number;
  /** One attempt's bound (the HTTP request). */
  attemptTimeoutMs: number;
}
