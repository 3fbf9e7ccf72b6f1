import { randomUUID } from 'node:crypto';
import type { Logger } from 'pino';
import { AuditEventSchema } from './db/entities.js';
import { fork, type Em, type Orm } from './db/orm.js';

export interface AuditInput {
  eventType: string;
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

const FLUSH_MS = 200;
const MAX_BUFFER = 500;

/**
 * Writes an audit row and the same event to the structured log (for a SIEM). High-volume events of the
 * agent's hot path (token issued, status read) are batched into the table every 200 ms; their log line is
 * written at once, so a crash loses at most that window from the table, never from the log.
 */
export class AuditTrail {
  private buffer: ReturnType<typeof toRow>[] = [];
  private timer: NodeJS.Timeout | undefined;
  private flushing: Promise<void> = Promise.resolve();

  constructor(
    private readonly log: Logger,
    private readonly orm?: Orm,
  ) {}

  /** `em`: the unit of work to write in (a transaction's); null when the row stands alone (or is batched). */
  async record(em: Em | null, event: AuditInput, opts: { batched?: boolean } = {}): Promise<void> {
    const row = toRow(event);
    if (this.log.isLevelEnabled('info')) this.log.info({ audit: { ...row, at: row.at.toISOString() } }, `audit ${event.eventType} ${event.outcome}`);
    if (opts.batched && this.orm) {
      this.buffer.push(row);
      if (this.buffer.length >= MAX_BUFFER) await this.flush();
      else this.timer ??= setTimeout(() => void this.flush(), FLUSH_MS).unref();
      return;
    }
    if (!em && !this.orm) throw new Error('the audit trail has no database to write to');
    await (em ?? fork(this.orm!)).insert(AuditEventSchema, row);
  }

  /** Writes what is batched; called on a timer and at shutdown. */
  async flush(): Promise<void> {
    clearTimeout(this.timer);
    this.timer = undefined;
    const rows = this.buffer.splice(0);
    if (rows.length && this.orm) {
      this.flushing = this.flushing.then(() =>
        fork(this.orm!)
          .insertMany(AuditEventSchema, rows)
          .then(() => undefined)
          .catch((err: Error) => this.log.error({ err: { message: err.message }, lost: rows.length }, 'audit batch could not be written')),
      );
    }
    await this.flushing;
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
