import { createHash, randomUUID } from 'node:crypto';
import * as jose from 'jose';
import * as oidc from 'openid-client';
import type { Tool } from '../tools.js';

/**
 * DPoP (RFC 9449): a key per credential, held by the broker only, to which the authorization server binds the
 * credential's tokens; every request that uses them carries a proof signed with it. A token taken without the key
 * is refused by servers that enforce the binding.
 */
export interface ProofKey {
  privateKey: jose.CryptoKey;
  publicKey: jose.CryptoKey;
  publicJwk: jose.JWK;
}

const ALG = 'ES256';

/** Whether a server's metadata says it binds tokens with DPoP proofs the broker can sign (ES256). */
export function supportsDpop(server: Record<string, unknown>): boolean {
  const algs = server.dpop_signing_alg_values_supported;
  return Array.isArray(algs) && algs.includes(ALG);
}

/**
 * DPoP where the server supports it and the tool says so (`dpop: true`), or says nothing and its tokens are used
 * through the gateway only (`expose_token: false`, EXPOSE_TOKENS=false): a bound token is of no use to an agent
 * that reads it, so tokens agents may read stay bearer tokens unless the operator chooses otherwise.
 */
export function bindsWithDpop(tool: Pick<Tool, 'auth' | 'exposeToken'>, server: Record<string, unknown>, exposeTokens = true): boolean {
  const gatewayOnly = !(tool.exposeToken ?? exposeTokens);
  return (tool.auth.dpop ?? gatewayOnly) && supportsDpop(server);
}

/** A new key, as the private JWK the vault keeps (encrypted, beside the tokens bound to it). */
export async function newProofKey(): Promise<string> {
  const { privateKey } = await jose.generateKeyPair(ALG, { extractable: true });
  return JSON.stringify(await jose.exportJWK(privateKey));
}

/** The key from its stored JWK. */
export async function importProofKey(privateJwkJson: string): Promise<ProofKey> {
  const jwk = JSON.parse(privateJwkJson) as jose.JWK;
  const publicJwk: jose.JWK = { kty: jwk.kty, crv: jwk.crv, x: jwk.x, y: jwk.y };
  return {
    privateKey: (await jose.importJWK(jwk, ALG)) as jose.CryptoKey,
    publicKey: (await jose.importJWK(publicJwk, ALG)) as jose.CryptoKey,
    publicJwk,
  };
}

/** openid-client's DPoP handle for token requests (it also follows the server's `use_dpop_nonce`). */
export function tokenRequestProof(config: oidc.Configuration, key: ProofKey): oidc.DPoPOptions {
  return { DPoP: oidc.getDPoPHandle(config, { privateKey: key.privateKey, publicKey: key.publicKey }) };
}

/** The headers of one request with a DPoP-bound token: `Authorization: DPoP …` and a fresh proof for it. */
export async function proofHeaders(
  key: ProofKey,
  request: { method: string; url: string | URL },
  accessToken: string,
  nonce?: string,
): Promise<{ authorization: string; dpop: string }> {
  const url = new URL(request.url);
  const proof = await new jose.SignJWT({
    htm: request.method.toUpperCase(),
    htu: `${url.origin}${url.pathname}`,
    ath: createHash('sha256').update(accessToken).digest('base64url'),
    ...(nonce ? { nonce } : {}),
  })
    .setProtectedHeader({ alg: ALG, typ: 'dpop+jwt', jwk: key.publicJwk })
    .setIssuedAt()
    .setJti(randomUUID())
    .sign(key.privateKey);
  return { authorization: `DPoP ${accessToken}`, dpop: proof };
}

/** The nonce a resource server asks proofs to carry (401 `DPoP error="use_dpop_nonce"` with `DPoP-Nonce`). */
export function requestedNonce(status: number, header: (name: string) => string | null): string | null {
  if (status !== 401 || !/^\s*DPoP\b[^]*error="?use_dpop_nonce"?/i.test(header('www-authenticate') ?? '')) return null;
  const nonce = header('dpop-nonce');
  return nonce && /^[\x21\x23-\x5b\x5d-\x7e]{1,200}$/.test(nonce) ? nonce : null;
}
