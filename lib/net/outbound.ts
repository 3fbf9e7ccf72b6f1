import type { EventEmitter } from 'node:events';
import { lookup as dnsLookup, type LookupAddress, type LookupOptions } from 'node:dns';
import ipaddr from 'ipaddr.js';
import { Agent, fetch as undiciFetch, request as undiciRequest, type Dispatcher } from 'undici';

/**
 * The one outbound policy for every URL the broker learned from a remote party (protected resource and
 * authorization server metadata, registration, token and revocation endpoints): scheme, addresses after DNS
 * resolution (checked at connect time, so a second resolution cannot swap in another address), no redirects,
 * and bounds on time and size. A refusal never contacts the target.
 */
export class OutboundError extends Error {
  readonly code = 'outbound_refused';
  constructor(
    /** Why, for logs and operators; agents see only the code. */
    readonly reason: 'scheme' | 'address' | 'redirect' | 'too_large',
    message: string,
  ) {
    super(message);
  }
}

export interface OutboundSettings {
  /** Plain HTTP (development, or local providers). HTTPS is always allowed. */
  allowHttp: boolean;
  /** Loopback addresses (127.0.0.0/8, ::1): development, or local providers. */
  allowLoopback: boolean;
  /** Host names, addresses or CIDRs that may be reached although private (on-premises servers). */
  allowlist: string[];
  /** Largest response body read into memory (buffered fetch). */
  maxResponseBytes?: number;
  /** Whole request, headers and body, for the buffered fetch. */
  timeoutMs?: number;
}

type Cidr = [ipaddr.IPv4 | ipaddr.IPv6, number];

/** Parses OUTBOUND_ALLOWLIST entries; throws on anything that is neither a host name, an address nor a CIDR. */
export function parseAllowlist(entries: string[]): { hosts: Set<string>; ranges: Cidr[] } {
  const hosts = new Set<string>();
  const ranges: Cidr[] = [];
  for (const raw of entries) {
    const entry = raw.trim().toLowerCase();
    if (!entry) continue;
    if (entry.includes('/')) {
      ranges.push(ipaddr.parseCIDR(entry));
    } else if (ipaddr.isValid(entry)) {
      const addr = ipaddr.process(entry);
      ranges.push([addr, addr.kind() === 'ipv4' ? 32 : 128]);
    } else if (/^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$/.test(entry)) {
      hosts.add(entry);
    } else {
      throw new Error(`not a host name, address or CIDR: ${raw.slice(0, 80)}`);
    }
  }
  return { hosts, ranges };
}

const NULL_BODY_STATUS = new Set([101, 103, 204, 205, 304]);

export class OutboundPolicy {
  private readonly hosts: Set<string>;
  private readonly ranges: Cidr[];
  private readonly agent: Agent;
  /** Origins (scheme, credentials, host) that passed `checkUrl`. */
  private readonly checked = new Set<string>();
  readonly maxResponseBytes: number;
  readonly timeoutMs: number;

  constructor(readonly settings: OutboundSettings) {
    ({ hosts: this.hosts, ranges: this.ranges } = parseAllowlist(settings.allowlist));
    this.maxResponseBytes = settings.maxResponseBytes ?? 1024 * 1024;
    this.timeoutMs = settings.timeoutMs ?? 10_000;
    // Every connection resolves through the policy: the address checked is the address connected to.
    this.agent = new Agent({ connect: { lookup: this.lookup, timeout: this.timeoutMs } });
  }

  /** May this address be reached (for a request to `host`)? */
  addressAllowed(address: string, host: string): boolean {
    if (!ipaddr.isValid(address)) return false;
    const addr = ipaddr.process(address);
    if (this.hosts.has(host.toLowerCase())) return true;
    if (this.ranges.some(([net, bits]) => net.kind() === addr.kind() && addr.match(net as never, bits))) return true;
    const range = addr.range();
    if (range === 'unicast') return true;
    return range === 'loopback' && this.settings.allowLoopback;
  }

  /** Scheme and literal-address checks that need no DNS; throws OutboundError. */
  checkUrl(url: URL): void {
    // The gateway sends every call to one of a few configured origins: each is checked once.
    const key = `${url.protocol}//${url.username}:${url.password}@${url.host}`;
    if (this.checked.has(key)) return;
    this.checkUrlNow(url);
    if (this.checked.size >= 1000) this.checked.clear();
    this.checked.add(key);
  }

  private checkUrlNow(url: URL): void {
    if (url.protocol !== 'https:' && !(url.protocol === 'http:' && this.settings.allowHttp)) {
      throw new OutboundError('scheme', `scheme ${url.protocol} is not allowed`);
    }
    if (url.username || url.password) throw new OutboundError('scheme', 'URLs with credentials are not allowed');
    const host = url.hostname.replace(/^\[|\]$/g, '');
    if (ipaddr.isValid(host) && !this.addressAllowed(host, host)) {
      throw new OutboundError('address', 'the address is not allowed');
    }
  }

