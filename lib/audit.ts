import { randomUUID } from 'node:crypto';
import type { Logger } from 'pino';
import { AuditEventSchema } from './db/entities.js';
import type { Em } from './db/orm.js';

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

/** Writes an audit row and the same event to the structured log (for a SIEM). */
export class AuditTrail {
  constructor(private readonly log: Logger) {}

  async record(em: Em, event: AuditInput): Promise<void> {
    const row = {
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
    await em.insert(AuditEventSchema, row);
    this.log.info({ audit: { ...row, at: row.at.toISOString() } }, `audit ${event.eventType} ${event.outcome}`);
  }
}
