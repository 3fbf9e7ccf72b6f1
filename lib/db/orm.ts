import { mkdirSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { MikroORM, type Options } from '@mikro-orm/core';
import type { EntityManager } from '@mikro-orm/knex';
import { Migrator } from '@mikro-orm/migrations';
import { migrationsList } from '../../migrations/index.js';
import { entities } from './entities.js';

export type Orm = MikroORM;
export type Em = EntityManager;

export interface DatabaseOptions {
  /** postgres://… for PostgreSQL; unset for the embedded SQLite file under dataDir. */
  databaseUrl: string | undefined;
  dataDir: string;
  debug?: boolean;
}

export function describeDatabase(opts: DatabaseOptions): string {
  return opts.databaseUrl ? redactUrl(opts.databaseUrl) : `sqlite:${sqlitePath(opts.dataDir)}`;
}

export async function openOrm(opts: DatabaseOptions): Promise<Orm> {
  const common: Options = {
    entities,
    extensions: [Migrator],
    migrations: { migrationsList, transactional: true, snapshot: false, silent: true },
    debug: opts.debug ?? false,
    allowGlobalContext: false,
    forceUtcTimezone: true,
  };
  if (opts.databaseUrl) {
    if (!/^postgres(ql)?:\/\//.test(opts.databaseUrl)) {
      throw new Error(`DATABASE_URL must be a postgres:// URL, got ${redactUrl(opts.databaseUrl)}`);
    }
    const { PostgreSqlDriver } = await import('@mikro-orm/postgresql');
    return MikroORM.init({
      ...common,
      driver: PostgreSqlDriver,
      clientUrl: opts.databaseUrl,
      pool: { min: 0, max: 10, acquireTimeoutMillis: 5000 },
      driverOptions: { connection: { connectionTimeoutMillis: 3000 } },
    });
  }
  const file = sqlitePath(opts.dataDir);
  mkdirSync(dirname(file), { recursive: true });
  const { BetterSqliteDriver } = await import('@mikro-orm/better-sqlite');
  return MikroORM.init({ ...common, driver: BetterSqliteDriver, dbName: file });
}

export async function migrate(orm: Orm): Promise<string[]> {
  const done = await orm.getMigrator().up();
  return done.map((m) => m.name);
}

/** Whether the database is PostgreSQL (else the embedded SQLite). */
export function isPostgres(orm: Orm): boolean {
  return orm.config.get('driver')?.name === 'PostgreSqlDriver';
}

/** A fresh entity manager for one unit of work (a request, an activity run). */
export function fork(orm: Orm): Em {
  return orm.em.fork() as Em;
}

function sqlitePath(dataDir: string): string {
  return resolve(dataDir, 'broker.sqlite');
}

function redactUrl(url: string): string {
  return url.replace(/\/\/([^:/@]+):([^@]*)@/, '//$1:***@');
}

/** Database settings alone, for one-shot commands (migrations, the agents CLI) that need no other config. */
export function databaseOptionsFromEnv(env: Record<string, string | undefined> = process.env): DatabaseOptions {
  return { databaseUrl: env.DATABASE_URL || undefined, dataDir: env.DATA_DIR || 'data' };
}
