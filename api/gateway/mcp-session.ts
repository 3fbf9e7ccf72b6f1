import type { Request, Response } from 'express';
import type { Client, StreamableHTTPClientTransport } from '@modelcontextprotocol/client';
import { Server } from '@modelcontextprotocol/sdk/server/index.js';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import type { RequestHandlerExtra } from '@modelcontextprotocol/sdk/shared/protocol.js';
import type { AuthInfo } from '@modelcontextprotocol/sdk/server/auth/types.js';
import {
  CallToolRequestSchema,
  CallToolResultSchema,
  CompleteRequestSchema,
  CompleteResultSchema,
  EmptyResultSchema,
  GetPromptRequestSchema,
  GetPromptResultSchema,
  ListPromptsRequestSchema,
  ListPromptsResultSchema,
  ListResourcesRequestSchema,
  ListResourcesResultSchema,
  ListResourceTemplatesRequestSchema,
  ListResourceTemplatesResultSchema,
  ListToolsRequestSchema,
  ListToolsResultSchema,
  McpError,
  ReadResourceRequestSchema,
  ReadResourceResultSchema,
  SetLevelRequestSchema,
  SubscribeRequestSchema,
  UnsubscribeRequestSchema,
  UrlElicitationRequiredError,
  type ServerNotification,
  type ServerRequest,
} from '@modelcontextprotocol/sdk/types.js';
import type { z } from 'zod';
import type { CredentialOwner } from '../../lib/domain.js';
import type { Tool } from '../../lib/tools.js';
import type { Caller } from '../auth.js';
import { callScope, findNeed, GATEWAY_RPC_ERRORS } from './mcp-errors.js';
import { ConsentPrompts } from './mcp-consent.js';
import { STATELESS_PROTOCOL, withoutProtocolKeys, type Relay } from './mcp-relay.js';
import { ownCause, SeenTokens, type AuthNeed } from './upstream.js';
import { openUpstream } from './mcp-upstream.js';
import type { GatewayDeps } from './deps.js';
import { callOutcome, errorCode, recordCall } from './record.js';

type Extra = RequestHandlerExtra<ServerRequest, ServerNotification>;

/** The upstream session the fast lane relays calls on. */
export interface RelayTarget {
  sessionId: string | undefined;
  protocolVersion: string | undefined;
  /** The 2026-07-28 protocol or later: stateless, each request carrying its version (see mcp-relay's `stateless`). */
  modern: boolean;
}

/** A tool call may run this long upstream without sending progress (progress resets the clock). */
const CALL_TIMEOUT_MS = 5 * 60_000;

/**
 * One agent's MCP session with one tool, for one user: the agent side is an MCP server (Streamable HTTP), the
 * upstream side an MCP client holding the user's token (Streamable HTTP or HTTP+SSE), opened on first need.
 * Requests are relayed with their progress and cancellation; results are checked for the tokens the upstream
 * was sent. Before the user has authorized, `initialize` and `tools/list` (from the manifest) still work, and
 * everything else answers -32042 with the authorization link.
 */
export class GatewaySession {
  readonly server: Server;
  readonly transport: StreamableHTTPServerTransport;
  readonly seen = new SeenTokens();
  lastSeen = Date.now();
  /** Event streams (GET) the agent holds open on this session. */
  openStreams = 0;
  private upstream: Promise<Client> | null = null;
  /** Calls the fast lane relays now, by the agent's request id: the id the upstream knows, and how to cancel. */
  readonly relays = new Map<string | number, Relay>();
  /** What the user must do, as the upstream fetch last found it (for transports that drop an error's cause). */
  private lastNeed: AuthNeed | null = null;
  private readonly ended = new AbortController();
  private readonly prompts: ConsentPrompts;

  constructor(
    readonly id: string,
    public caller: Caller,
    readonly owner: CredentialOwner,
    readonly tool: Tool,
    private readonly deps: GatewayDeps,
    onClose: () => void,
  ) {
    this.server = new Server(
      { name: `agent-credential-broker/${tool.id}`, version: '1.0.0' },
      {
        capabilities: {
          tools: { listChanged: true },
          resources: { subscribe: true, listChanged: true },
          prompts: { listChanged: true },
          logging: {},
          completions: {},
        },
      },
    );
    this.transport = new StreamableHTTPServerTransport({ sessionIdGenerator: () => id });
    this.transport.onclose = () => {
      this.ended.abort();
      void this.upstream?.then((c) => c.close()).catch(() => {});
      onClose();
    };
    this.prompts = new ConsentPrompts(deps, tool, owner, this.seen, (n) => this.server.notification(n), this.ended.signal);
    this.registerHandlers();
  }

