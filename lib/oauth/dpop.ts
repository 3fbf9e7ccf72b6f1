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

/** Whether a token answer's `token_type` says the token is bound to the proof's key. */
export function isBound(tokenType: string | null | undefined): boolean {
  return tokenType?.toLowerCase() === 'dpop';
}

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

/**
 * A resource server's refusal of a proof (RFC 9449 §7.1, §9), wherever its DPoP challenge stands among others: it asks
 * for its nonce (`use_dpop_nonce`, with `DPoP-Nonce`) or refuses the proof (`invalid_dpop_proof`); null otherwise.
 */
export function proofRefusal(
  status: number,
  header: (name: string) => string | null,
): { error: 'use_dpop_nonce' | 'invalid_dpop_proof'; nonce: string | null } | null {
  if (status !== 401) return null;
  const error = /error="?(use_dpop_nonce|invalid_dpop_proof)"?/i.exec(header('www-authenticate') ?? '')?.[1]?.toLowerCase();
  if (error !== 'use_dpop_nonce' && error !== 'invalid_dpop_proof') return null;
  return { error, nonce: validNonce(header('dpop-nonce')) };
}

/** A server's `DPoP-Nonce`, when it is one (bounded, printable, no quotes or backslashes). */
export function validNonce(value: string | null): string | null {
  return value && /^[\x21\x23-\x5b\x5d-\x7e]{1,200}$/.test(value) ? value : null;
}

/**
 * A fetch that sends a DPoP-bound token with a fresh proof of its key (in place of any `Authorization` header given),
 * and once more with the server's nonce when it asks for one.
 */
export function boundFetch(
  fetch: (url: string, init: RequestInit) => Promise<Response>,
  key: ProofKey,
  accessToken: string,
): (url: string, init?: RequestInit) => Promise<Response> {
  return async (url, init = {}) => {
    const request = { method: init.method ?? 'GET', url };
    const withProof = async (nonce?: string) =>
      fetch(url, {
        ...init,
        headers: { ...(init.headers as Record<string, string>), ...(await proofHeaders(key, request, accessToken, nonce)) },
      });
    const res = await withProof();
    const refusal = proofRefusal(res.status, (name) => res.headers.get(name));
    if (refusal?.error !== 'use_dpop_nonce' || !refusal.nonce) return res;
    await res.body?.cancel();
    return withProof(refusal.nonce);
  };
}
