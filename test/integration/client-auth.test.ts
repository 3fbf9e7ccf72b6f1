import { exportJWK, exportPKCS8, generateKeyPair } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SandboxAdapter } from '../../sandbox/memory-adapter.js';
import { addSandboxTool } from '../support/flows.js';
import { freshOwner, startHarness, type Harness } from '../support/harness.js';

let h: Harness;
beforeAll(async () => {
  h = await startHarness();
});
afterAll(async () => {
  await h?.close();
});

/** Registers a client at the sandbox's real oidc-provider (through its storage, as dynamic registration would). */
async function registerClient(metadata: Record<string, unknown>): Promise<void> {
  await new SandboxAdapter('Client').upsert(String(metadata.client_id), {
    token_endpoint_auth_method: 'private_key_jwt',
    token_endpoint_auth_signing_alg: 'ES256',
    ...metadata,
  });
}

describe('private_key_jwt client authentication (RFC 7523)', () => {
  it('authorizes and refreshes with a key the broker derives, whose public half it publishes at /oauth/jwks.json', async () => {
    const clientId = `pkjwt-${Date.now()}`;
    addSandboxTool(h, 'sandbox-pkjwt', { client_id: clientId, client_secret: undefined, token_endpoint_auth_method: 'private_key_jwt' });
    const jwks = (await (await fetch(`${h.baseUrl}/oauth/jwks.json`)).json()) as { keys: Record<string, unknown>[] };
    expect(jwks.keys).toHaveLength(1);
    expect(jwks.keys[0]).toMatchObject({ kty: 'EC', crv: 'P-256', alg: 'ES256', use: 'sig', kid: expect.any(String) });
    // Only the public half: no private parameter of any key type.
    for (const k of jwks.keys) for (const p of ['d', 'p', 'q', 'dp', 'dq', 'qi']) expect(k).not.toHaveProperty(p);
    await registerClient({
      client_id: clientId,
      redirect_uris: [h.callbackPrefix],
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
      jwks,
    });

    const who = freshOwner('pkjwt');
    const first = await h.call('POST', '/api/v1/credentials/sandbox-pkjwt', who);
    expect(first.status, first.text).toBe(202);
    expect((await h.consent(first.json.authorization_url, { login: who.user })).status).toBe(200);
    const active = await h.call('POST', '/api/v1/credentials/sandbox-pkjwt', who);
    expect(active.status).toBe(200);
    expect(await h.introspect(active.json.access_token)).toMatchObject({ active: true, client_id: clientId, sub: who.user });
    const refreshed = await h.call('POST', '/api/v1/credentials/sandbox-pkjwt', who, { force_refresh: true });
    expect(refreshed.status).toBe(200);
    expect(refreshed.json.access_token).not.toBe(active.json.access_token);
  });

  it('fetches machine tokens with the tool’s own key, and a key the server does not know is refused with a stable code', async () => {
    const { publicKey, privateKey } = await generateKeyPair('ES256', { extractable: true });
    const clientId = `pkjwt-machine-${Date.now()}`;
    await registerClient({
      client_id: clientId,
      grant_types: ['client_credentials'],
      response_types: [],
      redirect_uris: [],
      jwks: { keys: [{ ...(await exportJWK(publicKey)), alg: 'ES256', use: 'sig' }] },
    });
    const machineTool = (id: string, pem: string) =>
      addSandboxTool(
        h,
        id,
        {
          type: 'client_credentials',
          client_id: clientId,
          client_secret: undefined,
          token_endpoint_auth_method: 'private_key_jwt',
          client_private_key: pem,
          scopes: [],
        },
        {},
      );
    machineTool('machine-pkjwt', await exportPKCS8(privateKey));
    const who = freshOwner('pkjwt-machine');
    const token = await h.call('POST', '/api/v1/credentials/machine-pkjwt', who);
    expect(token.status, token.text).toBe(200);
    expect(await h.introspect(token.json.access_token)).toMatchObject({ active: true, client_id: clientId });

    machineTool('machine-wrong-key', await exportPKCS8((await generateKeyPair('ES256', { extractable: true })).privateKey));
    const refused = await h.call('POST', '/api/v1/credentials/machine-wrong-key', who);
    expect(refused.status).toBeGreaterThanOrEqual(400);
    expect(refused.status).toBeLessThan(600);
    expect(refused.json.error.code).toMatch(/^[a-z_]+$/);
    expect(refused.text).not.toContain('PRIVATE KEY');
  });
});
