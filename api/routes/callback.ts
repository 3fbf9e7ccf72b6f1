import { Router, type Request } from 'express';
import { ownerOf, secretContext, type CredentialRecords } from '../../lib/credentials/records.js';
import type { AuditTrail } from '../../lib/audit.js';
import type { CredentialBroker } from '../broker.js';
import { IdentityError, type TrustManager } from '../identity/trust.js';
import type { Vault } from '../../lib/vault/crypto.js';
import type { ConsentCookies } from '../consent-cookie.js';
import { sendPage } from '../html.js';

export interface CallbackDeps {
  records: CredentialRecords;
  vault: Vault;
  broker: CredentialBroker;
  audit: AuditTrail;
  trust: TrustManager | null;
  consentCookies: ConsentCookies;
  /** How long the page waits for the code exchange before saying it finishes in the background. */
  completionWaitMs?: number;
}

const PARAM = /^[\x21-\x7e]{1,2048}$/;
const ERROR_CODE = /^[a-z_]{1,64}$/;

/**
 * GET /api/v1/auth/tool/callback?state&code (or &error): the provider's redirect. Looks the hashed, single-use
 * `state` up, accepts it only from the browser that passed the start page (its consent cookie) and, where the
 * identity gateway names the browser's user, only from the requesting user; then stores the callback
 * encrypted and signals the workflow. The code never enters Temporal. A refused callback stores nothing, and
 * the authorization stays pending for the right browser.
 */
export function callbackRoutes(deps: CallbackDeps): Router {
  const router = Router();
  router.get('/', async (req, res) => {
    const q = pickParams(req);
    const refuse = async (status: number, code: string, title: string, message: string, detail: Record<string, unknown> = {}) => {
      await deps.audit.record(null, {
        eventType: 'authorization.callback',
        outcome: 'denied',
        actor: 'browser',
        requestId: req.id,
        ip: req.ip ?? null,
        ...detail,
        detail: { code },
      });
      sendPage(res, status, title, message, false);
    };
    if (!q.state)
      return refuse(400, 'missing_state', 'Link not valid', 'This sign-in link is incomplete. Go back to your agent and start again.');
    if (!q.code && !q.error)
      return refuse(
        400,
        'missing_code',
        'Link not valid',
        'The provider did not send an authorization code. Go back to your agent and start again.',
      );

    const request = await deps.records.requestByState(q.state);
    if (!request)
      return refuse(400, 'invalid_state', 'Link not valid', 'This sign-in link is not known here. Go back to your agent and start again.');
    const owner = ownerOf(request);
    const who = { ...owner, credentialId: request.credentialId };
    // Single use: a second arrival (a reload, or someone replaying the URL) is refused either way.
    const alreadyUsed = () =>
      refuse(
        400,
        'state_already_used',
        'Link already used',
        'This sign-in link has already been used. Go back to your agent and start again.',
        who,
      );
    if (request.consumedAt) return alreadyUsed();
    if (request.expiresAt.getTime() < Date.now())
      return refuse(400, 'state_expired', 'Link expired', 'This sign-in link has expired. Go back to your agent and start again.', who);
    if (!deps.consentCookies.presentIn(req, request.id)) {
      return refuse(
        403,
        'consent_browser_mismatch',
        'Not connected',
        'This sign-in was not started in this browser, so nothing was connected. If your agent asked you to connect an account, open the link it gave you in this browser.',
        who,
      );
    }
    const identity = req.get('x-user-identity');
    if (deps.trust && identity !== undefined) {
      let browserUser: string;
      try {
        browserUser = (await deps.trust.verify(identity)).userId;
      } catch (err) {
        return refuse(
          401,
          err instanceof IdentityError ? err.code : 'identity_invalid',
          'Sign in first',
          'Your sign-in could not be confirmed, so nothing was connected.',
          who,
        );
      }
      if (browserUser !== owner.userId) {
        return refuse(
          403,
          'session_mismatch',
          'This sign-in is for someone else',
          'This authorization was requested for another user. Nothing was connected.',
          who,
        );
      }
    }

    const params: Record<string, string> = { state: q.state };
    if (q.code) params.code = q.code;
    if (q.error) params.error = ERROR_CODE.test(q.error) ? q.error : 'authorization_error';
    if (q.iss) params.iss = q.iss;
    const claimed = await deps.records.claimCallback(
      request.id,
      deps.vault.encrypt(JSON.stringify(params), secretContext(owner, request.id, 'callback_params')),
    );
    if (!claimed) return alreadyUsed();
    const delivery = await deps.broker.workflows.deliverCallback(request.workflowId, request.id);
    if (delivery === 'closed')
      return refuse(
        400,
        'authorization_closed',
        'Link expired',
        'This authorization has already ended. Go back to your agent and start again.',
        who,
      );
    deps.consentCookies.clear(res, request.id);
    await deps.audit.record(null, {
      eventType: 'authorization.callback',
      outcome: params.error ? 'failure' : 'success',
      actor: 'browser',
      ...who,
      requestId: req.id,
      ip: req.ip ?? null,
      detail: params.error ? { code: params.error } : {},
    });
    if (params.error) {
      return sendPage(
        res,
        400,
        'Not connected',
        `The provider reported "${params.error}". Nothing was connected; you can close this window.`,
        false,
      );
    }
    // The workflow answers when its code exchange is done (or we stop waiting and say it finishes in the background).
    const outcome = await delivery.outcome(deps.completionWaitMs ?? 10_000);
    deps.broker.forget(owner);
    if (outcome === 'connected')
      return sendPage(res, 200, 'Connected', 'Your account is connected. You can close this window and return to your agent.', true);
    if (outcome === 'account_mismatch')
      return sendPage(
        res,
        409,
        'Different account',
        'You signed in at the provider with a different account than this connection uses, so nothing was changed. Sign in with the account you connected before; to connect another account, ask for this connection to be removed and started again.',
        false,
      );
    if (outcome === 'pending')
      return sendPage(
        res,
        202,
        'Almost done',
        'We received your authorization and are finishing the connection. You can close this window.',
        true,
      );
    return sendPage(
      res,
      400,
      'Not connected',
      'The provider did not accept this authorization. Go back to your agent and try again.',
      false,
    );
  });
  return router;
}

function pickParams(req: Request): { state?: string; code?: string; error?: string; iss?: string } {
  const out: Record<string, string> = {};
  for (const name of ['state', 'code', 'error', 'iss'] as const) {
    const v = req.query[name];
    if (typeof v === 'string' && PARAM.test(v)) out[name] = v;
  }
  return out;
}
