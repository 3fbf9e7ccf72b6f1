import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { ErrorCode, McpError } from '@modelcontextprotocol/sdk/types.js';
import type { BrokerClient } from './client.js';

/** What to show the user when a tool call needs their consent first (the broker's `-32042`). */
export interface ConsentNeeded {
  url: string;
  elicitationId: string | null;
  message: string | null;
}

/** The MCP SDK transport for a tool through the broker's gateway: every request authenticated as this client. */
export function gatewayTransport(broker: BrokerClient, toolId: string): StreamableHTTPClientTransport {
  return new StreamableHTTPClientTransport(new URL(`${broker.baseUrl}/api/v1/mcp/${encodeURIComponent(toolId)}`), {
    fetch: broker.authenticatedFetch,
  });
}

/** The consent link in a gateway's URL-elicitation-required error, or null for any other error. */
export function consentNeeded(err: unknown): ConsentNeeded | null {
  if (!(err instanceof McpError) || err.code !== ErrorCode.UrlElicitationRequired) return null;
  const first = (err.data as { elicitations?: { url?: unknown; elicitationId?: unknown; message?: unknown }[] } | undefined)
    ?.elicitations?.[0];
  if (!first || typeof first.url !== 'string') return null;
  return {
    url: first.url,
    elicitationId: typeof first.elicitationId === 'string' ? first.elicitationId : null,
    message: typeof first.message === 'string' ? first.message : null,
  };
}

/**
 * Runs a gateway call; when it needs the user's consent (`-32042`), hands the link to `onConsentNeeded` (show it to
 * the user), waits for the authorization to finish, and tries once more.
 */
export async function withConsent<T>(
  broker: BrokerClient,
  toolId: string,
  call: () => Promise<T>,
  opts: { onConsentNeeded: (need: ConsentNeeded) => void | Promise<void>; signal?: AbortSignal; timeoutMs?: number },
): Promise<T> {
  try {
    return await call();
  } catch (err) {
    const need = consentNeeded(err);
    if (!need) throw err;
    await opts.onConsentNeeded(need);
    await broker.waitForAuthorization(toolId, {
      ...(opts.signal ? { signal: opts.signal } : {}),
      ...(opts.timeoutMs ? { timeoutMs: opts.timeoutMs } : {}),
    });
    return call();
  }
}
