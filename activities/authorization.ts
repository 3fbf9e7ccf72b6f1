import { ApplicationFailure } from '@temporalio/activity';
import * as oidc from 'openid-client';
import { identifyAccount } from '../lib/oauth/account.js';
import { boundFetch, isBound } from '../lib/oauth/dpop.js';
import { ownerOf, secretContext } from '../lib/credentials/records.js';
import { authorizationDuration, authorizations, recordProviderCall } from '../lib/metrics.js';
import { scopeParams } from '../lib/oauth/quirks.js';
import { START_PATH } from '../lib/config.js';
import { sha256Hex } from '../lib/vault/crypto.js';
import { proofFor } from './proof.js';
import {
  ACTOR,
  forTool,
  issuerOf,
  metadata,
  requireTool,
  resourceParams,
  type ActivityDeps,
  type BeginAuthorizationInput,
  type TokenMetadata,
  type Toolkit,
} from './context.js';

/** Starting an authorization and exchanging its code (PKCE), once per consent. */
export function authorizationActivities(deps: ActivityDeps, kit: Toolkit) {
  const { vault, audit } = deps;
  const { store, holdingTokens, tokenChanges, commit, failAudit, oauthFailure } = kit;
  return {
    async beginAuthorization(input: BeginAuthorizationInput): Promise<{ authorizationUrl: string; authorizationExpiresAt: number }> {
      const { owner } = input;
      const tool = requireTool(deps.tools, owner.toolId);
      const client = await forTool(deps.oauth, tool);
      const unit = store.unit();
      const now = new Date();
      const origin = { owner, credentialId: input.credentialId, workflowId: input.workflowId };
      await unit.open(origin, now);
      const state = vault.deriveToken('state', input.authorizationRequestId);
      const requestCtx = secretContext(owner, input.authorizationRequestId, 'code_verifier');
      let request = await unit.request(input.authorizationRequestId);
      let verifier: string;
      if (request) {
        verifier = vault.decrypt(request.codeVerifier!, requestCtx);
      } else {
        verifier = oidc.randomPKCECodeVerifier();
        request = unit.createRequest(origin, {
          id: input.authorizationRequestId,
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
      await unit.flush();
      const startUrl = new URL(START_PATH, deps.publicOrigin);
      startUrl.searchParams.set('request', request.id);
      startUrl.searchParams.set('token', vault.deriveToken('start', request.id));
      authorizations.inc({ tool: owner.toolId, stage: 'started' });
      await audit.record(unit.em, {
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
        const unit = store.unit();
        const { em } = unit;
        const credential = await unit.get(input.credentialId);
        if (credential.tokenGeneration > input.expectedGeneration) return metadata(credential);
        const owner = ownerOf(credential);
        const request = await unit.request(input.authorizationRequestId, credential.id);
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
        // Endpoints an MCP server pointed us to, spread over origins or from a server that sends `iss`: only `iss`
        // ties the response to the server we meant (mix-up).
        if (client.requireIss && !params.iss) {
          await failAudit(em, 'authorization.completed', credential, 'iss_missing');
          throw ApplicationFailure.nonRetryable('the authorization response carried no iss (RFC 9207)', 'iss_missing');
        }
        const callbackUrl = new URL(request.redirectUri);
        for (const [k, v] of Object.entries(params)) {
          // Without a configured issuer there is nothing to check `iss` against.
          if (k === 'iss' && !client.issuerKnown) continue;
          callbackUrl.searchParams.set(k, v);
        }
        // Read before the code is spent: nothing but the exchange and the commit may stand between them.
        const pinned = tool.pinAccount ? await unit.pinnedAccount(credential) : null;
        let tokens: oidc.TokenEndpointResponse;
        const exchangeStarted = performance.now();
        const verifier = vault.decrypt(request.codeVerifier, secretContext(owner, request.id, 'code_verifier'));
        const proof = await proofFor(vault, credential, client);
        try {
          tokens = await oidc.authorizationCodeGrant(
            client.config,
            callbackUrl,
            { pkceCodeVerifier: verifier, expectedState: vault.deriveToken('state', request.id) },
            resourceParams(client),
            proof.options,
          );
        } catch (err) {
          throw await oauthFailure(em, 'authorization.completed', credential, err);
        }
        // The provider has answered: from here its tokens exist only in this process until they are committed.
        const bound = isBound(tokens.token_type) ? proof.key : undefined;
        const account = await identifyAccount(
          tool,
          tokens,
          bound ? boundFetch(deps.outbound.fetch, bound, tokens.access_token) : deps.outbound.fetch,
        );
        if (pinned && account && pinned !== account.id) {
          // Consent with another account than this connection has: its tokens are given back, never stored.
          if (client.revocationSupported)
            await oidc.tokenRevocation(client.config, tokens.refresh_token ?? tokens.access_token).catch(() => undefined);
          await store.wipeRequest(em, request.id);
          await failAudit(em, 'authorization.completed', credential, 'account_mismatch');
          throw ApplicationFailure.nonRetryable(
            'the user consented with another upstream account than this credential has',
            'account_mismatch',
          );
        }
        const now = new Date();
        const changes = {
          ...tokenChanges(credential, tokens, now, { consent: true }),
          ...proof.changesFor(tokens),
          // Unknown stays unknown: an id from before is not carried over to tokens nobody identified.
          accountId: account?.id ?? null,
          accountName: account?.name ?? null,
          acquiredAt: now,
          ttlExpiresAt: new Date(now.getTime() + input.ttlSeconds * 1000),
          status: 'active',
          issuer: issuerOf(client),
        };
        await commit(
          credential,
          changes,
          {
            eventType: 'authorization.completed',
            detail: { scope: changes.scope, accessExpiresAt: changes.accessExpiresAt?.toISOString() ?? null },
          },
          (tx) => store.wipeRequest(tx, request.id),
        );
        recordProviderCall(credential.toolId);
        authorizationDuration.observe({ tool: credential.toolId }, (performance.now() - exchangeStarted) / 1000);
        authorizations.inc({ tool: credential.toolId, stage: 'completed' });
        return metadata(credential);
      }),
  };
}
