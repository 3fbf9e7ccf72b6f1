import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { addSandboxTool, withdrawGrant, type Who } from '../support/flows.js';
import { freshOwner, startHarness, type Harness } from '../support/harness.js';
import { WebhookReceiver } from '../support/webhook-receiver.js';

const OIDC = '/api/v1/credentials/sandbox-oidc';
const LOOSE = '/api/v1/credentials/sandbox-loose';

let h: Harness;
let rx: WebhookReceiver;
beforeAll(async () => {
  rx = await WebhookReceiver.start();
  h = await startHarness({ env: { WEBHOOK_RETRY_INITIAL_SECONDS: '1' } });
  // The sandbox speaking OpenID: the ID token says who consented.
  const oidcScopes = { scopes: ['openid', 'tools.read'], allowed_scopes: ['openid', 'tools.read', 'tools.write'] };
  addSandboxTool(h, 'sandbox-oidc', oidcScopes);
  addSandboxTool(h, 'sandbox-loose', oidcScopes, { pin_account: false });
});
afterAll(async () => {
  await h?.close();
  await rx?.close();
});

/** Asks for the tool's credential and consents at the provider as `login`; returns the callback page. */
async function consentAs(path: string, who: Who, login: string) {
  const first = await h.call('POST', path, who);
  expect(first.status, first.text).toBe(202);
  return h.consent(first.json.authorization_url, { login });
}

/** The user withdraws the grant at the provider: the next refresh needs them again. */
async function withdraw(who: Who, toolId: string) {
  await withdrawGrant(h, who, toolId);
  const refreshed = await h.call('POST', `/api/v1/credentials/${toolId}`, who, { force_refresh: true });
  expect(refreshed.status).toBe(202);
}

describe('the upstream account', () => {
  it('is recorded at consent (the ID token’s subject) and shown in the status answer', async () => {
    const who = freshOwner('acct');
    const page = await consentAs(OIDC, who, `alice-${who.user}`);
    expect(page.status).toBe(200);
    const status = await h.call('GET', OIDC, who);
    expect(status.json).toMatchObject({ status: 'active', account: { id: `alice-${who.user}` } });
    // The plain sandbox tool asks for no OpenID scope and its tokens are opaque: the account is unknown.
    const plain = freshOwner('acct-plain');
    await consentAs('/api/v1/credentials/sandbox', plain, 'bob');
    expect((await h.call('GET', '/api/v1/credentials/sandbox', plain)).json.account).toBeNull();
  });

  it('refuses a re-authorization with another account (a page for the user, an event for the agent), then takes the right one', async () => {
    const who = freshOwner('acct-pin');
    const sub = await h.call('POST', '/api/v1/webhooks', who, { url: `${rx.url}/pin`, events: ['authorization.failed'] });
    rx.secrets.set('/pin', sub.json.secret);
    const alice = `alice-${who.user}`;
    expect((await consentAs(OIDC, who, alice)).status).toBe(200);
    await withdraw(who, 'sandbox-oidc');

    const wrong = await consentAs(OIDC, who, `mallory-${who.user}`);
    expect(wrong.status).toBe(409);
    expect(wrong.html).toContain('different account');
    await vi.waitFor(() => expect(rx.at('/pin').map((r) => r.event.data.reason)).toEqual(['account_mismatch']), { timeout: 15_000 });
    const after = await h.call('GET', OIDC, who);
    expect(after.json).toMatchObject({ status: 'authorization_failed', end_reason: 'account_mismatch', account: null });

    expect((await consentAs(OIDC, who, alice)).status).toBe(200);
    expect((await h.call('GET', OIDC, who)).json).toMatchObject({ status: 'active', account: { id: alice } });
  });

  it('lets another account in where the tool says pin_account: false, and after the user revoked the connection', async () => {
    const who = freshOwner('acct-loose');
    expect((await consentAs(LOOSE, who, `first-${who.user}`)).status).toBe(200);
    await withdraw(who, 'sandbox-loose');
    expect((await consentAs(LOOSE, who, `second-${who.user}`)).status).toBe(200);
    expect((await h.call('GET', LOOSE, who)).json.account.id).toBe(`second-${who.user}`);

    const revoking = freshOwner('acct-revoked');
    expect((await consentAs(OIDC, revoking, `old-${revoking.user}`)).status).toBe(200);
    expect((await h.call('DELETE', OIDC, revoking)).status).toBe(200);
    expect((await consentAs(OIDC, revoking, `new-${revoking.user}`)).status).toBe(200);
  });
});
