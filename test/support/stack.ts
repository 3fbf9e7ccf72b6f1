import { randomBytes, randomUUID } from 'node:crypto';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { stringify as stringifyYaml } from 'yaml';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { Client, Connection } from '@temporalio/client';
import { DefaultLogger, NativeConnection, Runtime, type Worker } from '@temporalio/worker';
import { startApi, type RunningApi } from '../../api/server.js';
import { CALLBACK_PATH, loadConfig } from '../../lib/config.js';
import { migrate } from '../../lib/db/orm.js';
import { createLogger } from '../../lib/log.js';
import { createApiServices, type ApiServices } from '../../api/services.js';
import { toTool, ToolRegistry, type ToolConfig } from '../../lib/tools.js';
import { SANDBOX_SCOPES, startSandbox, type Sandbox } from '../../sandbox/provider.js';
import { createWorker } from '../../worker/worker.js';
import { Rbac } from '../../api/identity/rbac.js';
import type { TrustConfigInput } from '../../api/identity/trust.js';
import { consent, type ConsentOptions, type ConsentResult } from './browser.js';
import { introspectAt } from './introspect.js';

/** Where the run's shared parts are: the Temporal server, the prebuilt workflow bundle, the database. */
export interface RunSettings {
  temporalAddress: string;
  workflowBundlePath: string;
  /** A PostgreSQL URL, or '' for the embedded SQLite. */
  databaseUrl: string;
}

export interface HarnessOptions {
  secretsTtlSeconds?: number;
  accessTokenTtlSeconds?: number;
  refreshTokenTtlSeconds?: number;
  authorizationTimeoutSeconds?: number;
  refreshSkewSeconds?: number;
  maxCyclesPerRun?: number;
  /** Run no worker in-process: the test spawns worker processes (to kill them) with `workerEnv`. */
  externalWorker?: boolean;
  /** Another Temporal server than the run's (a test that restarts its own). */
  temporalAddress?: string;
  /** Send the sandbox tool's token requests here (a fault proxy) instead of to the provider. */
  tokenUrl?: string;
  /** More tools beside `sandbox` (an MCP server with nothing but its URL, say). */
  extraTools?: ToolConfig[];
  /** Extra environment settings for the service. */
  env?: Record<string, string>;
  /** Listen on this port (a benchmark that must know its callback URL before the service starts); default: any. */
  port?: number;
  /** 'sqlite' forces the embedded database; otherwise the run's database (PostgreSQL in CI). */
  database?: 'sqlite' | 'default';
  /**
   * Production mode: agent credentials, gateway-signed identities, RBAC, HTTPS (the harness plays the
   * TLS-terminating proxy for the public origin https://broker.test).
   */
  production?: { trust: TrustConfigInput; rolesYaml?: string; usersYaml?: string; env?: Record<string, string> };
  /** Development mode with user identities verified all the same (X-User-Identity instead of X-User-Id). */
  trust?: TrustConfigInput;
}

/** A caller in development mode (plain headers) or with explicit headers (production). */
export type CallerSpec = { agent: string; user: string } | { headers: Record<string, string> };

export interface Harness {
  baseUrl: string;
  callbackPrefix: string;
  sandbox: Sandbox;
  services: ApiServices;
  api: RunningApi;
  client: Client;
  worker: Worker | null;
  taskQueue: string;
  /** The environment for `tsx worker/main.ts` to serve this harness's task queue. */
  workerEnv: Record<string, string>;
  /** Every log line written by the service and the Temporal runtime in this process. */
  logs: string[];
  /** An HTTP call to the API as a given agent and user (development-mode headers). */
  call(method: string, path: string, who: CallerSpec, body?: unknown): Promise<{ status: number; json: any; text: string }>;
  /** The user's browser journey through the provider, ending at the callback page. */
  consent(authorizationUrl: string, opts: ConsentOptions): Promise<ConsentResult>;
  /** The broker's public origin (http://127.0.0.1:port, or https://broker.test in production mode). */
  publicOrigin: string;
  introspect(token: string, hint?: string): Promise<{ active: boolean; [k: string]: unknown }>;
  close(): Promise<void>;
}

