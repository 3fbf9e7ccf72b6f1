import { createHmac } from 'node:crypto';
import * as jose from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { IdentityError, parseTrustConfig, TrustManager } from '../../api/identity/trust.js';
import { TestGateway, unsignedToken } from '../support/gateway.js';

let gw: TestGateway;
let trust: TrustManager;
beforeAll(async () => {
  gw = await TestGateway.start();
  trust = new TrustManager(parseTrustConfig(gw.trustConfig(), false));
});
afterAll(async () => {
  await gw.close();
});

async function refusal(token: string | undefined, agentId?: string, manager = trust): Promise<string> {
  try {
    await manager.verify(token, agentId);
    return 'accepted';
  } catch (err) {
    return err instanceof IdentityError ? `${err.status} ${err.code}` : `unexpected ${String(err)}`;
  }
}

function b64(obj: unknown): string {
  return Buffer.from(JSON.stringify(obj)).toString('base64url');
}

describe('TrustManager (strict)', () => {
  it('accepts a well-signed identity and returns its subject', async () => {
    const identity = await trust.verify(await gw.sign('alice@example.com'), 'agent-1');
    expect(identity).toEqual({
      userId: 'alice@example.com',
      issuer: gw.issuer,
      verified: true,
      agentBound: false,
      expiresAt: expect.any(Number),
      issuedAt: expect.any(Number),
    });
    // One issued to an agent says so (the users' page refuses those).
    expect((await trust.verify(await gw.sign('alice@example.com', { claims: { agent_id: 'agent-1' } }), 'agent-1')).agentBound).toBe(true);
  });

  it('refuses a missing or malformed identity', async () => {
    expect(await refusal(undefined)).toBe('401 user_identity_required');
    expect(await refusal('not.a.jwt')).toBe('401 identity_malformed');
  });

  it('refuses alg:none', async () => {
    const token = unsignedToken({
      iss: gw.issuer,
      aud: gw.audience,
      sub: 'alice',
      iat: Math.floor(Date.now() / 1000),
      exp: Math.floor(Date.now() / 1000) + 60,
    });
    expect(await refusal(token)).toBe('401 identity_algorithm_not_allowed');
  });

  it('refuses HS256 signed with the issuer public key (algorithm confusion)', async () => {
    const now = Math.floor(Date.now() / 1000);
    const header = b64({ alg: 'HS256', kid: gw.currentKey.kid, typ: 'JWT' });
    const body = b64({ iss: gw.issuer, aud: gw.audience, sub: 'alice', iat: now, exp: now + 60 });
    const sig = createHmac('sha256', JSON.stringify(gw.currentKey.publicJwk)).update(`${header}.${body}`).digest('base64url');
    expect(await refusal(`${header}.${body}.${sig}`)).toBe('401 identity_algorithm_not_allowed');
  });

  it('refuses a token signed with another key under a known kid, and an unknown kid', async () => {
    const { privateKey } = await jose.generateKeyPair('ES256');
    expect(await refusal(await gw.sign('alice', { key: privateKey }))).toBe('401 identity_bad_signature');
    expect(await refusal(await gw.sign('alice', { key: privateKey, header: { kid: 'unknown-kid' } }))).toBe('401 identity_unknown_key');
  });

  it('refuses a wrong issuer or audience', async () => {
    expect(await refusal(await gw.sign('alice', { claims: { iss: 'https://evil.test' } }))).toBe('401 identity_untrusted_issuer');
    expect(await refusal(await gw.sign('alice', { claims: { aud: 'another-service' } }))).toBe('401 identity_wrong_audience');
  });

  it('applies the clock skew tolerance at the expiry boundary', async () => {
    const skew = trust.config.clock_skew_tolerance_seconds;
    expect(await refusal(await gw.sign('alice', { iatOffset: -skew - 60, ttl: 60 + 10 }))).toBe('accepted');
    expect(await refusal(await gw.sign('alice', { iatOffset: -skew - 60, ttl: 60 - 10 }))).toBe('401 identity_expired');
  });

  it('applies the skew to tokens from the future', async () => {
    const skew = trust.config.clock_skew_tolerance_seconds;
    expect(await refusal(await gw.sign('alice', { iatOffset: skew - 10 }))).toBe('accepted');
    expect(await refusal(await gw.sign('alice', { claims: { nbf: Math.floor(Date.now() / 1000) + skew + 30 } }))).toBe(
      '401 identity_not_yet_valid',
    );
    expect(await refusal(await gw.sign('alice', { iatOffset: skew + 30 }))).toBe('401 identity_not_yet_valid');
  });

  it('refuses a token that lives longer than the maximum', async () => {
    expect(await refusal(await gw.sign('alice', { ttl: 86400 + 1 }))).toBe('401 identity_lifetime_exceeded');
    expect(await refusal(await gw.sign('alice', { ttl: 86400 }))).toBe('accepted');
  });

  it('gives a token without exp the default lifetime from iat', async () => {
    const old = Math.floor(Date.now() / 1000) - 3600 - 300 - 30;
    expect(await refusal(await gw.sign('alice', { claims: { iat: old, exp: undefined } }))).toBe('401 identity_expired');
    expect(await refusal(await gw.sign('alice', { claims: { exp: undefined } }))).toBe('accepted');
  });

  it('refuses a token bound to another agent', async () => {
    const token = await gw.sign('alice', { claims: { agent_id: 'agent-1' } });
    expect(await refusal(token, 'agent-1')).toBe('accepted');
    expect(await refusal(token, 'agent-2')).toBe('403 identity_agent_mismatch');
  });

  it('checks the agent binding by default, without agent_claim in the config, and can require it', async () => {
    const { agent_claim: _omitted, ...issuer } = gw.trustConfig().trusted_issuers[0]!;
    const byDefault = new TrustManager(parseTrustConfig({ ...gw.trustConfig(), trusted_issuers: [issuer] }, false));
    expect(await refusal(await gw.sign('alice', { claims: { agent_id: 'agent-2' } }), 'agent-1', byDefault)).toBe(
      '403 identity_agent_mismatch',
    );
    expect(await refusal(await gw.sign('alice'), 'agent-1', byDefault)).toBe('accepted');
    const required = new TrustManager(
      parseTrustConfig({ ...gw.trustConfig(), trusted_issuers: [{ ...issuer, require_agent_claim: true }] }, false),
    );
    expect(await refusal(await gw.sign('alice'), 'agent-1', required)).toBe('403 identity_agent_missing');
    expect(await refusal(await gw.sign('alice', { claims: { agent_id: 'agent-1' } }), 'agent-1', required)).toBe('accepted');
    const off = new TrustManager(parseTrustConfig({ ...gw.trustConfig(), trusted_issuers: [{ ...issuer, agent_claim: null }] }, false));
    expect(await refusal(await gw.sign('alice', { claims: { agent_id: 'agent-2' } }), 'agent-1', off)).toBe('accepted');
  });

  it('bounds the remaining life of a token without iat by the maximum lifetime', async () => {
    const now = Math.floor(Date.now() / 1000);
    const max = trust.config.jwt_max_ttl_seconds;
    expect(await refusal(await gw.sign('alice', { claims: { iat: undefined, exp: now + 10 * 365 * 86400 } }))).toBe(
      '401 identity_lifetime_exceeded',
    );
    expect(await refusal(await gw.sign('alice', { claims: { iat: undefined, exp: now + max + 600 } }))).toBe(
      '401 identity_lifetime_exceeded',
    );
    expect(await refusal(await gw.sign('alice', { claims: { iat: undefined, exp: now + 600 } }))).toBe('accepted');
  });

  it('refuses a subject that is not a valid user id', async () => {
    expect(await refusal(await gw.sign('../../etc/passwd'))).toBe('401 identity_invalid_subject');
  });

  it('follows key rotation at the issuer without a restart', async () => {
    const before = gw.jwksFetches;
    await gw.rotate();
    expect(await refusal(await gw.sign('alice'))).toBe('accepted');
    expect(gw.jwksFetches).toBeGreaterThan(before);
  });
});

