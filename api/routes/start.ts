import { Router } from 'express';
import { ownerOf, secretContext, type CredentialRecords } from '../../lib/credentials/records.js';
import type { AuditTrail } from '../../lib/audit.js';
import { IdentityError, type TrustManager } from '../identity/trust.js';
import { secretsEqual, type Vault } from '../../lib/vault/crypto.js';
import type { ConsentCookies } from '../consent-cookie.js';
import { sendPage } from '../html.js';
import { UUID_PATTERN } from '../../lib/domain.js';

export interface StartDeps {
  records: CredentialRecords;
  vault: Vault;
  audit: AuditTrail;
  trust: TrustManager | null;
  consentCookies: ConsentCookies;
}

/**
 * GET /api/v1/auth/tool/start?request&token: where an authorization link leads. Before sending the browser to
 * the provider it checks that the person in the browser is the user who asked (the gateway's signed identity
 * of the browser user must name the same subject), so nobody can make a victim consent into someone else's
 * credential, nor consent with their own account into a victim's.
 */
export function startRoutes(deps: StartDeps): Router {
  const router = Router();
  router.get('/', async (req, res) => {
    const requestId = typeof req.query.request === 'string' ? req.query.request : '';
    const token = typeof req.query.token === 'string' ? req.query.token : '';
    const refuse = async (status: number, code: string, title: string, message: string, who: Record<string, string | null> = {}) => {
      await deps.audit.record(null, {
        eventType: 'authorization.start',
        outcome: 'denied',
        actor: 'browser',
        ...who,
        requestId: req.id,
        ip: req.ip ?? null,
        detail: { code },
      });
      sendPage(res, status, title, message, false);
    };
    if (!UUID_PATTERN.test(requestId) || !token)
      return refuse(400, 'invalid_link', 'Link not valid', 'This sign-in link is incomplete. Go back to your agent and start again.');
    const request = await deps.records.request(requestId);
    if (!request || !secretsEqual(token, deps.vault.deriveToken('start', requestId))) {
      return refuse(400, 'invalid_link', 'Link not valid', 'This sign-in link is not known here. Go back to your agent and start again.');
    }
    const owner = ownerOf(request);
    const who = { ...owner, credentialId: request.credentialId };
    if (request.consumedAt) {
      // The usual reason: the user already connected with this link (a second click, a reload).
      const credential = await deps.records.byId(request.credentialId);
      if (credential?.status === 'active' && !credential.deletedAt)
        return sendPage(
          res,
          200,
          'Already connected',
          'This account is already connected. You can close this window and return to your agent.',
          true,
        );
      return refuse(
        400,
        'link_used',
        'Link already used',
        'This sign-in link has already been used. Go back to your agent and start again.',
        who,
      );
    }
    // The provider URL is wiped when the authorization ends (timed out, revoked).
    if (request.expiresAt.getTime() < Date.now() || !request.providerUrl) {
      return refuse(
        400,
        'link_expired',
        'Link expired',
        'This sign-in link has expired or the authorization has ended. Go back to your agent and start again.',
        who,
      );
    }
    if (deps.trust) {
      let browserUser: string;
      try {
        browserUser = (await deps.trust.verify(req.get('x-user-identity'))).userId;
      } catch (err) {
        const code = err instanceof IdentityError ? err.code : 'identity_invalid';
        return refuse(401, code, 'Sign in first', 'Open this link through your organization’s sign-in so we can confirm it is you.', who);
      }
      if (browserUser !== owner.userId) {
        return refuse(
          403,
          'session_mismatch',
          'This link is for someone else',
          'This authorization was requested for another user. Nothing was connected. If you did not expect this link, tell your administrator.',
          who,
        );
      }
    }
    await deps.audit.record(null, {
      eventType: 'authorization.start',
      outcome: 'success',
      actor: 'browser',
      ...who,
      requestId: req.id,
      ip: req.ip ?? null,
      detail: { sessionBound: Boolean(deps.trust), browserBound: true },
    });
    res.setHeader('Cache-Control', 'no-store');
    // This browser, and only this one, may bring the provider's answer back to the callback.
    deps.consentCookies.set(res, request.id, request.expiresAt);
    res.redirect(302, deps.vault.decrypt(request.providerUrl, secretContext(owner, request.id, 'provider_url')));
  });
  return router;
}
