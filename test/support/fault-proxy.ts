import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

export type ProxyMode = 'pass' | 'fail' | 'hold';

interface Held {
  body: string;
  req: IncomingMessage;
  res: ServerResponse;
}

/**
 * A proxy in front of the authorization server's token endpoint that can pass requests on, answer 503, or
 * hold them unanswered (to kill a worker while its request is in flight). It never forwards a held request.
 */
export class FaultProxy {
  mode: ProxyMode = 'pass';
  /** Only requests whose form body matches are affected (e.g. grant_type=refresh_token). */
  matches: (body: string) => boolean = () => true;
  url = '';
  readonly forwarded: string[] = [];
  readonly failed: string[] = [];
  /** When each failed request arrived (ms), to see how retries are spaced. */
  readonly failedAt: number[] = [];
  /** Sent with 503 answers in 'fail' mode. */
  retryAfterSeconds: number | null = null;
  private held: Held[] = [];
  private waiters: (() => void)[] = [];
  private server: Server | undefined;

  /** Where passed requests go (settable: the provider may start after the proxy). */
  constructor(public target: string) {}

  static async start(target: string): Promise<FaultProxy> {
    const p = new FaultProxy(target);
    p.server = createServer((req, res) => void p.handle(req, res));
    await new Promise<void>((resolve) => p.server!.listen(0, '127.0.0.1', resolve));
    p.url = `http://127.0.0.1:${(p.server.address() as AddressInfo).port}`;
    return p;
  }

  /** Resolves when a request is being held. */
  nextHeld(): Promise<void> {
    if (this.held.length) return Promise.resolve();
    return new Promise((resolve) => this.waiters.push(resolve));
  }

  /**
   * Forwards held requests to the provider (which acts on them: a refresh token is rotated) but never answers
   * their client: the answer is lost, as when the worker that sent them dies at that instant.
   */
  async forwardHeldAndDrop(): Promise<void> {
    for (const h of this.held.splice(0)) {
      await this.forward(h.body, h.req);
      h.res.destroy();
    }
  }

  /** Forwards held requests and answers them (the provider was only slow). */
  async releaseHeld(): Promise<void> {
    for (const h of this.held.splice(0)) {
      const upstream = await this.forward(h.body, h.req);
      await this.answer(h.res, upstream);
    }
  }

  /** Drops held requests without forwarding them (their client is gone). */
  dropHeld(): void {
    for (const h of this.held) h.res.destroy();
    this.held = [];
  }

  async close(): Promise<void> {
    this.dropHeld();
    this.server?.closeAllConnections();
    await new Promise<void>((resolve) => this.server?.close(() => resolve()));
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const body = Buffer.concat(chunks).toString('utf8');
    const affected = this.matches(body);
    if (affected && this.mode === 'fail') {
      this.failed.push(body);
      this.failedAt.push(Date.now());
      res
        .writeHead(503, {
          'content-type': 'application/json',
          ...(this.retryAfterSeconds ? { 'retry-after': String(this.retryAfterSeconds) } : {}),
        })
        .end('{"error":"temporarily_unavailable"}');
      return;
    }
    if (affected && this.mode === 'hold') {
      this.held.push({ body, req, res });
      for (const w of this.waiters.splice(0)) w();
      return;
    }
    await this.answer(res, await this.forward(body, req));
  }

  private async forward(body: string, req: IncomingMessage): Promise<Response> {
    this.forwarded.push(body);
    const headers: Record<string, string> = {};
    for (const [k, v] of Object.entries(req.headers)) if (typeof v === 'string' && k !== 'host' && k !== 'content-length') headers[k] = v;
    return fetch(new URL(req.url!, this.target), { method: req.method, headers, ...(body ? { body } : {}) });
  }

  private async answer(res: ServerResponse, upstream: Response): Promise<void> {
    const out: Record<string, string> = {};
    upstream.headers.forEach((v, k) => {
      if (k !== 'content-length' && k !== 'content-encoding' && k !== 'transfer-encoding') out[k] = v;
    });
    res.writeHead(upstream.status, out).end(Buffer.from(await upstream.arrayBuffer()));
  }
}

/** The service with its provider's token endpoint behind a FaultProxy (started first, then pointed at the provider). */
export async function harnessBehindProxy<H extends { sandbox: { issuer: string } }>(
  start: (opts: { tokenUrl: string }) => Promise<H>,
): Promise<{ h: H; proxy: FaultProxy }> {
  const proxy = await FaultProxy.start('http://127.0.0.1:1');
  const h = await start({ tokenUrl: `${proxy.url}/token` });
  proxy.target = h.sandbox.issuer;
  return { h, proxy };
}
