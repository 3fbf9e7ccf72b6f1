import { createHmac, timingSafeEqual } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface Received {
  id: string;
  timestamp: number;
  /** Whether the signature verified with the secret the receiver held when it arrived. */
  verified: boolean;
  body: string;
  event: { type: string; timestamp: string; data: Record<string, unknown> };
  path: string;
}

/**
 * A webhook receiver as the README tells one to write it: it verifies the Standard Webhooks signature
 * (HMAC-SHA256 over `id.timestamp.body` with the base64 secret after `whsec_`) and the timestamp's freshness.
 * `answer` decides each response: 200, an error status, or 'hold' (never answered, to kill a worker mid-send).
 */
export class WebhookReceiver {
  readonly received: Received[] = [];
  readonly raw: string[] = [];
  secrets = new Map<string, string>();
  answer: (r: Received) => number | 'hold' = () => 200;
  url = '';
  private readonly held: ServerResponse[] = [];
  private server: Server | undefined;

  static async start(): Promise<WebhookReceiver> {
    const r = new WebhookReceiver();
    r.server = createServer((req, res) => void r.handle(req, res));
    await new Promise<void>((resolve) => r.server!.listen(0, '127.0.0.1', resolve));
    r.url = `http://127.0.0.1:${(r.server.address() as AddressInfo).port}`;
    return r;
  }

  /** The events that arrived at one path (one subscription) and verified, in order. */
  at(path: string): Received[] {
    return this.received.filter((r) => r.path === path && r.verified);
  }

  /** Drops every held request (as a receiver that crashed would). */
  dropHeld(): void {
    for (const res of this.held.splice(0)) res.socket?.destroy();
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const body = Buffer.concat(chunks).toString('utf8');
    this.raw.push(`${JSON.stringify(req.headers)}\n${body}`);
    const path = req.url ?? '/';
    const id = String(req.headers['webhook-id'] ?? '');
    const timestamp = Number(req.headers['webhook-timestamp']);
    const secret = this.secrets.get(path);
    const verified = secret !== undefined && verify(secret, id, timestamp, body, String(req.headers['webhook-signature'] ?? ''));
    // Anything unsigned (a form POST, say) is answered 401 and kept with an empty event.
    const r: Received = { id, timestamp, verified, body, event: verified ? JSON.parse(body) : { type: '', timestamp: '', data: {} }, path };
    this.received.push(r);
    const answer = verified ? this.answer(r) : 401;
    if (answer === 'hold') {
      this.held.push(res);
      return;
    }
    res.writeHead(answer).end();
  }

  async close(): Promise<void> {
    this.dropHeld();
    this.server?.closeAllConnections();
    await new Promise((resolve) => this.server?.close(resolve));
  }
}

/** Standard Webhooks verification, written from the specification (not with the library the broker signs with). */
export function verify(secret: string, id: string, timestamp: number, body: string, header: string): boolean {
  if (!id || !Number.isFinite(timestamp) || Math.abs(Date.now() / 1000 - timestamp) > 300) return false;
  const key = Buffer.from(secret.replace(/^whsec_/, ''), 'base64');
  const expected = createHmac('sha256', key).update(`${id}.${timestamp}.${body}`).digest();
  return header.split(' ').some((entry) => {
    const [version, signature] = entry.split(',');
    if (version !== 'v1' || !signature) return false;
    const given = Buffer.from(signature, 'base64');
    return given.length === expected.length && timingSafeEqual(given, expected);
  });
}
