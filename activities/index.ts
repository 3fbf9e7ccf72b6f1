import { ApplicationFailure, Context } from '@temporalio/activity';
import * as oidc from 'openid-client';
import type { AuditInput, AuditTrail } from '../lib/audit.js';
import { START_PATH } from '../lib/config.js';
import {
  AuditEventSchema,
  AuthorizationRequestSchema,
  CredentialSchema,
  type AuthorizationRequest,
  type Credential,
} from '../lib/db/entities.js';
import { fork, type Em, type Orm } from '../lib/db/orm.js';
import { persistThroughOutage } from '../lib/db/outage.js';
import type { CredentialOwner } from '../lib/domain.js';
import type { Logger } from '../lib/log.js';
import { authorizationDuration, authorizations, recordProviderCall, refreshes, revocations } from '../lib/metrics.js';
import { classifyOAuthError, type OAuthClients, type ToolClient } from '../lib/oauth/client.js';
import { scopeParams } from '../lib/oauth/quirks.js';
import type { Tool, ToolRegistry } from '../lib/tools.js';
import { sha256Hex, type SecretContext, type Vault } from '../lib/vault/crypto.js';

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

const ACTOR = 'credential-workflow';

/** Activities for the credential workflow. Each is idempotent: a retry after a crash does not redo the grant. */
export function createActivities(deps: ActivityDeps) {
  const { orm, vault, audit } = deps;
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

  return {
    async beginAuthorization(input: BeginAuthorizationInput): Promise<{ authorizationUrl: string; authorizationExpiresAt: number }> {
      const { owner } = input;
      const tool = requireTool(deps.tools, owner.toolId);
      const client = await forTool(deps.oauth, tool);
      const em = fork(orm);
      const now = new Date();
      const credential = await em.findOne(CredentialSchema, { id: input.credentialId });
      if (!credential) {
        em.create(CredentialSchema, {
          id: input.credentialId,
          ...owner,
          workflowId: input.workflowId,
          status: 'awaiting_authorization',
          tokenGeneration: 0,
          createdAt: now,
          updatedAt: now,
        });
      }
      const state = vault.deriveToken('state', input.authorizationRequestId);
      const requestCtx = secretContext(owner, input.authorizationRequestId, 'code_verifier');
      let request = await em.findOne(AuthorizationRequestSchema, { id: input.authorizationRequestId });
      let verifier: string;
      if (request) {
        verifier = vault.decrypt(request.codeVerifier!, requestCtx);
      } else {
        verifier = oidc.randomPKCECodeVerifier();
        request = em.create(AuthorizationRequestSchema, {
          id: input.authorizationRequestId,
          credentialId: input.credentialId,
          workflowId: input.workflowId,
          ...owner,
          stateHash: sha256Hex(state),
          codeVerifier: vault.encrypt(verifier, requestCtx),
          redirectUri: deps.redirectUri,
          expiresAt: new Date(now.getTime() + input.authorizationTimeoutSeconds * 1000),
          createdAt: now,
        });
      }
      const params: Record<string, string> = {
        response_type: 'code',
        redirect_uri: deps.redirectUri,
        state,
        code_challenge: await oidc.calculatePKCECodeChallenge(verifier),
        code_challenge_method: 'S256',
        ...scopeParams(tool, [...new Set([...client.scopes, ...(input.extraScopes ?? [])])]),
        ...(client.resource ? { resource: client.resource } : {}),
        ...tool.auth.authorization_params,
      };
      const providerUrl = oidc.buildAuthorizationUrl(client.config, params);
      // The provider URL carries the state: it stays in the vault, and the agent gets our start link.
      request.providerUrl = vault.encrypt(providerUrl.href, secretContext(owner, request.id, 'provider_url'));
      await em.flush();
      const startUrl = new URL(START_PATH, deps.publicOrigin);
      startUrl.searchParams.set('request', request.id);
      startUrl.searchParams.set('token', vault.deriveToken('start', request.id));
      authorizations.inc({ tool: owner.toolId, stage: 'started' });
      await audit.record(em, {
        eventType: 'authorization.started',
        outcome: 'success',
        actor: ACTOR,
        ...owner,
        credentialId: input.credentialId,
        detail: { authorizationRequestId: input.authorizationRequestId, expiresAt: request.expiresAt.toISOString() },
      });
      return { authorizationUrl: startUrl.href, authorizationExpiresAt: request.expiresAt.getTime() };
    },

    exchangeCode: (input: {
      credentialId: string;
      authorizationRequestId: string;
      expectedGeneration: number;
      ttlSeconds: number;
    }): Promise<TokenMetadata> =>
      holdingTokens(input.credentialId, async () => {
        const em = fork(orm);
        const credential = await em.findOneOrFail(CredentialSchema, { id: input.credentialId });
        if (credential.tokenGeneration > input.expectedGeneration) return metadata(credential);
        const owner = ownerOf(credential);
        const request = await em.findOne(AuthorizationRequestSchema, { id: input.authorizationRequestId, credentialId: credential.id });
        if (!request?.callbackParams || !request.codeVerifier) {
          throw ApplicationFailure.nonRetryable('no callback is recorded for this authorization', 'invalid_callback');
        }
        const params = JSON.parse(vault.decrypt(request.callbackParams, secretContext(owner, request.id, 'callback_params'))) as Record<
          string,
          string
        >;
        if (params.error) {
          const code = /^[a-z_]{1,64}$/.test(params.error) ? params.error : 'authorization_error';
          await failAudit(em, 'authorization.completed', credential, code);
          throw ApplicationFailure.nonRetryable(`the provider reported ${code}`, code);
        }
        const tool = requireTool(deps.tools, credential.toolId);
        const client = await forTool(deps.oauth, tool);
        // Endpoints an MCP server pointed us to: only `iss` ties the response to the server we meant (mix-up).
        if (client.discovered && !params.iss) {
          await failAudit(em, 'authorization.completed', credential, 'iss_missing');
          throw ApplicationFailure.nonRetryable('the authorization response carried no iss (RFC 9207)', 'iss_missing');
        }
        const callbackUrl = new URL(request.redirectUri);
        for (const [k, v] of Object.entries(params)) {
          // Without a configured issuer there is nothing to check `iss` against.
          if (k === 'iss' && !client.issuerKnown) continue;
          callbackUrl.searchParams.set(k, v);
        }
        let tokens: oidc.TokenEndpointResponse;
        const exchangeStarted = performance.now();
        const verifier = vault.decrypt(request.codeVerifier, secretContext(owner, request.id, 'code_verifier'));
        try {
          tokens = await oidc.authorizationCodeGrant(
            client.config,
            callbackUrl,
            { pkceCodeVerifier: verifier, expectedState: vault.deriveToken('state', request.id) },
            resourceParams(client),
          );
        } catch (err) {
          throw await oauthFailure(em, 'authorization.completed', credential, err);
        }
        // The provider has answered: from here its tokens exist only in this process until they are committed.
        const now = new Date();
        const changes = {
          ...tokenChanges(credential, tokens, now),
          acquiredAt: now,
          ttlExpiresAt: new Date(now.getTime() + input.ttlSeconds * 1000),
          status: 'active',
        };
        await commit(
          credential,
          changes,
          {
            eventType: 'authorization.completed',
            detail: { scope: changes.scope, accessExpiresAt: changes.accessExpiresAt?.toISOString() ?? null },
          },
          (tx) =>
            tx.nativeUpdate(
              AuthorizationRequestSchema,
              { id: request.id },
              { codeVerifier: null, callbackParams: null, providerUrl: null },
            ),
        );
        recordProviderCall(credential.toolId);
        authorizationDuration.observe({ tool: credential.toolId }, (performance.now() - exchangeStarted) / 1000);
        authorizations.inc({ tool: credential.toolId, stage: 'completed' });
        return metadata(credential);
      }),

    refreshCredential: (input: { credentialId: string; expectedGeneration: number }): Promise<TokenMetadata> =>
      holdingTokens(input.credentialId, async () => {
        const em = fork(orm);
        const credential = await em.findOneOrFail(CredentialSchema, { id: input.credentialId });
        // Already refreshed by an attempt whose completion was lost: never spend the rotated token twice.
        if (credential.tokenGeneration > input.expectedGeneration) return metadata(credential);
        if (credential.deletedAt || !credential.refreshToken) {
          throw ApplicationFailure.nonRetryable('credential has no refresh token', 'no_refresh_token');
        }
        const owner = ownerOf(credential);
        const client = await forTool(deps.oauth, requireTool(deps.tools, credential.toolId));
        const refreshToken = vault.decrypt(credential.refreshToken, secretContext(owner, credential.id, 'refresh_token'));
        let tokens: oidc.TokenEndpointResponse;
        try {
          tokens = await oidc.refreshTokenGrant(client.config, refreshToken, resourceParams(client));
        } catch (err) {
          // invalid_grant on a retry: the attempt before may have reached the provider, which rotated the token,
          // and the answer died with that worker. Say so: the user must authorize again, and why.
          throw await oauthFailure(em, 'credential.refreshed', credential, err, activityAttempt() > 1 ? 'refresh_interrupted' : undefined);
        }
        // A rotated refresh token lives only here until committed: nothing else happens before the write.
        const now = new Date();
        const changes = { ...tokenChanges(credential, tokens, now), lastRefreshedAt: now };
        await commit(credential, changes, {
          eventType: 'credential.refreshed',
          detail: { generation: changes.tokenGeneration, accessExpiresAt: changes.accessExpiresAt?.toISOString() ?? null },
        });
        recordProviderCall(credential.toolId);
        refreshes.inc({ tool: credential.toolId, outcome: 'ok' });
        return metadata(credential);
      }),

    /** Client credentials: the tool's own token for one agent. Idempotent like a refresh. */
    acquireMachineToken: (input: {
      owner: CredentialOwner;
      workflowId: string;
      credentialId: string;
      expectedGeneration: number;
    }): Promise<TokenMetadata> =>
      holdingTokens(input.credentialId, async () => {
        const em = fork(orm);
        const now = new Date();
        let credential = await em.findOne(CredentialSchema, { id: input.credentialId });
        if (credential && credential.tokenGeneration > input.expectedGeneration) return metadata(credential);
        credential ??= em.create(CredentialSchema, {
          id: input.credentialId,
          ...input.owner,
          workflowId: input.workflowId,
          status: 'awaiting_authorization',
          tokenGeneration: 0,
          createdAt: now,
          updatedAt: now,
        });
        await em.flush();
        const tool = requireTool(deps.tools, input.owner.toolId);
        const client = await forTool(deps.oauth, tool);
        let tokens: oidc.TokenEndpointResponse;
        try {
          tokens = await oidc.clientCredentialsGrant(client.config, {
            ...(client.scopes.length ? { scope: client.scopes.join(tool.auth.scope_separator ?? ' ') } : {}),
            ...(tool.auth.audience ? { audience: tool.auth.audience } : {}),
            ...(tool.auth.resource ? { resource: tool.auth.resource } : {}),
          });
        } catch (err) {
          throw await oauthFailure(em, 'credential.machine_token', credential, err);
        }
        const first = credential.tokenGeneration === 0;
        const changes = {
          ...tokenChanges(credential, tokens, now),
          acquiredAt: credential.acquiredAt ?? now,
          ...(first ? {} : { lastRefreshedAt: now }),
          status: 'active',
        };
        await commit(credential, changes, {
          eventType: 'credential.machine_token',
          detail: { generation: changes.tokenGeneration, accessExpiresAt: changes.accessExpiresAt?.toISOString() ?? null },
        });
        recordProviderCall(credential.toolId);
        refreshes.inc({ tool: credential.toolId, outcome: 'ok' });
        return metadata(credential);
      }),

    async revokeAtProvider(input: { credentialId: string }): Promise<{ revokedAtProvider: boolean }> {
      const em = fork(orm);
      const credential = await em.findOneOrFail(CredentialSchema, { id: input.credentialId });
      const owner = ownerOf(credential);
      const tool = deps.tools.get(credential.toolId);
      if (!tool || (!credential.accessToken && !credential.refreshToken)) return { revokedAtProvider: false };
      const client = await forTool(deps.oauth, tool);
      if (!client.revocationSupported) return { revokedAtProvider: false };
      try {
        // The refresh token first: at most providers revoking it ends the whole grant.
        if (credential.refreshToken) {
          const token = vault.decrypt(credential.refreshToken, secretContext(owner, credential.id, 'refresh_token'));
          await oidc.tokenRevocation(client.config, token, { token_type_hint: 'refresh_token' });
        }
        if (credential.accessToken) {
          const token = vault.decrypt(credential.accessToken, secretContext(owner, credential.id, 'access_token'));
          await oidc.tokenRevocation(client.config, token, { token_type_hint: 'access_token' });
        }
      } catch (err) {
        throw await oauthFailure(em, 'credential.revoked_at_provider', credential, err);
      }
      await audit.record(em, {
        eventType: 'credential.revoked_at_provider',
        outcome: 'success',
        actor: ACTOR,
        ...owner,
        credentialId: credential.id,
      });
      return { revokedAtProvider: true };
    },

    async endCredential(input: { credentialId: string; status: string; reason: string }): Promise<void> {
      const em = fork(orm);
      const credential = await em.findOne(CredentialSchema, { id: input.credentialId });
      // The authorization failed before its row was written: nothing to end.
      if (!credential) return;
      const now = new Date();
      if (!credential.deletedAt) {
        credential.status = input.status;
        credential.endReason = input.reason.slice(0, 80);
        credential.deletedAt = now;
        credential.updatedAt = now;
        // The row stays for audit; the secrets in it are of no further use.
        credential.accessToken = null;
        credential.refreshToken = null;
      }
      await em.nativeUpdate(
        AuthorizationRequestSchema,
        { credentialId: credential.id, codeVerifier: { $ne: null } },
        { codeVerifier: null, callbackParams: null, providerUrl: null },
      );
      await em.flush();
      revocations.inc({ tool: credential.toolId, status: input.status });
      if (input.status === 'authorization_timed_out' || input.status === 'authorization_failed') {
        authorizations.inc({ tool: credential.toolId, stage: input.status === 'authorization_failed' ? 'failed' : 'timed_out' });
      }
      await audit.record(em, {
        eventType: 'credential.ended',
        outcome: input.status,
        actor: ACTOR,
        ...ownerOf(credential),
        credentialId: credential.id,
        detail: { reason: input.reason },
      });
    },
  };

  /** The columns a token response changes, encrypted, computed before anything is written. */
  function tokenChanges(credential: Credential, tokens: oidc.TokenEndpointResponse, now: Date) {
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
    changes: Partial<Credential> & { tokenGeneration: number },
    event: Pick<AuditInput, 'eventType' | 'detail'>,
    alongside?: (tx: Em) => Promise<unknown>,
  ): Promise<void> {
    const row = audit.prepare({ ...event, outcome: 'success', actor: ACTOR, ...ownerOf(credential), credentialId: credential.id });
    let warned = false;
    await persistThroughOutage(
      () =>
        fork(orm).transactional(async (tx) => {
          const updated = await tx.nativeUpdate(
            CredentialSchema,
            { id: credential.id, tokenGeneration: credential.tokenGeneration },
            changes,
          );
          if (updated !== 1) {
            // An earlier try of this loop committed, and only its answer was lost on the wire.
            const current = await tx.findOne(CredentialSchema, { id: credential.id }, { fields: ['tokenGeneration'] });
            if (current?.tokenGeneration === changes.tokenGeneration) return;
            throw ApplicationFailure.nonRetryable('the credential changed under this attempt', 'generation_conflict');
          }
          await alongside?.(tx);
          await tx.insert(AuditEventSchema, row);
        }),
      {
        boundMs: STORE_BOUND_MS,
        onWait: () => {
          heartbeat();
          if (!warned)
            deps.log.warn(
              { credentialId: credential.id },
              "database unreachable: holding the provider's answer in memory until it is back",
            );
          warned = true;
        },
      },
    );
    Object.assign(credential, changes);
  }

  async function failAudit(em: ReturnType<typeof fork>, eventType: string, credential: Credential, code: string): Promise<void> {
    await audit.record(em, {
      eventType,
      outcome: 'failure',
      actor: ACTOR,
      ...ownerOf(credential),
      credentialId: credential.id,
      detail: { code },
    });
  }

  async function oauthFailure(
    em: ReturnType<typeof fork>,
    eventType: string,
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
    await failAudit(em, eventType, credential, failure.code);
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
}

export type Activities = ReturnType<typeof createActivities>;

/**
 * How long a provider's answer is held in memory while the database is unreachable. The activities that hold
 * one have a start-to-close timeout above it (see workflows/credential.ts).
 */
export const STORE_BOUND_MS = 5 * 60_000;

/** Which attempt of the activity this is (1 outside an activity). */
function activityAttempt(): number {
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

/** A provider call that heartbeats while it runs: a worker that dies mid-call is noticed in seconds. */
async function heartbeating<T>(call: () => Promise<T>): Promise<T> {
  heartbeat();
  const timer = setInterval(heartbeat, 1_000);
  try {
    return await call();
  } finally {
    clearInterval(timer);
  }
}

export function secretContext(owner: CredentialOwner, recordId: string, field: string): SecretContext {
  return { agentId: owner.agentId, userId: owner.userId, toolId: owner.toolId, recordId, field };
}

export function ownerOf(row: Credential | AuthorizationRequest): CredentialOwner {
  return { agentId: row.agentId, userId: row.userId, toolId: row.toolId };
}

function metadata(c: Credential): TokenMetadata {
  return {
    generation: c.tokenGeneration,
    acquiredAt: c.acquiredAt!.getTime(),
    accessExpiresAt: c.accessExpiresAt?.getTime() ?? null,
    ttlExpiresAt: c.ttlExpiresAt?.getTime() ?? null,
    hasRefreshToken: Boolean(c.refreshToken),
    scope: c.scope ?? null,
  };
}

function requireTool(tools: ToolRegistry, toolId: string): Tool {
  const tool = tools.get(toolId);
  if (!tool) throw ApplicationFailure.nonRetryable(`tool ${toolId} is not configured`, 'tool_not_found');
  return tool;
}

async function forTool(oauth: OAuthClients, tool: Tool): Promise<ToolClient> {
  try {
    return await oauth.forTool(tool);
  } catch (err) {
    const failure = classifyOAuthError(err);
    throw ApplicationFailure.create({
      message: `discovery for tool ${tool.id} failed: ${failure.message}`,
      type: failure.code,
      nonRetryable: failure.permanent,
    });
  }
}

/** RFC 8707: the MCP server's canonical URI goes with every token request too. */
function resourceParams(client: ToolClient): Record<string, string> | undefined {
  return client.resource ? { resource: client.resource } : undefined;
}
