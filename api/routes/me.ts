import { Router, type Request, type Response } from 'express';
import express from 'express';
import { randomBytes } from 'node:crypto';
import { parse as parseCookies } from 'cookie';
import type { AuditTrail } from '../../lib/audit.js';
import type { CredentialRecords } from '../../lib/credentials/records.js';
import { OWNER_ID_PATTERN, UUID_PATTERN, type CredentialOwner } from '../../lib/domain.js';
import type { Credential } from '../../lib/db/entities.js';
import type { ToolRegistry } from '../../lib/tools.js';
import { secretsEqual, type Vault } from '../../lib/vault/crypto.js';
import type { CredentialBroker } from '../broker.js';
import { ApiError, catalogCode } from '../errors.js';
import { IdentityError, type TrustManager } from '../identity/trust.js';
import { connectionsPage, connectionView, PAGE_CSP, signInPage } from '../me-page.js';
import { sendHtml } from '../html.js';

export interface MeDeps {
  records: CredentialRecords;
  broker: CredentialBroker;
  tools: ToolRegistry;
  vault: Vault;
  audit: AuditTrail;
  trust: TrustManager | null;
  publicOrigin: string;
  /** Production: `__Host-` cookie, Secure. */
  secureCookies: boolean;
}

/**
 * /api/v1/me/connections: the signed-in user's connections across all agents and tools, HTML for a browser and
 * JSON for `Accept: application/json`, with Disconnect (revokes at the provider) and Disconnect everything. Who
 * the user is follows the start page's rules: the gateway-signed identity (`X-User-Identity`); in development
 * mode without one, a user form and a signed cookie. State changes need this origin (Origin) and the page's token.
 */
