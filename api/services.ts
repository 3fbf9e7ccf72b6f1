import { existsSync } from 'node:fs';
import { CredentialRecords } from '../lib/credentials/records.js';
import type { Config } from '../lib/config.js';
import { createLogger, type Logger } from '../lib/log.js';
import { createServices, type ServiceOptions, type Services } from '../lib/services.js';
import { AgentRegistry } from './identity/agents.js';
import { Rbac } from './identity/rbac.js';
import { loadTrustConfig, parseTrustConfig, TrustManager, type TrustConfigInput } from './identity/trust.js';

/** The API process's wiring: the shared services, and who is asking (agents, user identities, permissions). */
export interface ApiServices extends Services {
  agents: AgentRegistry;
  /** Null when user identities are not verified (development mode without a trust config). */
  trust: TrustManager | null;
  /** Null when AUTHORIZATION_SERVICE=none (development mode only). */
  rbac: Rbac | null;
  /** Reads of credential and authorization-request rows (and the callback's claim). */
  records: CredentialRecords;
}

export interface ApiServiceOptions extends ServiceOptions {
  /** Given directly instead of read from TRUST_CONFIG / ROLES_CONFIG / USERS_CONFIG (tests). */
  trust?: TrustConfigInput | null;
  rbac?: Rbac | null;
}

/** Reads the identity configuration first (a bad file stops the API before it touches anything), then the rest. */
export async function createApiServices(config: Config, opts: ApiServiceOptions = {}): Promise<ApiServices> {
  const log = opts.log ?? createLogger(config.logLevel);
  const trust = createTrust(config, log, opts.trust);
  const rbac =
    opts.rbac !== undefined
      ? opts.rbac
      : config.security.authorizationService === 'rbac'
        ? Rbac.fromFiles(config.security.rolesPath, config.security.usersPath)
        : null;
  if (config.developmentMode && !trust) log.warn('development mode: user identities are taken from X-User-Id without verification');
  if (!rbac) log.warn('development mode: AUTHORIZATION_SERVICE=none, access control is off');
  const core = await createServices(config, { ...opts, log });
  return {
    ...core,
    agents: new AgentRegistry(core.orm, { assertionAudience: config.security.assertionAudience }),
    trust,
    rbac,
    records: new CredentialRecords(core.orm),
  };
}

function createTrust(config: Config, log: Logger, given: TrustConfigInput | null | undefined): TrustManager | null {
  const warn = (message: string, detail: Record<string, unknown>) => log.warn(detail, message);
  if (given !== undefined) return given === null ? null : new TrustManager(parseTrustConfig(given, config.developmentMode), warn);
  if (!existsSync(config.security.trustConfigPath)) {
    if (config.developmentMode) return null;
    throw new Error(`TRUST_CONFIG ${config.security.trustConfigPath} is missing: production needs trusted issuers for user identities`);
  }
  const trust = loadTrustConfig(config.security.trustConfigPath, config.developmentMode);
  return trust.enabled ? new TrustManager(trust, warn) : null;
}
