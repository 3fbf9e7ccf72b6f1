import { ApplicationFailure } from '@temporalio/activity';
import * as oidc from 'openid-client';
import { ownerOf, secretContext } from '../lib/credentials/records.js';
import { PresentedIdentities } from '../lib/credentials/identities.js';
import type { Credential } from '../lib/db/entities.js';
import type { Em } from '../lib/db/orm.js';
import { exchangeIdentity } from '../lib/oauth/enterprise.js';
import { exchangesIdentity, type Tool } from '../lib/tools.js';
import type { CredentialOwner } from '../lib/domain.js';
import { recordProviderCall, refreshes } from '../lib/metrics.js';
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
   * exchange). None, or expired: a non-retryable failure; the workflow keeps a token it still has until it expires.
   */
  async function presentedIdentity(em: Em, credential: Credential, tool: Tool, now: Date): Promise<string> {
    const identity = await identities.find({
      agentId: credential.agentId,
      userId: credential.userId,
      issuer: tool.auth.identity_provider!.issuer,
    });
    const code = !identity ? 'identity_required' : identity.expiresAt <= now ? 'identity_expired' : null;
    if (!code) return identity!.token;
    await failAudit(em, 'credential.identity_exchanged', credential, code);
    throw ApplicationFailure.nonRetryable(
      code === 'identity_required'
        ? "no identity from the tool's identity provider was presented for this user"
        : "the user's identity has expired; the agent's next request with a fresh one renews the credential",
      code,
    );
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
        if (exchanged) {
          const identity = await presentedIdentity(em, credential, tool, now);
          try {
            tokens = await exchangeIdentity(deps.oauth, tool, identity);
          } catch (err) {
            throw await oauthFailure(em, eventType, credential, err);
          }
        } else {
          const client = await forTool(deps.oauth, tool);
          try {
            tokens = await oidc.clientCredentialsGrant(client.config, {
              ...(client.scopes.length ? { scope: client.scopes.join(tool.auth.scope_separator ?? ' ') } : {}),
              ...(tool.auth.audience ? { audience: tool.auth.audience } : {}),
              // The configured resource, else the MCP server's (RFC 8707), as the user flow sends it.
              ...(tool.auth.resource ? { resource: tool.auth.resource } : resourceParams(client)),
            });
          } catch (err) {
            throw await oauthFailure(em, eventType, credential, err);
          }
        }
        const first = credential.tokenGeneration === 0;
        const changes = {
          ...tokenChanges(credential, tokens, now),
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
