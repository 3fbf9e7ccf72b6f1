import { z } from 'zod';
import { parseAllowlist, type OutboundSettings } from './net/outbound.js';
import type { WebhookRetry } from './domain.js';

/** The longest a credential may live, whatever the operator asks (DESIGN: never above 30 days). */
export const MAX_SECRETS_TTL_SECONDS = 2_592_000;
export const CALLBACK_PATH = '/api/v1/auth/tool/callback';
/** Where an authorization link leads first: our page checks who the user is, then sends them on. */
export const START_PATH = '/api/v1/auth/tool/start';

export class ConfigError extends Error {
  readonly code = 'invalid_configuration';
}

const bool = z.enum(['true', 'false', '1', '0', 'yes', 'no', '']).transform((v) => v === 'true' || v === '1' || v === 'yes');

const positiveInt = (name: string) =>
  z.coerce
    .number({ error: `${name} must be a number` })
    .int(`${name} must be a whole number`)
    .positive(`${name} must be positive`);

const envSchema = z.object({
  PORT: z.coerce.number().int().min(0).max(65535).default(3000),
  DEVELOPMENT_MODE: bool.default(false),
  DATA_DIR: z.string().default('data'),
  DATABASE_URL: z.string().optional(),
  TEMPORAL_ADDRESS: z.string().optional(),
  TEMPORAL_NAMESPACE: z.string().default('default'),
  TEMPORAL_TASK_QUEUE: z.string().default('credential-broker'),
  SECRETS_TTL_SECONDS: positiveInt('SECRETS_TTL_SECONDS')
    .max(MAX_SECRETS_TTL_SECONDS, `SECRETS_TTL_SECONDS must not exceed ${MAX_SECRETS_TTL_SECONDS} (30 days)`)
    .default(MAX_SECRETS_TTL_SECONDS),
  AUTHORIZATION_TIMEOUT_SECONDS: positiveInt('AUTHORIZATION_TIMEOUT_SECONDS').default(600),
  REFRESH_SKEW_SECONDS: positiveInt('REFRESH_SKEW_SECONDS').default(300),
  /** `credential.expiring` this long before a credential's TTL (or its refresh token) ends; at most half the life. */
  EXPIRING_WARNING_SECONDS: positiveInt('EXPIRING_WARNING_SECONDS').default(86_400),
  HOT_CACHE_MS: z.coerce.number().int().min(0).max(10_000).default(1000),
  AUDIT_BUFFER_ROWS: positiveInt('AUDIT_BUFFER_ROWS').max(1_000_000).default(10_000),
  OAUTH_TOOL_REDIRECT_URI: z.string().optional(),
  CREDENTIALS_ENCRYPTION_KEY: z.string().optional(),
  TOOLS_CONFIG: z.string().default('config/tools.yaml'),
  LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
  TRUST_CONFIG: z.string().default('config/trust.yaml'),
  AUTHORIZATION_SERVICE: z.enum(['rbac', 'none']).optional(),
  ROLES_CONFIG: z.string().default('config/roles.yaml'),
  USERS_CONFIG: z.string().default('config/users.yaml'),
  AGENT_ASSERTION_AUDIENCE: z.string().optional(),
  CORS_ORIGINS: z.string().optional(),
  CODEC_CORS_ORIGINS: z.string().optional(),
  /** The dev Temporal Web UI's port (`npm start`); the codec's default CORS origin follows it. */
  TEMPORAL_UI_PORT: z.coerce.number().int().min(1).max(65535).default(8233),
  RATE_LIMIT_AGENT_PER_MINUTE: positiveInt('RATE_LIMIT_AGENT_PER_MINUTE').default(600),
  RATE_LIMIT_IP_PER_MINUTE: positiveInt('RATE_LIMIT_IP_PER_MINUTE').default(1200),
  RATE_LIMIT_CALLBACK_IP_PER_MINUTE: positiveInt('RATE_LIMIT_CALLBACK_IP_PER_MINUTE').default(60),
  TRUST_PROXY: z.string().default('loopback'),
  OAUTH_ALLOW_HTTP_PROVIDERS: bool.default(false),
  OAUTH_CLIENT_METADATA_URL: z.string().optional(),
  OUTBOUND_ALLOW_LOOPBACK: bool.optional(),
  OUTBOUND_ALLOWLIST: z.string().optional(),
  /** When set, GET /metrics needs `Authorization: Bearer <this>`. */
  METRICS_TOKEN: z.string().min(16, 'METRICS_TOKEN must be at least 16 characters').optional(),
  /** How long what was discovered from an MCP server's URL is reused before discovery runs again. */
  DISCOVERY_TTL_SECONDS: positiveInt('DISCOVERY_TTL_SECONDS').default(600),
  /** false: the credentials API never returns access tokens (a tool's `expose_token` overrides); use the gateway. */
  EXPOSE_TOKENS: bool.default(true),
  /** Webhook deliveries: first retry after this, doubling up to the maximum, for this many hours, each attempt bounded. */
  WEBHOOK_RETRY_INITIAL_SECONDS: positiveInt('WEBHOOK_RETRY_INITIAL_SECONDS').default(5),
  WEBHOOK_RETRY_MAX_INTERVAL_SECONDS: positiveInt('WEBHOOK_RETRY_MAX_INTERVAL_SECONDS').default(3600),
  WEBHOOK_RETRY_HOURS: positiveInt('WEBHOOK_RETRY_HOURS').default(26),
  WEBHOOK_TIMEOUT_SECONDS: positiveInt('WEBHOOK_TIMEOUT_SECONDS').max(60).default(10),
});

