import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { consent } from '../support/browser.js';
import { freshOwner, startHarness, type Harness } from '../support/harness.js';

let h: Harness;
beforeAll(async () => {
  h = await startHarness();
});
afterAll(async () => {
  await h?.close();
});

describe('credential lifecycle over HTTP', () => {
  it('asks for authorization, then serves a token the provider says is active', async () => {
    const who = freshOwner();
    const first = await h.call('POST', '/api/v1/credentials/sandbox', who);
    expect(first.status).toBe(202);
    expect(first.json.status).toBe('authorization_required');
    const authUrl = new URL(first.json.authorization_url);
    expect(authUrl.origin).toBe(h.sandbox.issuer);
    expect(authUrl.searchParams.get('code_challenge_method')).toBe('S256');

    const waiting = h.call('GET', '/api/v1/credentials/sandbox?wait=30', who);
    const page = await consent(first.json.authorization_url, h.callbackPrefix, { login: who.user });
    expect(page.status).toBe(200);
    expect(page.html).toContain('Connected');
    const waited = await waiting;
    expect(waited.status).toBe(200);
    expect(waited.json.status).toBe('active');
    expect(waited.json).not.toHaveProperty('access_token');

    const second = await h.call('POST', '/api/v1/credentials/sandbox', who);
    expect(second.status).toBe(200);
    expect(second.json.status).toBe('active');
    const introspection = await h.introspect(second.json.access_token);
    expect(introspection.active).toBe(true);
    expect(introspection.sub).toBe(who.user);
  });
});
afterAll(() => {
  if (process.env.DUMP_LOGS) console.log(h?.logs.join('\n'));
});
