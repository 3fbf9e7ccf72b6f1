import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { SSEClientTransport } from '@modelcontextprotocol/sdk/client/sse.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import type { Notification } from '@modelcontextprotocol/sdk/types.js';
import type { CredentialOwner } from '../../lib/domain.js';
import type { Tool } from '../../lib/tools.js';
import type { GatewayDeps } from './deps.js';
import { UpstreamAuthRequired, userFetch, type AuthNeed, type SeenTokens } from './upstream.js';

export interface UpstreamHooks {
  deps: GatewayDeps;
  owner: CredentialOwner;
  tool: Tool;
  seen: SeenTokens;
  /** What the user must do, as the fetch found it (for transports that drop an error's cause). */
  onNeed: (need: AuthNeed) => void;
  onNotification: (notification: Notification) => Promise<unknown>;
  onClose: () => void;
}

/**
 * The MCP client towards a tool's server, as the user: Streamable HTTP or the older HTTP+SSE transport, every
 * request through the user-token fetch (outbound policy, refresh on 401, step-up on insufficient_scope).
 * Connecting sends `initialize` with the user's token.
 */
export async function openUpstream(hooks: UpstreamHooks): Promise<Client> {
  const { deps, owner, tool, seen } = hooks;
  const inner = userFetch({ broker: deps.broker, outbound: deps.outbound, owner, tool, seen });
  const fetch: typeof inner = async (input, init) => {
    try {
      return await inner(input, init);
    } catch (err) {
      if (err instanceof UpstreamAuthRequired) hooks.onNeed(err.need);
      throw err;
    }
  };
  const url = new URL(tool.connection.url);
  const transport =
    tool.connection.type === 'sse' ? new SSEClientTransport(url, { fetch }) : new StreamableHTTPClientTransport(url, { fetch });
  const client = new Client({ name: 'agent-credential-broker', version: '1.0.0' }, { capabilities: {} });
  client.fallbackNotificationHandler = async (n) => {
    await hooks.onNotification(n);
  };
  client.onclose = hooks.onClose;
  await client.connect(transport);
  return client;
}
