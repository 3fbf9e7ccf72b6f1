/**
 * Drives the sandbox provider's real login and consent pages the way a person's browser would: follows
 * redirects, keeps cookies, submits the forms, and stops at our callback, which it then opens.
 */
export interface ConsentResult {
  /** Our callback page's answer. */
  status: number;
  html: string;
  /** The callback URL the provider redirected to (state, code, iss). */
  callbackUrl: URL;
}

export interface ConsentOptions {
  login: string;
  /** Press "abort" on the consent page instead (the provider redirects with error=access_denied). */
  deny?: boolean;
  /** Stop at the redirect to the callback without opening it. */
  stopAtCallback?: boolean;
  /** The gateway-signed identity of the person in this browser, sent to the broker's pages. */
  identity?: string;
  /** The broker's public HTTPS origin and where it really listens (behind a TLS-terminating proxy). */
  brokerOrigin?: { public: string; local: string };
}

export async function consent(authorizationUrl: string, callbackPrefix: string, opts: ConsentOptions): Promise<ConsentResult> {
  const jar = new Map<string, string>();
  const brokerOrigin = new URL(callbackPrefix).origin;
  const brokerFetch = (target: URL, init: RequestInit = {}) => {
    const local = opts.brokerOrigin && target.origin === opts.brokerOrigin.public ? new URL(target.pathname + target.search, opts.brokerOrigin.local) : target;
    const headers: Record<string, string> = { ...(opts.identity ? { 'x-user-identity': opts.identity } : {}), ...(opts.brokerOrigin ? { 'x-forwarded-proto': 'https' } : {}) };
    return fetch(local, { ...init, redirect: 'manual', headers });
  };
  let url = new URL(authorizationUrl);
  let init: RequestInit = { method: 'GET' };
  for (let step = 0; step < 25; step++) {
    if (url.href.startsWith(callbackPrefix)) {
      if (opts.stopAtCallback) return { status: 0, html: '', callbackUrl: url };
      const res = await brokerFetch(url);
      return { status: res.status, html: await res.text(), callbackUrl: url };
    }
    const res =
      url.origin === brokerOrigin
        ? await brokerFetch(url, init)
        : await fetch(url, { ...init, redirect: 'manual', headers: { ...(init.headers ?? {}), cookie: cookieHeader(jar) } });
    for (const c of res.headers.getSetCookie()) {
      const [pair] = c.split(';');
      const eq = pair!.indexOf('=');
      const name = pair!.slice(0, eq).trim();
      const value = pair!.slice(eq + 1);
      if (/expires=Thu, 01 Jan 1970/i.test(c) || value === '') jar.delete(name);
      else jar.set(name, value);
    }
    if (res.status >= 300 && res.status < 400) {
      url = new URL(res.headers.get('location')!, url);
      init = { method: 'GET' };
      await res.arrayBuffer();
      continue;
    }
    const html = await res.text();
    // Our own pages (the start page refusing, say) end the journey: that is what the user sees.
    if (url.origin === brokerOrigin) return { status: res.status, html, callbackUrl: url };
    if (res.status !== 200) throw new Error(`provider answered ${res.status} at ${url.pathname}: ${html.slice(0, 300)}`);
    const action = /<form[^>]*action="([^"]+)"/.exec(html)?.[1];
    const prompt = /name="prompt" value="([a-z]+)"/.exec(html)?.[1];
    if (!action || !prompt) throw new Error(`no form at ${url.pathname}`);
    let body: URLSearchParams;
    if (prompt === 'login') {
      body = new URLSearchParams({ prompt: 'login', login: opts.login, password: 'any-password' });
    } else if (opts.deny) {
      const abort = /href="([^"]*\/abort)"/.exec(html)?.[1];
      if (!abort) throw new Error('no cancel link on the consent page');
      url = new URL(abort.replaceAll('&amp;', '&'), url);
      init = { method: 'GET' };
      continue;
    } else {
      body = new URLSearchParams({ prompt });
    }
    url = new URL(action.replaceAll('&amp;', '&'), url);
    init = { method: 'POST', body, headers: { 'content-type': 'application/x-www-form-urlencoded' } };
  }
  throw new Error('too many steps in the consent flow');
}

function cookieHeader(jar: Map<string, string>): string {
  return [...jar].map(([k, v]) => `${k}=${v}`).join('; ');
}
