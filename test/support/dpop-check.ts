import { createHash } from 'node:crypto';
import * as jose from 'jose';

/** What a resource server learned of a request's token (introspection): `cnf.jkt` when it is DPoP-bound. */
export interface TokenBinding {
  cnf?: { jkt?: string };
}

/**
 * A resource server's side of DPoP (RFC 9449 §7): a bound token only with the `DPoP` scheme and a proof signed by
 * the key it is bound to, for this method and URL and this token, fresh, used once (and carrying the server's
 * nonce when it asks for one); an unbound token only as a bearer token. Null: accepted; else why not.
 */
export async function checkTokenUse(
  req: { method: string; url: string; scheme: string; token: string; proof: string | undefined },
  info: TokenBinding,
  state: { jtis: Set<string>; nonce?: string },
): Promise<null | 'invalid_token' | 'invalid_dpop_proof' | 'use_dpop_nonce'> {
  const jkt = info.cnf?.jkt;
  if (!jkt) return req.scheme.toLowerCase() === 'bearer' ? null : 'invalid_token';
  if (req.scheme.toLowerCase() !== 'dpop' || !req.proof) return 'invalid_token';
  let payload: jose.JWTPayload;
  let header: jose.JWTHeaderParameters;
  try {
    ({ payload, protectedHeader: header } = await jose.jwtVerify(req.proof, jose.EmbeddedJWK, { typ: 'dpop+jwt', algorithms: ['ES256'] }));
  } catch {
    return 'invalid_dpop_proof';
  }
  const url = new URL(req.url);
  const fresh = typeof payload.iat === 'number' && Math.abs(payload.iat - Date.now() / 1000) <= 60;
  if (
    (await jose.calculateJwkThumbprint(header.jwk!)) !== jkt ||
    payload.htm !== req.method ||
    payload.htu !== `${url.origin}${url.pathname}` ||
    payload.ath !== createHash('sha256').update(req.token).digest('base64url') ||
    !fresh ||
    typeof payload.jti !== 'string' ||
    state.jtis.has(payload.jti)
  )
    return 'invalid_dpop_proof';
  if (state.nonce && payload.nonce !== state.nonce) return 'use_dpop_nonce';
  state.jtis.add(payload.jti);
  return null;
}

/** The `WWW-Authenticate` challenge (and nonce) for a refusal of checkTokenUse. */
export function dpopChallenge(refusal: 'invalid_token' | 'invalid_dpop_proof' | 'use_dpop_nonce', nonce?: string): Record<string, string> {
  return {
    'www-authenticate': `DPoP error="${refusal}", algs="ES256"`,
    ...(refusal === 'use_dpop_nonce' && nonce ? { 'dpop-nonce': nonce } : {}),
  };
}
