import type { RequestListener } from 'node:http';
import cors from 'cors';
import express, { type Express, type RequestHandler } from 'express';
import helmet from 'helmet';
import type { Client } from '@temporalio/client';
import type { AuditTrail } from '../lib/audit.js';
import type { AgentRegistry } from './identity/agents.js';
import type { Rbac } from './identity/rbac.js';
import type { TrustManager } from './identity/trust.js';
import type { CredentialBroker } from './broker.js';
import { CALLBACK_PATH, JWKS_PATH, START_PATH, type Config } from '../lib/config.js';
import type { Orm } from '../lib/db/orm.js';
import type { Logger } from '../lib/log.js';
import { registry } from '../lib/metrics.js';
import type { OutboundPolicy } from '../lib/net/outbound.js';
import type { OAuthClients } from '../lib/oauth/client.js';
import type { CredentialRecords } from '../lib/credentials/records.js';
import { clientMetadataDocument } from '../lib/oauth/client-metadata.js';
import { exchangesIdentity, type ToolRegistry } from '../lib/tools.js';
import type { EncryptionCodec } from '../lib/temporal/codec.js';
import { secretsEqual, type Vault } from '../lib/vault/crypto.js';
import { Gate } from './auth.js';
import { ConsentCookies } from './consent-cookie.js';
import { requestContext } from './context.js';
import { limiter } from './limits.js';
import { ApiError, errorHandler, notFound } from './errors.js';
import { adminRoutes } from './routes/admin.js';
import { codecRoutes } from './routes/codec.js';
import { callbackRoutes } from './routes/callback.js';
import { credentialRoutes } from './routes/credentials.js';
import { startRoutes } from './routes/start.js';
import { toolRoutes } from './routes/tools.js';
import { webhookRoutes } from './routes/webhooks.js';
import { meRoutes } from './routes/me.js';
import { docsRoutes } from './docs.js';
import { reconnectRoutes } from './routes/reconnect.js';
import { RECONNECT_PATH } from '../lib/credentials/reconnect.js';
import { WebhookStore } from '../lib/webhooks/store.js';
import { CredentialWaits } from './waits.js';
import { DEFAULT_MCP_SETTINGS, McpGateway, type McpGatewaySettings } from './gateway/mcp.js';
import { proxyRoutes } from './gateway/proxy.js';
import { ProxyLane } from './gateway/proxy-lane.js';
import { McpLane } from './gateway/mcp-lane.js';
import type { Lane, LaneSettings } from './gateway/lane.js';
import { PresentedIdentities } from '../lib/credentials/identities.js';

export interface AppDeps {
  config: Config;
  orm: Orm;
  vault: Vault;
  tools: ToolRegistry;
  broker: CredentialBroker;
  audit: AuditTrail;
  agents: AgentRegistry;
  trust: TrustManager | null;
  rbac: Rbac | null;
  codec: EncryptionCodec;
  temporal: Client;
  log: Logger;
  oauth: OAuthClients;
  outbound: OutboundPolicy;
  records: CredentialRecords;
  /** Long polls in this process (the server keeps one so tests can look at it). */
  waits?: CredentialWaits;
  callbackWaitMs?: number;
  mcpSettings?: Partial<McpGatewaySettings> | undefined;
}

