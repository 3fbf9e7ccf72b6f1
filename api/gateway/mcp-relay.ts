import { EventEmitter, once } from 'node:events';
import type { ServerResponse } from 'node:http';
import { StringDecoder } from 'node:string_decoder';
import { createParser } from 'eventsource-parser';
import type { Dispatcher } from 'undici';
import type { Caller } from '../auth.js';
import { sendJson } from '../errors.js';
import type { GatewayDeps } from './deps.js';
import { GATEWAY_RPC_ERRORS } from './mcp-errors.js';
import type { GatewaySession, RelayTarget } from './mcp-session.js';
import { callOutcome, errorCode, recordCall, type CallOutcome } from './record.js';
import { callAsUser, fixedHeaders, undiciView } from './upstream.js';

/** The first revision of the stateless protocol. */
export const STATELESS_PROTOCOL = '2026-07-28';

/** The `_meta` every request of the stateless protocol carries (the broker's client declares no capabilities). */
export function modernMeta(protocolVersion: string): Record<string, unknown> {
  return { 'io.modelcontextprotocol/protocolVersion': protocolVersion, 'io.modelcontextprotocol/clientCapabilities': {} };
}

/** A JSON answer from the upstream read whole, at most. */
const ANSWER_LIMIT = 16 * 1024 * 1024;

export interface JsonRpcCall {
  jsonrpc: '2.0';
  id: string | number;
  method: string;
  params: { name?: unknown; requestId?: unknown } & Record<string, unknown>;
}

/** A relayed call as the session knows it: the id the upstream was sent, and how to cancel it. */
export interface Relay {
  upstreamId: string;
  cancel: (reason: string) => void;
}

type RpcMessage = { method: string; params?: Record<string, unknown> } & Record<string, unknown>;
type RpcAnswer = { id?: unknown; result?: { isError?: unknown }; error?: { data?: { code?: unknown } } };

/**
 * One `tools/call` relayed as JSON-RPC on the session's upstream connection (see mcp-lane.ts): the request with
 * `upstreamId`, the answer back with the agent's id, every token the upstream was sent replaced (in the text and,
 * once parsed, in the values, so no escaping hides one). The agent's hanging up, or `relay.cancel`, sends
 * `notifications/cancelled` upstream and drops the request. 'reconnect': the upstream no longer knows the session
 * (nothing was answered; the SDK's way connects again).
 */
