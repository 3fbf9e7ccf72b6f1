import { ApplicationFailure, Context } from '@temporalio/activity';
import type * as oidc from 'openid-client';
import type { AuditEventType, AuditInput, AuditTrail } from '../lib/audit.js';
import type { Credential } from '../lib/db/entities.js';
import type { Em, Orm } from '../lib/db/orm.js';
import { CredentialStore, type TokenChanges } from '../lib/credentials/store.js';
import { persistThroughOutage } from '../lib/db/outage.js';
import { ownerOf, secretContext } from '../lib/credentials/records.js';
import type { CredentialOwner, WebhookRetry } from '../lib/domain.js';
import type { Logger } from '../lib/log.js';
import { recordProviderCall, refreshes } from '../lib/metrics.js';
import type { OAuthClients, ToolClient } from '../lib/oauth/client.js';
import { ExchangeStepError } from '../lib/oauth/enterprise.js';
import { classifyOAuthError } from '../lib/oauth/errors.js';
import type { Tool, ToolRegistry } from '../lib/tools.js';
import type { Vault } from '../lib/vault/crypto.js';
import type { OutboundPolicy } from '../lib/net/outbound.js';

export interface ActivityDeps {
  orm: Orm;
  vault: Vault;
  tools: ToolRegistry;
  oauth: OAuthClients;
  audit: AuditTrail;
  log: Logger;
  redirectUri: string;
  /** The broker's public origin: users are sent to its start page, which checks who they are. */
  publicOrigin: string;
  /** Webhook receivers are reached through the same outbound policy as every remote party. */
  outbound: OutboundPolicy;
  webhooks: WebhookRetry;
}

/** What activities return about tokens: timestamps and flags, never the tokens. */
export interface TokenMetadata {
  generation: number;
  acquiredAt: number;
  accessExpiresAt: number | null;
  /** Null for machine credentials, which renew until revoked. */
  ttlExpiresAt: number | null;
  hasRefreshToken: boolean;
  scope: string | null;
  /** When the refresh token dies, where known (older activities did not say). */
  refreshExpiresAt?: number | null;
}

export interface BeginAuthorizationInput {
  owner: CredentialOwner;
  workflowId: string;
  credentialId: string;
  authorizationRequestId: string;
  authorizationTimeoutSeconds: number;
  /** Step-up: scopes to ask for beyond the tool's own. */
  extraScopes?: string[];
}

export const ACTOR = 'credential-workflow';

/**
 * What the activities share: the attempts running per credential in this process, and how a provider's answer
 * is turned into columns, committed, and audited; how a provider's refusal becomes a stable failure.
 */
