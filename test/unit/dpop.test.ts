import { createHash } from 'node:crypto';
import * as jose from 'jose';
import { describe, expect, it } from 'vitest';
import { bindsWithDpop, importProofKey, newProofKey, proofHeaders, proofRefusal } from '../../lib/oauth/dpop.js';

const supporting = { dpop_signing_alg_values_supported: ['RS256', 'ES256'] };

describe('DPoP', () => {
  it.each([
    ['a server that does not support it', { auth: {}, exposeToken: false }, {}, true, false],
    [
      'a server whose algorithms the broker cannot sign',
      { auth: {}, exposeToken: false },
      { dpop_signing_alg_values_supported: ['RS256'] },
      true,
      false,
    ],
    ['tokens used through the gateway only (expose_token: false)', { auth: {}, exposeToken: false }, supporting, true, true],
    ['tokens used through the gateway only (EXPOSE_TOKENS=false)', { auth: {} }, supporting, false, true],
    ['tokens agents read', { auth: {} }, supporting, true, false],
    ['tokens agents read, the tool asking for DPoP', { auth: { dpop: true } }, supporting, true, true],
    ['gateway-only tokens, the tool refusing DPoP', { auth: { dpop: false }, exposeToken: false }, supporting, true, false],
  ])('binds tokens or not: %s', (_name, tool, server, exposeTokens, binds) => {
    expect(bindsWithDpop(tool as Parameters<typeof bindsWithDpop>[0], server, exposeTokens)).toBe(binds);
  });

  it('signs a proof for the method, the URL without query, and this token, with the public key in its header', async () => {
    const key = await importProofKey(await newProofKey());
    const headers = await proofHeaders(key, { method: 'post', url: 'https://api.example.com/v1/items?x=1#f' }, 'the-token', 'n-1');
    expect(headers.authorization).toBe('DPoP the-token');
    const { payload, protectedHeader } = await jose.jwtVerify(headers.dpop, jose.EmbeddedJWK, { typ: 'dpop+jwt' });
    expect(protectedHeader.jwk).toEqual(key.publicJwk);
    expect(protectedHeader.jwk).not.toHaveProperty('d');
    expect(payload).toMatchObject({
      htm: 'POST',
      htu: 'https://api.example.com/v1/items',
      ath: createHash('sha256').update('the-token').digest('base64url'),
      nonce: 'n-1',
    });
    expect(payload.jti).toEqual(expect.any(String));
  });

  it('hears a resource server ask for its nonce or refuse the proof, wherever its challenge stands, and nothing else', () => {
    const headers = (h: Record<string, string>) => (name: string) => h[name] ?? null;
    const asking = { 'www-authenticate': 'DPoP error="use_dpop_nonce", algs="ES256"', 'dpop-nonce': 'abc' };
    expect(proofRefusal(401, headers(asking))).toEqual({ error: 'use_dpop_nonce', nonce: 'abc' });
    expect(proofRefusal(401, headers({ ...asking, 'www-authenticate': 'Bearer realm="api", DPoP error="use_dpop_nonce"' }))).toEqual({
      error: 'use_dpop_nonce',
      nonce: 'abc',
    });
    expect(proofRefusal(401, headers({ 'www-authenticate': 'DPoP error="invalid_dpop_proof"' }))).toEqual({
      error: 'invalid_dpop_proof',
      nonce: null,
    });
    expect(proofRefusal(400, headers(asking))).toBeNull();
    expect(proofRefusal(401, headers({ ...asking, 'www-authenticate': 'DPoP error="invalid_token"' }))).toBeNull();
    expect(proofRefusal(401, headers({ ...asking, 'dpop-nonce': 'bad nonce"' }))?.nonce).toBeNull();
  });
});
