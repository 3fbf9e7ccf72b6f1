import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { brotliCompressSync, deflateRawSync, deflateSync, gzipSync } from 'node:zlib';
import express from 'express';
import { checkTokenUse, dpopChallenge, type TokenBinding } from './dpop-check.js';

export interface ProtectedApi {
  origin: string;
  /** Every request that reached the API: method and raw URL. */
  requests: { method: string; url: string }[];
  tokensSeen: Set<string>;
  /** From now on, 401 for every token seen so far. */
  rejectTokensSeen(): void;
  close(): Promise<void>;
}

/**
 * A real HTTP API under /v1 that accepts only bearer tokens its authorization server says are active (checked by
 * introspection there, on every request). It answers with what it received, so tests can see what the proxy sent.
 */
export async function startProtectedApi(
  introspect: (token: string) => Promise<({ active: boolean; sub?: unknown } & TokenBinding) | null>,
): Promise<ProtectedApi> {
  const requests: ProtectedApi['requests'] = [];
  const tokensSeen = new Set<string>();
  const rejected = new Set<string>();
  const app = express();
  app.use((req, _res, next) => {
    requests.push({ method: req.method, url: req.originalUrl });
    next();
  });
  const dpopState = { jtis: new Set<string>() };
  /** Known once listening; requests come after. */
  let origin = '';
  app.use('/v1', express.json(), async (req, res, next) => {
    const presented = /^(Bearer|DPoP) (.+)$/i.exec(req.get('authorization') ?? '');
    const token = presented?.[2];
    if (token) tokensSeen.add(token);
    const info = token && !rejected.has(token) ? await introspect(token) : null;
    if (!info?.active) return void res.status(401).set('WWW-Authenticate', 'Bearer error="invalid_token"').json({ error: 'invalid_token' });
    // A DPoP-bound token only with a proof of its key (RFC 9449); a bearer token only as one.
    const use = { method: req.method, url: `${origin}${req.originalUrl}`, scheme: presented![1]!, token: token!, proof: req.get('dpop') };
    const refusal = await checkTokenUse(use, info, dpopState);
    if (refusal) return void res.status(401).set(dpopChallenge(refusal)).json({ error: refusal });
    res.locals.sub = info.sub;
    next();
  });
  const echo = (req: express.Request, res: express.Response) => {
    const headers = { ...req.headers };
    delete headers.authorization;
    res.json({ sub: res.locals.sub, url: req.originalUrl, method: req.method, headers, body: req.body });
  };
  app.get('/v1/slow-down', (_req, res) => {
    res.status(429).set('Retry-After', '7').json({ error: 'rate_limited' });
  });
  // A careless API that echoes the token it was sent, in a header and in its body (gzip-encoded with ?gzip=1,
  // streamed in small chunks with ?chunked=1): the proxy must not hand it to the agent in any of these forms.
  app.get('/v1/leak', (req, res) => {
    const authorization = req.get('authorization') ?? '';
    const body = Buffer.from(JSON.stringify({ seen: authorization, again: `token=${authorization.replace(/^\S+ /, '')}` }));
    res.set('x-echo', authorization).type('application/json');
    if (req.query.gzip) return void res.set('content-encoding', 'gzip').send(gzipSync(body));
    // Encodings as careless servers send them: stacked (gzip, then br), deflate with and without its zlib
    // wrapper, one the broker cannot decode, and an empty answer that says gzip.
    const encoded: Record<string, () => Buffer> = {
      'gzip, br': () => brotliCompressSync(gzipSync(body)),
      deflate: () => deflateSync(body),
      'deflate-raw': () => deflateRawSync(body),
      zstd: () => body,
    };
    const encoding = String(req.query.encoding ?? '');
    if (encoding === 'empty') return void res.status(204).set('content-encoding', 'gzip').end();
    if (encoded[encoding])
      return void res.set('content-encoding', encoding === 'deflate-raw' ? 'deflate' : encoding).send(encoded[encoding]());
    if (!req.query.chunked) return void res.send(body);
    for (let i = 0; i < body.length; i += 7) res.write(body.subarray(i, i + 7));
    res.end();
  });
  app.all('/v1/{*rest}', echo);
  const server: Server = createServer(app);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  origin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return {
    origin,
    requests,
    tokensSeen,
    rejectTokensSeen: () => {
      for (const t of tokensSeen) rejected.add(t);
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
