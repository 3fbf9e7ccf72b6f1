/**
 * Drives the sandbox provider's real login and consent pages the way a person's browser would: follows
 * redirects, keeps cookies (one jar per origin, sent back to that origin only), submits the forms, and stops at
 * our callback, which it then opens.
 */
export interface ConsentResult {
  /** Our callback page's answer. */
  status: number;
  html: string;
  /** The callback URL the provider redirected to (state, code, iss). */
  callbackUrl: URL;
  /** With `stopAtProvider`: where the broker's start page sent the browser. */
  providerUrl?: URL;
}

/** One browser's cookies, by origin. Two browsers (an attacker's and a victim's) are two jars. */
export class CookieJar {
  private readonly byOrigin = new Map<string, Map<string, string>>();

  header(origin: string): string {
    return [...(this.byOrigin.get(origin) ?? [])].map(([k, v]) => `${k}=${v}`).join('; ');
  }

  store(origin: string, res: Response): void {
    let jar = this.byOrigin.get(origin);
    if (!jar) this.byOrigin.set(origin, (jar = new Map()));
    for (const c of res.headers.getSetCookie()) {
      const [pair] = c.split(';');
      const eq = pair!.indexOf('=');
      const name = pair!.slice(0, eq).trim();
      const value = pair!.slice(eq + 1);
      if (/expires=Thu, 01 Jan 1970/i.test(c) || value === '') jar.delete(name);
      else jar.set(name, value);
    }
  }

  names(origin: string): string[] {
    return [...(this.byOrigin.get(origin)?.keys() ?? [])];
  }
}

export interface ConsentOptions {
  login: string;
  /** Press "abort" on the consent page instead (the provider redirects with error=access_denied). */
  deny?: boolean;
  /** Stop at the redirect to the callback without opening it. */
  stopAtCallback?: boolean;
  /** Stop where the broker's start page sends the browser to the provider (an attacker lifting that URL). */
  stopAtProvider?: boolean;
  /** Change the callback URL before opening it (drop `iss`, say). */
  editCallback?: (url: URL) => void;
  /** The gateway-signed identity of the person in this browser, sent to the broker's pages. */
  identity?: string;
  /** The broker's public HTTPS origin and where it really listens (behind a TLS-terminating proxy). */
  brokerOrigin?: { public: string; local: string };
  /** This browser's cookies (a fresh browser when not given). */
  jar?: CookieJar;
}

export async function consent(authorizationUrl: string, callbackPrefix: string, opts: ConsentOptions): Promise<ConsentResult> {
  const jar = opts.jar ?? new CookieJar();
  const brokerOrigin = new URL(callbackPrefix).origin;
  const brokerFetch = async (target: URL, init: RequestInit = {}) => {
    const local =
      opts.brokerOrigin && target.origin === opts.brokerOrigin.public
        ? new URL(target.pathname + target.search, opts.brokerOrigin.local)
        : target;
    const cookie = jar.header(brokerOrigin);
    const headers: Record<string, string> = {
      ...(opts.identity ? { 'x-user-identity': opts.identity } : {}),
      ...(opts.brokerOrigin ? { 'x-forwarded-proto': 'https' } : {}),
      ...(cookie ? { cookie } : {}),
    };
    const res = await fetch(local, { ...init, redirect: 'manual', headers });
    jar.store(brokerOrigin, res);
    return res;
  };
  let url = new URL(authorizationUrl);
  let init: RequestInit = { method: 'GET' };
  let fromBroker = false;
  for (let step = 0; step < 25; step++) {
    if (url.href.startsWith(callbackPrefix)) {
      if (opts.stopAtCallback) return { status: 0, html: '', callbackUrl: url };
      opts.editCallback?.(url);
      const res = await brokerFetch(url);
      return { status: res.status, html: await res.text(), callbackUrl: url };
    }
    if (opts.stopAtProvider && fromBroker && url.origin !== brokerOrigin)
      return { status: 0, html: '', callbackUrl: url, providerUrl: url };
    let res: Response;
    if (url.origin === brokerOrigin) {
      res = await brokerFetch(url, init);
      fromBroker = true;
    } else {
      const cookie = jar.header(url.origin);
      res = await fetch(url, { ...init, redirect: 'manual', headers: { ...(init.headers ?? {}), ...(cookie ? { cookie } : {}) } });
      jar.store(url.origin, res);
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
