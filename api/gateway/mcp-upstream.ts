import { Client, SSEClientTransport, StreamableHTTPClientTransport, type Notification } from '@modelcontextprotocol/client';
import type { CredentialOwner } from '../../lib/domain.js';
import type { Tool } from '../../lib/tools.js';
import type { GatewayDeps } from './deps.js';
import { ownCause, UpstreamAuthRequired, userFetch, type AuthNeed, type SeenTokens } from './upstream.js';

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
 * The MCP client towards a tool's server, as the user (the official SDK v2): Streamable HTTP or the older HTTP+SSE
 * transport, every request through the user-token fetch (outbound policy, refresh on 401, step-up on
 * insufficient_scope). Connecting sends `initialize` with the user's token, as to every server before; a server of the
 * 2026-07-28 revision that refuses it (it answers only the stateless protocol) is then spoken to statelessly
 * (`server/discover`, no `initialize`, no session). A server that answers both stays on the older protocol, whose
 * results every agent of the gateway understands.
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
  const client = await connectMcp(tool, fetch, 'agent-credential-broker');
  client.fallbackNotificationHandler = async (n) => {
    await hooks.onNotification(n);
  };
  client.onclose = hooks.onClose;
  return client;
}

/** Connects to a tool's MCP server through `fetch` (see openUpstream for which protocol); our own errors surface as they are. */
export async function connectMcp(tool: Tool, fetch: typeof globalThis.fetch, name: string): Promise<Client> {
  const url = new URL(tool.connection.url);
  const connect = async (mode: 'legacy' | 'auto') => {
    const transport =
      tool.connection.type === 'sse' ? new SSEClientTransport(url, { fetch }) : new StreamableHTTPClientTransport(url, { fetch });
    const client = new Client({ name, version: '1.0.0' }, { capabilities: {}, versionNegotiation: { mode } });
    await client.connect(transport);
    return client;
  };
  try {
    try {
      return await connect('legacy');
    } catch (err) {
      if (tool.connection.type === 'sse' || !refusesOlderClients(err)) throw err;
      return await connect('auto');
    }
  } catch (err) {
    throw ownCause(err);
  }
}

/** The server refused `initialize` for its protocol version (-32022): it speaks only newer revisions. */
function refusesOlderClients(err: unknown): boolean {
  const data = (err as { data?: { status?: unknown; text?: unknown } } | null)?.data;
  if (data?.status !== 400 || typeof data.text !== 'string') return false;
  try {
    return (JSON.parse(data.text) as { error?: { code?: unknown } }).error?.code === -32022;
  } catch {
    return false;
  }
}
