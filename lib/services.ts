import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { AuditTrail } from './audit.js';
import { AgentRegistry } from './auth/agents.js';
import { Rbac } from './auth/rbac.js';
import { loadTrustConfig, parseTrustConfig, TrustManager, type TrustConfigInput } from './auth/trust.js';
import type { Config } from './config.js';
import { describeDatabase, migrate, openOrm, type Orm } from './db/orm.js';
import { createLogger, type Logger } from './log.js';
import { CredentialRecords } from './credential-records.js';
import { OutboundPolicy } from './net/outbound.js';
import { OAuthClients } from './oauth/client.js';
import { ClientRegistrations } from './oauth/registrations.js';
import { EncryptionCodec } from './temporal/codec.js';
import { loadToolsFile, ToolRegistry } from './tools.js';
import { generateMasterKeySpec, Vault } from './vault/crypto.js';

/** What both processes (API and worker) share: configuration, database, vault, tools, logging. */
export interface Services {
  config: Config;
  log: Logger;
  orm: Orm;
  vault: Vault;
  tools: ToolRegistry;
  oauth: OAuthClients;
  audit: AuditTrail;
  agents: AgentRegistry;
  /** Null when user identities are not verified (development mode without a trust config). */
  trust: TrustManager | null;
  /** Null when AUTHORIZATION_SERVICE=none (development mode only). */
  rbac: Rbac | null;
  /** Encrypts every Temporal payload; shared by the client and the worker. */
  codec: EncryptionCodec;
  /** The one outbound policy for URLs learned from remote parties. */
  outbound: OutboundPolicy;
  /** Reads of credential and authorization-request rows (and the callback's claim). */
  records: CredentialRecords;
  close(): Promise<void>;
}

export interface ServiceOptions {
  log?: Logger;
  tools?: ToolRegistry;
  fetch?: typeof fetch;
  /** Run pending migrations at start (the all-in-one dev start does; production runs `npm run migrate`). */
  migrate?: boolean;
  /** Given directly instead of read from TRUST_CONFIG / ROLES_CONFIG / USERS_CONFIG (tests). */
  trust?: TrustConfigInput | null;
  rbac?: Rbac | null;
}

export async function createServices(config: Config, opts: ServiceOptions = {}): Promise<Services> {
  const log = opts.log ?? createLogger(config.logLevel);
  const vault = new Vault(encryptionKey(config, log));
  const tools = opts.tools ?? loadTools(config, log);
  const trust = createTrust(config, log, opts.trust);
  const rbac =
    opts.rbac !== undefined
      ? opts.rbac
      : config.security.authorizationService === 'rbac'
        ? Rbac.fromFiles(config.security.rolesPath, config.security.usersPath)
        : null;
  // A process given null on purpose (the worker) checks no identities: nothing to warn about.
  if (config.developmentMode && !trust && opts.trust === undefined)
    log.warn('development mode: user identities are taken from X-User-Id without verification');
  if (!rbac && opts.rbac === undefined) log.warn('development mode: AUTHORIZATION_SERVICE=none, access control is off');
  const orm = await openOrm({ databaseUrl: config.databaseUrl, dataDir: config.dataDir });
  if (opts.migrate) {
    const applied = await migrate(orm);
    if (applied.length) log.info({ applied }, 'database migrated');
  }
  const audit = new AuditTrail(log, orm, config.auditBufferRows);
  const outbound = new OutboundPolicy(config.security.outbound);
  log.info({ database: describeDatabase(config), tools: tools.list().map((t) => t.id), keyId: vault.currentKeyId }, 'services ready');
  return {
    config,
    log,
    orm,
    vault,
    tools,
    oauth: new OAuthClients({
      allowInsecure: config.security.allowHttpProviders,
      outbound,
      registrations: new ClientRegistrations(orm, vault),
      redirectUri: config.redirectUri,
      clientMetadataUrl: config.clientMetadataUrl,
      ...(opts.fetch ? { fetch: opts.fetch } : {}),
    }),
    audit,
    agents: new AgentRegistry(orm, { assertionAudience: config.security.assertionAudience }),
    trust,
    rbac,
    codec: new EncryptionCodec(vault.deriveKeys('temporal-payload-codec')),
    outbound,
    records: new CredentialRecords(orm),
    close: async () => {
      await audit.flush();
      if (audit.backlog)
        log.error({ pending: audit.backlog }, 'shutting down with audit rows the database never took (they are in the log)');
      await orm.close();
      await outbound.close();
    },
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

function loadTools(config: Config, log: Logger): ToolRegistry {
  if (!existsSync(config.toolsConfigPath)) {
    log.warn({ path: config.toolsConfigPath }, 'tools config not found; no tools configured');
    return new ToolRegistry();
  }
  return new ToolRegistry(loadToolsFile(config.toolsConfigPath));
}

/** Production must be given a key; development mode keeps a generated one under the data folder. */
function encryptionKey(config: Config, log: Logger): string {
  if (config.encryptionKey) return config.encryptionKey;
  if (!config.developmentMode) throw new Error('CREDENTIALS_ENCRYPTION_KEY is required outside development mode');
  const file = join(config.dataDir, 'encryption.key');
  if (existsSync(file)) return readFileSync(file, 'utf8').trim();
  mkdirSync(config.dataDir, { recursive: true });
  writeFileSync(file, `${generateMasterKeySpec()}\n`, { mode: 0o600 });
  log.warn({ file }, 'development mode: generated an encryption key; set CREDENTIALS_ENCRYPTION_KEY in production');
  return readFileSync(file, 'utf8').trim();
}
