import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';

/**
 * Prometheus metrics. One registry per process: the API and the worker each expose theirs (`npm start`
 * runs both in one process, so /metrics shows everything).
 */
export const registry = new Registry();
collectDefaultMetrics({ register: registry, prefix: 'broker_' });

export const httpRequests = new Counter({
  name: 'broker_http_requests_total',
  help: 'HTTP requests by method, route and status',
  labelNames: ['method', 'route', 'status'] as const,
  registers: [registry],
});

export const httpDuration = new Histogram({
  name: 'broker_http_request_duration_seconds',
  help: 'HTTP request latency by route',
  labelNames: ['method', 'route'] as const,
  buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10, 60],
  registers: [registry],
});

export const authorizations = new Counter({
  name: 'broker_authorizations_total',
  help: 'Authorizations by stage (started, completed, failed, timed_out)',
  labelNames: ['tool', 'stage'] as const,
  registers: [registry],
});

export const authorizationDuration = new Histogram({
  name: 'broker_code_exchange_duration_seconds',
  help: 'Code exchange at the provider, from the worker',
  labelNames: ['tool'] as const,
  buckets: [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
  registers: [registry],
});

export const refreshes = new Counter({
  name: 'broker_refreshes_total',
  help: 'Token refreshes by tool and outcome (ok, failed, reauthorization_required)',
  labelNames: ['tool', 'outcome'] as const,
  registers: [registry],
});

export const revocations = new Counter({
  name: 'broker_revocations_total',
  help: 'Credentials ended, by reason (revoked, expired, reauthorization_required, …)',
  labelNames: ['tool', 'status'] as const,
  registers: [registry],
});

export const denials = new Counter({
  name: 'broker_denials_total',
  help: 'Refused requests by stable error code',
  labelNames: ['code'] as const,
  registers: [registry],
});

export const providerErrors = new Counter({
  name: 'broker_provider_errors_total',
  help: 'Failed calls to an authorization server, by tool and error code',
  labelNames: ['tool', 'code'] as const,
  registers: [registry],
});

export const providerHealthy = new Gauge({
  name: 'broker_provider_healthy',
  help: '1 when the last call to the tool’s authorization server succeeded, 0 when it failed for a transient reason',
  labelNames: ['tool'] as const,
  registers: [registry],
});

export const auditPending = new Gauge({
  name: 'broker_audit_pending_rows',
  help: 'Audit rows waiting for the database (batched, or kept while it is unreachable)',
  registers: [registry],
});

export const auditDropped = new Counter({
  name: 'broker_audit_dropped_total',
  help: 'Audit rows that could not be kept (buffer full, or refused by the database); they are still in the log',
  registers: [registry],
});

export function recordProviderCall(tool: string, failure?: { code: string; permanent: boolean }): void {
  if (!failure) {
    providerHealthy.set({ tool }, 1);
    return;
  }
  providerErrors.inc({ tool, code: failure.code });
  // A permanent answer (invalid_grant) still means the server is up.
  providerHealthy.set({ tool }, failure.permanent ? 1 : 0);
}

export const gatewayCalls = new Counter({
  name: 'broker_gateway_calls_total',
  help: 'Calls through the gateway by tool, kind (mcp tools/call, http) and outcome (ok, tool_error, denied, authorization_required, upstream_error)',
  labelNames: ['tool', 'kind', 'outcome'] as const,
  registers: [registry],
});

export const gatewayDuration = new Histogram({
  name: 'broker_gateway_upstream_duration_seconds',
  help: 'Time from forwarding a call upstream to its answer (headers, for streamed HTTP answers)',
  labelNames: ['tool', 'kind'] as const,
  buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10, 60],
  registers: [registry],
});

export const gatewayUpstreamErrors = new Counter({
  name: 'broker_gateway_upstream_errors_total',
  help: 'Upstream failures by tool, kind and reason (unreachable, status_5xx, outbound_refused, protocol)',
  labelNames: ['tool', 'kind', 'reason'] as const,
  registers: [registry],
});

export const gatewaySessions = new Gauge({
  name: 'broker_gateway_mcp_sessions',
  help: 'Open MCP gateway sessions in this process',
  registers: [registry],
});

export const webhookDeliveries = new Counter({
  name: 'broker_webhook_deliveries_total',
  help: 'Webhook delivery attempts by event type and outcome (delivered, refused, unreachable, failed)',
  labelNames: ['event', 'outcome'] as const,
  registers: [registry],
});
