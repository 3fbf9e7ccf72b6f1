import { fileURLToPath } from 'node:url';
import { Worker, type NativeConnection, type WorkerOptions } from '@temporalio/worker';
import { createActivities } from '../activities/index.js';
import type { Services } from '../lib/services.js';

export const WORKFLOWS_PATH = fileURLToPath(new URL('../workflows/index.ts', import.meta.url));

export interface WorkerParams {
  connection: NativeConnection;
  namespace: string;
  taskQueue: string;
  services: Services;
  /** A prebuilt bundle (tests build one per run); otherwise the workflows are bundled at start. */
  workflowBundle?: WorkerOptions['workflowBundle'];
}

export async function createWorker(p: WorkerParams): Promise<Worker> {
  const { services } = p;
  return Worker.create({
    connection: p.connection,
    namespace: p.namespace,
    taskQueue: p.taskQueue,
    dataConverter: { payloadCodecs: [services.codec] },
    activities: createActivities({
      orm: services.orm,
      vault: services.vault,
      tools: services.tools,
      oauth: services.oauth,
      audit: services.audit,
      log: services.log,
      redirectUri: services.config.redirectUri,
      publicOrigin: services.config.publicOrigin,
      outbound: services.outbound,
      webhooks: services.config.webhooks,
    }),
    ...(p.workflowBundle ? { workflowBundle: p.workflowBundle } : { workflowsPath: WORKFLOWS_PATH }),
  });
}
