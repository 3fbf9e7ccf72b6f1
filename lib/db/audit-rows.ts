import { fork, isPostgres, type Orm } from './orm.js';

/** An audit row as the trail writes it (see lib/audit.ts). */
export interface AuditRowValues {
  id: string;
  at: Date;
  eventType: string;
  outcome: string;
  actor: string;
  agentId: string | null;
  userId: string | null;
  toolId: string | null;
  credentialId: string | null;
  requestId: string | null;
  ip: string | null;
  detail: Record<string, unknown> | null;
}

const COLUMNS = [
  'id',
  'at',
  'event_type',
  'outcome',
  'actor',
  'agent_id',
  'user_id',
  'tool_id',
  'credential_id',
  'request_id',
  'ip',
  'detail',
];
const ROW_PLACEHOLDERS = `(${COLUMNS.map(() => '?').join(', ')})`;
// PostgreSQL: the group as one JSON parameter, turned into rows by the database (one serialization in the process).
const POSTGRES_GROUP_INSERT = `insert into audit_events (${COLUMNS.join(', ')}) select (r->>0)::uuid, (r->>1)::timestamptz, r->>2, r->>3, r->>4, r->>5, r->>6, r->>7, (r->>8)::uuid, r->>9, r->>10, case when json_typeof(r->11) = 'null' then null else r->11 end from json_array_elements(?::json) as r`;

const values = (r: AuditRowValues) => [
  r.id,
  r.at,
  r.eventType,
  r.outcome,
  r.actor,
  r.agentId,
  r.userId,
  r.toolId,
  r.credentialId,
  r.requestId,
  r.ip,
];

/**
 * A group of audit rows in one INSERT of plain SQL: the ORM's insertMany spent more on each row's metadata than the
 * database on the row (the gateway writes a row per call). SQLite: one multi-row INSERT, dates as the platform
 * stores them (epoch ms).
 */
export async function insertAuditRows(orm: Orm, rows: AuditRowValues[]): Promise<void> {
  try {
    await insert(orm, rows);
  } catch (err) {
    // Plain SQL gets the driver's own error: the ORM's kind (a unique violation on a retried group) is what callers test.
    throw orm.em.getDriver().convertException(err as Error);
  }
}

async function insert(orm: Orm, rows: AuditRowValues[]): Promise<void> {
  const em = fork(orm);
  if (isPostgres(orm)) {
    await em.getConnection().execute(POSTGRES_GROUP_INSERT, [JSON.stringify(rows.map((r) => [...values(r), r.detail]))], 'run');
    return;
  }
  const platform = em.getPlatform();
  const params = rows.flatMap((r) => {
    const v = values(r);
    v[1] = platform.processDateProperty(r.at) as Date;
    return [...v, r.detail === null ? null : JSON.stringify(r.detail)];
  });
  const sql = `insert into audit_events (${COLUMNS.join(', ')}) values ${rows.map(() => ROW_PLACEHOLDERS).join(', ')}`;
  await em.getConnection().execute(sql, params, 'run');
}
