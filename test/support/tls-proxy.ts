import { request as httpRequest } from 'node:http';
import { createServer, request as httpsRequest } from 'node:https';
import type { AddressInfo } from 'node:net';
import { generate } from 'selfsigned';

export interface TlsProxy {
  /** https://localhost:port, served with a certificate of its own (self-signed, for localhost and 127.0.0.1). */
  origin: string;
  /** The certificate to trust (PEM): only clients given it can connect. */
  ca: string;
  /** Paths requested through the proxy, in order. */
  requests: string[];
  /** Where to forward: set once the service behind it listens. */
  forwardTo(target: string): void;
  close(): Promise<void>;
}

/** A TLS-terminating reverse proxy, as in front of a deployed broker: HTTPS outside, plain HTTP to the service. */
export async function startTlsProxy(): Promise<TlsProxy> {
  const pems = await generate([{ name: 'commonName', value: 'localhost' }], {
    keyType: 'ec',
    curve: 'P-256',
    notAfterDate: new Date(Date.now() + 24 * 3600_000),
    extensions: [
      {
        name: 'subjectAltName',
        altNames: [
          { type: 2, value: 'localhost' },
          { type: 7, ip: '127.0.0.1' },
        ],
      },
    ],
  });
  let target: URL | null = null;
  const requests: string[] = [];
  const server = createServer({ key: pems.private, cert: pems.cert }, (req, res) => {
    requests.push(req.url ?? '/');
    if (!target) {
      res.writeHead(503).end();
      return;
    }
    const upstream = httpRequest(
      new URL(req.url ?? '/', target),
      { method: req.method, headers: { ...req.headers, host: target.host, 'x-forwarded-proto': 'https' } },
      (answer) => {
        res.writeHead(answer.statusCode ?? 502, answer.headers);
        answer.pipe(res);
      },
    );
    upstream.on('error', () => res.writeHead(502).end());
    req.pipe(upstream);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    origin: `https://localhost:${(server.address() as AddressInfo).port}`,
    ca: pems.cert,
    requests,
    forwardTo: (t) => {
      target = new URL(t);
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/**
 * A fetch that trusts one extra certificate authority, for servers in the tests that call an HTTPS origin
 * of the tests (Node's global fetch takes no CA option without an undici dispatcher).
 */
export function fetchTrusting(ca: string): typeof fetch {
  return (async (input: string | URL | Request, init: RequestInit = {}) => {
    const url = new URL(input instanceof Request ? input.url : input);
    const headers = Object.fromEntries(new Headers(init.headers).entries());
    return new Promise<Response>((resolve, reject) => {
      const req = httpsRequest(url, { method: init.method ?? 'GET', headers, ca, signal: init.signal ?? undefined }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          const answer = new Headers();
          for (const [k, v] of Object.entries(res.headers)) if (v !== undefined) answer.set(k, Array.isArray(v) ? v.join(', ') : v);
          resolve(new Response(Buffer.concat(chunks), { status: res.statusCode ?? 502, headers: answer }));
        });
        res.on('error', reject);
      });
      req.on('error', reject);
      req.end();
    });
  }) as typeof fetch;
}
