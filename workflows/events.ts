import { ParentClosePolicy, patched, proxyActivities, startChild, uuid4, workflowInfo } from '@temporalio/workflow';
import type { createActivities } from '../activities/index.js';
import type { CredentialOwner, LifecycleEvent, LifecycleEventType } from '../lib/domain.js';
import { failureCode } from './failures.js';
import { AgentIdKey, ToolIdKey, UserIdKey, type Phase, type RevokeRequest } from './messages.js';

type Activities = ReturnType<typeof createActivities>;

const bookkeeping = proxyActivities<Activities>({
  startToCloseTimeout: '20s',
  retry: { initialInterval: '1s', backoffCoefficient: 2, maximumInterval: '60s' },
});

/** What starts a delivery run: a new event (from a credential's workflow), or one delivery sent again (the API). */
export type DeliveryRunInput = { event: LifecycleEvent } | { redeliver: string };

/**
 * Tells agents what happened to a credential: a child workflow per event, abandoned by its parent, records the
 * event and delivers it to every subscription, so the credential's own workflow never waits on a receiver.
 * Histories from before events (the `lifecycle-events` patch) announce nothing.
 */
export async function announce(
  owner: CredentialOwner,
  credentialId: string,
  type: LifecycleEventType,
  data: LifecycleEvent['data'] = {},
): Promise<void> {
  if (!patched('lifecycle-events')) return;
  const event: LifecycleEvent = { id: uuid4(), type, at: Date.now(), owner, credentialId, data };
  await startChild(deliveryWorkflow, {
    workflowId: `event:${event.id}`,
    args: [{ event }],
    parentClosePolicy: ParentClosePolicy.ABANDON,
    typedSearchAttributes: [
      { key: AgentIdKey, value: owner.agentId },
      { key: UserIdKey, value: owner.userId },
      { key: ToolIdKey, value: owner.toolId },
    ],
    memo: { event: type, credentialId, parent: workflowInfo().workflowId },
  });
}

/**
 * Delivers one event to its subscriptions, at least once each: every attempt signs anew with the same
 * `webhook-id`, retries back off for as long as the operator set (a day by default), and each delivery's row
 * says how it went. The body never holds a secret.
 */
export async function deliveryWorkflow(input: DeliveryRunInput): Promise<{ delivered: number; failed: number }> {
  const { deliveryIds, retry } = await bookkeeping.prepareDeliveries(input);
  const sending = proxyActivities<Activities>({
    startToCloseTimeout: retry.attemptTimeoutMs + 5_000,
    scheduleToCloseTimeout: retry.retryForMs,
    retry: {
      initialInterval: retry.initialIntervalMs,
      backoffCoefficient: 2,
      maximumInterval: retry.maximumIntervalMs,
      nonRetryableErrorTypes: ['outbound_refused', 'secret_unreadable'],
    },
  });
  const results = await Promise.allSettled(deliveryIds.map((deliveryId) => sending.deliverWebhook({ deliveryId })));
  let failed = 0;
  for (const [i, result] of results.entries()) {
    if (result.status === 'fulfilled') continue;
    failed++;
    await bookkeeping.failDelivery({ deliveryId: deliveryIds[i]!, error: failureCode(result.reason) });
  }
  const delivered = results.filter((r) => r.status === 'fulfilled' && r.value === 'delivered').length;
  return { delivered, failed };
}

/** The event that tells each way a credential can end. */
export const ENDED_EVENTS: Partial<Record<Phase, LifecycleEventType>> = {
  expired: 'credential.expired',
  revoked: 'credential.revoked',
  reauthorization_required: 'credential.reauthorization_required',
  authorization_timed_out: 'authorization.timed_out',
  authorization_failed: 'authorization.failed',
};

export function revokedData(request: RevokeRequest): LifecycleEvent['data'] {
  return { revoked_by: request.actor, reason: request.reason };
}
