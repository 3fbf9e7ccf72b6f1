import { EventEmitter, once } from 'node:events';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { StringDecoder } from 'node:string_decoder';
import { createParser } from 'eventsource-parser';
import type { Dispatcher } from 'undici';
import type { Caller } from '../auth.js';
import { ApiError, respondWithError, sendJson } from '../errors.js';
import { ownerOf } from '../owner.js';
import type { GatewayDeps } from './deps.js';
import { answerHere, countAgainstLimit, plainRequest, readBody, type Lane, type LaneSettings } from './lane.js';
import { callScope } from './mcp-errors.js';
import type { GatewaySession, RelayTarget } from './mcp-session.js';
import { callOutcome, errorCode, recordCall, type CallOutcome } from './record.js';
import { callAsUser, type AnswerView } from './upstream.js';

const MCP_PREFIX = '/api/v1/mcp/';
/** The route pattern in metrics and logs, as Express names it. */
const MCP_ROUTE = '/api/v1/mcp/:toolId';
/** As Express's JSON parser on the MCP route. */
const BODY_LIMIT = 4 * 1024 * 1024;
/** A JSON answer from the upstream read whole, at most. */
const ANSWER_LIMIT = 16 * 1024 * 1024;

interface JsonRpcCall {
  jsonrpc: '2.0';
  id: string | number;
  method: string;
  params: { name?: unknown; requestId?: unknown } & Record<string, unknown>;
}

type RpcAnswer = { id?: unknown; result?: { isError?: unknown }; error?: { data?: { code?: unknown } } };