const logs: string[] = [];
const PRODUCTION_ORIGIN = 'https://broker.test';
let runtimeInstalled = false;

/** The real service in-process: API, worker, vault and the sandbox authorization server (tests and benchmarks). */
export async function startStack(run: RunSettings, opts: HarnessOptions = {}): Promise<Harness> {
  if (!runtimeInstalled) {
    runtimeInstalled = true;
    try {
      Runtime.install({
        logger: new DefaultLogger('INFO', (entry) =>
          logs.push(JSON.stringify(entry, (_k, v) => (typeof v === 'bigint' ? v.toString() : v))),
        ),
      });
    } catch {
      // The process already has a Temporal runtime (a benchmark installs its own): its logs go there.
    }
  }
  const server: Server = createServer();
  await new Promise<void>((resolve) => server.listen(opts.port ?? 0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  const baseUrl = `http://127.0.0.1:${port}`;
  const prod = opts.production;
  const publicOrigin = prod ? PRODUCTION_ORIGIN : baseUrl;
  const redirectUri = `${publicOrigin}${CALLBACK_PATH}`;
  const sandbox = await startSandbox({
    redirectUris: [redirectUri],
    accessTokenTtlSeconds: opts.accessTokenTtlSeconds ?? 3600,
    ...(opts.refreshTokenTtlSeconds ? { refreshTokenTtlSeconds: opts.refreshTokenTtlSeconds } : {}),
  });

  const databaseUrl = opts.database === 'sqlite' ? '' : run.databaseUrl;
  const taskQueue = `broker-test-${randomUUID()}`;
  const config = loadConfig({
    DEVELOPMENT_MODE: prod ? 'false' : 'true',
    ...(prod ? { OAUTH_ALLOW_HTTP_PROVIDERS: 'true', AUTHORIZATION_SERVICE: 'rbac', ...prod.env } : {}),
    PORT: String(port),
    DATA_DIR: mkdtempSync(join(tmpdir(), 'broker-test-')),
    DATABASE_URL: databaseUrl || undefined,
    TEMPORAL_ADDRESS: opts.temporalAddress ?? run.temporalAddress,
    TEMPORAL_TASK_QUEUE: taskQueue,
    OAUTH_TOOL_REDIRECT_URI: redirectUri,
    CREDENTIALS_ENCRYPTION_KEY: `test:${randomBytes(32).toString('base64')}`,
    SECRETS_TTL_SECONDS: String(opts.secretsTtlSeconds ?? 3600),
    AUTHORIZATION_TIMEOUT_SECONDS: String(opts.authorizationTimeoutSeconds ?? 300),
    REFRESH_SKEW_SECONDS: String(opts.refreshSkewSeconds ?? 300),
    LOG_LEVEL: 'info',
    ...opts.env,
  });
  const sandboxTool = {
    id: 'sandbox',
    tool_type: 'api' as const,
    connection_params: { type: 'http' as const, url: sandbox.issuer },
    auth: {
      type: 'oauth2' as const,
      issuer: sandbox.issuer,
      ...(opts.tokenUrl ? { token_url: opts.tokenUrl } : {}),
      client_id: sandbox.clientId,
      client_secret: sandbox.clientSecret,
      scopes: SANDBOX_SCOPES,
      // What a step-up may add: the sandbox's OpenID scopes, nothing it does not know.
      allowed_scopes: ['openid', 'offline_access', ...SANDBOX_SCOPES],
    },
    manifest: [],
  };
  const toolConfigs = [sandboxTool, ...(opts.extraTools ?? [])];
  const tools = new ToolRegistry(toolConfigs.map((t) => toTool(t as ToolConfig)));
  const log = createLogger(
    'info',
    new Writable({
      write(chunk, _enc, cb) {
        logs.push(String(chunk));
        cb();
      },
    }),
  );
  const rbac = prod
    ? Rbac.fromYaml(
        prod.rolesYaml ?? readFileSync('config/roles.yaml', 'utf8'),
        prod.usersYaml ?? readFileSync('config/users.yaml', 'utf8'),
      )
    : null;
  const services = await createApiServices(config, { log, tools, trust: prod ? prod.trust : (opts.trust ?? null), rbac });
  await migrate(services.orm);

  const nativeConnection = await NativeConnection.connect({ address: config.temporal.address! });
  const worker = opts.externalWorker
    ? null
    : await createWorker({
        connection: nativeConnection,
        namespace: config.temporal.namespace,
        taskQueue,
        services,
        workflowBundle: { codePath: run.workflowBundlePath },
      });
  const workerDone = worker?.run();
  const toolsFile = join(config.dataDir, 'tools.yaml');
  writeFileSync(toolsFile, stringifyYaml({ tools: toolConfigs }));
  const workerEnv: Record<string, string> = {
    DEVELOPMENT_MODE: config.developmentMode ? 'true' : 'false',
    DATA_DIR: config.dataDir,
    ...(databaseUrl ? { DATABASE_URL: databaseUrl } : {}),
    TEMPORAL_ADDRESS: config.temporal.address!,
    TEMPORAL_TASK_QUEUE: taskQueue,
    OAUTH_TOOL_REDIRECT_URI: redirectUri,
    CREDENTIALS_ENCRYPTION_KEY: config.encryptionKey!,
    TOOLS_CONFIG: toolsFile,
    WORKFLOW_BUNDLE_PATH: run.workflowBundlePath,
    WORKER_METRICS_PORT: '0',
    LOG_LEVEL: 'warn',
    // Webhook retry settings reach spawned workers too.
    ...Object.fromEntries(Object.entries(opts.env ?? {}).filter(([k]) => k.startsWith('WEBHOOK_'))),
  };
  const connection = await Connection.connect({ address: config.temporal.address! });
  const client = new Client({ connection, namespace: config.temporal.namespace, dataConverter: { payloadCodecs: [services.codec] } });
  const api = await startApi(services, client, { server, broker: opts.maxCyclesPerRun ? { maxCyclesPerRun: opts.maxCyclesPerRun } : {} });

  return {
    baseUrl,
    callbackPrefix: redirectUri,
    sandbox,
    services,
    api,
    client,
    worker,
    taskQueue,
    workerEnv,
    logs,
    publicOrigin,
    consent: (authorizationUrl, consentOpts) =>
      consent(authorizationUrl, redirectUri, {
        ...consentOpts,
        ...(prod ? { brokerOrigin: { public: PRODUCTION_ORIGIN, local: baseUrl } } : {}),
      }),
    async call(method, path, who, body) {
      const identity = 'headers' in who ? who.headers : { 'x-agent-id': who.agent, 'x-user-id': who.user };
      const res = await fetch(`${baseUrl}${path}`, {
        method,
        headers: {
          ...(prod ? { 'x-forwarded-proto': 'https' } : {}),
          ...identity,
          ...(body === undefined ? {} : { 'content-type': 'application/json' }),
        },
        ...(body === undefined ? {} : { body: typeof body === 'string' ? body : JSON.stringify(body) }),
      });
      const text = await res.text();
      let json: unknown;
      try {
        json = JSON.parse(text);
      } catch {
        json = null;
      }
      return { status: res.status, json, text };
    },
    async introspect(token, hint) {
      const res = await introspectAt(sandbox.issuer, { id: sandbox.clientId, secret: sandbox.clientSecret }, token, hint);
      return (await res.json()) as { active: boolean };
    },
    async close() {
      await api.close();
      worker?.shutdown();
      await workerDone;
      await connection.close();
      await nativeConnection.close();
      await services.close();
      await sandbox.close();
    },
  };
}

/** A fresh agent and user, so runs never share a workflow. */
export function freshOwner(label = 'test'): { agent: string; user: string } {
  const id = randomUUID().slice(0, 8);
  return { agent: `agent-${label}-${id}`, user: `user-${label}-${id}@example.com` };
}