export function createToolkit(deps: ActivityDeps) {
  const { vault, audit } = deps;
  const store = new CredentialStore(deps.orm);
  /** Attempts for a credential in this process, one after the other (a timed-out attempt may still be running). */
  const running = new Map<string, Promise<unknown>>();

  /**
   * An activity that receives tokens: it heartbeats all along, and waits for any attempt of the same credential
   * still running in this process, so two attempts never present the same refresh token.
   */
  function holdingTokens<T>(credentialId: string, body: () => Promise<T>): Promise<T> {
    const before = running.get(credentialId) ?? Promise.resolve();
    const mine = before.catch(() => {}).then(() => heartbeating(body));
    const tail = mine.catch(() => {});
    running.set(credentialId, tail);
    void tail.then(() => {
      if (running.get(credentialId) === tail) running.delete(credentialId);
    });
    return mine;
  }

  /** The columns a token response changes, encrypted, computed before anything is written. */
  function tokenChanges(credential: Credential, tokens: oidc.TokenEndpointResponse, now: Date, opts: { consent?: boolean } = {}) {
    const owner = ownerOf(credential);
    return {
      accessToken: vault.encrypt(tokens.access_token, secretContext(owner, credential.id, 'access_token')),
      // A provider that does not rotate returns no refresh token: keep the one we have.
      refreshToken: tokens.refresh_token
        ? vault.encrypt(tokens.refresh_token, secretContext(owner, credential.id, 'refresh_token'))
        : (credential.refreshToken ?? null),
      tokenType: (tokens.token_type ?? 'bearer').slice(0, 40),
      scope: tokens.scope ?? credential.scope ?? null,
      accessExpiresAt: typeof tokens.expires_in === 'number' ? new Date(now.getTime() + tokens.expires_in * 1000) : null,
      refreshExpiresAt: refreshExpiry(
        credential,
        tokens,
        now,
        deps.tools.get(credential.toolId)?.auth.refresh_token_lifetime_seconds,
        opts.consent,
      ),
      tokenGeneration: credential.tokenGeneration + 1,
      updatedAt: now,
    };
  }

  /**
   * Commits a provider's answer and its audit row in one transaction, guarded by the token generation this
   * attempt read. While the database is unreachable it waits, heartbeating, up to STORE_BOUND_MS: tokens the
   * provider has already rotated are never dropped for a database that is restarting.
   */
  async function commit(
    credential: Credential,
    changes: TokenChanges,
    event: Pick<AuditInput, 'eventType' | 'detail'>,
    alongside?: (tx: Em) => Promise<unknown>,
  ): Promise<void> {
    const row = audit.prepare({ ...event, outcome: 'success', actor: ACTOR, ...ownerOf(credential), credentialId: credential.id });
    let warned = false;
    await persistThroughOutage(
      () =>
        store.commitTokens(credential, changes, async (tx) => {
          await alongside?.(tx);
          await audit.insert(tx, row);
        }),
      {
        boundMs: STORE_BOUND_MS,
        // The whole activity heartbeats already (holdingTokens); here the wait is only said, once.
        onWait: () => {
          if (!warned)
            deps.log.warn(
              { credentialId: credential.id },
              "database unreachable: holding the provider's answer in memory until it is back",
            );
          warned = true;
        },
      },
    );
  }

  async function failAudit(em: Em, eventType: AuditEventType, credential: Credential, code: string, more = {}): Promise<void> {
    await audit.record(em, {
      eventType,
      outcome: 'failure',
      actor: ACTOR,
      ...ownerOf(credential),
      credentialId: credential.id,
      detail: { code, ...more },
    });
  }

  async function oauthFailure(
    em: Em,
    eventType: AuditEventType,
    credential: Credential,
    err: unknown,
    lostGrantCode?: string,
  ): Promise<ApplicationFailure> {
    const classified = classifyOAuthError(err);
    const failure =
      lostGrantCode && classified.code === 'invalid_grant'
        ? { ...classified, code: lostGrantCode, message: `${classified.message} after an interrupted attempt` }
        : classified;
    recordProviderCall(credential.toolId, failure);
    if (eventType === 'credential.refreshed')
      refreshes.inc({ tool: credential.toolId, outcome: failure.permanent ? 'reauthorization_required' : 'failed' });
    deps.log.warn({ credentialId: credential.id, toolId: credential.toolId, code: failure.code }, failure.message);
    // An identity exchange says which server refused: the identity provider or the tool's authorization server.
    await failAudit(em, eventType, credential, failure.code, err instanceof ExchangeStepError ? { step: err.step } : {});
    // The provider says when to come back (503/429 with Retry-After): the next attempt waits exactly that long.
    return ApplicationFailure.create({
      message: failure.message,
      type: failure.code,
      nonRetryable: failure.permanent,
      ...(failure.retryAfterSeconds
        ? { nextRetryDelay: `${failure.retryAfterSeconds}s`, details: [{ retryAfterSeconds: failure.retryAfterSeconds }] }
        : {}),
    });
  }
  return { store, holdingTokens, tokenChanges, commit, failAudit, oauthFailure };
}

export type Toolkit = ReturnType<typeof createToolkit>;

/**
 * How long a provider's answer is held in memory while the database is unreachable. The activities that hold
 * one have a start-to-close timeout above it (see workflows/credential.ts).
 */
