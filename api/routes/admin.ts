import { Router, type Request } from 'express';
import { z } from 'zod';
import type { AuditTrail } from '../../lib/audit.js';
import type { CredentialBroker } from '../broker.js';
import { AuditEventSchema } from '../../lib/db/entities.js';
import { fork, type Orm } from '../../lib/db/orm.js';
import type { CredentialRecords } from '../../lib/credentials/records.js';
import { CREDENTIAL_STATUSES, credentialWorkflowId, OWNER_ID_PATTERN, UUID_PATTERN, type CredentialOwner } from '../../lib/domain.js';
import type { Gate } from '../auth.js';
import { ApiError, parseOr400 } from '../errors.js';
import { auditView, credentialView } from '../views.js';

export interface AdminDeps {
  orm: Orm;
  records: CredentialRecords;
  broker: CredentialBroker;
  gate: Gate;
  audit: AuditTrail;
}

const ownerId = z.string().regex(OWNER_ID_PATTERN);
const page = {
  limit: z.coerce.number().int().min(1).max(200).default(50),
  offset: z.coerce.number().int().min(0).max(1_000_000).default(0),
};
export const credentialQuery = z
  .object({
    agent_id: ownerId.optional(),
    user_id: ownerId.optional(),
    tool_id: ownerId.optional(),
    status: z.enum(CREDENTIAL_STATUSES).optional(),
    ...page,
  })
  .strict();
export const auditQuery = z
  .object({
    from: z.iso.datetime({ offset: true }).optional(),
    to: z.iso.datetime({ offset: true }).optional(),
    agent_id: ownerId.optional(),
    user_id: ownerId.optional(),
    tool_id: ownerId.optional(),
    event_type: z
      .string()
      .max(80)
      .regex(/^[a-z_]+(\.[a-z_]+)*$/)
      .optional(),
    ...page,
  })
  .strict();
/** Credentials revoked at once while offboarding a user. */
const OFFBOARD_CONCURRENCY = 8;
export const revokeBody = z.object({ reason: z.string().min(1).max(200).optional() }).strict();

/** The admin API (scope `credential:admin` for both agent and user): list, revoke, offboard, audit. */
export function adminRoutes(deps: AdminDeps): Router {
  const router = Router();
  const { gate, broker } = deps;
  router.use(gate.authenticate());
  router.use(async (req, _res, next) => {
    await gate.authorize(req, 'credential:admin');
    next();
  });

  router.get('/credentials', async (req, res) => {
    const q = parseOr400(credentialQuery, req.query, 'query');
    const where = {
      ...(q.agent_id ? { agentId: q.agent_id } : {}),
      ...(q.user_id ? { userId: q.user_id } : {}),
      ...(q.tool_id ? { toolId: q.tool_id } : {}),
      ...(q.status ? { status: q.status } : {}),
    };
    const rows = await deps.records.list(where, { limit: q.limit + 1, offset: q.offset });
    res.json({
      items: rows.slice(0, q.limit).map((r) => credentialView(r, { withOwner: true })),
      next_offset: rows.length > q.limit ? q.offset + q.limit : null,
    });
  });

  router.delete('/credentials/:credentialId', async (req, res) => {
    const body = parseOr400(revokeBody, req.body ?? {}, 'body');
    const id = String(req.params.credentialId);
    const row = UUID_PATTERN.test(id) ? await deps.records.byId(id) : null;
    if (!row) throw new ApiError('credential_not_found', 'no credential with this id');
    if (row.deletedAt) throw new ApiError('credential_ended', `the credential already ended (${row.status})`);
    const owner: CredentialOwner = { agentId: row.agentId, userId: row.userId, toolId: row.toolId };
    await revokeAs(req, owner, body.reason ?? 'revoked by an administrator');
    res.json(credentialView((await deps.records.byId(row.id)) ?? row, { withOwner: true }));
  });

  router.post('/users/:userId/revoke-all', async (req, res) => {
    const userId = parseOr400(ownerId, req.params.userId, 'userId');
    const body = parseOr400(revokeBody, req.body ?? {}, 'body');
    const live = await deps.records.liveOf(userId);
    const owners = new Map(live.map((r) => [credentialWorkflowId(r), { agentId: r.agentId, userId: r.userId, toolId: r.toolId }]));
    // A few at a time: one slow provider does not hold up the user's other credentials.
    const results: Record<string, unknown>[] = [];
    const queue = [...owners.values()];
    const revokeNext = async (): Promise<void> => {
      for (let owner = queue.shift(); owner; owner = queue.shift()) {
        let view;
        try {
          view = await revokeAs(req, owner, body.reason ?? 'user offboarded');
        } catch (err) {
          // One credential that could not be revoked now does not hide what happened to the others.
          req.log.warn({ err: (err as Error).message, toolId: owner.toolId }, 'offboarding: a revocation failed');
          results.push({ agent_id: owner.agentId, tool_id: owner.toolId, status: 'error', revocation: null });
          continue;
        }
        results.push({
          agent_id: owner.agentId,
          tool_id: owner.toolId,
          status: view?.phase ?? 'not_running',
          // The receipt: revoked at the provider, the provider has no revocation, or it failed (and its code).
          revocation: view?.revocation?.outcome ?? null,
          ...(view?.revocation?.code ? { provider_error: view.revocation.code } : {}),
        });
      }
    };
    await Promise.all(Array.from({ length: OFFBOARD_CONCURRENCY }, revokeNext));
    await deps.audit.record(null, {
      eventType: 'admin.offboard',
      outcome: 'success',
      actor: actorOf(req),
      userId,
      requestId: req.id,
      ip: req.ip ?? null,
      detail: { revoked: results.length, receipts: results },
    });
    res.json({ user_id: userId, revoked: results });
  });

  router.get('/audit', async (req, res) => {
    const q = parseOr400(auditQuery, req.query, 'query');
    await deps.audit.flush();
    const at = { ...(q.from ? { $gte: new Date(q.from) } : {}), ...(q.to ? { $lte: new Date(q.to) } : {}) };
    const where = {
      ...(q.from || q.to ? { at } : {}),
      ...(q.agent_id ? { agentId: q.agent_id } : {}),
      ...(q.user_id ? { userId: q.user_id } : {}),
      ...(q.tool_id ? { toolId: q.tool_id } : {}),
      ...(q.event_type ? { eventType: q.event_type } : {}),
    };
    const rows = await fork(deps.orm).find(AuditEventSchema, where, {
      orderBy: { at: 'desc', id: 'asc' },
      limit: q.limit + 1,
      offset: q.offset,
    });
    res.json({ items: rows.slice(0, q.limit).map(auditView), next_offset: rows.length > q.limit ? q.offset + q.limit : null });
  });

  return router;

  async function revokeAs(req: Request, owner: CredentialOwner, reason: string) {
    const view = await broker.revoke(owner, { actor: actorOf(req), reason });
    await deps.audit.record(null, {
      eventType: 'admin.revoke',
      outcome: view ? 'success' : 'failure',
      actor: actorOf(req),
      ...owner,
      credentialId: view?.credentialId ?? null,
      requestId: req.id,
      ip: req.ip ?? null,
      detail: {
        reason,
        ...(view?.revocation ? { revocation: view.revocation.outcome, provider_error: view.revocation.code ?? null } : {}),
      },
    });
    return view;
  }
}

function actorOf(req: Request): string {
  return `admin:${req.caller!.userId} via agent:${req.caller!.agentId}`;
}