describe('TrustManager configuration', () => {
  it('refuses permissive mode, a disabled manager and no issuers outside development mode', () => {
    expect(() => parseTrustConfig({ ...gw.trustConfig(), verification_mode: 'permissive' }, false)).toThrow(
      /permissive is for development mode only/,
    );
    expect(() => parseTrustConfig({ ...gw.trustConfig(), enabled: false }, false)).toThrow(/enabled must be true/);
    expect(() => parseTrustConfig({ enabled: true }, false)).toThrow(/at least one trusted issuer/);
    expect(() => parseTrustConfig({ ...gw.trustConfig(), colour: 'blue' }, false)).toThrow(/colour/);
  });

  it('keeps the subjects of different issuers apart unless the operator maps them to one namespace', async () => {
    const other = await TestGateway.start();
    other.issuer = 'https://gateway-two.test';
    try {
      const first = gw.trustConfig().trusted_issuers[0]!;
      const second = other.trustConfig().trusted_issuers[0]!;
      expect(() => parseTrustConfig({ trusted_issuers: [first, second] }, false)).toThrow(/each needs a user_namespace/);
      const apart = new TrustManager(
        parseTrustConfig(
          {
            trusted_issuers: [
              { ...first, user_namespace: '' },
              { ...second, user_namespace: 'partner' },
            ],
          },
          false,
        ),
      );
      expect((await apart.verify(await gw.sign('alice'))).userId).toBe('alice');
      expect((await apart.verify(await other.sign('alice'))).userId).toBe('partner:alice');
      const shared = new TrustManager(
        parseTrustConfig(
          {
            trusted_issuers: [
              { ...first, user_namespace: 'corp' },
              { ...second, user_namespace: 'corp' },
            ],
          },
          false,
        ),
      );
      expect((await shared.verify(await gw.sign('alice'))).userId).toBe('corp:alice');
      expect((await shared.verify(await other.sign('alice'))).userId).toBe('corp:alice');
    } finally {
      await other.close();
    }
  });

  it('in permissive mode (development) accepts a bad token with a warning', async () => {
    const warnings: string[] = [];
    const permissive = new TrustManager(parseTrustConfig({ ...gw.trustConfig(), verification_mode: 'permissive' }, true), (m) =>
      warnings.push(m),
    );
    const { privateKey } = await jose.generateKeyPair('ES256');
    const identity = await permissive.verify(await gw.sign('bob', { key: privateKey }));
    expect(identity).toMatchObject({ userId: 'bob', verified: false, failure: 'identity_bad_signature' });
    expect(warnings).toHaveLength(1);
  });
});
