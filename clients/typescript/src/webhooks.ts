import { Webhook } from 'standardwebhooks';

/** A lifecycle event as the broker sends it (`data` carries ids, times and reasons, never a secret). */
export interface LifecycleEvent {
  type:
    | 'credential.active'
    | 'credential.refresh_failing'
    | 'credential.recovered'
    | 'credential.expiring'
    | 'credential.expired'
    | 'credential.reauthorization_required'
    | 'credential.revoked'
    | 'authorization.failed'
    | 'authorization.timed_out';
  timestamp: string;
  data: {
    event_id: string;
    credential_id: string;
    agent_id: string;
    user_id: string;
    tool_id: string;
    [field: string]: string | number | boolean | null;
  };
}

export class WebhookVerificationError extends Error {
  override name = 'WebhookVerificationError';
}

/**
 * Verifies a delivery (Standard Webhooks: HMAC-SHA256 over `id.timestamp.body`, the timestamp within five minutes)
 * and returns its event. `body` must be the raw request body, exactly as received. De-duplicate by `webhook-id`:
 * a delivery may arrive more than once.
 */
export function verifyWebhook(secret: string, headers: Headers | Record<string, string>, body: string): LifecycleEvent & { id: string } {
  const get = (name: string) => (headers instanceof Headers ? headers.get(name) : (headers[name] ?? headers[name.toLowerCase()])) ?? '';
  const h = {
    'webhook-id': get('webhook-id'),
    'webhook-timestamp': get('webhook-timestamp'),
    'webhook-signature': get('webhook-signature'),
  };
  try {
    return { ...(new Webhook(secret).verify(body, h) as LifecycleEvent), id: h['webhook-id'] };
  } catch (err) {
    throw new WebhookVerificationError((err as Error).message);
  }
}