export const STORE_BOUND_MS = 5 * 60_000;

/** Which attempt of the activity this is (1 outside an activity). */
export function activityAttempt(): number {
  try {
    return Context.current().info.attempt;
  } catch {
    return 1;
  }
}

/** Tells Temporal the attempt is alive; outside an activity (a test calling one directly) there is no one to tell. */
function heartbeat(): void {
  try {
    Context.current().heartbeat();
  } catch {
    // not running as an activity
  }
}

/** Runs a token activity while heartbeating every second: a worker that dies mid-call is noticed in seconds. */
async function heartbeating<T>(call: () => Promise<T>): Promise<T> {
  heartbeat();
  const timer = setInterval(heartbeat, 1_000);
  try {
    return await call();
  } finally {
    clearInterval(timer);
  }
}

export function metadata(c: Credential): TokenMetadata {
  return {
    generation: c.tokenGeneration,
    acquiredAt: c.acquiredAt!.getTime(),
    accessExpiresAt: c.accessExpiresAt?.getTime() ?? null,
    ttlExpiresAt: c.ttlExpiresAt?.getTime() ?? null,
    hasRefreshToken: Boolean(c.refreshToken),
    scope: c.scope ?? null,
    refreshExpiresAt: c.refreshExpiresAt?.getTime() ?? null,
  };
}

/**
 * When the refresh token dies: what the provider said (`refresh_token_expires_in`, Keycloak's `refresh_expires_in`),
 * else the tool's known lifetime counted from the consent; a kept refresh token keeps its expiry; else unknown.
 */
export function refreshExpiry(
  credential: Credential,
  tokens: oidc.TokenEndpointResponse,
  now: Date,
  lifetimeSeconds?: number,
  /** A consent (first or step-up): a known lifetime starts again. */
  consent = false,
): Date | null {
  const said = [tokens.refresh_token_expires_in, tokens.refresh_expires_in].find((v): v is number => typeof v === 'number' && v > 0);
  if (said) return new Date(now.getTime() + said * 1000);
  const known = credential.refreshExpiresAt ?? null;
  if (!tokens.refresh_token) return known;
  if (lifetimeSeconds) return !consent && credential.refreshToken && known ? known : new Date(now.getTime() + lifetimeSeconds * 1000);
  return null;
}

export function requireTool(tools: ToolRegistry, toolId: string): Tool {
  const tool = tools.get(toolId);
  if (!tool) throw ApplicationFailure.nonRetryable(`tool ${toolId} is not configured`, 'tool_not_found');
  return tool;
}

export async function forTool(oauth: OAuthClients, tool: Tool, identityProvider = false): Promise<ToolClient> {
  try {
    return await (identityProvider ? oauth.forIdentityProvider(tool) : oauth.forTool(tool));
  } catch (err) {
    const failure = classifyOAuthError(err);
    throw ApplicationFailure.create({
      message: `discovery for tool ${tool.id} failed: ${failure.message}`,
      type: failure.code,
      nonRetryable: failure.permanent,
    });
  }
}

/** The issuer a tool's current client talks to. */
export function issuerOf(client: ToolClient): string {
  return client.config.serverMetadata().issuer;
}

/**
 * The tool's client, but only if it still talks to the authorization server that issued this credential's tokens:
 * an MCP server that now names another one must not receive them (a refresh token is never sent elsewhere).
 */
export async function sameIssuerClient(oauth: OAuthClients, tool: Tool, credential: Credential): Promise<ToolClient> {
  const client = await forTool(oauth, tool);
  if (credential.issuer && client.discovered && issuerOf(client) !== credential.issuer) {
    throw ApplicationFailure.nonRetryable(
      'the MCP server now names another authorization server; the user must authorize there',
      'issuer_changed',
    );
  }
  return client;
}

/** RFC 8707: the MCP server's canonical URI goes with every token request too. */
export function resourceParams(client: ToolClient): Record<string, string> | undefined {
  return client.resource ? { resource: client.resource } : undefined;
}
