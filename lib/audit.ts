import { randomUUID } from 'node:crypto';
import { UniqueConstraintViolationException } from '@mikro-orm/core';
import type { Logger } from 'pino';
import { AuditEventSchema } from './db/entities.js';
import { fork, type Em, type Orm } from './db/orm.js';
import { insertAuditRows } from './db/audit-rows.js';
import { isDatabaseUnreachable } from './db/outage.js';
import { auditDropped, auditPending } from './metrics.js';

/**
 * Every audit event by name, and when it is written: one list, so an event cannot be misspelled into a new one.
 * (`authorization.start` is the user's browser at the start page; `authorization.started`, the workflow beginning
 * the authorization.)
 */
export const AUDIT_EVENTS = {
  'auth.denied': 'an API request whose agent or user could not be authenticated',
  'access.denied': 'an authenticated request refused by access control (RBAC)',
  'authorization.started': 'the workflow began an authorization (the link the agent gets)',
  'authorization.start': 'a browser opened the link at the start page (denied: another user, or no sign-in)',
  'authorization.callback': "the provider's redirect reached the callback (denied: another browser or user, a used or unknown state)",
  'authorization.completed': 'the code exchange finished (or failed)',
  'credential.authorization_required': 'an agent was given an authorization link',
  'credential.issued': 'an agent was given an access token',
  'credential.status_read': 'an agent read a credential status',
  'credential.refresh_requested': 'an agent asked for a refresh (it saw a 401)',
  'credential.refreshed': 'a refresh finished (or failed, with its code)',
  'credential.machine_token': 'a machine (client credentials) token was fetched',
  'credential.identity_exchanged':
    "a user's enterprise identity was exchanged for the tool's token (ID-JAG or token exchange; denied: none presented, or it expired)",
  'credential.step_up': 'an agent asked for wider scopes',
  'credential.checked': 'a credential was checked against its MCP server',
  'credential.revoke': 'an agent revoked a credential',
  'credential.revoked_at_provider': 'the provider revoked the tokens',
  'credential.ended': 'a credential ended (expired, revoked, reauthorization required, timed out, failed)',
  'admin.revoke': 'an admin revoked one credential',
  'user.disconnect': 'a user disconnected one of their connections (or all of them) on their connections page',
  'admin.offboard': "an admin revoked all of a user's credentials",
  'gateway.tool_call': 'an MCP tools/call through the gateway (tool name, upstream outcome, duration; never arguments)',
  'gateway.proxy_request': 'an HTTP request through the proxy (method, path, upstream status, duration; never bodies)',
  'gateway.session_refused': 'an MCP session id presented by a caller that did not create it',
  'codec.decode': 'an operator decoded Temporal payloads',
  'codec.denied': 'a codec request was refused',
} as const;

export type AuditEventType = keyof typeof AUDIT_EVENTS;

export interface AuditInput {
  eventType: AuditEventType;
  outcome: 'success' | 'failure' | 'denied' | string;
  actor: string;
  agentId?: string | null;
  userId?: string | null;
  toolId?: string | null;
  credentialId?: string | null;
  requestId?: string | null;
  ip?: string | null;
  /** Metadata only: never a token, secret, code or verifier. */
  detail?: Record<string, unknown>;
}

export type AuditRow = ReturnType<typeof toRow>;

const FLUSH_MS = 200;
const BATCH = 500;
/** How long a row nobody waits for may wait to join a group. */
const GROUP_MS = 50;
/** Rows held for a database that is away, at most; past it the API stops issuing credentials (see `saturated`). */
export const DEFAULT_MAX_PENDING = 10_000;

/**
 * Writes an audit row and the same event to the structured log (for a SIEM). High-volume events of the
 * agent's hot path (token issued, status read) are written in groups, each request waiting for its group's
 * insert; their log line is written at once. Rows that cannot be written because the database is unreachable are kept, in order, and
 * written when it is back; an audit trail with holes is no audit trail. The buffer is bounded: when it is full
 * the trail is `saturated` and the API refuses to issue credentials rather than issue them unaudited.
 */
export class AuditTrail {
  /** Rows waiting for the database; `settle` answers the request that waits for its row to be safe. */
  private pending: { row: AuditRow; settle?: () => void }[] = [];
  private timer: NodeJS.Timeout | undefined;
  private timerDue = 0;
  private flushing: Promise<void> = Promise.resolve();
  private retryDelayMs = FLUSH_MS;
  /** Set when a write found the database unreachable; cleared when waiting rows could be written again. */
  private unreachable = false;

  constructor(
    private readonly log: Logger,
    private readonly orm?: Orm,
    private readonly maxPending = DEFAULT_MAX_PENDING,
  ) {}

  /** True while the rows waiting for the database fill the buffer: nothing that must be audited may happen. */
  get saturated(): boolean {
    return this.pending.length >= this.maxPending;
  }

  /** Rows waiting for the database. */
  get backlog(): number {
    return this.pending.length;
  }

  /** The row for an event, its log line written now: for a caller that inserts it in its own transaction. */
  prepare(event: AuditInput): AuditRow {
    const row = toRow(event);
    if (this.log.isLevelEnabled('info'))
      this.log.info({ audit: { ...row, at: row.at.toISOString() } }, `audit ${event.eventType} ${event.outcome}`);
    return row;
  }