/**
 * The MCP gateway's fast lane (see lane.ts) for the call agents make most: `tools/call` on a session whose
 * upstream is connected is relayed as JSON-RPC, not re-validated and rebuilt by an SDK server and client — the
 * request with an id of the gateway's own (the upstream session is shared with the session's SDK client), the
 * answer, JSON or an event stream with progress as it comes, with the agent's id back and every token the upstream
 * was sent replaced. The agent's `notifications/cancelled` for a relayed call, or its hanging up, cancels it
 * upstream. Everything else on the session (initialize, lists, a first call, a refused call) goes the SDK's way
 * through Express, body and all; a refusal, a CORS request or plain HTTP before the body is read.
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
    const admitted = await this.admit(req).catch(() => null);
    if (!admitted) return express();
    let message: unknown;
    try {
      const body = await readBody(req, BODY_LIMIT);
      message = body === null ? undefined : JSON.parse(body.toString('utf8'));
      if (message !== undefined && (typeof message !== 'object' || message === null)) throw new SyntaxError('not an object');
    } catch (err) {
      answerHere(this.settings, req, res, MCP_ROUTE);
      respondWithError(
        this.deps.log,
        err instanceof ApiError ? err : new ApiError('invalid_json', 'the request body is not valid JSON'),
        res,
      );
      return;
    }
    const { caller, session } = admitted;
    const which = await this.relayable(caller, session, message);
    if (!which) {
      // Express's JSON parser sees a body already read and keeps this one.
      Object.assign(req, { body: message });
      return express();
    }
    answerHere(this.settings, req, res, MCP_ROUTE);
    try {
      await countAgainstLimit(this.settings, req, res);
      session.lastSeen = Date.now();
      if (which === 'cancel') {
        session.relays.get((message as JsonRpcCall).params.requestId as string | number)?.cancel('cancelled by the agent');
        res.statusCode = 202;
        res.end();
        return;
      }
      const done = await this.call(res, caller, session, message as JsonRpcCall, which);
      if (done === 'reconnect') {
        Object.assign(req, { body: message });
        express();
      }
    } catch (err) {
      respondWithError(this.deps.log, err, res);
    }
  }

  /** The caller and their session, when the lane may look further; null: Express answers. */
  private async admit(req: IncomingMessage): Promise<{ caller: Caller; session: GatewaySession } | null> {
    if (!plainRequest(this.settings, req) || !String(req.headers['content-type'] ?? '').includes('application/json')) return null;
    const path = req.url!.slice(MCP_PREFIX.length);
    if (!path || /[/?]/.test(path)) return null;
    const caller = await this.deps.gate.callerOf(req);
    const owner = ownerOf(caller, decodeURIComponent(path), this.deps.tools);
    if ((await this.deps.gate.refusal(caller, `tool:${owner.toolId}:use`)) !== null) return null;
    const session = this.sessions(String(req.headers['mcp-session-id']));
    return session?.belongsTo(owner) ? { caller, session } : null;
  }

  /** Whether the lane relays this message: a permitted `tools/call`, or the cancellation of a relayed one. */
  private async relayable(caller: Caller, session: GatewaySession, message: unknown): Promise<'cancel' | RelayTarget | null> {
    const m = message as Partial<JsonRpcCall> | undefined;
    if (m?.jsonrpc !== '2.0' || typeof m.params !== 'object' || m.params === null) return null;
    if (m.method === 'notifications/cancelled' && m.id === undefined) {
      const id = m.params.requestId;
      return (typeof id === 'string' || typeof id === 'number') && session.relays.has(id) ? 'cancel' : null;
    }
    if (m.method !== 'tools/call' || typeof m.params.name !== 'string') return null;
    if (typeof m.id !== 'string' && typeof m.id !== 'number') return null;
    if (session.relays.has(m.id) || (await this.deps.gate.refusal(caller, callScope(session.tool.id, m.params.name))) !== null) return null;
    return session.relayTarget();
  }

  /** Relays one call and its answer; 'reconnect' when the upstream session has ended (the SDK's way then). */
  private async call(
    res: ServerResponse,
    caller: Caller,
    session: GatewaySession,
    message: JsonRpcCall,
    target: RelayTarget,
  ): Promise<'reconnect' | void> {
    const started = performance.now();
    // An id no other request on the upstream session has (the session's SDK client numbers its own).
    const upstreamId = `gateway-${++this.relayed}`;
    const name = { name: message.params.name as string };
    const stop = new EventEmitter();
    let cancelled = false;
    const post = (payload: unknown, signal?: EventEmitter) =>
      callAsUser(
        { broker: this.deps.broker, owner: session.owner, seen: session.seen },
        true,
        (bearer) =>
          this.deps.outbound.request(new URL(session.tool.connection.url), {
            method: 'POST',
            headers: {
              ...Object.fromEntries(Object.entries(session.tool.connection.headers ?? {}).map(([k, v]) => [k.toLowerCase(), v])),
              'content-type': 'application/json',
              accept: 'application/json, text/event-stream',
              ...(target.sessionId ? { 'mcp-session-id': target.sessionId } : {}),
              ...(target.protocolVersion ? { 'mcp-protocol-version': target.protocolVersion } : {}),
              authorization: `Bearer ${bearer}`,
            },
            body: Buffer.from(JSON.stringify(payload)),
            ...(signal ? { signal } : {}),
          }),
        undiciView,
      );
    const cancel = (reason: string) => {
      if (cancelled) return;
      cancelled = true;
      const params = { requestId: upstreamId, reason };
      void post({ jsonrpc: '2.0', method: 'notifications/cancelled', params })
        .then((r) => r.body.dump())
        .catch(() => {})
        .finally(() => stop.emit('abort'));
    };
    session.relays.set(message.id, { upstreamId, cancel });
    res.on('close', () => {
      if (!res.writableFinished) cancel('the agent hung up');
    });
    const record = (outcome: CallOutcome, detail: { code?: string } = {}) =>
      recordCall(this.deps, caller, session.owner, 'mcp', name, outcome, {
        ...detail,
        durationMs: Math.round(performance.now() - started),
      });
    try {
      const answer = await post({ ...message, id: upstreamId }, stop);
      if (answer.statusCode === 404 && target.sessionId) {
        await answer.body.dump().catch(() => {});
        session.dropUpstream();
        return 'reconnect';
      }
      if (answer.statusCode !== 200) {
        await answer.body.dump().catch(() => {});
        throw Object.assign(new Error(`the tool's server answered ${answer.statusCode}`), { code: answer.statusCode });
      }
      const final = String(answer.headers['content-type'] ?? '').startsWith('text/event-stream')
        ? await relayEvents(res, answer, session, upstreamId, message.id)
        : await relayJson(res, answer, session, upstreamId, message.id);
      if (!final) record('upstream_error', { code: 'upstream_unreachable' });
      else if (final.error)
        record('upstream_error', { code: typeof final.error.data?.code === 'string' ? final.error.data.code : 'upstream_error' });
      else record(final.result?.isError ? 'tool_error' : 'ok');
    } catch (err) {
      record(callOutcome(err), { code: errorCode(err) });
      if (res.headersSent) return void res.destroy();
      const e = await session.translate(err);
      sendJson(res, 200, {
        jsonrpc: '2.0',
        id: message.id,
        error: { code: e.code, message: e.message, ...(e.data === undefined ? {} : { data: e.data }) },
      });
    } finally {
      session.relays.delete(message.id);
    }
  }
}

