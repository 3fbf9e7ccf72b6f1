import { ApplicationFailure } from '@temporalio/activity';
import * as oidc from 'openid-client';
import { ownerOf, secretContext } from '../lib/credentials/records.js';
import { PresentedIdentities } from '../lib/credentials/identities.js';
import type { Credential } from '../lib/db/entities.js';
import type { CredentialUnit } from '../lib/credentials/store.js';
import { exchangeIdentity } from '../lib/oauth/enterprise.js';
import { exchangesIdentity, type Tool } from '../lib/tools.js';
import type { CredentialOwner } from '../lib/domain.js';
import { recordProviderCall, refreshes } from '../lib/metrics.js';
import { proofFor } from './proof.js';
import {
  forTool,
  sameIssuerClient,
  metadata,
  requireTool,
  resourceParams,
  activityAttempt,
  type ActivityDeps,
  type TokenMetadata,
  type Toolkit,
} from './context.js';

/**
 * Keeping a credential current: refresh (user credentials), and tokens an activity obtains without a browser —
 * client credentials (machine access) and a user's exchanged enterprise identity (ID-JAG, token exchange).
 */
export function tokenActivities(deps: ActivityDeps, kit: Toolkit) {
  const { vault } = deps;
  const { store, holdingTokens, tokenChanges, commit, oauthFailure, failAudit } = kit;
  const identities = new PresentedIdentities(deps.orm, vault);

  /**
   * The identity the user's agent last presented from the tool's identity provider (decrypted only here, for the
   * exchange). None, expired, or issued before this connection was last revoked (a revocation holds until the user
   * signs in again): a non-retryable failure; the workflow keeps a token it still has until it expires.
   */
  async function presentedIdentity(unit: CredentialUnit, credential: Credential, tool: Tool, now: Date): Promise<string> {
    const { agentId, userId } = credential;
    const identity = await identities.find({ agentId, userId, issuer: tool.auth.identity_provider!.issuer });
    const revokedAt = identity ? await unit.lastRevokedAt(credential) : null;
    const code = !identity
      ? 'identity_required'
      : identity.expiresAt <= now
        ? 'identity_expired'
        : revokedAt && !(identity.issuedAt && identity.issuedAt > revokedAt)
          ? 'identity_predates_revocation'
          : null;
    if (!code) return identity!.token;
    await failAudit(unit.em, 'credential.identity_exchanged', credential, code);
    throw ApplicationFailure.nonRetryable(IDENTITY_REFUSALS[code], code);
  }
  return {
    refreshCredential: (input: { credentialId: string; expectedGeneration: number }): Promise<TokenMetadata> =>
      holdingTokens(input.credentialId, async () => {
        const unit = store.unit();
        const { em } = unit;
        const credential = await unit.get(input.credentialId);
        // Already refreshed by an attempt whose completion was lost: never spend the rotated token twice.
        if (credential.tokenGeneration > input.expectedGeneration) return metadata(credential);
        if (credential.deletedAt || !credential.refreshToken) {
          throw ApplicationFailure.nonRetryable('credential has no refresh token', 'no_refresh_token');
        }
        const owner = ownerOf(credential);
        const client = await sameIssuerClient(deps.oauth, requireTool(deps.tools, credential.toolId), credential);
        const refreshToken = vault.decrypt(credential.refreshToken, secretContext(owner, credential.id, 'refresh_token'));
        let tokens: oidc.TokenEndpointResponse;
        const proof = await proofFor(vault, credential, client);
        try {
          tokens = await oidc.refreshTokenGrant(client.config, refreshToken, resourceParams(client), proof.options);
        } catch (err) {
          // invalid_grant on a retry: the attempt before may have reached the provider, which rotated the token,
          // and the answer died with that worker. Say so: the user must authorize again, and why.
          throw await oauthFailure(em, 'credential.refreshed', credential, err, activityAttempt() > 1 ? 'refresh_interrupted' : undefined);
        }
        // A rotated refresh token lives only here until committed: nothing else happens before the write.
        const now = new Date();
        const changes = { ...tokenChanges(credential, tokens, now), ...proof.changesFor(tokens), lastRefreshedAt: now };
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
        const unit = store.unit();
        const { em } = unit;
        const now = new Date();
        const credential = await unit.open(input, now);
        if (credential.tokenGeneration > input.expectedGeneration) return metadata(credential);
        await unit.flush();
        const tool = requireTool(deps.tools, input.owner.toolId);
        const exchanged = exchangesIdentity(tool);
        const eventType = exchanged ? 'credential.identity_exchanged' : 'credential.machine_token';
        let tokens: oidc.TokenEndpointResponse;
        // The server that issues the token: the identity provider for token exchange, else the tool's own.
        const client = await forTool(deps.oauth, tool, tool.auth.type === 'token_exchange');
        // A user's identity that cannot be exchanged is refused before anything is made for the request.
        const identity = exchanged ? await presentedIdentity(unit, credential, tool, now) : null;
        const proof = await proofFor(vault, credential, client);
        if (identity !== null) {
          try {
            tokens = await exchangeIdentity(deps.oauth, tool, identity, proof.options);
          } catch (err) {
            throw await oauthFailure(em, eventType, credential, err);
          }
        } else {
          try {
            tokens = await oidc.clientCredentialsGrant(
              client.config,
              {
                ...(client.scopes.length ? { scope: client.scopes.join(tool.auth.scope_separator ?? ' ') } : {}),
                ...(tool.auth.audience ? { audience: tool.auth.audience } : {}),
                // The configured resource, else the MCP server's (RFC 8707), as the user flow sends it.
                ...(tool.auth.resource ? { resource: tool.auth.resource } : resourceParams(client)),
              },
              proof.options,
            );
          } catch (err) {
            throw await oauthFailure(em, eventType, credential, err);
          }
        }
        const first = credential.tokenGeneration === 0;
        const changes = {
          ...tokenChanges(credential, tokens, now),
          ...proof.changesFor(tokens),
          acquiredAt: credential.acquiredAt ?? now,
          ...(first ? {} : { lastRefreshedAt: now }),
          status: 'active',
        };
        await commit(credential, changes, {
          eventType,
          detail: { generation: changes.tokenGeneration, accessExpiresAt: changes.accessExpiresAt?.toISOString() ?? null },
        });
        recordProviderCall(credential.toolId);
        refreshes.inc({ tool: credential.toolId, outcome: 'ok' });
        return metadata(credential);
      }),
  };
}

/** Why a kept identity cannot be exchanged (the failure's message; its code is the key). */
const IDENTITY_REFUSALS = {
  identity_required: "no identity from the tool's identity provider was presented for this user",
  identity_expired: "the user's identity has expired; the agent's next request with a fresh one renews the credential",
  identity_predates_revocation: 'the connection was revoked after this identity was issued; it is restored when the user signs in again',
} as const;
