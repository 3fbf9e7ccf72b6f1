import type { IncomingMessage, ServerResponse } from 'node:http';
import { SUPPORTED_PROTOCOL_VERSIONS } from '@modelcontextprotocol/sdk/types.js';
import type { Caller } from '../auth.js';
import { ApiError, respondWithError } from '../errors.js';
import { ownerOf } from '../owner.js';
import type { GatewayDeps } from './deps.js';
import { answerHere, plainRequest, readBody, withinLimit, type Lane, type LaneSettings } from './lane.js';
import { callScope } from './mcp-errors.js';
import { relayCall, type JsonRpcCall, type Relay } from './mcp-relay.js';
import type { GatewaySession, RelayTarget } from './mcp-session.js';

const MCP_PREFIX = '/api/v1/mcp/';
/** The route pattern in metrics and logs, as Express names it. */
const MCP_ROUTE = '/api/v1/mcp/:toolId';
/** As Express's JSON parser on the MCP route. */
const BODY_LIMIT = 4 * 1024 * 1024;

/**
 * The MCP gateway's fast lane (see lane.ts) for the call agents make most: `tools/call` on a session whose
 * upstream is connected is relayed as JSON-RPC (mcp-relay.ts), not re-validated and rebuilt by an SDK server and
 * client. The agent's `notifications/cancelled` for a relayed call cancels it upstream. Everything else on the
 * session (initialize, lists, a first call, a refused call, a batch) goes the SDK's way through Express, body and
 * all; a CORS request, plain HTTP, an encoded body or one the SDK's transport would refuse before it is read.
 */
export class McpLane implements Lane {
  private relayed = 0;

  constructor(
    private readonly deps: GatewayDeps,
    private readonly sessions: (id: string) => GatewaySession | undefined,
    private readonly settings: LaneSettings,
  ) {}

  takes(req: IncomingMessage): boolean {
    return req.method === 'POST' && req.url !== undefined && req.url.startsWith(MCP_PREFIX) && req.headers['mcp-session-id'] !== undefined;
  }

  async serve(req: IncomingMessage, res: ServerResponse, express: () => void): Promise<void> {
    if (!this.plain(req)) return express();
    // Counted here once (Express's limiter skips a request already counted).
    if (!(await withinLimit(this.settings, req, res, MCP_ROUTE))) return;
    const admitted = await this.admit(req).catch(() => null);
    if (!admitted) return express();
    const { caller, session } = admitted;
    const refuse = (err: unknown) => {
      answerHere(this.settings, req, res, MCP_ROUTE);
      respondWithError(this.deps.log, err, res);
    };
    const toExpress = (message: unknown) => {
      // Express's JSON parser sees a body already read and keeps this one.
      Object.assign(req, { body: message });
      express();
    };
    let message: unknown;
    try {
      const body = await readBody(req, BODY_LIMIT);
      if (body === null) return express();
      message = JSON.parse(body.toString('utf8'));
      if (typeof message !== 'object' || message === null) throw new SyntaxError('not an object or array');
    } catch (err) {
      return refuse(err instanceof ApiError ? err : new ApiError('invalid_json', 'the request body is not valid JSON'));
    }
    let which: 'cancel' | RelayTarget | null;
    try {
      which = await this.relayable(caller, session, message);
    } catch (err) {
      return refuse(err);
    }
    if (!which) return toExpress(message);
    session.lastSeen = Date.now();
    const m = message as JsonRpcCall;
    if (which === 'cancel') {
      answerHere(this.settings, req, res, MCP_ROUTE);
      session.relays.get(m.params.requestId as string | number)?.cancel('cancelled by the agent');
      res.statusCode = 202;
      res.end();
      return;
    }
    // The id is taken before anything else can run: a second call with it goes the SDK's way.
    if (session.relays.has(m.id)) return toExpress(message);
    // An id no other request on the upstream session has (the session's SDK client numbers its own).
    const relay: Relay = { upstreamId: `gateway-${++this.relayed}`, cancel: () => {} };
    session.relays.set(m.id, relay);
    answerHere(this.settings, req, res, MCP_ROUTE);
    try {
      if ((await relayCall(this.deps, res, caller, session, m, which, relay)) === 'reconnect') {
        session.relays.delete(m.id);
        toExpress(message);
      }
    } catch (err) {
      respondWithError(this.deps.log, err, res);
    } finally {
      if (session.relays.get(m.id) === relay) session.relays.delete(m.id);
    }
  }

  /** What the SDK's transport and Express's parser would let through to the session, before the body is read. */
  private plain(req: IncomingMessage): boolean {
    if (!plainRequest(this.settings, req)) return false;
    if (
      String(req.headers['content-type'] ?? '')
        .split(';')[0]!
        .trim()
        .toLowerCase() !== 'application/json'
    )
      return false;
    if ((req.headers['content-encoding'] ?? 'identity') !== 'identity') return false;
    const accept = String(req.headers.accept ?? '');
    if (!accept.includes('application/json') || !accept.includes('text/event-stream')) return false;
    const version = req.headers['mcp-protocol-version'];
    return version === undefined || SUPPORTED_PROTOCOL_VERSIONS.includes(String(version));
  }

  /** The caller and their session, when the lane may look further; null: Express answers. */
  private async admit(req: IncomingMessage): Promise<{ caller: Caller; session: GatewaySession } | null> {
    const path = req.url!.slice(MCP_PREFIX.length);
    if (!path || /[/?]/.test(path)) return null;
    const caller = await this.deps.gate.callerOf(req);
    const owner = ownerOf(caller, decodeURIComponent(path), this.deps.tools);
    if ((await this.deps.gate.refusal(caller, `tool:${owner.toolId}:use`)) !== null) return null;
    const session = this.sessions(String(req.headers['mcp-session-id']));
    return session?.belongsTo(owner) ? { caller, session } : null;
  }

  /** Whether the lane relays this message: a permitted `tools/call` (where to), or the cancellation of a relayed one. */
  private async relayable(caller: Caller, session: GatewaySession, message: unknown): Promise<'cancel' | RelayTarget | null> {
    const m = message as Partial<JsonRpcCall>;
    if (m.jsonrpc !== '2.0' || typeof m.params !== 'object' || m.params === null) return null;
    if (m.method === 'notifications/cancelled' && m.id === undefined) {
      const id = m.params.requestId;
      return (typeof id === 'string' || typeof id === 'number') && session.relays.has(id) ? 'cancel' : null;
    }
    if (m.method !== 'tools/call' || typeof m.params.name !== 'string') return null;
    if (typeof m.id !== 'string' && typeof m.id !== 'number') return null;
    if ((await this.deps.gate.refusal(caller, callScope(session.tool.id, m.params.name))) !== null) return null;
    return session.relayTarget();
  }
}
