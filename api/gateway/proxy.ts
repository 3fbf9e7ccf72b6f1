import { Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import express, { Router, type Request, type Response as ExpressResponse } from 'express';
import type { CredentialOwner } from '../../lib/domain.js';
import type { Tool } from '../../lib/tools.js';
import { ERROR_CATALOG } from '../error-catalog.js';
import { ApiError } from '../errors.js';
import { resolveOwner } from '../owner.js';
import type { GatewayDeps } from './deps.js';
import { consentLinkFor } from './links.js';
import { callOutcome, errorCode, recordCall } from './record.js';
import { SeenTokens, UpstreamAuthRequired, userFetch } from './upstream.js';

/** Request bodies up to this size are held, so a 401 can be answered by a refresh and one retry. */
const REPLAYABLE_BYTES = 1024 * 1024;

/** Never forwarded: the agent's own credentials and identity, cookies, hop-by-hop and proxy headers. */
const DROPPED_REQUEST_HEADERS = new Set([
  'authorization',
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
]);

/**
 * `ANY /api/v1/proxy/{toolId}/{path}`: an HTTP API called as the user. The path stays under the tool's base URL
 * (anything that could climb out is refused before a byte leaves), the user's token is injected, the agent's own
 * headers are not forwarded, and the answer streams back with its status (checked for the token on the way).
 */
export function proxyRoutes(deps: GatewayDeps): Router {
  const router = Router();
  router.use(deps.gate.authenticate());
  // Bodies pass as the agent sent them (no inflating: its Content-Encoding goes along unchanged).
  const buffered = express.raw({ type: () => true, limit: REPLAYABLE_BYTES, inflate: false });
  router.all(['/:toolId', '/:toolId/{*path}'], async (req, res) => {
    const owner = resolveOwner(req, deps.tools);
    const tool = deps.tools.get(owner.toolId)!;
    if (tool.toolType !== 'api') throw new ApiError('not_an_api_tool', 'this tool is an MCP server; use /api/v1/mcp');
    const target = targetUrl(tool, req);
    await deps.gate.authorize(req, `tool:${owner.toolId}:use`, { toolId: owner.toolId });
    const what = { method: req.method, path: target.pathname.slice(0, 300) };
    const refusal = await deps.gate.refusal(req.caller!, `tool:${owner.toolId}:proxy:${req.method}`);
    if (refusal) {
      recordCall(deps, req.caller!, owner, 'http', what, 'denied', { code: refusal });
      throw new ApiError(refusal, `not permitted to ${req.method} through this tool`);
    }
    const streamed = Number(req.get('content-length') ?? 0) > REPLAYABLE_BYTES;
    if (!streamed && req.method !== 'GET' && req.method !== 'HEAD')
      await new Promise<void>((ok, fail) => buffered(req, res, (e) => (e ? fail(e) : ok())));
    await forward(deps, req, res, owner, tool, target, what, streamed);
  });
  return router;
}

async function forward(
  deps: GatewayDeps,
  req: Request,
  res: ExpressResponse,
  owner: CredentialOwner,
  tool: Tool,
  target: URL,
  what: { method: string; path: string },
  streamed: boolean,
): Promise<void> {
  const seen = new SeenTokens();
  const headers = new Headers();
  const hopByHop = new Set(
    (req.get('connection') ?? '')
      .toLowerCase()
      .split(',')
      .map((h) => h.trim()),
  );
  for (const [name, value] of Object.entries(req.headers)) {
    if (value === undefined || DROPPED_REQUEST_HEADERS.has(name) || hopByHop.has(name) || name.startsWith('x-forwarded-')) continue;
    headers.set(name, Array.isArray(value) ? value.join(', ') : value);
  }
  const hasBody = req.method !== 'GET' && req.method !== 'HEAD';
  const body = !hasBody ? undefined : streamed ? (Readable.toWeb(req) as ReadableStream) : Buffer.isBuffer(req.body) ? req.body : undefined;
  const gone = new AbortController();
  // Only a caller that hangs up early aborts the upstream request (an abort builds an exception: not on every answer).
  res.on('close', () => {
    if (!res.writableFinished) gone.abort();
  });
  const started = performance.now();
  let upstream: Response;
  try {
    const fetch = userFetch({ broker: deps.broker, outbound: deps.outbound, owner, tool, seen });
    upstream = await fetch(target, {
      method: req.method,
      headers,
      body,
      signal: gone.signal,
      ...(streamed ? { duplex: 'half' } : {}),
    } as RequestInit);
  } catch (err) {
    const code = errorCode(err);
    recordCall(deps, req.caller!, owner, 'http', what, callOutcome(err), {
      code,
      durationMs: Math.round(performance.now() - started),
    });
    if (err instanceof UpstreamAuthRequired) return sendLink(deps, res, tool, owner, err);
    if (err instanceof ApiError) throw err;
    if (code === 'credential_unavailable')
      throw new ApiError('credential_unavailable', 'the credential is being refreshed; try again shortly', { retryAfterSeconds: 1 });
    throw new ApiError(code === 'outbound_refused' ? 'outbound_refused' : 'upstream_unreachable', 'the API could not be reached');
  }
  recordCall(deps, req.caller!, owner, 'http', what, upstream.status >= 500 ? 'upstream_error' : 'ok', {
    status: upstream.status,
    durationMs: Math.round(performance.now() - started),
    ...(upstream.status >= 500 ? { code: `status_${upstream.status}` } : {}),
  });
  res.status(upstream.status);
  for (const [name, value] of upstream.headers) {
    if (!DROPPED_RESPONSE_HEADERS.has(name)) res.setHeader(name, seen.redact(value));
  }
  res.setHeader('cache-control', upstream.headers.get('cache-control') ?? 'no-store');
  if (!upstream.body || req.method === 'HEAD') {
    res.end();
    return;
  }
  try {
    await pipeline(Readable.fromWeb(upstream.body as never), redacting(seen), res);
  } catch {
    // The agent hung up, or the upstream broke off mid-answer: nothing more can be said on this response.
    res.destroy();
  }
}

/** 403 with a stable code and the link the user must open (first authorization, again, or for wider scopes). */
async function sendLink(
  deps: GatewayDeps,
  res: ExpressResponse,
  tool: Tool,
  owner: CredentialOwner,
  err: UpstreamAuthRequired,
): Promise<void> {
  const link = await consentLinkFor(deps, tool, owner, err.need);
  if (link === 'active')
    throw new ApiError('credential_unavailable', 'the credential was just authorized; try again', { retryAfterSeconds: 1 });
  const code = link.reason;
  res.status(ERROR_CATALOG[code].status).json({
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

const ENCODED_ESCAPE = /%(2f|5c|40|00)/i;

/**
 * The upstream URL: the tool's base URL with the agent's path and query appended as they came (never resolved
 * against it), refused when anything in the raw path could climb out of the base or name another host.
 */
export function targetUrl(tool: Tool, req: Request): URL {
  const raw = req.originalUrl;
  const queryAt = raw.indexOf('?');
  const rawPath = queryAt < 0 ? raw : raw.slice(0, queryAt);
  const query = queryAt < 0 ? '' : raw.slice(queryAt);
  // After /api/v1/proxy: /{toolId}[/{path}]
  const afterBase = rawPath.slice(req.baseUrl.length);
  const slash = afterBase.indexOf('/', 1);
  const rest = slash < 0 ? '' : afterBase.slice(slash);
  return joinUnder(tool.connection.url, rest, query);
}

/** `base` + `rest` + `query`, or 400 invalid_proxy_path when the result could leave `base`. */
export function joinUnder(baseUrl: string, rest: string, query: string): URL {
  const invalid = (why: string) => new ApiError('invalid_proxy_path', `the path is not allowed: ${why}`);
  if (rest.includes('\\') || rest.includes('@') || ENCODED_ESCAPE.test(rest))
    throw invalid('backslashes, @ and encoded slashes are refused');
  if (rest.startsWith('//') || rest.includes('://')) throw invalid('absolute and scheme-relative paths are refused');
  if (query.includes('#')) throw invalid('fragments are refused');
  for (const segment of rest.split('/')) {
    let decoded: string;
    try {
      decoded = decodeURIComponent(segment);
    } catch {
      throw invalid('malformed percent-encoding');
    }
    if (decoded === '.' || decoded === '..' || /[\\/]/.test(decoded)) throw invalid('dot segments are refused');
  }
  const base = new URL(baseUrl);
  const basePath = base.pathname.replace(/\/+$/, '');
  const target = new URL(`${base.origin}${basePath}${rest}${query}`);
  if (target.origin !== base.origin || !(target.pathname === basePath || target.pathname.startsWith(`${basePath}/`) || basePath === '')) {
    throw invalid('it leaves the base URL');
  }
  return target;
}

/**
 * Replaces any token the upstream was sent in a byte stream, including one split across chunks (the last
 * `longest − 1` bytes wait for the next chunk). Chunks without a token pass as they are.
 */
function redacting(seen: SeenTokens): Transform {
  const tokens = seen.all.map((t) => Buffer.from(t, 'latin1'));
  const keep = Math.max(0, ...tokens.map((t) => t.length - 1));
  let carry = Buffer.alloc(0);
  return new Transform({
    transform(chunk: Buffer, _enc, done) {
      let buf = carry.length ? Buffer.concat([carry, chunk]) : chunk;
      if (tokens.some((t) => buf.includes(t))) buf = Buffer.from(seen.redact(buf.toString('latin1')), 'latin1');
      const cut = Math.max(0, buf.length - keep);
      carry = Buffer.from(buf.subarray(cut));
      done(null, cut > 0 ? buf.subarray(0, cut) : undefined);
    },
    flush(done) {
      done(null, carry.length ? carry : undefined);
    },
  });
}
