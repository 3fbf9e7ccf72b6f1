import { randomBytes, randomUUID } from 'node:crypto';
import { raw, UniqueConstraintViolationException } from '@mikro-orm/core';
import { fork, type Orm } from '../db/orm.js';
import {
  WebhookDeliverySchema,
  WebhookEventSchema,
  WebhookSubscriptionSchema,
  type WebhookDelivery,
  type WebhookEvent,
  type WebhookSubscription,
} from '../db/entities.js';
import type { LifecycleEvent } from '../domain.js';
import type { SecretContext, Vault } from '../vault/crypto.js';

/** Who made a subscription and whose events it gets: one agent's, or (null) every agent's. */
export type SubscriptionScope = { agentId: string | null };

export interface NewSubscription extends SubscriptionScope {
  url: string;
  events: string[];
  description: string | null;
  createdBy: string;
}

/** A delivery with what an attempt needs: the event's exact body and the subscription's target and secret. */
export interface DeliveryJob {
  delivery: WebhookDelivery;
  event: WebhookEvent;
  subscription: WebhookSubscription;
  secret: string;
}

/** Subscriptions an agent may hold; operators' (all-agent) ones count apart. */
export const MAX_SUBSCRIPTIONS_PER_AGENT = 20;

/** The only owner of the webhook tables: subscriptions (secrets encrypted), the events they receive, deliveries. */
export class WebhookStore {
  constructor(
    private readonly orm: Orm,
    private readonly vault: Vault,
  ) {}

  /** A new subscription and its signing secret, which is returned here once and stored only encrypted. */
  async create(input: NewSubscription): Promise<{ subscription: WebhookSubscription; secret: string }> {
    const id = randomUUID();
    const secret = newSecret();
    const em = fork(this.orm);
    const subscription = em.create(WebhookSubscriptionSchema, {
      id,
      agentId: input.agentId,
      url: input.url,
      events: input.events,
      description: input.description,
      secret: this.vault.encrypt(secret, secretContext(input.agentId, id)),
      createdBy: input.createdBy,
      createdAt: new Date(),
      deletedAt: null,
    });
    await em.flush();
    return { subscription, secret };
  }

  /** Live subscriptions with this scope (an agent's own, or the operator's all-agent ones). */
  list(scope: SubscriptionScope): Promise<WebhookSubscription[]> {
    return fork(this.orm).find(WebhookSubscriptionSchema, { agentId: scope.agentId, deletedAt: null }, { orderBy: { createdAt: 'asc' } });
  }

  async get(id: string, scope: SubscriptionScope): Promise<WebhookSubscription | null> {
    return fork(this.orm).findOne(WebhookSubscriptionSchema, { id, agentId: scope.agentId, deletedAt: null });
  }

  async remove(id: string, scope: SubscriptionScope): Promise<boolean> {
    const n = await fork(this.orm).nativeUpdate(
      WebhookSubscriptionSchema,
      { id, agentId: scope.agentId, deletedAt: null },
      { deletedAt: new Date() },
    );
    return n > 0;
  }

  /** A new secret (the old one stops signing at once); null when there is no such subscription. */
  async rotate(id: string, scope: SubscriptionScope): Promise<string | null> {
    const secret = newSecret();
    const n = await fork(this.orm).nativeUpdate(
      WebhookSubscriptionSchema,
      { id, agentId: scope.agentId, deletedAt: null },
      { secret: this.vault.encrypt(secret, secretContext(scope.agentId, id)) },
    );
    return n > 0 ? secret : null;
  }

  /**
   * Records an event and one delivery per live subscription that wants it (the agent's own and the operator's).
   * Idempotent: recording the same event again returns the deliveries made the first time.
   */
  async record(event: LifecycleEvent): Promise<string[]> {
    const em = fork(this.orm);
    const existing = await em.find(WebhookDeliverySchema, { eventId: event.id }, { fields: ['id'] });
    if (existing.length || (await em.count(WebhookEventSchema, { id: event.id }))) return existing.map((d) => d.id);
    const subscriptions = await em.find(WebhookSubscriptionSchema, {
      $or: [{ agentId: event.owner.agentId }, { agentId: null }],
      deletedAt: null,
    });
    const wanted = subscriptions.filter((s) => s.events.length === 0 || s.events.includes(event.type));
    const now = new Date();
    em.create(WebhookEventSchema, {
      id: event.id,
      type: event.type,
      agentId: event.owner.agentId,
      userId: event.owner.userId,
      toolId: event.owner.toolId,
      credentialId: event.credentialId,
      payload: eventBody(event),
      at: new Date(event.at),
    });
    const deliveries = wanted.map((s) =>
      em.create(WebhookDeliverySchema, {
        id: randomUUID(),
        eventId: event.id,
        subscriptionId: s.id,
        status: 'pending',
        attempts: 0,
        lastStatusCode: null,
        lastError: null,
        lastAttemptAt: null,
        deliveredAt: null,
        createdAt: now,
      }),
    );
    try {
      await em.flush();
    } catch (err) {
      // Another attempt recorded it first: its deliveries are the ones.
      if (!(err instanceof UniqueConstraintViolationException)) throw err;
      return (await fork(this.orm).find(WebhookDeliverySchema, { eventId: event.id }, { fields: ['id'] })).map((d) => d.id);
    }
    return deliveries.map((d) => d.id);
  }