export async function relayCall(
  deps: GatewayDeps,
  res: ServerResponse,
  caller: Caller,
  session: GatewaySession,
  message: JsonRpcCall,
  target: RelayTarget,
  relay: Relay,
): Promise<'reconnect' | void> {
  const started = performance.now();
  const name = { name: message.params.name as string };
  const stop = new EventEmitter();
  let cancelled = false;
  const url = new URL(session.tool.connection.url);
  const headers = {
    ...fixedHeaders(session.tool),
    'content-type': 'application/json',
    accept: 'application/json, text/event-stream',
    ...(target.sessionId ? { 'mcp-session-id': target.sessionId } : {}),
    ...(target.protocolVersion ? { 'mcp-protocol-version': target.protocolVersion } : {}),
  };
  const post = (payload: RpcMessage, signal?: EventEmitter) => {
    const envelope = target.modern ? stateless(payload, target.protocolVersion!) : { payload, headers: {} };
    return callAsUser(
      { broker: deps.broker, owner: session.owner, seen: session.seen },
      { method: 'POST', url },
      true,
      (auth) =>
        deps.outbound.request(url, {
          method: 'POST',
          headers: { ...headers, ...envelope.headers, ...auth },
          body: Buffer.from(JSON.stringify(envelope.payload)),
          ...(signal ? { signal } : {}),
        }),
      undiciView,
    );
  };
  relay.cancel = (reason: string) => {
    if (cancelled) return;
    cancelled = true;
    // Stateless: the request's own stream is the call; ending it is the cancellation.
    if (target.modern) return void stop.emit('abort');
    const params = { requestId: relay.upstreamId, reason };
    void post({ jsonrpc: '2.0', method: 'notifications/cancelled', params })
      .then((r) => r.body.dump())
      .catch(() => {})
      .finally(() => stop.emit('abort'));
  };
  const hungUp = () => {
    if (!res.writableFinished) relay.cancel('the agent hung up');
  };
  res.on('close', hungUp);
  const record = (outcome: CallOutcome, detail: { code?: string } = {}) =>
    recordCall(deps, caller, session.owner, 'mcp', name, outcome, { ...detail, durationMs: Math.round(performance.now() - started) });
  try {
    const answer = await post({ ...message, id: relay.upstreamId }, stop);
    if (answer.statusCode === 404 && target.sessionId) {
      await answer.body.dump().catch(() => {});
      res.off('close', hungUp);
      await session.dropUpstream(target.sessionId);
      return 'reconnect';
    }
    if (answer.statusCode !== 200) {
      await answer.body.dump().catch(() => {});
      throw Object.assign(new Error(`the tool's server answered ${answer.statusCode}`), { code: answer.statusCode });
    }
    res.setHeader('mcp-session-id', session.id);
    const final = String(answer.headers['content-type'] ?? '').startsWith('text/event-stream')
      ? await relayEvents(res, answer, session, relay.upstreamId, message.id)
      : await relayJson(res, answer, session, relay.upstreamId, message.id);
    if (!final) record('upstream_error', { code: 'upstream_unreachable' });
    else if (final.error)
      record('upstream_error', { code: typeof final.error.data?.code === 'string' ? final.error.data.code : 'upstream_error' });
    else record(final.result?.isError ? 'tool_error' : 'ok');
  } catch (err) {
    record(callOutcome(err), { code: errorCode(err) });
    // A cancelled call has nobody waiting for an answer; one already under way cannot change its status.
    if (cancelled || res.headersSent) return void res.destroy();
    const e = await session.translate(err);
    sendJson(res, 200, {
      jsonrpc: '2.0',
      id: message.id,
      error: { code: e.code, message: e.message, ...(e.data === undefined ? {} : { data: e.data }) },
    });
  }
}

/**
 * A message as the 2026-07-28 protocol sends it (stateless): its protocol version and the client's capabilities in
 * `_meta`, and the routing headers the server checks against the body (`Mcp-Method`, and `Mcp-Name` for a call).
 */
function stateless(payload: RpcMessage, protocolVersion: string): { payload: unknown; headers: Record<string, string> } {
  const params = payload.params ?? {};
  // The protocol's own keys are the gateway's to say, never the agent's.
  const meta = { ...withoutProtocolKeys(params._meta), ...modernMeta(protocolVersion) };
  const name = typeof params.name === 'string' ? params.name : undefined;
  return {
    payload: { ...payload, params: { ...params, _meta: meta } },
    headers: {
      'mcp-method': payload.method,
      ...(payload.method === 'tools/call' && name !== undefined ? { 'mcp-name': headerValue(name) } : {}),
    },
  };
}

/** An agent's `_meta` without the keys of the protocol itself (`io.modelcontextprotocol/…`). */
export function withoutProtocolKeys(meta: unknown): Record<string, unknown> {
  if (!meta || typeof meta !== 'object') return {};
  return Object.fromEntries(Object.entries(meta).filter(([k]) => !k.startsWith('io.modelcontextprotocol/')));
}

/** A value as a routing header carries it: as it is when plain printable ASCII, else Base64 in the protocol's wrapper. */
function headerValue(value: string): string {
  const plain = /^[\x21-\x7e]([\x20-\x7e]*[\x21-\x7e])?$/.test(value) && !/^=\?base64\?.*\?=$/i.test(value);
  return plain ? value : `=?base64?${Buffer.from(value, 'utf8').toString('base64')}?=`;
}

