import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { Connection } from '@temporalio/client';
import { DefaultLogger, Runtime } from '@temporalio/worker';
import { startApi } from '../api/server.js';
import { loadConfig } from '../lib/config.js';
import { createLogger } from '../lib/log.js';
import { createApiServices } from '../api/services.js';
import { connectClient, connectWorker } from '../lib/temporal/connect.js';
import { loadToolsFile, toTool, ToolRegistry } from '../lib/tools.js';
import { SANDBOX_SCOPES, startSandbox } from '../sandbox/provider.js';
import { SEARCH_ATTRIBUTE_KEYS } from '../workflows/messages.js';
import { createWorker } from '../worker/worker.js';
import { ensureTemporalCli } from './temporal-cli.js';

/**
 * `npm start`: everything on one machine with embedded defaults. A Temporal dev server persisted under
 * ./data (unless TEMPORAL_ADDRESS is set), the SQLite vault (unless DATABASE_URL is set), the worker, the
 * API, and in development mode a sandbox authorization server configured as tool `sandbox`.
 */
process.env.DEVELOPMENT_MODE ??= 'true';
// All configuration is read and checked before anything starts: a mistake is the only thing printed.
const { config, tools } = (() => {
  try {
    const loaded = loadConfig();
    return { config: loaded, tools: new ToolRegistry(existsSync(loaded.toolsConfigPath) ? loadToolsFile(loaded.toolsConfigPath) : []) };
  } catch (err) {
    process.stderr.write(`${(err as Error).message}\n`);
    process.exit(2);
  }
})();
// People read `npm start` on a terminal; anything else (a file, a collector) gets JSON.
const log = createLogger(config.logLevel, undefined, { readable: config.developmentMode && process.stdout.isTTY === true });
// The SDK's own logs (the workflow bundler's progress among them) only when they matter, in the same log.
Runtime.install({
  logger: new DefaultLogger('WARN', (entry) =>
    entry.level === 'ERROR' ? log.error(entry.meta ?? {}, entry.message) : log.warn(entry.meta ?? {}, entry.message),
  ),
});
const stops: (() => Promise<void> | void)[] = [];
let stopping = false;

let temporalAddress = config.temporal.address;
if (!temporalAddress) {
  const cli = ensureTemporalCli((m) => log.info(m));
  mkdirSync(config.dataDir, { recursive: true });
  const port = Number(process.env.TEMPORAL_PORT ?? 7233);
  const uiPort = Number(process.env.TEMPORAL_UI_PORT ?? 8233);
  const child = startDevServer(cli, join(config.dataDir, 'temporal.db'), port, uiPort, config.temporal.namespace);
  stops.push(() => stopChild(child));
  temporalAddress = `127.0.0.1:${port}`;
  await waitForTemporal(temporalAddress);
  log.info({ address: temporalAddress, webUi: `http://localhost:${uiPort}` }, 'temporal dev server running');
}

if (config.developmentMode && process.env.SANDBOX !== 'false' && !tools.get('sandbox')) {
  const sandbox = await startSandbox({
    port: Number(process.env.SANDBOX_PORT ?? 3100),
    host: 'localhost',
    redirectUris: [config.redirectUri],
    accessTokenTtlSeconds: Number(process.env.SANDBOX_ACCESS_TOKEN_TTL_SECONDS ?? 3600),
    // Its grants outlive a restart, like the credentials in Temporal and the vault.
    stateFile: join(config.dataDir, 'sandbox-state.json'),
  });
  stops.push(() => sandbox.close());
  tools.add(
    toTool({
      id: 'sandbox',
      name: 'Sandbox authorization server',
      tool_type: 'api',
      connection_params: { type: 'http', url: sandbox.issuer },
      auth: {
        type: 'oauth2',
        issuer: sandbox.issuer,
        client_id: sandbox.clientId,
        client_secret: sandbox.clientSecret,
        scopes: SANDBOX_SCOPES,
        allowed_scopes: ['openid', 'offline_access', ...SANDBOX_SCOPES],
      },
      manifest: [],
    }),
  );
  log.info({ issuer: sandbox.issuer }, 'sandbox authorization server running as tool "sandbox" (any login and password work)');
}

const services = await createApiServices(
  { ...config, temporal: { ...config.temporal, address: temporalAddress } },
  { log, tools, migrate: true },
);
const workerConnection = await connectWorker(temporalAddress);
const worker = await createWorker({
  connection: workerConnection,
  namespace: config.temporal.namespace,
  taskQueue: config.temporal.taskQueue,
  services,
});
const workerDone = worker.run();
const temporal = await connectClient(temporalAddress, config.temporal.namespace, services.codec);
const api = await startApi(services, temporal);
log.info({ api: `http://localhost:${api.port}`, developmentMode: config.developmentMode }, 'credential broker ready');

async function shutdown(): Promise<void> {
  if (stopping) return;
  stopping = true;
  log.info('shutting down');
  setTimeout(() => process.exit(1), 15_000).unref();
  await api.close();
  // The SDK may already be draining (it handles SIGINT and SIGTERM itself).
  if (worker.getState() === 'RUNNING') worker.shutdown();
  await workerDone.catch(() => undefined);
  await temporal.connection.close();
  await workerConnection.close();
  await services.close();
  for (const stop of stops.reverse()) await stop();
  process.exit(0);
}
process.once('SIGINT', shutdown);
process.once('SIGTERM', shutdown);

function startDevServer(cli: string, dbFile: string, port: number, uiPort: number, namespace: string): ChildProcess {
  const args = [
    'server',
    'start-dev',
    '--ip',
    '127.0.0.1',
    '--port',
    String(port),
    '--ui-port',
    String(uiPort),
    '--db-filename',
    dbFile,
    '--namespace',
    namespace,
    '--log-level',
    'error',
  ];
  for (const key of SEARCH_ATTRIBUTE_KEYS) args.push('--search-attribute', `${key.name}=Keyword`);
  // The Web UI decodes payloads through the API's codec endpoint.
  args.push('--ui-codec-endpoint', `http://localhost:${config.port}/codec`);
  // Its own process group: Ctrl-C reaches only us, and we stop it last, after the worker has let go of it (no
  // burst of connection errors at every shutdown).
  const child = spawn(cli, args, { stdio: ['ignore', 'inherit', 'inherit'], detached: true });
  // Never leave the dev server behind, however this process ends.
  process.once('exit', () => child.kill('SIGTERM'));
  child.once('exit', (code) => {
    if (!stopping) {
      log.error({ code }, 'temporal dev server exited');
      process.exit(1);
    }
  });
  return child;
}

async function waitForTemporal(address: string): Promise<void> {
  const deadline = Date.now() + 60_000;
  for (;;) {
    try {
      const connection = await Connection.connect({ address, connectTimeout: 1000 });
      await connection.close();
      return;
    } catch (err) {
      if (Date.now() > deadline) throw err;
      await sleep(250);
    }
  }
}

async function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null) return;
  const exited = new Promise((resolve) => child.once('exit', resolve));
  child.kill('SIGTERM');
  await Promise.race([exited, sleep(5000)]);
  if (child.exitCode === null) child.kill('SIGKILL');
}