  /** Inserts a prepared row in the caller's transaction (it stands or falls with the caller's work). */
  async insert(tx: Em, row: AuditRow): Promise<void> {
    await tx.insert(AuditEventSchema, row);
  }

  /**
   * `em`: the unit of work to write in (a transaction's: if the insert fails, so does the caller's work); null
   * when the row stands alone: then it is written now, or kept until the database can take it.
   */
  async record(em: Em | null, event: AuditInput, opts: { batched?: boolean; deferred?: boolean } = {}): Promise<void> {
    const row = this.prepare(event);
    if (em) return this.insert(em, row);
    if (!this.orm) throw new Error('the audit trail has no database to write to');
    // While the database is away, rows queue behind those already waiting (rows carry their time, `at`), and
    // the request goes on: the row is kept in memory until the database is back.
    if (this.unreachable) {
      this.enqueue(row);
      return;
    }
    // The hot path's rows are written in groups (one insert for all the rows that arrived while the last one
    // ran), and the request waits for its group: an answer never leaves before its audit row is stored.
    if (opts.batched) {
      await new Promise<void>((settle) => this.enqueue(row, settle));
      return;
    }
    // Rows nobody waits for (a gateway call that has already happened) join a group written within GROUP_MS:
    // larger groups, one insert for many calls.
    if (opts.deferred) {
      this.enqueue(row);
      return;
    }
    try {
      await fork(this.orm).insert(AuditEventSchema, row);
    } catch (err) {
      if (!isDatabaseUnreachable(err)) throw err;
      this.unreachable = true;
      this.enqueue(row);
    }
  }

  private enqueue(row: AuditRow, settle?: () => void): void {
    if (this.pending.length >= this.maxPending) {
      // Only denials and reads reach here once saturated (issuing stops): still, say so loudly and count it.
      auditDropped.inc();
      this.log.error({ eventType: row.eventType, pending: this.pending.length }, 'audit buffer full: row dropped');
      settle?.();
      return;
    }
    this.pending.push({ row, ...(settle ? { settle } : {}) });
    auditPending.set(this.pending.length);
    if (!this.unreachable) this.schedule(settle || this.pending.length >= BATCH ? 0 : GROUP_MS);
  }

  /** A flush in `ms` at the latest (an earlier one already planned stands). */
  private schedule(ms: number): void {
    const due = Date.now() + ms;
    if (this.timer && this.timerDue <= due) return;
    clearTimeout(this.timer);
    this.timerDue = due;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      void this.flush();
    }, ms).unref();
  }

  /** Writes what is waiting, in order; called on a timer, when a batch fills, and at shutdown. */
  async flush(): Promise<void> {
    this.flushing = this.flushing.then(() => this.writeWaiting());
    await this.flushing;
  }

  private async writeWaiting(): Promise<void> {
    while (this.pending.length && this.orm) {
      const group = this.pending.slice(0, BATCH);
      try {
        await this.insertOnce(group.map((p) => p.row));
      } catch (err) {
        if (isDatabaseUnreachable(err)) {
          this.unreachable = true;
          if (this.retryDelayMs === FLUSH_MS)
            this.log.warn({ pending: this.pending.length }, 'database unreachable: audit rows are kept until it is back');
          // Kept in memory now: nobody waits on them any more.
          for (const p of this.pending) p.settle?.();
          for (const p of this.pending) delete p.settle;
          this.schedule(this.retryDelayMs);
          this.retryDelayMs = Math.min(this.retryDelayMs * 2, 5_000);
          return;
        }
        // A row the database refuses for good cannot be kept forever; it is in the log all the same.
        auditDropped.inc(group.length);
        this.log.error({ err: { message: (err as Error).message }, lost: group.length }, 'audit batch refused by the database');
      }
      this.pending.splice(0, group.length);
      for (const p of group) p.settle?.();
      auditPending.set(this.pending.length);
      this.retryDelayMs = FLUSH_MS;
      this.unreachable = false;
    }
  }

  /** Inserts rows; a retry of a batch whose commit was lost on the wire skips the rows that did land. */
  private async insertOnce(rows: AuditRow[]): Promise<void> {
    try {
      await insertAuditRows(this.orm!, rows);
    } catch (err) {
      if (!(err instanceof UniqueConstraintViolationException)) throw err;
      const landed = new Set(
        (await fork(this.orm!).find(AuditEventSchema, { id: { $in: rows.map((r) => r.id) } }, { fields: ['id'] })).map((r) => r.id),
      );
      const rest = rows.filter((r) => !landed.has(r.id));
      if (rest.length) await insertAuditRows(this.orm!, rest);
    }
  }
}

function toRow(event: AuditInput) {
  return {
    id: randomUUID(),
    at: new Date(),
    eventType: event.eventType,
    outcome: event.outcome,
    actor: event.actor,
    agentId: event.agentId ?? null,
    userId: event.userId ?? null,
    toolId: event.toolId ?? null,
    credentialId: event.credentialId ?? null,
    requestId: event.requestId ?? null,
    ip: event.ip ?? null,
    detail: event.detail ?? null,
  };
}
