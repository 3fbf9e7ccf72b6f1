import { Router, type Request } from 'express';
import type { Client } from '@temporalio/client';
import { z } from 'zod';
import type { Config } from '../../lib/config.js';
import { LIFECYCLE_EVENT_TYPES, UUID_PATTERN } from '../../lib/domain.js';
import type { WebhookDelivery, WebhookSubscription } from '../../lib/db/entities.js';
import { OutboundError, type OutboundPolicy } from '../../lib/net/outbound.js';
import { MAX_SUBSCRIPTIONS_PER_AGENT, type SubscriptionScope, type WebhookStore } from '../../lib/webhooks/store.js';
import type { Gate } from '../auth.js';
import { ApiError, parseOr400 } from '../errors.js';

export interface WebhookDeps {
  gate: Gate;
  webhooks: WebhookStore;
  outbound: OutboundPolicy;
  temporal: Client;
  config: Config;
}

export const createBody = z
  .object({
    url: z.string().max(2000).meta({ example: 'https://receiver.example.com/hooks' }),
    /** Event types to receive; omitted or empty: all. */
    events: z
      .array(z.enum(LIFECYCLE_EVENT_TYPES as [string, ...string[]]))
      .max(20)
      .optional(),
    description: z.string().max(200).optional(),
    /** The operator's subscription to every agent's events (needs credential:admin). */
    all_agents: z.boolean().optional(),
  })
  .strict();
const scopeQuery = z.object({ all_agents: z.enum(['true', 'false']).optional() }).strict();
export const deliveriesQuery = z
  .object({ limit: z.coerce.number().int().min(1).max(100).default(20), all_agents: z.enum(['true', 'false']).optional() })
  .strict();

/**
 * /api/v1/webhooks: an agent's subscriptions to its credentials' lifecycle events (scope `webhook:manage`), or,
 * with `all_agents`, the operator's for every agent (`credential:admin`). Secrets are shown once.
 */
export function webhookRoutes(deps: WebhookDeps): Router {
  const router = Router();
  const { gate, webhooks } = deps;
  router.use(gate.authenticate());

  router.post('/', async (req, res) => {
    const body = parseOr400(createBody, req.body ?? {}, 'body');
    const scope = await scopeOf(req, body.all_agents === true);
    const url = checkTarget(body.url);
    if (scope.agentId !== null && (await webhooks.list(scope)).length >= MAX_SUBSCRIPTIONS_PER_AGENT) {
      throw new ApiError('too_many_webhooks', `an agent may hold ${MAX_SUBSCRIPTIONS_PER_AGENT} webhook subscriptions`);
    }
    const { subscription, secret } = await webhooks.create({
      ...scope,
      url,
      events: body.events ?? [],
      description: body.description ?? null,
      createdBy: `agent:${req.caller!.agentId} user:${req.caller!.userId}`,
    });
    res.status(201).json({ ...subscriptionView(subscription), secret });
  });

  router.get('/', async (req, res) => {
    const q = parseOr400(scopeQuery, req.query, 'query');
    const scope = await scopeOf(req, q.all_agents === 'true');
    res.json({ items: (await webhooks.list(scope)).map(subscriptionView) });
  });

  router.get('/:id', async (req, res) => {
    res.json(subscriptionView(await found(req)));
  });

  router.delete('/:id', async (req, res) => {
    const s = await found(req);
    await webhooks.remove(s.id, { agentId: s.agentId ?? null });
    res.status(204).end();
  });

  router.post('/:id/rotate-secret', async (req, res) => {
    const s = await found(req);
    const secret = await webhooks.rotate(s.id, { agentId: s.agentId ?? null });
    if (!secret) throw new ApiError('webhook_not_found', 'no webhook subscription with this id');
    res.json({ ...subscriptionView(s), secret });
  });

  router.get('/:id/deliveries', async (req, res) => {
    const q = parseOr400(deliveriesQuery, req.query, 'query');
    const s = await found(req);
    res.json({ items: (await webhooks.recent(s.id, q.limit)).map(deliveryView) });
  });

  router.post('/:id/deliveries/:deliveryId/redeliver', async (req, res) => {
    const s = await found(req);
    const deliveryId = String(req.params.deliveryId);
    if (!UUID_PATTERN.test(deliveryId) || !(await webhooks.reopen(s.id, deliveryId))) {
      throw new ApiError('delivery_not_found', 'no delivery with this id for this subscription');
    }
    // A run of its own, with the same webhook-id as before: receivers de-duplicate by it.
    await deps.temporal.workflow.start('deliveryWorkflow', {
      taskQueue: deps.config.temporal.taskQueue,
      workflowId: `redeliver:${deliveryId}:${Date.now()}`,
      args: [{ redeliver: deliveryId }],
    });
    res.status(202).json({ delivery_id: deliveryId, status: 'pending' });
  });

  return router;

  /** One agent's subscriptions, or the operator's (all agents) for callers with credential:admin. */
  async function scopeOf(req: Request, allAgents: boolean): Promise<SubscriptionScope> {
    if (allAgents) {
      await gate.authorize(req, 'credential:admin');
      return { agentId: null };
    }
    await gate.authorize(req, 'webhook:manage');
    return { agentId: req.caller!.agentId };
  }

  async function found(req: Request): Promise<WebhookSubscription> {
    const q = parseOr400(scopeQuery.passthrough(), req.query, 'query');
    const scope = await scopeOf(req, q.all_agents === 'true');
    const id = String(req.params.id);
    const s = UUID_PATTERN.test(id) ? await webhooks.get(id, scope) : null;
    if (!s) throw new ApiError('webhook_not_found', 'no webhook subscription with this id');
    return s;
  }

  /** The target passes the outbound policy now (scheme, literal addresses) and again, after DNS, at every delivery. */
  function checkTarget(raw: string): string {
    let url: URL;
    try {
      url = new URL(raw);
    } catch {
      throw new ApiError('invalid_webhook_url', 'the webhook URL is not an absolute URL');
    }
    if (url.hash) throw new ApiError('invalid_webhook_url', 'the webhook URL must not have a fragment');
    try {
      deps.outbound.checkUrl(url);
    } catch (err) {
      if (err instanceof OutboundError) throw new ApiError('invalid_webhook_url', `the webhook URL is refused: ${err.message}`);
      throw err;
    }
    return url.href;
  }
}

function subscriptionView(s: WebhookSubscription): Record<string, unknown> {
  return {
    id: s.id,
    url: s.url,
    events: s.events.length ? s.events : LIFECYCLE_EVENT_TYPES,
    all_agents: s.agentId === null || s.agentId === undefined,
    agent_id: s.agentId ?? null,
    description: s.description ?? null,
    created_at: s.createdAt.toISOString(),
  };
}

function deliveryView(d: WebhookDelivery & { eventType: string }): Record<string, unknown> {
  return {
    id: d.id,
    event_id: d.eventId,
    event_type: d.eventType,
    status: d.status,
    attempts: d.attempts,
    last_status_code: d.lastStatusCode ?? null,
    last_error: d.lastError ?? null,
    last_attempt_at: d.lastAttemptAt?.toISOString() ?? null,
    delivered_at: d.deliveredAt?.toISOString() ?? null,
    created_at: d.createdAt.toISOString(),
  };
}
