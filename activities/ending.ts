import * as oidc from 'openid-client';
import { ownerOf, secretContext } from '../lib/credentials/records.js';
import type { RevocationOutcome } from '../lib/domain.js';
import { authorizations, revocations } from '../lib/metrics.js';
import { ACTOR, forTool, sameIssuerClient, type ActivityDeps, type Toolkit } from './context.js';

/** Ending a credential: revocation at the provider, and the row marked ended with its secrets wiped. */
export function endingActivities(deps: ActivityDeps, kit: Toolkit) {
  const { vault, audit } = deps;
  const { store, oauthFailure } = kit;
  return {
    async revokeAtProvider(input: { credentialId: string }): Promise<{ revokedAtProvider: boolean; outcome: RevocationOutcome }> {
      const unit = store.unit();
      const { em } = unit;
      const credential = await unit.get(input.credentialId);
      const owner = ownerOf(credential);
      const tool = deps.tools.get(credential.toolId);
      if (!credential.accessToken && !credential.refreshToken) return { revokedAtProvider: false, outcome: 'nothing_to_revoke' };
      const none = async () => {
        await audit.record(em, {
          eventType: 'credential.revoked_at_provider',
          outcome: 'skipped',
          actor: ACTOR,
          ...owner,
          credentialId: credential.id,
          detail: { revocation: 'provider_has_no_revocation' },
        });
        return { revokedAtProvider: false, outcome: 'provider_has_no_revocation' as const };
      };
      if (!tool) return none();
      let client;
      try {
        // A token exchanged on the user's behalf came from the identity provider: it is revoked there.
        client =
          tool.auth.type === 'token_exchange'
            ? await forTool(deps.oauth, tool, true)
            : await sameIssuerClient(deps.oauth, tool, credential);
      } catch {
        // The tokens' server is no longer the tool's: they are not sent anywhere else; the credential still ends.
        return none();
      }
      if (!client.revocationSupported) return none();
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
        detail: { revocation: 'revoked_at_provider' },
      });
      return { revokedAtProvider: true, outcome: 'revoked_at_provider' };
    },

    async endCredential(input: { credentialId: string; status: string; reason: string }): Promise<void> {
      const ended = await store.end(input.credentialId, input.status, input.reason);
      // The authorization failed before its row was written: nothing to end.
      if (!ended) return;
      const { credential, em } = ended;
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
}
