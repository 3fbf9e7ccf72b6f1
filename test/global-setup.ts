import { mkdirSync, writeFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { bundleWorkflowCode } from '@temporalio/worker';
import type { TestProject } from 'vitest/node';
import { migrate, openOrm } from '../lib/db/orm.js';
import { startTemporalDevServer } from './support/temporal.js';
import { WORKFLOWS_PATH } from '../worker/worker.js';

declare module 'vitest' {
  export interface ProvidedContext {
    temporalAddress: string;
    workflowBundlePath: string;
    /** A fresh PostgreSQL database for this run, or '' for the embedded SQLite default. */
    databaseUrl: string;
  }
}

/** One Temporal dev server, one workflow bundle and one fresh database for the whole run. */
export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const env = await startTemporalDevServer();
  const tmp = resolve(import.meta.dirname, '.tmp');
  mkdirSync(tmp, { recursive: true });
  const bundle = await bundleWorkflowCode({ workflowsPath: WORKFLOWS_PATH, logger: quietLogger });
  const bundlePath = resolve(tmp, 'workflow-bundle.js');
  writeFileSync(bundlePath, bundle.code);

  const adminUrl = process.env.DATABASE_URL;
  let databaseUrl = '';
  let dropDatabase = async () => {};
  if (adminUrl) {
    const name = `broker_test_${process.pid}_${Date.now()}`;
    await adminSql(adminUrl, `create database ${name}`);
    const url = new URL(adminUrl);
    url.pathname = `/${name}`;
    databaseUrl = url.href;
    const orm = await openOrm({ databaseUrl, dataDir: tmp });
    await migrate(orm);
    await orm.close();
    dropDatabase = () => adminSql(adminUrl, `drop database if exists ${name} with (force)`);
  }

  project.provide('temporalAddress', env.address);
  project.provide('workflowBundlePath', bundlePath);
  project.provide('databaseUrl', databaseUrl);
  return async () => {
    await env.teardown();
    await dropDatabase();
  };
}

async function adminSql(url: string, sql: string): Promise<void> {
  const orm = await openOrm({ databaseUrl: url, dataDir: '.' });
  try {
    await orm.em.getConnection().execute(sql);
  } finally {
    await orm.close();
  }
}

const quietLogger = {
  log: () => {},
  trace: () => {},
  debug: () => {},
  info: () => {},
  warn: (m: string) => console.warn(m),
  error: (m: string) => console.error(m),
};
