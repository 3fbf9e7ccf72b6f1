import type { CredentialOwner } from '../../lib/domain.js';
import { findOutboundError } from '../../lib/net/outbound.js';
import { gatewayCalls, gatewayDuration, gatewayUpstreamErrors } from '../../lib/metrics.js';
import type { Caller } from '../auth.js';
import { ApiError } from '../errors.js';
import type { GatewayDeps } from './deps.js';
import { UpstreamAuthRequired, UpstreamUnavailable } from './upstream.js';

export type CallKind = 'mcp' | 'http';
export type CallOutcome = 'ok' | 'tool_error' | 'denied' | 'authorization_required' | 'unavailable' | 'upstream_error';

/** The stable code of a failed call, for the audit row and the agent. */
export function errorCode(err: unknown): string {
  if (err instanceof ApiError) return err.code;
  if (err instanceof UpstreamAuthRequired) return err.need.kind === 'step_up' ? 'insufficient_scope' : `${err.need.kind}_required`;
  if (err instanceof UpstreamUnavailable) return 'credential_unavailable';
  if (findOutboundError(err)) return 'outbound_refused';
  const code = (err as { code?: unknown })?.code;
  if (code === -32042) return 'authorization_required';
  if (typeof (err as { data?: { code?: unknown } })?.data?.code === 'string') return (err as { data: { code: string } }).data.code;
  return typeof code === 'number' ? 'upstream_error' : 'upstream_unreachable';
}

export function callOutcome(err: unknown): CallOutcome {
  const code = errorCode(err);
  if (code.endsWith('_required') || code === 'insufficient_scope') return 'authorization_required';
  if (code === 'agent_not_permitted' || code === 'user_not_permitted' || code === 'scope_not_allowed') return 'denied';
  if (code === 'credential_unavailable') return 'unavailable';
  return 'upstream_error';
}

/**
 * One call through the gateway, audited and counted: who, which tool, the MCP tool name or the HTTP method and
 * path, the outcome, the upstream status and duration. Never arguments, bodies or tokens. The row joins a
 * group the audit trail writes within 50 ms (in order, kept through a database outage); the answer does not wait
 * for the insert, since the call it records has already happened.
 */
export function recordCall(
  deps: Pick<GatewayDeps, 'audit'>,
  caller: Caller,
  owner: CredentialOwner,
  kind: CallKind,
  what: { name: string } | { method: string; path: string },
  outcome: CallOutcome,
  detail: { code?: string; status?: number; durationMs?: number } = {},
): void {
  gatewayCalls.inc({ tool: owner.toolId, kind, outcome });
  if (detail.durationMs !== undefined && outcome !== 'denied')
    gatewayDuration.observe({ tool: owner.toolId, kind }, detail.durationMs / 1000);
  if (outcome === 'upstream_error') gatewayUpstreamErrors.inc({ tool: owner.toolId, kind, reason: detail.code ?? 'upstream_error' });
  void deps.audit
    .record(
      null,
      {
        eventType: kind === 'mcp' ? 'gateway.tool_call' : 'gateway.proxy_request',
        outcome,
        actor: `agent:${caller.agentId}`,
        ...owner,
        detail: { ...what, ...detail },
      },
      { deferred: true },
    )
    .catch(() => {
      // The trail logs what it could not write; a call is never failed for its audit row after the fact.
    });
}
