import { McpError } from '@modelcontextprotocol/sdk/types.js';
import { BrokerError } from '../credential-workflows.js';
import { ApiError } from '../errors.js';
import { errorCode } from './record.js';
import { UpstreamAuthRequired, type AuthNeed } from './upstream.js';

/** JSON-RPC error codes of the gateway's own refusals (the data's `code` is the stable API error code). */
export const GATEWAY_RPC_ERRORS = { forbidden: -32003, unavailable: -32004, upstream: -32005 } as const;

export function callScope(toolId: string, name: string): string {
  return `tool:${toolId}:call:${name}`;
}

export function findNeed(err: unknown): AuthNeed | null {
  for (let e: unknown = err, depth = 0; e && depth < 5; e = (e as { cause?: unknown }).cause, depth++) {
    if (e instanceof UpstreamAuthRequired) return e.need;
  }
  return null;
}

/** A refusal of ours (an ApiError), or the upstream failing, as a JSON-RPC error with a stable code in its data. */
export function apiToMcp(err: unknown): McpError {
  if (err instanceof ApiError) {
    const kind = err.status === 403 || err.status === 409 ? 'forbidden' : err.status >= 500 ? 'unavailable' : 'forbidden';
    return new McpError(GATEWAY_RPC_ERRORS[kind], err.message, {
      code: err.code,
      ...(err.opts.retryAfterSeconds ? { retryAfterSeconds: err.opts.retryAfterSeconds } : {}),
    });
  }
  if (err instanceof BrokerError)
    return new McpError(GATEWAY_RPC_ERRORS.unavailable, err.message, { code: err.code, retryAfterSeconds: 1 });
  const code = errorCode(err);
  return new McpError(
    code === 'credential_unavailable' ? GATEWAY_RPC_ERRORS.unavailable : GATEWAY_RPC_ERRORS.upstream,
    code === 'credential_unavailable' ? 'the credential is being refreshed; try again shortly' : 'the tool could not be reached',
    { code },
  );
}
