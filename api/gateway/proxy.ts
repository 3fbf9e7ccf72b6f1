import { EventEmitter } from 'node:events';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import express, { Router } from 'express';
import type { Dispatcher } from 'undici';
import type { CredentialOwner } from '../../lib/domain.js';
import type { Tool } from '../../lib/tools.js';
import type { Caller } from '../auth.js';
import { ERROR_CATALOG } from '../error-catalog.js';
import { ApiError, sendJson } from '../errors.js';
import { ownerOf } from '../owner.js';
import type { GatewayDeps } from './deps.js';
import { consentLinkFor } from './links.js';
import { proxyTarget } from './proxy-path.js';
import { callOutcome, errorCode, recordCall } from './record.js';
import { codingsOf, decodersFor, NULL_BODY_STATUS, redacting } from './scan.js';
import { callAsUser, fixedHeaders, SeenTokens, UpstreamAuthRequired, undiciView, type TokenHeaders } from './upstream.js';

/** Request bodies up to this size are held, so a 401 can be answered by a refresh and one retry. */
export const REPLAYABLE_BYTES = 1024 * 1024;

/** Answers up to this size (by Content-Length) are read whole, checked for tokens and sent in one write. */
const WHOLE_ANSWER_BYTES = 64 * 1024;

/** The route pattern in metrics and logs, whichever lane served the request. */
export const PROXY_ROUTE = '/api/v1/proxy/:toolId{/*path}';

/** Never forwarded: the agent's own credentials and identity, cookies, hop-by-hop and proxy headers. */
const DROPPED_REQUEST_HEADERS = new Set([
  'authorization',
  // The gateway signs its own DPoP proofs; an agent's would sit beside a token it was not made for.
  'dpop',
  'proxy-authorization',
  'x-user-identity',
  'x-agent-id',
  'x-user-id',
  'cookie',
  'host',
  'connection',
  'keep-alive',
  'proxy-connection',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
  'content-length',
  'expect',
  'accept-encoding',
  'forwarded',
  'x-real-ip',
  'x-request-id',
]);

/** Never relayed back: hop-by-hop headers, cookies for the upstream's own sessions, and encodings undone here. */
const DROPPED_RESPONSE_HEADERS = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'transfer-encoding',
  'te',
  'trailer',
  'upgrade',
  'content-encoding',
  'content-length',
  'set-cookie',
  'www-authenticate',
  // Ours: the agent's request id, not the upstream's.
  'x-request-id',
]);

/** One proxied request: who, as whom, to where. */
export interface ProxyCall {
  caller: Caller;
  owner: CredentialOwner;
  tool: Tool;
  target: URL;
  what: { method: string; path: string };
}

/** The call a request asks for; ApiError when the tool is unknown, not an HTTP API, or the path could escape. */
export function proxyCall(deps: Pick<GatewayDeps, 'tools'>, caller: Caller, toolId: string, method: string, rawUrl: string): ProxyCall {
  const owner = ownerOf(caller, toolId, deps.tools);
  const tool = deps.tools.get(owner.toolId)!;
  if (tool.toolType !== 'api') throw new ApiError('not_an_api_tool', 'this tool is an MCP server; use /api/v1/mcp');
  const target = proxyTarget(tool, rawUrl);
  return { caller, owner, tool, target, what: { method, path: target.pathname.slice(0, 300) } };
}

/**
 * `ANY /api/v1/proxy/{toolId}/{path}` through Express: the requests the fast lane (proxy-lane.ts) does not take
 * (browsers' CORS requests, encoded bodies, refusals, which Express reports with their audit rows). The path stays
 * under the tool's base URL, the user's token is injected, the agent's own headers are not forwarded.
 */
export function proxyRoutes(deps: GatewayDeps): Router {
  const router = Router();
  router.use(deps.gate.authenticate());
  // Bodies pass as the agent sent them (no inflating: an encoded body is refused, 415).
  const buffered = express.raw({ type: () => true, limit: REPLAYABLE_BYTES, inflate: false });
  router.all('/:toolId{/*path}', async (req, res) => {
    const call = proxyCall(deps, req.caller!, req.params.toolId as string, req.method, req.originalUrl);
    await deps.gate.authorize(req, `tool:${call.owner.toolId}:use`, { toolId: call.owner.toolId });
    const refusal = await deps.gate.refusal(call.caller, `tool:${call.owner.toolId}:proxy:${req.method}`);
    if (refusal) {
      recordCall(deps, call.caller, call.owner, 'http', call.what, 'denied', { code: refusal });
      throw new ApiError(refusal, `not permitted to ${req.method} through this tool`);
    }
    const streamed = Number(req.get('content-length') ?? 0) > REPLAYABLE_BYTES;
    if (!streamed && hasBody(req.method)) await new Promise<void>((ok, fail) => buffered(req, res, (e) => (e ? fail(e) : ok())));
    await forward(deps, req, res, call, streamed ? 'stream' : Buffer.isBuffer(req.body) ? req.body : undefined);
  });
  return router;
}

export const hasBody = (method: string | undefined) => method !== 'GET' && method !== 'HEAD';

/**
 * Sends the call upstream as the user and streams the answer back with its status, checked for the tokens the
 * upstream was sent. Throws ApiError before anything is written; after that, a break ends the response.
 */