/** A JSON-RPC message from the upstream as the agent may see it: tokens replaced in the values; the agent's id. */
function cleaned(
  session: GatewaySession,
  text: string,
  upstreamId: string,
  id: string | number,
): { json: string; answer: RpcAnswer | null } {
  let value: RpcAnswer;
  try {
    value = session.seen.redactJson(JSON.parse(session.seen.redact(text)) as RpcAnswer);
  } catch {
    return { json: session.seen.redact(text), answer: null };
  }
  // The answer: our id, and a result or an error (a request the server sends has a method).
  const isAnswer = value?.id === upstreamId && !('method' in value) && ('result' in value || 'error' in value);
  if (!isAnswer) return { json: JSON.stringify(value), answer: null };
  const answer = { ...value, id };
  return { json: JSON.stringify(answer), answer };
}

/** A JSON answer: read whole (bounded), cleaned, sent. */
async function relayJson(
  res: ServerResponse,
  answer: Dispatcher.ResponseData,
  session: GatewaySession,
  upstreamId: string,
  id: string | number,
) {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of answer.body as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > ANSWER_LIMIT) throw new Error('the answer is too large');
    chunks.push(chunk);
  }
  const { answer: parsed } = cleaned(session, Buffer.concat(chunks).toString('utf8'), upstreamId, id);
  if (!parsed) throw new Error('the answer is not for this request');
  sendJson(res, 200, parsed);
  return parsed;
}

/**
 * An event stream: each event relayed as it comes (progress in order), cleaned; the stream ends after the answer.
 * A stream that ends without one gets a JSON-RPC error, so the agent is never left waiting.
 */
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
  res.flushHeaders();
  let final: RpcAnswer | null = null;
  const out: string[] = [];
  const event = (name: string, data: string) =>
    `event: ${name}\n${data
      .split('\n')
      .map((line) => `data: ${line}`)
      .join('\n')}\n\n`;
  const parser = createParser({
    onEvent: (e) => {
      const { json, answer: parsed } = cleaned(session, e.data, upstreamId, id);
      final ??= parsed;
      out.push(event(session.seen.redact(e.event ?? 'message'), json));
    },
  });
  const decoder = new StringDecoder('utf8');
  // Read by hand, not `for await`: leaving that loop at the answer would destroy the body and with it the upstream
  // connection; the rest of the stream is drained below instead, and the connection kept.
  const chunks = (answer.body as AsyncIterable<Buffer>)[Symbol.asyncIterator]();
  for (let next = await chunks.next(); !next.done; next = final ? { done: true, value: undefined } : await chunks.next()) {
    parser.feed(decoder.write(next.value));
    if (out.length) await write(res, out.splice(0).join(''));
  }
  if (!final) {
    parser.feed(decoder.end());
    const error = {
      code: GATEWAY_RPC_ERRORS.upstream,
      message: "the tool's server ended the stream without an answer",
      data: { code: 'upstream_unreachable' },
    };
    out.push(event('message', JSON.stringify({ jsonrpc: '2.0', id, error })));
  }
  if (out.length) await write(res, out.splice(0).join(''));
  res.end();
  // Drained in the background (a server that keeps the stream open is cut off after a few seconds).
  if (final) void answer.body.dump({ limit: 128 * 1024, signal: AbortSignal.timeout(5_000) }).catch(() => {});
  return final as RpcAnswer | null;
}

/** Writes, waiting for the agent to drain what it has; throws once the agent has gone. */
async function write(res: ServerResponse, text: string): Promise<void> {
  if (res.destroyed || res.closed) throw new Error('the agent has gone');
  if (!res.write(text)) {
    // Whichever comes first; the other's listener goes with it.
    const settled = new AbortController();
    const waits = [once(res, 'drain', { signal: settled.signal }), once(res, 'close', { signal: settled.signal })];
    await Promise.race(waits).finally(() => settled.abort());
    await Promise.allSettled(waits);
  }
  if (res.destroyed) throw new Error('the agent has gone');
}