  belongsTo(owner: CredentialOwner): boolean {
    return owner.agentId === this.owner.agentId && owner.userId === this.owner.userId && owner.toolId === this.owner.toolId;
  }

  async handle(req: Request, res: Response): Promise<void> {
    this.lastSeen = Date.now();
    // The caller of this request travels with it (the SDK hands `req.auth` to the handlers as `extra.authInfo`):
    // concurrent requests of one session are checked each as its own caller.
    (req as Request & { auth?: AuthInfo }).auth = { token: '', clientId: req.caller!.agentId, scopes: [], extra: { caller: req.caller } };
    if (req.method === 'GET') {
      this.openStreams++;
      res.on('close', () => {
        this.openStreams--;
        this.lastSeen = Date.now();
      });
    }
    await this.transport.handleRequest(req, res, req.body);
  }

  /**
   * Where the lane may send a call: the connected Streamable HTTP upstream's session and protocol version (a
   * connection under way is waited for); null before the first connection (that call goes the SDK's way, which
   * connects) and for HTTP+SSE upstreams.
   */
  async relayTarget(): Promise<RelayTarget | null> {
    if (this.tool.connection.type === 'sse') return null;
    const client = await this.upstream?.catch(() => null);
    const transport = client?.transport as StreamableHTTPClientTransport | undefined;
    if (!transport) return null;
    const protocolVersion = client!.getNegotiatedProtocolVersion() ?? transport.protocolVersion;
    return { sessionId: transport.sessionId, protocolVersion, modern: (protocolVersion ?? '') >= STATELESS_PROTOCOL };
  }

  /** Connects upstream now when the user has already authorized (the session's first call can then be relayed). */
  warm(): void {
    this.deps.broker
      .read(this.owner, { quiet: true })
      .then((read) => (read && read !== 'stale' ? this.connect() : null))
      .catch(() => {});
  }

  /** Forgets the upstream connection whose session `sessionId` ended there (not a newer one): the next request reconnects. */
  async dropUpstream(sessionId: string): Promise<void> {
    const attempt = this.upstream;
    const client = await attempt?.catch(() => null);
    if (this.upstream !== attempt || (client?.transport as StreamableHTTPClientTransport | undefined)?.sessionId !== sessionId) return;
    this.upstream = null;
    void client?.close().catch(() => {});
  }

  async close(): Promise<void> {
    await this.transport.close();
  }

  private registerHandlers(): void {
    const s = this.server;
    s.setRequestHandler(ListToolsRequestSchema, (req, extra) => this.listTools(req.params, extra));
    s.setRequestHandler(CallToolRequestSchema, (req, extra) => this.callTool(req.params, extra));
    const relay = <T extends z.ZodType>(method: string, schema: T) => {
      return (req: { params?: unknown }, extra: Extra) => this.forward(method, req.params, schema, extra);
    };
    s.setRequestHandler(ListResourcesRequestSchema, relay('resources/list', ListResourcesResultSchema));
    s.setRequestHandler(ListResourceTemplatesRequestSchema, relay('resources/templates/list', ListResourceTemplatesResultSchema));
    s.setRequestHandler(ReadResourceRequestSchema, relay('resources/read', ReadResourceResultSchema));
    s.setRequestHandler(SubscribeRequestSchema, relay('resources/subscribe', EmptyResultSchema));
    s.setRequestHandler(UnsubscribeRequestSchema, relay('resources/unsubscribe', EmptyResultSchema));
    s.setRequestHandler(ListPromptsRequestSchema, relay('prompts/list', ListPromptsResultSchema));
    s.setRequestHandler(GetPromptRequestSchema, relay('prompts/get', GetPromptResultSchema));
    s.setRequestHandler(CompleteRequestSchema, relay('completion/complete', CompleteResultSchema));
    s.setRequestHandler(SetLevelRequestSchema, relay('logging/setLevel', EmptyResultSchema));
  }

  /** Who sent this request (see `handle`); the session's creator for requests that carry none. */
  private callerOf(extra: Extra): Caller {
    return (extra.authInfo?.extra?.caller as Caller | undefined) ?? this.caller;
  }

