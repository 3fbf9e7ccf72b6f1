import { decodeJwt } from 'jose';
import type * as oidc from 'openid-client';
import type { Tool } from '../tools.js';

/** The upstream account a consent landed on: an id to pin, a name to show. */
export interface UpstreamAccount {
  id: string;
  name: string | null;
}

const text = (v: unknown): string | null => (typeof v === 'string' && v ? v.slice(0, 300) : typeof v === 'number' ? String(v) : null);

/**
 * Who the user is at the provider, from what the consent brought: the ID token's `sub` (OpenID providers); else
 * the tool's "who am I" endpoint (`account_url`, GitHub's /user); else the `sub` of a JWT access token (many MCP
 * servers). Null when none says: the account is unknown, which never fails an authorization.
 */
export async function identifyAccount(
  tool: Tool,
  tokens: oidc.TokenEndpointResponse & Partial<oidc.TokenEndpointResponseHelpers>,
  /** Sends the request (with a DPoP-bound token, `boundFetch` replaces the bearer header with the token and its proof). */
  fetch: (url: string, init: RequestInit) => Promise<Response>,
): Promise<UpstreamAccount | null> {
  const claims = tokens.id_token ? tokens.claims?.() : undefined;
  if (claims?.sub) return { id: claims.sub, name: text(claims.email) ?? text(claims.name) ?? text(claims.preferred_username) };
  if (tool.auth.account_url) {
    try {
      const res = await fetch(tool.auth.account_url, {
        headers: { authorization: `Bearer ${tokens.access_token}`, accept: 'application/json' },
      });
      if (res.ok) {
        const body = (await res.json()) as Record<string, unknown>;
        const fields = tool.auth.account_fields ?? { id: 'id', name: 'login' };
        const id = text(body[fields.id]);
        if (id) return { id, name: text(body[fields.name]) };
      }
    } catch {
      // Unknown, then: shown as such and not compared.
    }
    // Where the tool names its "who am I" endpoint, only its answer counts: another kind of id (a token's `sub`)
    // would look like another account.
    return null;
  }
  try {
    const payload = decodeJwt(tokens.access_token);
    const id = text(payload.sub);
    if (id) return { id, name: text(payload.email) ?? text(payload.preferred_username) };
  } catch {
    // An opaque token: nothing to read.
  }
  return null;
}
