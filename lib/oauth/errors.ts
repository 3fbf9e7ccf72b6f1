import * as oidc from 'openid-client';
import { findOutboundError } from '../net/outbound.js';
import { DiscoveryError } from './mcp-discovery.js';
import { ExchangeStepError, UnexpectedTokenTypeError } from './enterprise.js';

/** OAuth error codes that no retry can fix: the user must authorize again. */
export const PERMANENT_OAUTH_ERRORS = new Set(['invalid_grant', 'invalid_client', 'unauthorized_client', 'access_denied', 'invalid_scope']);

export interface ClassifiedOAuthError {
  /** A stable code: the OAuth error, or a transport class. */
  code: string;
  permanent: boolean;
  /** Safe to log: never a token, secret or verifier. */
  message: string;
  /** The server's Retry-After (seconds, bounded) on a transient answer. */
  retryAfterSeconds?: number;
}

/** Turns openid-client's errors into a stable code and a message with no secret in it. */
export function classifyOAuthError(err: unknown): ClassifiedOAuthError {
  if (err instanceof ExchangeStepError) {
    const inner = classifyOAuthError(err.cause);
    return { ...inner, message: `${err.step.replace('_', ' ')}: ${inner.message}` };
  }
  if (err instanceof UnexpectedTokenTypeError) return { code: err.code, permanent: true, message: err.message };
  const refused = findOutboundError(err);
  if (refused) return { code: refused.code, permanent: true, message: `outbound request refused (${refused.reason})` };
  if (err instanceof DiscoveryError) return { code: err.code, permanent: !err.transient, message: err.message };
  if (err instanceof oidc.ResponseBodyError) {
    // `identity_…` codes are the broker's own (a kept identity's state): a server cannot claim one.
    const code = /^[a-z_]{1,64}$/.test(err.error) && !err.error.startsWith('identity_') ? err.error : 'oauth_error';
    const transient = err.status >= 500 || code === 'temporarily_unavailable' || code === 'server_error' || err.status === 429;
    const retryAfterSeconds = transient ? retryAfter(err.response) : undefined;
    return {
      code,
      permanent: !transient,
      message: `authorization server answered ${err.status} ${code}`,
      ...(retryAfterSeconds ? { retryAfterSeconds } : {}),
    };
  }
  if (err instanceof oidc.AuthorizationResponseError) {
    const code = /^[a-z_]{1,64}$/.test(err.error) ? err.error : 'oauth_error';
    return { code, permanent: true, message: `authorization response carried error ${code}` };
  }
  if (err instanceof oidc.WWWAuthenticateChallengeError) {
    return { code: 'invalid_client', permanent: true, message: `authorization server rejected the client (${err.status})` };
  }
  if (err instanceof oidc.ClientError) {
    const status = (err.cause as { status?: unknown } | undefined)?.status;
    if (typeof status === 'number') {
      const transient = status >= 500 || status === 429 || status === 408;
      const retryAfterSeconds = transient ? retryAfter(err.cause as Response) : undefined;
      return {
        code: transient ? 'provider_unavailable' : 'provider_rejected',
        permanent: !transient,
        message: `authorization server answered ${status} (${safeCode(err.code)})`,
        ...(retryAfterSeconds ? { retryAfterSeconds } : {}),
      };
    }
    // Response validation failures (state, iss, PKCE) are not fixed by retrying.
    return { code: 'invalid_response', permanent: true, message: `authorization response failed validation: ${safeCode(err.code)}` };
  }
  const name = err instanceof Error ? err.name : 'Error';
  return { code: 'provider_unavailable', permanent: false, message: `authorization server unreachable or failing (${name})` };
}

/** RFC 9110 Retry-After, as seconds or an HTTP date, bounded to 5 minutes; undefined when absent or unusable. */
export function retryAfter(response: Response | undefined): number | undefined {
  const value = response?.headers?.get?.('retry-after')?.trim();
  if (!value) return undefined;
  const seconds = /^\d{1,6}$/.test(value) ? Number(value) : Math.ceil((Date.parse(value) - Date.now()) / 1000);
  if (!Number.isFinite(seconds) || seconds <= 0) return undefined;
  return Math.min(seconds, 300);
}

function safeCode(code: unknown): string {
  return typeof code === 'string' && /^[A-Z_a-z]{1,64}$/.test(code) ? code : 'unknown';
}