const undiciView = (r: Dispatcher.ResponseData): AnswerView => ({
  status: r.statusCode,
  header: (name) => {
    const v = r.headers[name];
    return v === undefined ? null : Array.isArray(v) ? v.join(', ') : v;
  },
  discard: () => r.body.dump().catch(() => {}),
});

/** A JSON answer: read whole, tokens replaced, the agent's id put back. */
async function relayJson(
  res: ServerResponse,
  answer: Dispatcher.ResponseData,
  session: GatewaySession,
  upstreamId: string,
  id: string | number,
) {
  if (Number(answer.headers['content-length'] ?? 0) > ANSWER_LIMIT) throw new Error('the answer is too large');
  const whole = session.seen.redactBytes(Buffer.from(await answer.body.arrayBuffer()));
  const parsed = JSON.parse(whole.toString('utf8')) as RpcAnswer;
  if (parsed.id !== upstreamId) throw new Error('the answer is for another request');
  parsed.id = id;
  res.setHeader('mcp-session-id', session.id);
  sendJson(res, 200, parsed);
  return parsed;
}

/** An event stream: each event relayed as it comes (progress in order), tokens replaced, the answer's id put back. */
async function relayEvents(
  res: ServerResponse,
  answer: Dispatcher.ResponseData,
  session: GatewaySession,
  upstreamId: string,
  id: string | number,
) {
  res.statusCode = 200;
  res.setHeader('content-type', 'text/event-stream');
  res.setHeader('cache-control', 'no-cache');
  res.setHeader('mcp-session-id', session.id);
  res.flushHeaders();
  let final: RpcAnswer | null = null;
  const out: string[] = [];
  const parser = createParser({
    onEvent: (event) => {
      let data = session.seen.redact(event.data);
      if (data.includes(upstreamId)) {
        const message = JSON.parse(data) as RpcAnswer;
        if (message.id === upstreamId) {
          message.id = id;
          final = message;
          data = JSON.stringify(message);
        }
      }
      out.push(
        `event: ${session.seen.redact(event.event ?? 'message')}\n${data
          .split('\n')
          .map((line) => `data: ${line}`)
          .join('\n')}\n\n`,
      );
    },
  });
  const decoder = new StringDecoder('utf8');
  for await (const chunk of answer.body as AsyncIterable<Buffer>) {
    parser.feed(decoder.write(chunk));
    if (out.length && !res.write(out.splice(0).join(''))) await once(res, 'drain');
    if (final) break;
  }
  parser.feed(decoder.end());
  if (out.length) res.write(out.splice(0).join(''));
  res.end();
  if (final) await answer.body.dump().catch(() => {});
  return final as RpcAnswer | null;
}
