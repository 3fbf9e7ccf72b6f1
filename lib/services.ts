import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { AuditTrail } from './audit.js';
import type { Config } from './config.js';
import { describeDatabase, migrate, openOrm, type Orm } from './db/orm.js';
import { createLogger, type Logger } from './log.js';
import { OutboundPolicy } from './net/outbound.js';
import { OAuthClients } from './oauth/client.js';
import { ClientKeys } from './oauth/client-keys.js';
import { ClientRegistrations } from './oauth/registrations.js';
import { EncryptionCodec } from './temporal/codec.js';
import { loadToolsFile, ToolRegistry } from './tools.js';
import { generateMasterKeySpec, Vault } from './vault/crypto.js';

/**
 * What both processes (API and worker) are built on: configuration, database, vault, tools, OAuth clients, the
 * outbound policy, the audit trail, logging. The API adds its own (api/services.ts); the worker needs nothing more.
 */
export interface Services {
  config: Config;
  log: Logger;
  orm: Orm;
  vault: Vault;
  tools: ToolRegistry;
  oauth: OAuthClients;
  audit: AuditTrail;
  /** Encrypts every Temporal payload; shared by the client and the worker. */
  codec: EncryptionCodec;
  /** The one outbound policy for URLs learned from remote parties. */
  outbound: OutboundPolicy;
  close(): Promise<void>;
}

export interface ServiceOptions {
  log?: Logger;
  tools?: ToolRegistry;
  fetch?: typeof fetch;
  /** Run pending migrations at start (the all-in-one dev start does; production runs `npm run migrate`). */
  migrate?: boolean;
}

export async function createServices(config: Config, opts: ServiceOptions = {}): Promise<Services> {
  const log = opts.log ?? createLogger(config.logLevel);
  const vault = new Vault(encryptionKey(config, log));
  const tools = opts.tools ?? loadTools(config, log);
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
      discoveryTtlMs: config.discoveryTtlSeconds * 1000,
      clientKeys: new ClientKeys(vault),
      exposeTokens: config.exposeTokens,
      ...(opts.fetch ? { fetch: opts.fetch } : {}),
    }),
    audit,
    codec: new EncryptionCodec(vault.deriveKeys('temporal-payload-codec')),
    outbound,
    close: async () => {
      await audit.flush();
      if (audit.backlog)
        log.error({ pending: audit.backlog }, 'shutting down with audit rows the database never took (they are in the log)');
      await orm.close();
      await outbound.close();
    },
  };
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