/** Every environment variable the service reads through its configuration (deployment manifests are checked against it). */
export const CONFIG_VARIABLES: readonly string[] = Object.keys(envSchema.shape);

/** Where the broker publishes the public keys of its client assertions (private_key_jwt). */
export const JWKS_PATH = '/oauth/jwks.json';

export interface Config {
  port: number;
  developmentMode: boolean;
  dataDir: string;
  databaseUrl: string | undefined;
  temporal: { address: string | undefined; namespace: string; taskQueue: string };
  secretsTtlSeconds: number;
  authorizationTimeoutSeconds: number;
  refreshSkewSeconds: number;
  expiringWarningSeconds: number;
  /** How long an API process may reuse a hot-path read (see CredentialBroker). */
  hotCacheMs: number;
  /** Audit rows kept in memory while the database is away; when full, no credential is issued. */
  auditBufferRows: number;
  /** Whether the credentials API returns access tokens to agents (tools may override with `expose_token`). */
  exposeTokens: boolean;
  redirectUri: string;
  /**
   * Our Client ID Metadata Document's URL, which is also our client_id at authorization servers that
   * support such documents; null when the broker has no HTTPS URL to host it at.
   */
  clientMetadataUrl: string | null;
  /** How long an MCP server's discovered authorization server is reused (then discovered again). */
  discoveryTtlSeconds: number;
  /** How webhook deliveries are retried (at least a day by default). */
  webhooks: WebhookRetry;
  encryptionKey: string | undefined;
  toolsConfigPath: string;
  logLevel: z.infer<typeof envSchema>['LOG_LEVEL'];
  /** The broker's public origin (from the redirect URI): start links and the agent assertion audience. */
  publicOrigin: string;
  security: {
    trustConfigPath: string;
    authorizationService: 'rbac' | 'none';
    rolesPath: string;
    usersPath: string;
    assertionAudience: string;
    corsOrigins: string[];
    /** Origins of the Temporal Web UI allowed to call the codec server. */
    codecOrigins: string[];
    rateLimits: { agentPerMinute: number; ipPerMinute: number; callbackIpPerMinute: number };
    trustProxy: string;
    /** Plain-HTTP authorization servers: development mode, or an explicit opt-in for local providers. */
    allowHttpProviders: boolean;
    /** The outbound policy for URLs learned from remote parties (see lib/net/outbound.ts). */
    outbound: OutboundSettings;
    metricsToken: string | null;
  };
}

