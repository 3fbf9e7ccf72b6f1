import { randomUUID } from 'node:crypto';
import express, { Router, type Request } from 'express';
import { isInitializeRequest } from '@modelcontextprotocol/sdk/types.js';
import { gatewaySessions } from '../../lib/metrics.js';
import { ApiError } from '../errors.js';
import { resolveOwner } from '../owner.js';
import type { GatewayDeps } from './deps.js';
import { GatewaySession } from './mcp-session.js';

export interface McpGatewaySettings {
  /** Sessions one agent may hold open in this process. */
  maxSessionsPerAgent: number;
  /** A session with no request and no open event stream for this long is closed. */
  idleMs: number;
}

export const DEFAULT_MCP_SETTINGS: McpGatewaySettings = { maxSessionsPerAgent: 1_000, idleMs: 15 * 60_000 };

/**
 * `{public origin}/api/v1/mcp/{toolId}`: the MCP gateway. An agent's MCP client (Streamable HTTP) connects here,
 * authenticated like the credentials API, and uses the remote MCP server as the user, without ever holding the
 * user's token. Sessions are bound to the (agent, user, tool) that created them.
 */
export class McpGateway {
  private readonly sessions = new Map<string, GatewaySession>();
  private readonly perAgent = new Map<string, number>();
  private readonly sweeper: NodeJS.Timeout;

  constructor(
    private readonly deps: GatewayDeps,
    private readonly settings: McpGatewaySettings = DEFAULT_MCP_SETTINGS,
  ) {
    this.sweeper = setInterval(() => this.sweep(), Math.min(60_000, settings.idleMs)).unref();
  }

  get size(): number {
    return this.sessions.size;
  }

  /** A session of this process by its id (the fast lane checks whom it belongs to). */
  session(id: string): GatewaySession | undefined {
    return this.sessions.get(id);
  }

  router(): Router {
    const router = Router();
    const { gate } = this.deps;
    router.use(gate.authenticate());
    router.all('/:toolId', express.json({ limit: '4mb' }), async (req, res) => {
      const owner = resolveOwner(req, this.deps.tools);
      const tool = this.deps.tools.get(owner.toolId)!;
      if (tool.toolType !== 'mcp') throw new ApiError('not_an_mcp_tool', 'this tool is not an MCP server; use /api/v1/proxy for HTTP APIs');
      await gate.authorize(req, `tool:${owner.toolId}:use`, { toolId: owner.toolId });
      const sessionId = req.get('mcp-session-id');
      if (sessionId !== undefined) {
        const session = this.sessions.get(sessionId);
        if (!session || !session.belongsTo(owner)) {
          if (session) await this.refused(req, owner);
          throw new ApiError('mcp_session_not_found', 'no MCP session with this id exists for this caller; initialize a new one');
        }
        return session.handle(req, res);
      }
      if (req.method !== 'POST' || !isInitializeRequest(req.body)) {
        throw new ApiError('mcp_session_required', 'send initialize first, then the Mcp-Session-Id it returns with every request');
      }
      const held = this.perAgent.get(owner.agentId) ?? 0;
      if (held >= this.settings.maxSessionsPerAgent) {
        throw new ApiError('too_many_sessions', `this agent already holds ${held} MCP sessions here; close one (DELETE) first`);
      }
      const id = randomUUID();
      const session = new GatewaySession(id, req.caller!, owner, tool, this.deps, () => this.forget(id, owner.agentId));
      await session.server.connect(session.transport);
      this.sessions.set(id, session);
      this.perAgent.set(owner.agentId, held + 1);
      gatewaySessions.set(this.sessions.size);
      await session.handle(req, res);
      session.warm();
    });
    return router;
  }

  /** Closes every session (shutdown). */
  async close(): Promise<void> {
    clearInterval(this.sweeper);
    await Promise.allSettled([...this.sessions.values()].map((s) => s.close()));
  }

  private forget(id: string, agentId: string): void {
    if (!this.sessions.delete(id)) return;
    const left = (this.perAgent.get(agentId) ?? 1) - 1;
    if (left > 0) this.perAgent.set(agentId, left);
    else this.perAgent.delete(agentId);
    gatewaySessions.set(this.sessions.size);
  }

  private sweep(): void {
    const cutoff = Date.now() - this.settings.idleMs;
    for (const s of this.sessions.values()) if (s.openStreams === 0 && s.lastSeen < cutoff) void s.close();
  }

  private async refused(req: Request, owner: { agentId: string; userId: string; toolId: string }): Promise<void> {
    await this.deps.audit.record(null, {
      eventType: 'gateway.session_refused',
      outcome: 'denied',
      actor: `agent:${owner.agentId}`,
      ...owner,
      requestId: req.id,
      ip: req.ip ?? null,
      detail: { code: 'mcp_session_not_found' },
    });
  }
}