export function meRoutes(deps: MeDeps): Router {
  const router = Router();
  const form = express.urlencoded({ extended: false, limit: '4kb' });
  const json = express.json({ limit: '4kb' });
  const cookieName = `${deps.secureCookies ? '__Host-' : ''}acb-me`;
  const browserCookie = `${deps.secureCookies ? '__Host-' : ''}acb-me-browser`;
  router.use((_req, res, next) => {
    res.setHeader('Cache-Control', 'no-store');
    next();
  });

  router.get('/', async (req, res) => {
    const userId = await browserUser(req);
    const wantsJson = req.accepts(['html', 'json']) === 'json';
    if (!userId) {
      if (wantsJson || deps.trust) throw new ApiError('user_identity_required', 'sign in first: no user identity was presented');
      return html(res, 200, signInPage());
    }
    const rows = (await deps.records.liveOf(userId)).sort((a, b) => b.createdAt.getTime() - a.createdAt.getTime());
    const views = rows.map((r) => connectionView(r, deps.tools.get(r.toolId)?.name ?? r.toolId));
    const csrf = csrfToken(userId, browserOf(req, res));
    if (wantsJson) return res.json({ user_id: userId, connections: views, csrf_token: csrf });
    const notice = typeof req.query.done === 'string' && /^\d{1,4}$/.test(req.query.done) ? `Disconnected ${req.query.done}.` : undefined;
    html(res, 200, connectionsPage(userId, views, csrf, notice));
  });

  // Development mode only: the simple user form (production identities come signed from the gateway).
  router.post('/session', form, async (req, res) => {
    if (deps.trust) throw new ApiError('not_found', 'no such endpoint');
    sameOrigin(req);
    const user = typeof req.body?.user === 'string' ? req.body.user : '';
    if (!OWNER_ID_PATTERN.test(user)) throw new ApiError('invalid_user_id', 'the user id has characters or a length that is not allowed');
    res.cookie(cookieName, `${user}.${deps.vault.deriveToken('me-session', user)}`, {
      httpOnly: true,
      secure: deps.secureCookies,
      sameSite: 'strict',
      path: '/',
    });
    res.redirect(303, '../connections');
  });

  router.post('/disconnect-all', form, json, async (req, res) => {
    const userId = await stateChangeBy(req);
    const rows = await deps.records.liveOf(userId);
    for (const row of rows) await disconnect(req, userId, row);
    await answer(req, res, rows.length);
  });

  router.post('/:credentialId/disconnect', form, json, async (req, res) => {
    const userId = await stateChangeBy(req);
    const id = String(req.params.credentialId);
    const row = UUID_PATTERN.test(id) ? await deps.records.byId(id) : null;
    // Another user's connection is as unknown as one that does not exist.
    if (!row || row.userId !== userId || row.deletedAt) throw new ApiError('credential_not_found', 'no live connection with this id');
    await disconnect(req, userId, row);
    await answer(req, res, 1);
  });

  return router;

  async function browserUser(req: Request): Promise<string | null> {
    if (deps.trust) {
      if (!req.get('x-user-identity')) return null;
      let identity;
      try {
        identity = await deps.trust.verify(req.get('x-user-identity'));
      } catch (err) {
        if (err instanceof IdentityError)
          throw new ApiError(catalogCode(err.code, 'identity_invalid'), err.message, { status: err.status });
        throw err;
      }
      // The browser user's own identity only: not one issued to an agent (an agent holding the user's identity must
      // not see or take back the user's other connections), and never one accepted unverified (permissive mode).
      if (identity.agentBound) throw new ApiError('identity_agent_mismatch', 'this page takes the browser user’s identity, not an agent’s');
      if (!identity.verified) throw new ApiError('identity_invalid', 'the user identity does not verify');
      return identity.userId;
    }
    const cookie = parseCookies(req.get('cookie') ?? '')[cookieName];
    const dot = cookie?.lastIndexOf('.') ?? -1;
    if (!cookie || dot < 1) return null;
    const user = cookie.slice(0, dot);
    return secretsEqual(cookie.slice(dot + 1), deps.vault.deriveToken('me-session', user)) ? user : null;
  }

  /** A state-changing request: from this origin, signed in, carrying the token this browser's page was given. */
  async function stateChangeBy(req: Request): Promise<string> {
    sameOrigin(req);
    const userId = await browserUser(req);
    if (!userId) throw new ApiError('user_identity_required', 'sign in first: no user identity was presented');
    const browser = parseCookies(req.get('cookie') ?? '')[browserCookie];
    const given = String(req.body?.csrf ?? req.get('x-csrf-token') ?? '');
    if (!browser || !secretsEqual(given, csrfToken(userId, browser)))
      throw new ApiError('csrf_token_invalid', 'the request did not carry this page’s token');
    return userId;
  }

  /** Browsers send Origin with every POST: one that is missing or from another site is refused first. */
  function sameOrigin(req: Request): void {
    if (req.get('origin') !== deps.publicOrigin) throw new ApiError('cross_site_request', 'the request came from another site');
  }

  /** The page's token: for this user in this browser (a random cookie the page sets), so it cannot be made elsewhere. */
  function csrfToken(userId: string, browser: string): string {
    return deps.vault.deriveToken('me-csrf', `${userId}\n${browser}`);
  }

  /** This browser's random id (set on the first visit): what the page's token is bound to. */
  function browserOf(req: Request, res: Response): string {
    const known = parseCookies(req.get('cookie') ?? '')[browserCookie];
    if (known && /^[A-Za-z0-9_-]{32,64}$/.test(known)) return known;
    const fresh = randomBytes(24).toString('base64url');
    res.cookie(browserCookie, fresh, { httpOnly: true, secure: deps.secureCookies, sameSite: 'strict', path: '/' });
    return fresh;
  }

  async function disconnect(req: Request, userId: string, row: Credential): Promise<void> {
    const owner: CredentialOwner = { agentId: row.agentId, userId: row.userId, toolId: row.toolId };
    const view = await deps.broker.revoke(owner, { actor: `user:${userId}`, reason: 'disconnected by the user' });
    await deps.audit.record(null, {
      eventType: 'user.disconnect',
      outcome: view ? 'success' : 'failure',
      actor: `user:${userId}`,
      ...owner,
      credentialId: row.id,
      requestId: req.id,
      ip: req.ip ?? null,
      ...(view?.revocation ? { detail: { revocation: view.revocation.outcome } } : {}),
    });
  }

  async function answer(req: Request, res: Response, count: number): Promise<void> {
    if (req.is('application/json') || req.accepts(['html', 'json']) === 'json') {
      res.json({ disconnected: count });
      return;
    }
    res.redirect(303, `${req.baseUrl}?done=${count}`);
  }
}

function html(res: Response, status: number, body: string): void {
  // Not no-referrer (the API's default): with it a browser sends `Origin: null` even on this page's own forms.
  sendHtml(res, status, body, PAGE_CSP, { 'Referrer-Policy': 'same-origin' });
}
