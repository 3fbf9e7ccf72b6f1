import { createECDH, createPrivateKey, createPublicKey } from 'node:crypto';
import { calculateJwkThumbprint, importJWK, importPKCS8, type CryptoKey, type JWK } from 'jose';
import * as oidc from 'openid-client';
import type { Tool } from '../tools.js';
import type { Vault } from '../vault/crypto.js';

/** A tool's key for `private_key_jwt` client authentication (RFC 7523): the private half never leaves the broker. */
export interface ClientKey {
  privateKey: CryptoKey;
  /** The public half as a JWK (with `kid`, `alg`, `use: sig`), published at /oauth/jwks.json. */
  publicJwk: JWK;
  /** Every public key to publish: the signing one first, then those of older master keys (rotation). */
  published: JWK[];
}

export function usesPrivateKeyJwt(tool: Tool): boolean {
  return tool.auth.token_endpoint_auth_method === 'private_key_jwt';
}

/**
 * Keys for `private_key_jwt`: the tool's own (`client_private_key`, a PKCS#8 PEM), or one the broker derives for the
 * tool from its master key (P-256, the same in every process, nothing stored). Its public JWKS is served at
 * /oauth/jwks.json for authorization servers that fetch it (`jwks_uri`).
 */
export class ClientKeys {
  private readonly cache = new Map<string, Promise<ClientKey>>();

  constructor(private readonly vault: Vault) {}

  keyFor(tool: Tool): Promise<ClientKey> {
    let key = this.cache.get(tool.id);
    if (!key) {
      key = this.load(tool);
      key.catch(() => this.cache.delete(tool.id));
      this.cache.set(tool.id, key);
    }
    return key;
  }

  /** openid-client's client authentication with the tool's key. */
  async clientAuth(tool: Tool): Promise<oidc.ClientAuth> {
    const { privateKey, publicJwk } = await this.keyFor(tool);
    return oidc.PrivateKeyJwt({ key: privateKey, ...(publicJwk.kid ? { kid: publicJwk.kid } : {}) });
  }

  /** The public keys of every tool that authenticates with `private_key_jwt`. */
  async jwks(tools: Tool[]): Promise<{ keys: JWK[] }> {
    const keys = await Promise.all(tools.filter(usesPrivateKeyJwt).map(async (t) => (await this.keyFor(t)).published));
    return { keys: keys.flat() };
  }

  private async load(tool: Tool): Promise<ClientKey> {
    const alg = tool.auth.client_assertion_alg ?? 'ES256';
    const pem = tool.auth.client_private_key;
    if (pem) {
      // An operator's key goes unnamed: the server may know it by another kid, and with none it tries each key.
      const jwk = { ...(createPublicKey(createPrivateKey(pem)).export({ format: 'jwk' }) as JWK), alg, use: 'sig' };
      return { privateKey: await importPKCS8(pem, alg), publicJwk: jwk, published: [jwk] };
    }
    // One P-256 key per master key (the current one signs; older ones stay published until their master key goes),
    // from 32 bytes each master key derives for this tool: a valid scalar but with negligible odds.
    const derived = await Promise.all(this.vault.deriveKeys(`client-assertion-key:${tool.id}`).map(({ key }) => p256(key)));
    return { privateKey: derived[0]!.privateKey, publicJwk: derived[0]!.publicJwk, published: derived.map((k) => k.publicJwk) };
  }
}

/** A P-256 key pair from a 32-byte scalar, its public half named by its thumbprint. */
async function p256(d: Buffer): Promise<{ privateKey: CryptoKey; publicJwk: JWK }> {
  const ecdh = createECDH('prime256v1');
  ecdh.setPrivateKey(d);
  const point = ecdh.getPublicKey();
  const jwk: JWK = { kty: 'EC', crv: 'P-256', x: point.subarray(1, 33).toString('base64url'), y: point.subarray(33).toString('base64url') };
  const privateKey = (await importJWK({ ...jwk, d: d.toString('base64url') }, 'ES256')) as CryptoKey;
  const kid = (await calculateJwkThumbprint(jwk)).slice(0, 16);
  return { privateKey, publicJwk: { ...jwk, kid, alg: 'ES256', use: 'sig' } };
}
