import express, { type Express } from 'express';
import helmet from 'helmet';
import type { Client } from '@temporalio/client';
import type { AuditTrail } from '../lib/audit.js';
import type { CredentialBroker } from '../lib/broker.js';
import { CALLBACK_PATH } from '../lib/config.js';
import type { Orm } from '../lib/db/orm.js';
import type { Logger } from '../lib/log.js';
import type { ToolRegistry } from '../lib/tools.js';
import type { Vault } from '../lib/vault/crypto.js';
import { requestContext } from './context.js';
import { errorHandler, notFound } from './errors.js';
import { callbackRoutes } from './routes/callback.js';
import { credentialRoutes } from './routes/credentials.js';

export interface AppDeps {
  orm: Orm;
  vault: Vault;
  tools: ToolRegistry;
  broker: CredentialBroker;
  audit: AuditTrail;
  temporal: Client;
  log: Logger;
  developmentMode: boolean;
  callbackWaitMs?: number;
}

export function createApp(deps: AppDeps): Express {
  const app = express();
  app.disable('x-powered-by');
  app.use(helmet());
  app.use(requestContext(deps.log));

  app.get('/healthz', (_req, res) => {
    res.json({ status: 'ok' });
  });
  app.get('/readyz', async (_req, res) => {
    const checks = { database: await check(() => deps.orm.em.getConnection().execute('select 1')), temporal: await check(() => deps.temporal.workflowService.getSystemInfo({})) };
    const ok = Object.values(checks).every((c) => c === 'ok');
    res.status(ok ? 200 : 503).json({ status: ok ? 'ready' : 'not_ready', checks });
  });

  app.use(
    '/api/v1/credentials',
    express.json({ limit: '16kb', strict: true, type: () => true }),
    credentialRoutes(deps),
  );
  app.use(CALLBACK_PATH, callbackRoutes({ ...deps, completionWaitMs: deps.callbackWaitMs }));
  app.use(notFound);
  app.use(errorHandler(deps.log));
  return app;
}

async function check(fn: () => Promise<unknown>): Promise<'ok' | 'unavailable'> {
  try {
    await fn();
    return 'ok';
  } catch {
    return 'unavailable';
  }
}
