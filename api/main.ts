import { loadConfig } from '../lib/config.js';
import { createApiServices } from './services.js';
import { connectClient } from '../lib/temporal/connect.js';
import { startApi } from './server.js';

/** `npm run api`: the HTTP API alone, against TEMPORAL_ADDRESS (production shape). */
const config = loadConfig();
const services = await createApiServices(config);
const temporal = await connectClient(config.temporal.address ?? 'localhost:7233', config.temporal.namespace, services.codec);
const api = await startApi(services, temporal);
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, async () => {
    await api.close();
    await temporal.connection.close();
    await services.close();
  });
}
