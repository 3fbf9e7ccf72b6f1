import type { IncomingMessage, ServerResponse } from 'node:http';
import type Provider from 'oidc-provider';
import { escapeHtml } from '../lib/html.js';

const PATH = /^\/interaction\/([A-Za-z0-9_-]{1,100})(\/abort)?$/;

function page(res: ServerResponse, title: string, body: string): void {
  res.writeHead(200, {
    'content-type': 'text/html; charset=utf-8',
    'cache-control': 'no-store',
    // Nothing from elsewhere (no web fonts), no scripts: the pages work offline.
    // No form-action: the consent form's answer redirects on to the application's callback, on another origin.
    'content-security-policy': "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'",
  });
  res.end(`<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>${escapeHtml(title)}</title><style>body{font-family:system-ui,sans-serif;max-width:26rem;margin:3rem auto;padding:0 1rem;color:#222}
input{display:block;width:100%;margin:.4rem 0 .8rem;padding:.5rem;box-sizing:border-box}button{padding:.5rem 1rem;cursor:pointer}
.muted{color:#666;font-size:.9rem}ul{padding-left:1.2rem}</style></head><body><p class="muted">Sandbox authorization server (development only)</p>${body}</body></html>`);
}

async function form(req: IncomingMessage): Promise<URLSearchParams> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const c of req) {
    size += (c as Buffer).length;
    if (size > 16_384) throw new Error('form too large');
    chunks.push(c as Buffer);
  }
  return new URLSearchParams(Buffer.concat(chunks).toString('utf8'));
}

/**
 * The sandbox's own sign-in and consent pages, through oidc-provider's interaction API (instead of its
 * development pages, which load a web font from the internet and show a debug panel): they say which application
 * asks, for which scopes, and who is signed in. Any login and password work. Returns false for other paths.
 */
export async function handleInteraction(provider: Provider, req: IncomingMessage, res: ServerResponse): Promise<boolean> {
  const match = PATH.exec(new URL(req.url ?? '/', 'http://sandbox').pathname);
  if (!match) return false;
  const details = await provider.interactionDetails(req, res);
  const uid = match[1]!;
  if (match[2]) {
    await provider.interactionFinished(
      req,
      res,
      { error: 'access_denied', error_description: 'the user cancelled' },
      { mergeWithLastSubmission: false },
    );
    return true;
  }
  const clientId = String(details.params.client_id);
  const client = await provider.Client.find(clientId);
  const app = escapeHtml(String(client?.clientName ?? clientId));
  const scopes = String(details.params.scope ?? '')
    .split(' ')
    .filter(Boolean);
  if (req.method === 'POST') {
    const body = await form(req);
    if (details.prompt.name === 'login') {
      const login = (body.get('login') ?? '').trim().slice(0, 200);
      if (!login) {
        page(res, 'Sign in', '<p>Enter a login.</p>');
        return true;
      }
      await provider.interactionFinished(req, res, { login: { accountId: login } }, { mergeWithLastSubmission: false });
      return true;
    }
    const { prompt, params, session, grantId } = details;
    const grant = grantId
      ? await provider.Grant.find(grantId)
      : new provider.Grant({ accountId: session!.accountId, clientId: String(params.client_id) });
    const missing = prompt.details as {
      missingOIDCScope?: string[];
      missingOIDCClaims?: string[];
      missingResourceScopes?: Record<string, string[]>;
    };
    if (missing.missingOIDCScope) grant!.addOIDCScope(missing.missingOIDCScope.join(' '));
    if (missing.missingOIDCClaims) grant!.addOIDCClaims(missing.missingOIDCClaims);
    for (const [indicator, scope] of Object.entries(missing.missingResourceScopes ?? {}))
      grant!.addResourceScope(indicator, scope.join(' '));
    await provider.interactionFinished(req, res, { consent: { grantId: await grant!.save() } }, { mergeWithLastSubmission: true });
    return true;
  }
  const scopeList = scopes.length
    ? `<ul>${scopes.map((s) => `<li>${escapeHtml(s)}</li>`).join('')}</ul>`
    : '<p class="muted">No scopes.</p>';
  const action = `/interaction/${uid}`;
  if (details.prompt.name === 'login') {
    page(
      res,
      'Sign in',
      `<h1>Sign in</h1><p><strong>${app}</strong> asks you to sign in to connect your account.</p>
<form method="post" action="${action}"><input type="hidden" name="prompt" value="login">
<label>Login <input name="login" required autofocus></label><label>Password <input name="password" type="password"></label>
<button type="submit">Sign in</button></form><p class="muted">Any login and password work here.</p>`,
    );
    return true;
  }
  page(
    res,
    'Allow access',
    `<h1>Allow access?</h1><p>Signed in as <strong>${escapeHtml(String(details.session?.accountId ?? ''))}</strong>.</p>
<p><strong>${app}</strong> asks to act as you with:</p>${scopeList}
<form method="post" action="${action}"><input type="hidden" name="prompt" value="consent"><button type="submit">Allow</button></form>
<p><a href="${action}/abort">Cancel</a></p>`,
  );
  return true;
}