/** Reads configuration from the environment; throws ConfigError with every problem named. */
export function loadConfig(env: Record<string, string | undefined> = process.env): Config {
  const cleaned = Object.fromEntries(Object.entries(env).filter(([, v]) => v !== undefined && v !== ''));
  const parsed = envSchema.safeParse(cleaned);
  if (!parsed.success) {
    const problems = parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`);
    throw new ConfigError(`invalid configuration:\n  ${problems.join('\n  ')}`);
  }
  const e = parsed.data;
  const redirectUri = e.OAUTH_TOOL_REDIRECT_URI ?? `http://localhost:${e.PORT}${CALLBACK_PATH}`;
  validateRedirectUri(redirectUri, e.DEVELOPMENT_MODE);
  if (!e.DEVELOPMENT_MODE && !e.CREDENTIALS_ENCRYPTION_KEY) {
    throw new ConfigError('CREDENTIALS_ENCRYPTION_KEY is required outside development mode');
  }
  const authorizationService = e.AUTHORIZATION_SERVICE ?? (e.DEVELOPMENT_MODE ? 'none' : 'rbac');
  if (!e.DEVELOPMENT_MODE && authorizationService === 'none') {
    throw new ConfigError('AUTHORIZATION_SERVICE=none is allowed only in development mode');
  }
  const publicOrigin = new URL(redirectUri).origin;
  const clientMetadataUrl = resolveClientMetadataUrl(e.OAUTH_CLIENT_METADATA_URL, publicOrigin);
  const allowHttpProviders = e.DEVELOPMENT_MODE || e.OAUTH_ALLOW_HTTP_PROVIDERS;
  return {
    port: e.PORT,
    developmentMode: e.DEVELOPMENT_MODE,
    dataDir: e.DATA_DIR,
    databaseUrl: e.DATABASE_URL,
    temporal: { address: e.TEMPORAL_ADDRESS, namespace: e.TEMPORAL_NAMESPACE, taskQueue: e.TEMPORAL_TASK_QUEUE },
    secretsTtlSeconds: e.SECRETS_TTL_SECONDS,
    authorizationTimeoutSeconds: e.AUTHORIZATION_TIMEOUT_SECONDS,
    refreshSkewSeconds: e.REFRESH_SKEW_SECONDS,
    expiringWarningSeconds: e.EXPIRING_WARNING_SECONDS,
    hotCacheMs: e.HOT_CACHE_MS,
    auditBufferRows: e.AUDIT_BUFFER_ROWS,
    exposeTokens: e.EXPOSE_TOKENS,
    redirectUri,
    clientMetadataUrl,
    discoveryTtlSeconds: e.DISCOVERY_TTL_SECONDS,
    webhooks: {
      initialIntervalMs: e.WEBHOOK_RETRY_INITIAL_SECONDS * 1000,
      maximumIntervalMs: e.WEBHOOK_RETRY_MAX_INTERVAL_SECONDS * 1000,
      retryForMs: e.WEBHOOK_RETRY_HOURS * 3600 * 1000,
      attemptTimeoutMs: e.WEBHOOK_TIMEOUT_SECONDS * 1000,
    },
    encryptionKey: e.CREDENTIALS_ENCRYPTION_KEY,
    toolsConfigPath: e.TOOLS_CONFIG,
    logLevel: e.LOG_LEVEL,
    publicOrigin,
    security: {
      trustConfigPath: e.TRUST_CONFIG,
      authorizationService,
      rolesPath: e.ROLES_CONFIG,
      usersPath: e.USERS_CONFIG,
      assertionAudience: e.AGENT_ASSERTION_AUDIENCE ?? publicOrigin,
      corsOrigins: list(e.CORS_ORIGINS),
      codecOrigins: list(e.CODEC_CORS_ORIGINS ?? (e.DEVELOPMENT_MODE ? `http://localhost:${e.TEMPORAL_UI_PORT}` : '')),
      rateLimits: {
        agentPerMinute: e.RATE_LIMIT_AGENT_PER_MINUTE,
        ipPerMinute: e.RATE_LIMIT_IP_PER_MINUTE,
        callbackIpPerMinute: e.RATE_LIMIT_CALLBACK_IP_PER_MINUTE,
      },
      trustProxy: e.TRUST_PROXY,
      allowHttpProviders,
      outbound: {
        allowHttp: allowHttpProviders,
        // Local servers keep working wherever plain HTTP is allowed, unless the operator says otherwise.
        allowLoopback: e.OUTBOUND_ALLOW_LOOPBACK ?? allowHttpProviders,
        allowlist: outboundAllowlist(e.OUTBOUND_ALLOWLIST),
      },
      metricsToken: e.METRICS_TOKEN ?? null,
    },
  };
}

export function validateRedirectUri(uri: string, developmentMode: boolean): void {
  let url: URL;
  try {
    url = new URL(uri);
  } catch {
    throw new ConfigError(`OAUTH_TOOL_REDIRECT_URI is not a URL: ${uri}`);
  }
  if (url.pathname !== CALLBACK_PATH) {
    throw new ConfigError(`OAUTH_TOOL_REDIRECT_URI path must be ${CALLBACK_PATH}, got ${url.pathname}`);
  }
  if (url.protocol !== 'https:' && !(developmentMode && url.protocol === 'http:')) {
    throw new ConfigError('OAUTH_TOOL_REDIRECT_URI must use https outside development mode');
  }
  if (url.search || url.hash) throw new ConfigError('OAUTH_TOOL_REDIRECT_URI must not have a query or fragment');
}

/** Where the broker's own client metadata document lives by default. */
export const CLIENT_METADATA_PATH = '/oauth/client-metadata.json';

/**
 * A Client ID Metadata Document's URL is a client_id: https, a path, no fragment, no credentials, no dot
 * segments. By default it sits on the public origin, when that is HTTPS; `none` turns the feature off.
 */
function resolveClientMetadataUrl(value: string | undefined, publicOrigin: string): string | null {
  if (value === 'none') return null;
  if (value === undefined) return publicOrigin.startsWith('https:') ? `${publicOrigin}${CLIENT_METADATA_PATH}` : null;
  const problem = `OAUTH_CLIENT_METADATA_URL must be an https URL with a path and no fragment, query, credentials or dot segments (or "none")`;
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw new ConfigError(`${problem}: ${value}`);
  }
  const rawPath = value.replace(/^https:\/\/[^/]*/i, '');
  if (
    url.protocol !== 'https:' ||
    url.pathname === '/' ||
    value.includes('#') ||
    url.search ||
    url.username ||
    url.password ||
    /(^|\/)(\.|%2e){1,2}(\/|$)/i.test(rawPath)
  ) {
    throw new ConfigError(`${problem}: ${value}`);
  }
  return url.href;
}

function outboundAllowlist(value: string | undefined): string[] {
  const entries = list(value);
  try {
    parseAllowlist(entries);
  } catch (err) {
    throw new ConfigError(`OUTBOUND_ALLOWLIST: ${(err as Error).message}`);
  }
  return entries;
}

function list(value: string | undefined): string[] {
  return (value ?? '')
    .split(',')
    .map((o) => o.trim())
    .filter(Boolean);
}
