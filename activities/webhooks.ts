import { ApplicationFailure } from '@temporalio/activity';
import { Webhook } from 'standardwebhooks';
import type { LifecycleEvent } from '../lib/domain.js';
import { webhookDeliveries } from '../lib/metrics.js';
import { findOutboundError } from '../lib/net/outbound.js';
import { reconnectUrl } from '../lib/credentials/reconnect.js';
import { VaultError } from '../lib/vault/crypto.js';
import { WebhookStore } from '../lib/webhooks/store.js';
import type { ActivityDeps } from './context.js';

/** Lifecycle events to webhook subscriptions: record, sign (Standard Webhooks), send, and keep each attempt's outcome. */
export function webhookActivities(deps: ActivityDeps) {
  const store = new WebhookStore(deps.orm, deps.vault);
  const { webhooks: settings } = deps;
  /** The user must authorize again: the event carries a link that starts it (the start page checks who opens it). */
  const withLink = (event: LifecycleEvent): LifecycleEvent =>
    event.type === 'credential.reauthorization_required'
      ? { ...event, data: { ...event.data, authorization_url: reconnectUrl(deps.vault, deps.publicOrigin, event.owner) } }
      : event;
  return {
    /** The deliveries to make (a new event's, recorded idempotently; or one delivery again) and how to retry them. */
    async prepareDeliveries(input: { event: LifecycleEvent } | { redeliver: string }) {
      const deliveryIds = 'event' in input ? await store.record(withLink(input.event)) : [input.redeliver];
      return { deliveryIds, retry: settings };
    },

    /** One attempt. Throws (to be retried) unless the receiver answered 2xx; a refused target fails for good. */
    async deliverWebhook(input: { deliveryId: string }): Promise<'delivered' | 'dropped'> {
      let job;
      try {
        job = await store.job(input.deliveryId);
      } catch (err) {
        // The secret does not decrypt (its key is gone): no retry will sign this delivery.
        if (err instanceof VaultError) throw ApplicationFailure.nonRetryable('the subscription secret cannot be read', 'secret_unreadable');
        throw err;
      }
      // The subscription was deleted meanwhile: nothing to send to.
      if (!job) {
        await store.dropped(input.deliveryId);
        return 'dropped';
      }
      if (job.delivery.status === 'delivered') return 'delivered';
      const { event, subscription } = job;
      const now = new Date();
      // Signed at each attempt (receivers check the timestamp is recent); the id is the event's, every time.
      const signature = new Webhook(job.secret).sign(event.id, now, event.payload);
      let status: number;
      try {
        // Only the status matters: the answer's body is never read (a large one is no failure).
        const res = await deps.outbound.streamingFetch(subscription.url, {
          method: 'POST',
          headers: {
            'content-type': 'application/json',
            'user-agent': 'credential-broker-webhooks/1',
            'webhook-id': event.id,
            'webhook-timestamp': String(Math.floor(now.getTime() / 1000)),
            'webhook-signature': signature,
          },
          body: event.payload,
          signal: AbortSignal.timeout(settings.attemptTimeoutMs),
        });
        status = res.status;
        await res.body?.cancel().catch(() => undefined);
      } catch (err) {
        const refused = findOutboundError(err);
        const error = refused ? `outbound_refused: ${refused.reason}` : 'the receiver could not be reached';
        await store.attempted(input.deliveryId, { statusCode: null, error, delivered: false });
        webhookDeliveries.inc({ event: event.type, outcome: 'unreachable' });
        // A redirect may be fixed at the receiver; a refused scheme or address will not be.
        if (refused && refused.reason !== 'redirect') throw ApplicationFailure.nonRetryable(error, 'outbound_refused');
        throw ApplicationFailure.retryable(error, 'webhook_unreachable');
      }
      const delivered = status >= 200 && status < 300;
      await store.attempted(input.deliveryId, {
        statusCode: status,
        error: delivered ? null : `the receiver answered ${status}`,
        delivered,
      });
      webhookDeliveries.inc({ event: event.type, outcome: delivered ? 'delivered' : 'refused' });
      if (!delivered) throw ApplicationFailure.retryable(`the receiver answered ${status}`, 'webhook_refused');
      return 'delivered';
    },

    async failDelivery(input: { deliveryId: string; error: string }): Promise<void> {
      await store.failed(input.deliveryId);
      webhookDeliveries.inc({ event: 'any', outcome: 'failed' });
      deps.log.warn({ deliveryId: input.deliveryId, code: input.error }, 'webhook delivery failed for good');
    },
  };
}
