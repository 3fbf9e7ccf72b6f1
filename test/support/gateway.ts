import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import * as jose from 'jose';

type SigningKey = Awaited<ReturnType<typeof jose.generateKeyPair>>['privateKey'];

/**
 * A trusted gateway for tests: signs user identity JWTs and publishes its JWKS over HTTP, with key rotation.
 */
export class TestGateway {
  issuer = 'https://gateway.test';
  audience = 'credential-broker';
  jwksUrl = '';
  private server: Server | undefined;
  private keys: { kid: string; privateKey: SigningKey; publicJwk: jose.JWK }[] = [];
  jwksFetches = 0;

  static async start(): Promise<TestGateway> {
    const g = new TestGateway();
    await g.rotate();
    g.server = createServer((_req, res) => {
      g.jwksFetches++;
      res.setHeader('content-type', 'application/json');
      res.end(JSON.stringify({ keys: g.keys.map((k) => k.publicJwk) }));
    });
    await new Promise<void>((resolve) => g.server!.listen(0, '127.0.0.1', resolve));
    g.jwksUrl = `http://127.0.0.1:${(g.server.address() as AddressInfo).port}/.well-known/jwks.json`;
    return g;
  }

  /** A new signing key becomes current and is published; the old ones are dropped. */
  async rotate(): Promise<void> {
    const { privateKey, publicKey } = await jose.generateKeyPair('ES256', { extractable: true });
    const kid = `k-${Math.random().toString(36).slice(2, 10)}`;
    this.keys = [{ kid, privateKey, publicJwk: { ...(await jose.exportJWK(publicKey)), kid, alg: 'ES256', use: 'sig' } }];
  }

  get currentKey() {
    return this.keys[0]!;
  }

  trustConfig(extra: Record<string, unknown> = {}) {
    return {
      enabled: true,
      verification_mode: 'strict' as const,
      jwks_cooldown_seconds: 0,
      trusted_issuers: [{ issuer: this.issuer, jwks_url: this.jwksUrl, audience: this.audience, agent_claim: 'agent_id' }],
      ...extra,
    };
  }

  /** An identity token for `sub`; `claims` and `header` override anything. */
  async sign(
    sub: string,
    opts: { claims?: jose.JWTPayload; header?: Partial<jose.JWTHeaderParameters>; key?: SigningKey; iatOffset?: number; ttl?: number } = {},
  ): Promise<string> {
    const now = Math.floor(Date.now() / 1000) + (opts.iatOffset ?? 0);
    const payload: jose.JWTPayload = { iss: this.issuer, aud: this.audience, sub, iat: now, exp: now + (opts.ttl ?? 300), ...opts.claims };
    return new jose.SignJWT(payload)
      .setProtectedHeader({ alg: 'ES256', kid: this.currentKey.kid, typ: 'JWT', ...opts.header })
      .sign(opts.key ?? this.currentKey.privateKey);
  }

  async close(): Promise<void> {
    await new Promise<void>((resolve) => this.server?.close(() => resolve()));
  }
}

/** An unsigned token (`alg: none`). */
export function unsignedToken(payload: jose.JWTPayload): string {
  return new jose.UnsecuredJWT(payload).encode();
}
