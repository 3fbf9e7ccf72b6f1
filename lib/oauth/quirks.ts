import type { Tool } from '../tools.js';

/**
 * Provider quirks that change a request or how a response is read. Pure functions, so each is unit-tested.
 */

/** Where and how the scopes go in the authorization request (Slack: `user_scope`, comma-separated). */
export function scopeParams(tool: Tool, scopes: string[]): Record<string, string> {
  if (!scopes.length) return {};
  return { [tool.auth.scope_param ?? 'scope']: scopes.join(tool.auth.scope_separator ?? ' ') };
}

/**
 * Slack's OAuth v2 answers with the user's token nested under `authed_user`, a `token_type` of `user`, and
 * errors as HTTP 200 with `ok: false`. This reshapes it into a standard token response.
 */
export function normalizeSlackTokenResponse(
  status: number,
  body: Record<string, unknown>,
): { status: number; body: Record<string, unknown> } {
  if (body.ok === false) {
    const error = String(body.error ?? 'invalid_request');
    const grantErrors = ['invalid_code', 'code_already_used', 'invalid_refresh_token', 'token_revoked', 'token_expired'];
    return { status: 400, body: { error: grantErrors.includes(error) ? 'invalid_grant' : error } };
  }
  const user = body.authed_user as Record<string, unknown> | undefined;
  const source = user && typeof user.access_token === 'string' ? user : body;
  const out: Record<string, unknown> = { access_token: source.access_token, token_type: 'bearer' };
  for (const k of ['refresh_token', 'expires_in', 'scope'] as const) if (source[k] !== undefined) out[k] = source[k];
  return { status, body: out };
}

/** A fetch that applies a tool's token response quirk to its token endpoint's answers. */
export function quirkFetch(tool: Tool, tokenEndpoint: string, base: typeof fetch): typeof fetch {
  if (tool.auth.token_response !== 'slack_authed_user') return base;
  return async (input, init) => {
    const res = await base(input, init);
    const target = typeof input === 'string' ? input : input instanceof URL ? input.href : input.url;
    if (target !== tokenEndpoint) return res;
    const json = (await res.json().catch(() => ({}))) as Record<string, unknown>;
    const { status, body } = normalizeSlackTokenResponse(res.status, json);
    return new Response(JSON.stringify(body), { status, headers: { 'content-type': 'application/json' } });
  };
}