  private readonly lookup = (
    hostname: string,
    options: LookupOptions,
    callback: (err: NodeJS.ErrnoException | null, address: string | LookupAddress[], family?: number) => void,
  ): void => {
    dnsLookup(hostname, { ...options, all: true }, (err, addresses) => {
      if (err) return callback(err, []);
      // Every address the name resolves to must pass: no mixing a public and a private record.
      if (!addresses.length || addresses.some((a) => !this.addressAllowed(a.address, hostname))) {
        return callback(new OutboundError('address', 'the host resolves to an address that is not allowed') as NodeJS.ErrnoException, []);
      }
      if (options.all) return callback(null, addresses);
      callback(null, addresses[0]!.address, addresses[0]!.family);
    });
  };

  /**
   * For requests whose answer is small and read whole (metadata, registration, tokens): the body is read
   * here within the size bound, and the whole exchange within the time bound. Redirects are refused.
   */
  readonly fetch = async (input: string | URL | Request, init: RequestInit = {}): Promise<Response> => {
    const signal = init.signal ? AbortSignal.any([init.signal, AbortSignal.timeout(this.timeoutMs)]) : AbortSignal.timeout(this.timeoutMs);
    const res = await this.send(input, { ...init, signal });
    const declared = Number(res.headers.get('content-length') ?? 0);
    if (declared > this.maxResponseBytes) {
      await res.body?.cancel();
      throw new OutboundError('too_large', 'the response is too large');
    }
    const chunks: Uint8Array[] = [];
    let size = 0;
    if (res.body && !NULL_BODY_STATUS.has(res.status)) {
      for await (const chunk of res.body as AsyncIterable<Uint8Array>) {
        size += chunk.byteLength;
        if (size > this.maxResponseBytes) {
          await res.body.cancel().catch(() => {});
          throw new OutboundError('too_large', 'the response is too large');
        }
        chunks.push(chunk);
      }
    }
    const headers = new Headers([...res.headers].filter(([k]) => k !== 'content-length' && k !== 'content-encoding'));
    return new Response(NULL_BODY_STATUS.has(res.status) ? null : Buffer.concat(chunks), {
      status: res.status,
      statusText: res.statusText,
      headers,
    });
  };

  /** For streamed answers (an MCP server's event stream): the same checks, no size or total-time bound. */
  readonly streamingFetch = async (input: string | URL | Request, init: RequestInit = {}): Promise<Response> => {
    const res = await this.send(input, init);
    return res as unknown as Response;
  };

  private async send(input: string | URL | Request, init: RequestInit) {
    const url = new URL(typeof input === 'string' ? input : input instanceof URL ? input.href : input.url);
    this.checkUrl(url);
    let res: Awaited<ReturnType<typeof undiciFetch>>;
    try {
      const request = input instanceof Request ? { method: input.method, headers: input.headers, body: input.body, duplex: 'half' } : {};
      res = await undiciFetch(url, { ...request, ...(init as object), redirect: 'manual', dispatcher: this.agent } as Parameters<
        typeof undiciFetch
      >[1]);
    } catch (err) {
      const refused = findOutboundError(err);
      if (refused) throw refused;
      throw err;
    }
    if (res.status >= 300 && res.status < 400 && res.headers.has('location')) {
      await res.body?.cancel();
      throw new OutboundError('redirect', 'redirects are not followed');
    }
    return res;
  }

  /**
   * undici's own request API, for the gateway's HTTP proxy: the same checks as `streamingFetch`, without the
   * WHATWG objects (a Request, a Headers, a web stream per call) that cost more than the hop itself. The body is
   * a Node stream; the caller consumes or dumps it.
   */
  async request(
    url: URL,
    opts: { method: string; headers: Record<string, string>; body?: Buffer | NodeJS.ReadableStream; signal?: AbortSignal | EventEmitter },
  ) {
    this.checkUrl(url);
    let res: Dispatcher.ResponseData;
    try {
      res = await undiciRequest(url, { ...opts, body: opts.body as never, dispatcher: this.agent });
    } catch (err) {
      throw findOutboundError(err) ?? err;
    }
    if (res.statusCode >= 300 && res.statusCode < 400 && res.headers.location !== undefined) {
      await res.body.dump().catch(() => {});
      throw new OutboundError('redirect', 'redirects are not followed');
    }
    return res;
  }

  async close(): Promise<void> {
    await this.agent.close();
  }
}

/** The policy's refusal, wherever in the cause chain a library (undici, openid-client) put it. */
export function findOutboundError(err: unknown): OutboundError | null {
  for (let e: unknown = err, depth = 0; e && depth < 5; e = (e as { cause?: unknown }).cause, depth++) {
    if (e instanceof OutboundError) return e;
  }
  return null;
}