  /** The tools the caller may call: the upstream's list once the user has authorized, the manifest before. */
  private async listTools(params: unknown, extra: Extra) {
    let tools: { name: string }[] & object[];
    let nextCursor: string | undefined;
    const read = await this.deps.broker.read(this.owner);
    if (read === null) {
      tools = this.tool.manifest.map((m) => ({ name: m.name, description: m.description, inputSchema: m.inputSchema }));
    } else {
      try {
        const listed = await this.forward('tools/list', params, ListToolsResultSchema, extra);
        tools = listed.tools;
        nextCursor = listed.nextCursor;
      } catch (err) {
        if (!(err instanceof UrlElicitationRequiredError)) throw err;
        tools = this.tool.manifest.map((m) => ({ name: m.name, description: m.description, inputSchema: m.inputSchema }));
      }
    }
    const caller = this.callerOf(extra);
    const allowed = [];
    for (const t of tools) if (!(await this.deps.gate.refusal(caller, callScope(this.tool.id, t.name)))) allowed.push(t);
    return { tools: allowed, ...(nextCursor ? { nextCursor } : {}) } as z.infer<typeof ListToolsResultSchema>;
  }

  private async callTool(params: { name: string }, extra: Extra) {
    const started = performance.now();
    const caller = this.callerOf(extra);
    const refusal = await this.deps.gate.refusal(caller, callScope(this.tool.id, params.name));
    if (refusal) {
      recordCall(this.deps, caller, this.owner, 'mcp', { name: params.name }, 'denied', { code: refusal });
      throw new McpError(GATEWAY_RPC_ERRORS.forbidden, `not permitted to call ${params.name.slice(0, 100)}`, {
        code: refusal,
        scope: callScope(this.tool.id, params.name),
      });
    }
    try {
      const result = await this.forward('tools/call', params, CallToolResultSchema, extra);
      const outcome = result.isError ? 'tool_error' : 'ok';
      recordCall(this.deps, caller, this.owner, 'mcp', { name: params.name }, outcome, {
        durationMs: Math.round(performance.now() - started),
      });
      return result;
    } catch (err) {
      recordCall(this.deps, caller, this.owner, 'mcp', { name: params.name }, callOutcome(err), {
        code: errorCode(err),
        durationMs: Math.round(performance.now() - started),
      });
      throw err;
    }
  }

  /** Sends one request upstream on the user's behalf, relaying progress and cancellation; refusals become MCP errors. */
  private async forward<T extends z.ZodType>(method: string, params: unknown, schema: T, extra: Extra): Promise<z.infer<T>> {
    const { _meta, ...rest } = (params ?? {}) as { _meta?: { progressToken?: string | number } & Record<string, unknown> };
    const progressToken = _meta?.progressToken;
    const meta = _meta ? Object.fromEntries(Object.entries(withoutProtocolKeys(_meta)).filter(([k]) => k !== 'progressToken')) : undefined;
    const upstreamParams = { ...rest, ...(meta && Object.keys(meta).length ? { _meta: meta } : {}) };
    try {
      const client = await this.connect();
      const result = await client.request({ method, params: upstreamParams } as never, schema, {
        signal: extra.signal,
        timeout: CALL_TIMEOUT_MS,
        resetTimeoutOnProgress: true,
        ...(progressToken !== undefined
          ? {
              onprogress: (p) => {
                void extra
                  .sendNotification({ method: 'notifications/progress', params: this.seen.redactJson({ ...p, progressToken }) })
                  .catch(() => {});
              },
            }
          : {}),
      });
      return this.seen.redactJson(result) as z.infer<T>;
    } catch (err) {
      throw await this.translate(err);
    }
  }

  /** The upstream MCP client, connected (initialize) with the user's token on first use. */
  private connect(): Promise<Client> {
    if (this.upstream) return this.upstream;
    const attempt = openUpstream({
      deps: this.deps,
      owner: this.owner,
      tool: this.tool,
      seen: this.seen,
      // The SSE transport reports a failed stream as an SseError without its cause: keep what the user must do.
      onNeed: (need) => (this.lastNeed = need),
      // Notifications the upstream sends on its own (list changed, resource updated, log messages) reach the agent.
      onNotification: (n) => this.server.notification(this.seen.redactJson(n) as ServerNotification).catch(() => {}),
      onClose: () => {
        if (this.upstream === attempt) this.upstream = null;
      },
    });
    this.upstream = attempt;
    attempt.catch(() => {
      if (this.upstream === attempt) this.upstream = null;
    });
    return attempt;
  }

  /** What the agent hears when a request could not go through. */
  async translate(err: unknown): Promise<McpError> {
    const need = findNeed(err) ?? this.lastNeed;
    this.lastNeed = null;
    return this.prompts.errorFor(ownCause(err), need);
  }
}
