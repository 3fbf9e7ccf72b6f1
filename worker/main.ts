import { createServer } from 'node:http';
import { loadConfig } from '../lib/config.js';
import { registry } from '../lib/metrics.js';
import { createServices } from '../lib/services.js';
import { connectWorker } from '../lib/temporal/connect.js';
import { createWorker } from './worker.js';

/** `npm run worker`: the Temporal worker alone, against TEMPORAL_ADDRESS (production shape). */
const config = loadConfig();
// The worker never checks identities or permissions: it needs no trust config, roles or users.
const services = await createServices(config);
const address = config.temporal.address ?? 'localhost:7233';
const connection = await connectWorker(address);
// A prebuilt workflow bundle (WORKFLOW_BUNDLE_PATH) skips bundling at start.
const bundlePath = process.env.WORKFLOW_BUNDLE_PATH;
const worker = await createWorker({
  connection,
  namespace: config.temporal.namespace,
  taskQueue: config.temporal.taskQueue,
  services,
  ...(bundlePath ? { workflowBundle: { codePath: bundlePath } } : {}),
});
services.log.info({ address, taskQueue: config.temporal.taskQueue }, 'worker started');
// The worker's own metrics (refreshes, provider health) for Prometheus.
const metricsPort = Number(process.env.WORKER_METRICS_PORT ?? 9464);
const metricsServer = createServer(async (req, res) => {
  if (req.url !== '/metrics') {
    res.writeHead(404).end();
    return;
  }
  res.writeHead(200, { 'content-type': registry.contentType }).end(await registry.metrics());
}).listen(metricsPort);
for (const signal of ['SIGINT', 'SIGTERM'] as const)
  process.once(signal, () => {
    if (worker.getState() === 'RUNNING') worker.shutdown();
  });
await worker.run();
metricsServer.close();
await connection.close();
await services.close();
services.log.info('worker stopped');