export async function forward(
  deps: GatewayDeps,
  req: IncomingMessage,
  res: ServerResponse,
  call: ProxyCall,
  body: Buffer | 'stream' | undefined,
): Promise<void> {
  const { owner, tool } = call;
  const seen = new SeenTokens();
  const headers = forwardedHeaders(req, tool);
  // Only a caller that hangs up early aborts the upstream request. undici takes an emitter as the signal: an
  // AbortController per request costs more than this whole function.
  const gone = new EventEmitter();
  res.on('close', () => {
    if (!res.writableFinished) gone.emit('abort');
  });
  const started = performance.now();
  let upstream: Dispatcher.ResponseData;
  try {
    const send = (auth: TokenHeaders) =>
      deps.outbound.request(call.target, {
        method: req.method!,
        headers: { ...headers, ...auth },
        ...(body === undefined ? {} : { body: body === 'stream' ? req : body }),
        signal: gone,
      });
    const request = { method: req.method!, url: call.target };
    upstream = await callAsUser({ broker: deps.broker, owner, seen }, request, body !== 'stream', send, undiciView);
  } catch (err) {
    const code = errorCode(err);
    recordCall(deps, call.caller, owner, 'http', call.what, callOutcome(err), {
      code,
      durationMs: Math.round(performance.now() - started),
    });
    if (err instanceof UpstreamAuthRequired) return sendLink(deps, res, tool, owner, err);
    if (err instanceof ApiError) throw err;
    if (code === 'credential_unavailable')
      throw new ApiError('credential_unavailable', 'the credential is being refreshed; try again shortly', { retryAfterSeconds: 1 });
    throw new ApiError(code === 'outbound_refused' ? 'outbound_refused' : 'upstream_unreachable', 'the API could not be reached');
  }
  const status = upstream.statusCode;
  const durationMs = Math.round(performance.now() - started);
  let codings: string[];
  try {
    codings = req.method === 'HEAD' || NULL_BODY_STATUS.has(status) ? [] : codingsOf(upstream.headers['content-encoding']);
  } catch (err) {
    await upstream.body.dump().catch(() => {});
    recordCall(deps, call.caller, owner, 'http', call.what, 'upstream_error', { status, durationMs, code: errorCode(err) });
    throw err;
  }
  recordCall(deps, call.caller, owner, 'http', call.what, status >= 500 ? 'upstream_error' : 'ok', {
    status,
    durationMs,
    ...(status >= 500 ? { code: `status_${status}` } : {}),
  });
  res.statusCode = status;
  for (const [name, value] of Object.entries(upstream.headers)) {
    if (value === undefined || DROPPED_RESPONSE_HEADERS.has(name)) continue;
    res.setHeader(name, Array.isArray(value) ? value.map((v) => seen.redact(v)) : seen.redact(value));
  }
  if (upstream.headers['cache-control'] === undefined) res.setHeader('cache-control', 'no-store');
  if (req.method === 'HEAD') {
    await upstream.body.dump().catch(() => {});
    res.end();
    return;
  }
  try {
    const { source, stages: decoders, empty } = await decodersFor(upstream.body, codings);
    const length = empty ? 0 : Number(upstream.headers['content-length'] ?? Infinity);
    if (!decoders.length && length <= WHOLE_ANSWER_BYTES) {
      // The usual small answer: one read, one check, one write (no per-chunk transform).
      res.end(empty ? undefined : seen.redactBytes(Buffer.from(await upstream.body.arrayBuffer())));
      return;
    }
    const stages: (Readable | Transform)[] = [source, ...decoders, redacting(seen)];
    await pipeline([...stages, res] as never);
  } catch {
    // The agent hung up, or the upstream broke off mid-answer (or sent an encoding it could not decode).
    res.destroy();
  }
}

/** The agent's headers that go upstream, with the tool's fixed ones (an API version); never its credentials. */
function forwardedHeaders(req: IncomingMessage, tool: Tool): Record<string, string> {
  const out: Record<string, string> = {};
  const connection = req.headers.connection;
  const hopByHop = connection
    ? new Set(
        connection
          .toLowerCase()
          .split(',')
          .map((h) => h.trim()),
      )
    : null;
  for (const [name, value] of Object.entries(req.headers)) {
    if (value === undefined || DROPPED_REQUEST_HEADERS.has(name) || hopByHop?.has(name) || name.startsWith('x-forwarded-')) continue;
    out[name] = Array.isArray(value) ? value.join(', ') : value;
  }
  return { ...out, ...fixedHeaders(tool) };
}

/** 403 with a stable code and the link the user must open (first authorization, again, or for wider scopes). */
async function sendLink(
  deps: GatewayDeps,
  res: ServerResponse,
  tool: Tool,
  owner: CredentialOwner,
  err: UpstreamAuthRequired,
): Promise<void> {
  const link = await consentLinkFor(deps, tool, owner, err.need);
  if (link === 'active')
    throw new ApiError('credential_unavailable', 'the credential was just authorized; try again', { retryAfterSeconds: 1 });
  const code = link.reason;
  sendJson(res, ERROR_CATALOG[code].status, {
    error: {
      code,
      message:
        code === 'insufficient_scope'
          ? `${tool.name} needs more permissions: show the user the authorization_url`
          : `the user must connect ${tool.name}: show them the authorization_url`,
    },
    authorization_url: link.url,
    expires_at: link.expiresAt === null ? null : new Date(link.expiresAt).toISOString(),
  });
}