  /** What an attempt needs; null when the delivery or its subscription is gone (nothing to send). */
  async job(deliveryId: string): Promise<DeliveryJob | null> {
    const em = fork(this.orm);
    const delivery = await em.findOne(WebhookDeliverySchema, { id: deliveryId });
    if (!delivery) return null;
    const [event, subscription] = await Promise.all([
      em.findOne(WebhookEventSchema, { id: delivery.eventId }),
      em.findOne(WebhookSubscriptionSchema, { id: delivery.subscriptionId, deletedAt: null }),
    ]);
    if (!event || !subscription) return null;
    const secret = this.vault.decrypt(subscription.secret, secretContext(subscription.agentId ?? null, subscription.id));
    return { delivery, event, subscription, secret };
  }

  /** One attempt's outcome: delivered, or still pending with what went wrong. */
  async attempted(deliveryId: string, outcome: { statusCode: number | null; error: string | null; delivered: boolean }): Promise<void> {
    const em = fork(this.orm);
    const now = new Date();
    await em.nativeUpdate(
      WebhookDeliverySchema,
      { id: deliveryId },
      {
        lastStatusCode: outcome.statusCode,
        lastError: outcome.error?.slice(0, 200) ?? null,
        lastAttemptAt: now,
        // Counted in the database, so attempts by several workers add up.
        attempts: raw('attempts + 1'),
        ...(outcome.delivered ? { status: 'delivered', deliveredAt: now } : {}),
      },
    );
  }

  /** Its subscription was deleted before it went out: nothing was sent, nothing will be. */
  async dropped(deliveryId: string): Promise<void> {
    await fork(this.orm).nativeUpdate(
      WebhookDeliverySchema,
      { id: deliveryId, status: 'pending' },
      { status: 'dropped', lastError: 'subscription deleted' },
    );
  }

  /** The retries ran out (or the target is refused for good); the last attempt's error stays. */
  async failed(deliveryId: string): Promise<void> {
    await fork(this.orm).nativeUpdate(WebhookDeliverySchema, { id: deliveryId, status: 'pending' }, { status: 'failed' });
  }

  /** Back to pending for a redelivery; false when there is no such delivery for this subscription. */
  async reopen(subscriptionId: string, deliveryId: string): Promise<boolean> {
    const n = await fork(this.orm).nativeUpdate(WebhookDeliverySchema, { id: deliveryId, subscriptionId }, { status: 'pending' });
    return n > 0;
  }

  /** A subscription's most recent deliveries, newest first, with their event's type. */
  async recent(subscriptionId: string, limit: number): Promise<(WebhookDelivery & { eventType: string })[]> {
    const em = fork(this.orm);
    const deliveries = await em.find(WebhookDeliverySchema, { subscriptionId }, { orderBy: { createdAt: 'desc', id: 'asc' }, limit });
    const events = await em.find(WebhookEventSchema, { id: { $in: deliveries.map((d) => d.eventId) } }, { fields: ['id', 'type'] });
    const types = new Map(events.map((e) => [e.id, e.type]));
    return deliveries.map((d) => ({ ...d, eventType: types.get(d.eventId) ?? 'unknown' }));
  }
}

/** The body every delivery of an event sends (Standard Webhooks' `type`, `timestamp`, `data`): never a secret. */
export function eventBody(event: LifecycleEvent): string {
  return JSON.stringify({
    type: event.type,
    timestamp: new Date(event.at).toISOString(),
    data: {
      event_id: event.id,
      credential_id: event.credentialId,
      agent_id: event.owner.agentId,
      user_id: event.owner.userId,
      tool_id: event.owner.toolId,
      ...event.data,
    },
  });
}

/** A Standard Webhooks secret: `whsec_` and 32 random bytes in base64. */
function newSecret(): string {
  return `whsec_${randomBytes(32).toString('base64')}`;
}

function secretContext(agentId: string | null, id: string): SecretContext {
  return { agentId: agentId ?? '*operator*', userId: '*webhook*', toolId: '*webhook*', recordId: id, field: 'webhook_secret' };
}
