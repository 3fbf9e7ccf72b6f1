import { loadConfig } from '../lib/config.js';
import { createServices } from '../lib/services.js';
import { connectWorker } from '../lib/temporal/connect.js';
import { createWorker } from './worker.js';

/** `npm run worker`: the Temporal worker alone, against TEMPORAL_ADDRESS (production shape). */
const config = loadConfig();
const services = await createServices(config);
const address = config.temporal.address ?? 'localhost:7233';
const connection = await connectWorker(address);
const worker = await createWorker({ connection, namespace: config.temporal.namespace, taskQueue: config.temporal.taskQueue, services });
services.log.info({ address, taskQueue: config.temporal.taskQueue }, 'worker started');
for (const signal of ['SIGINT', 'SIGTERM'] as const) process.once(signal, () => worker.shutdown());
await worker.run();
await connection.close();
await services.close();
services.log.info('worker stopped');
