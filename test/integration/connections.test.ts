import { existsSync, mkdirSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { chromium, type Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { authorize, CREDENTIAL_PATH } from '../support/flows.js';
import { freshOwner, startHarness, type Harness } from '../support/harness.js';

const CHROMIUM = '/usr/bin/chromium';
const ARTIFACTS = 'test-artifacts';
const available = existsSync(CHROMIUM);
if (!available && process.env.REQUIRE_BROWSER) throw new Error(`${CHROMIUM} is missing: run \`npm run setup:browser\``);

describe.skipIf(!available)("the user's connections page, in a real browser (Debian's Chromium)", () => {
  let h: Harness;
  let browser: Browser;
  let evil: Server;
  let evilUrl = '';
  beforeAll(async () => {
    mkdirSync(ARTIFACTS, { recursive: true });
    h = await startHarness();
    browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox'] });
    // Another site (same host, another port: same-site, cross-origin) whose page posts to the broker on load.
    evil = createServer((_req, res) => {
      res.setHeader('content-type', 'text/html');
      res.end(`<form id="f" method="post" action="${h.baseUrl}/api/v1/me/connections/disconnect-all">
<input type="hidden" name="csrf" value="guessed"></form><script>document.getElementById('f').submit()</script>`);
    });
    await new Promise<void>((resolve) => evil.listen(0, '127.0.0.1', resolve));
    evilUrl = `http://127.0.0.1:${(evil.address() as AddressInfo).port}/`;
  });
  afterAll(async () => {
    await browser?.close();
    evil?.close();
    await h?.close();
  });

  it('lists only the signed-in user’s connections, disconnects one, refuses a cross-site POST, disconnects everything', async () => {
    const user = `alice-${Date.now()}`;
    const first = { agent: freshOwner('page-a').agent, user };
    const second = { agent: freshOwner('page-b').agent, user };
    const stranger = freshOwner('page-other');
    const { accessToken } = await authorize(h, first);
    await authorize(h, second);
    await authorize(h, stranger);
    // The agent used it: "last used" shows.
    expect((await h.call('POST', CREDENTIAL_PATH, first)).status).toBe(200);

    const context = await browser.newContext();
    const page = await context.newPage();
    await page.goto(`${h.baseUrl}/api/v1/me/connections`);
    await page.fill('input[name=user]', user);
    await page.click('button[type=submit]');
    await page.waitForSelector('table');
    await page.screenshot({ path: `${ARTIFACTS}/connections-list.png`, fullPage: true });
    const rows = page.locator('tbody tr');
    expect(await rows.count()).toBe(2);
    const text = (await page.textContent('body'))!;
    expect(text).toContain(first.agent);
    expect(text).toContain(second.agent);
    expect(text).not.toContain(stranger.agent);
    expect(text).not.toContain(accessToken);
    const firstRow = page.locator(`tr:has(td:text-is("${first.agent}"))`);
    expect(await firstRow.locator('td').nth(6).textContent()).toMatch(/UTC/);

    await firstRow.locator('button').click();
    await page.waitForSelector('text=Disconnected 1.');
    await page.screenshot({ path: `${ARTIFACTS}/connections-after-disconnect.png`, fullPage: true });
    expect(await page.locator('tbody tr').count()).toBe(1);
    expect((await h.call('GET', CREDENTIAL_PATH, first)).json.status).toBe('revoked');
    expect((await h.introspect(accessToken)).active).toBe(false);

    // The same browser (its cookie) on another site: the POST is refused, nothing changes.
    const evilPage = await context.newPage();
    const refused = evilPage.waitForResponse((r) => r.url().endsWith('/disconnect-all'));
    await evilPage.goto(evilUrl);
    expect((await refused).status()).toBe(403);
    expect(await (await refused).json()).toMatchObject({ error: { code: 'cross_site_request' } });
    await evilPage.screenshot({ path: `${ARTIFACTS}/connections-cross-site-refused.png` });
    expect((await h.call('GET', CREDENTIAL_PATH, second)).json.status).toBe('active');

    await page.reload();
    await page.click('text=Disconnect everything');
    await page.waitForSelector('text=No agent holds access');
    await page.screenshot({ path: `${ARTIFACTS}/connections-empty.png`, fullPage: true });
    expect((await h.call('GET', CREDENTIAL_PATH, second)).json.status).toBe('revoked');
    expect((await h.call('GET', CREDENTIAL_PATH, stranger)).json.status).toBe('active');
    await context.close();
  });

  it('the sandbox provider’s pages say which application asks and who is signed in, and load nothing from elsewhere', async () => {
    const who = freshOwner('page-consent');
    const first = await h.call('POST', CREDENTIAL_PATH, who);
    const context = await browser.newContext();
    const page = await context.newPage();
    const elsewhere: string[] = [];
    await page.route('**/*', (route) => {
      const url = route.request().url();
      if (/^http:\/\/(127\.0\.0\.1|localhost)[:/]/.test(url)) return route.continue();
      elsewhere.push(url);
      return route.abort();
    });
    await page.goto(first.json.authorization_url);
    expect(await page.textContent('body')).toContain('Credential broker');
    await page.fill('input[name=login]', who.user);
    await page.fill('input[name=password]', 'any');
    await page.click('button[type=submit]');
    await page.waitForSelector('text=Allow access?');
    const text = (await page.textContent('body'))!;
    expect(text).toContain(who.user);
    expect(text).toContain('tools.read');
    expect(text).not.toMatch(/debug/i);
    await page.screenshot({ path: `${ARTIFACTS}/sandbox-consent.png`, fullPage: true });
    await page.click('button[type=submit]');
    await page.waitForSelector('text=Connected');
    expect(elsewhere).toEqual([]);
    expect((await h.call('GET', CREDENTIAL_PATH, who)).json.status).toBe('active');
    await context.close();
  });

  it('answers JSON with the same rows; refuses a POST without this browser’s token, without Origin, or with an agent’s identity', async () => {
    const who = freshOwner('page-json');
    await authorize(h, who);
    const origin = h.baseUrl;
    const session = await fetch(`${h.baseUrl}/api/v1/me/connections/session`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded', origin },
      body: new URLSearchParams({ user: who.user }),
      redirect: 'manual',
    });
    expect(session.status).toBe(303);
    const signedIn = session.headers.getSetCookie()[0]!.split(';')[0]!;
    const listed = await fetch(`${h.baseUrl}/api/v1/me/connections`, { headers: { cookie: signedIn, accept: 'application/json' } });
    const browser = listed.headers.getSetCookie()[0]!.split(';')[0]!;
    const cookie = `${signedIn}; ${browser}`;
    const body = (await listed.json()) as { connections: { agent_id: string }[]; csrf_token: string };
    expect(body.connections.map((c) => c.agent_id)).toEqual([who.agent]);
    const post = (headers: Record<string, string>) =>
      fetch(`${h.baseUrl}/api/v1/me/connections/disconnect-all`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', ...headers },
        body: '{}',
      });
    const codeOf = async (res: Response) => ((await res.json()) as { error: { code: string } }).error.code;
    expect(await codeOf(await post({ cookie, origin }))).toBe('csrf_token_invalid');
    // The token is this browser's: without its cookie (another client that learned the token) it is refused.
    expect(await codeOf(await post({ cookie: signedIn, origin, 'x-csrf-token': body.csrf_token }))).toBe('csrf_token_invalid');
    // No Origin (not a browser): refused before anything else.
    expect(await codeOf(await post({ cookie, 'x-csrf-token': body.csrf_token }))).toBe('cross_site_request');
    const anonymous = await fetch(`${h.baseUrl}/api/v1/me/connections`, { headers: { accept: 'application/json' } });
    expect(anonymous.status).toBe(401);
    const ok = await post({ cookie, origin, 'x-csrf-token': body.csrf_token });
    expect(await ok.json()).toEqual({ disconnected: 1 });
  });
});