export function createApp(deps: AppDeps): Express {
  const { config } = deps;
  const app = express();
  app.disable('x-powered-by');
  // Tokens are never cached, so no ETag (it would also hash every response body).
  app.set('etag', false);
  app.set('trust proxy', trustProxy(config.security.trustProxy));
  // The headers that matter for a JSON API; the HTML pages add their own strict CSP (see html.ts).
  const security = helmet({
    contentSecurityPolicy: false,
    crossOriginOpenerPolicy: false,
    originAgentCluster: false,
    xDnsPrefetchControl: false,
    xDownloadOptions: false,
    xPermittedCrossDomainPolicies: false,
    xXssProtection: false,
  });
  app.use(security);
  app.use(requestContext(deps.log));

  app.get('/healthz', (_req, res) => {
    res.json({ status: 'ok' });
  });
  app.get('/readyz', async (_req, res) => {
    const checks = {
      database: await check(() => deps.orm.em.getConnection().execute('select 1')),
      temporal: await check(() => deps.temporal.workflowService.getSystemInfo({})),
    };
    const ok = Object.values(checks).every((c) => c === 'ok');
    res.status(ok ? 200 : 503).json({ status: ok ? 'ready' : 'not_ready', checks });
  });

  const metricsToken = config.security.metricsToken;
  app.get('/metrics', async (req, res, next) => {
    // Metrics name tools and counts; where the operator sets METRICS_TOKEN, only the scraper sees them.
    if (metricsToken && !secretsEqual(req.get('authorization') ?? '', `Bearer ${metricsToken}`)) {
      res.setHeader('WWW-Authenticate', 'Bearer realm="metrics"');
      return next(new ApiError('metrics_authentication_required', 'the metrics endpoint needs its bearer token'));
    }
    res.type(registry.contentType).send(await registry.metrics());
  });

  const perIp = limiter(config.security.rateLimits.ipPerMinute, 'ip');
  if (config.clientMetadataUrl) {
    // Public by design: authorization servers fetch it to learn who we are (and may cache it for an hour).
    const document = clientMetadataDocument(config.clientMetadataUrl, config.redirectUri, config.publicOrigin);
    app.get(new URL(config.clientMetadataUrl).pathname, perIp, (_req, res) => {
      res.set('cache-control', 'public, max-age=3600').json(document);
    });
  }

  // The contract and its reference page (public: no secrets in it).
  // Every request from here on counts against the per-address limit, once (a fast lane counts its own in the same
  // limiter, which then skips it here).
  app.use(perIp);
  app.use(docsRoutes(config.publicOrigin));

  // Public by design: the keys authorization servers verify our client assertions with (private_key_jwt).
  app.get(JWKS_PATH, async (_req, res) => {
    res.set('cache-control', 'public, max-age=300').json(await deps.oauth.jwks(deps.tools.list()));
  });

  if (!config.developmentMode) {
    app.use('/api', requireHttps);
    app.use('/codec', requireHttps);
  }
  const origins = new Set(config.security.corsOrigins);
  app.use('/api/v1', cors({ origin: (origin, cb) => cb(null, origin !== undefined && origins.has(origin)), maxAge: 600 }));

  const gate = new Gate({
    ...deps,
    developmentMode: config.developmentMode,
    identities: {
      store: new PresentedIdentities(deps.orm, deps.vault),
      exchanged: (issuer) => deps.tools.list().some((t) => exchangesIdentity(t) && t.auth.identity_provider?.issuer === issuer),
    },
  });
  const consentCookies = new ConsentCookies(deps.vault, !config.developmentMode);
  const waits = deps.waits ?? new CredentialWaits();
  const json = express.json({ limit: '16kb', strict: true, type: () => true });
  const limits = config.security.rateLimits;
  app.use(
    '/api/v1/credentials',
    json,
    credentialRoutes({ ...deps, gate, waits, agentLimiter: limiter(limits.agentPerMinute, 'agent'), exposeTokens: config.exposeTokens }),
  );
  app.use('/api/v1/admin', json, adminRoutes({ ...deps, gate }));
  // The gateway: agents call tools through it with the user's credential, which they never see.
  const mcp = new McpGateway({ ...deps, gate }, { ...DEFAULT_MCP_SETTINGS, ...deps.mcpSettings });
  app.locals.mcp = mcp;
  app.use('/api/v1/mcp', mcp.router());
  app.use('/api/v1/proxy', proxyRoutes({ ...deps, gate }));
  const laneSettings: LaneSettings = {
    developmentMode: config.developmentMode,
    trust: app.get('trust proxy fn') as (address: string, hop: number) => boolean,
    perIp,
    app,
    // What helmet sets on every answer (cors sets nothing for a request without an Origin, which no lane takes).
    securityHeaders: headersSetBy(security),
    log: deps.log,
  };
  app.locals.lanes = [
    new ProxyLane({ ...deps, gate }, laneSettings),
    new McpLane({ ...deps, gate }, (id) => mcp.session(id), laneSettings),
  ] satisfies Lane[];
  app.use('/api/v1/tools', toolRoutes({ ...deps, gate }));
  app.use('/api/v1/webhooks', json, webhookRoutes({ ...deps, gate, webhooks: new WebhookStore(deps.orm, deps.vault) }));
  const browserLimit = limiter(limits.callbackIpPerMinute, 'ip');
  // The user's own page: every connection across agents and tools, and taking them back.
  app.use('/api/v1/me/connections', meRoutes({ ...deps, publicOrigin: config.publicOrigin, secureCookies: !config.developmentMode }));
  app.use(RECONNECT_PATH, browserLimit, reconnectRoutes(deps));
  app.use(START_PATH, browserLimit, startRoutes({ ...deps, consentCookies }));
  app.use('/codec', codecRoutes({ ...deps, developmentMode: config.developmentMode, allowedOrigins: config.security.codecOrigins }));
  app.use(CALLBACK_PATH, browserLimit, callbackRoutes({ ...deps, consentCookies, completionWaitMs: deps.callbackWaitMs }));
  app.use(notFound);
  app.use(errorHandler(deps.log));
  return app;
}

/** The server's request listener: the gateway's fast lanes first (see gateway/lane.ts), Express for the rest. */
export function requestListener(app: Express): RequestListener {
  const lanes = app.locals.lanes as Lane[];
  return (req, res) => {
    const lane = lanes.find((l) => l.takes(req));
    if (!lane) return void app(req, res);
    lane.serve(req, res, () => void app(req, res)).catch(() => res.destroy());
  };
}

/** The headers a middleware that sets fixed headers (helmet) sets, read once by running it on a recorder. */
function headersSetBy(middleware: RequestHandler): [string, string][] {
  const set: [string, string][] = [];
  const recorder = { setHeader: (name: string, value: unknown) => set.push([name, String(value)]), removeHeader: () => {} };
  void middleware({} as never, recorder as never, () => {});
  return set;
}

const requireHttps: RequestHandler = (req, _res, next) => {
  next(req.secure ? undefined : new ApiError('https_required', 'HTTPS is required'));
};

function trustProxy(setting: string): boolean | number | string {
  if (setting === 'true') return true;
  if (setting === 'false') return false;
  return /^\d+$/.test(setting) ? Number(setting) : setting;
}

async function check(fn: () => Promise<unknown>): Promise<'ok' | 'unavailable'> {
  try {
    await fn();
    return 'ok';
  } catch {
    return 'unavailable';
  }
}
