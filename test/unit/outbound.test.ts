import { createServer, type RequestListener, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { OutboundError, OutboundPolicy } from '../../lib/net/outbound.js';

/** Real servers on loopback: 127.0.0.1 plays an allowed local server, 127.0.0.2 a canary that must never be hit. */
let allowed: Server;
let canary: Server;
let allowedUrl = '';
let canaryUrl = '';
const canaryHits: string[] = [];

async function listen(host: string, handler: RequestListener): Promise<[Server, string]> {
  const server = createServer(handler);
  await new Promise<void>((resolve) => server.listen(0, host, resolve));
  return [server, `http://${host}:${(server.address() as AddressInfo).port}`];
}

beforeAll(async () => {
  [canary, canaryUrl] = await listen('127.0.0.2', (req, res) => {
    canaryHits.push(`${req.method} ${req.url}`);
    res.end('{"secret":"internal"}');
  });
  [allowed, allowedUrl] = await listen('127.0.0.1', (req, res) => {
    if (req.url === '/redirect') {
      res.writeHead(302, { location: `${canaryUrl}/after-redirect` }).end();
    } else if (req.url === '/big') {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(Buffer.alloc(2 * 1024 * 1024, 0x20));
    } else if (req.url === '/big-chunked') {
      res.writeHead(200, { 'content-type': 'application/json', 'transfer-encoding': 'chunked' });
      const chunk = Buffer.alloc(64 * 1024, 0x20);
      let sent = 0;
      const more = () => {
        while (sent < 40 && res.write(chunk)) sent++;
        if (sent < 40) res.once('drain', more);
        else res.end();
      };
      more();
    } else if (req.url === '/slow') {
      setTimeout(() => res.end('{}'), 2_000);
    } else {
      res.setHeader('content-type', 'application/json');
      res.end('{"ok":true}');
    }
  });
});
afterAll(async () => {
  for (const s of [allowed, canary]) await new Promise<void>((resolve) => s.close(() => resolve()));
});

async function refusal(policy: OutboundPolicy, url: string): Promise<string> {
  try {
    const res = await policy.fetch(url);
    return `answered ${res.status}`;
  } catch (err) {
    return err instanceof OutboundError ? `${err.code}:${err.reason}` : `error ${(err as Error).name}`;
  }
}

describe('OutboundPolicy', () => {
  const strict = () =>
    new OutboundPolicy({ allowHttp: true, allowLoopback: false, allowlist: ['127.0.0.1'], maxResponseBytes: 1024 * 1024, timeoutMs: 500 });

  it('classifies addresses with the library: public unicast yes; loopback, private, link-local, metadata, mapped and embedded no', () => {
    const p = new OutboundPolicy({ allowHttp: false, allowLoopback: false, allowlist: [] });
    for (const a of ['93.184.216.34', '2606:4700::1111', '::ffff:93.184.216.34']) expect(p.addressAllowed(a, 'x'), a).toBe(true);
    for (const a of [
      '127.0.0.1',
      '127.0.0.2',
      '::1',
      '10.0.0.1',
      '172.16.5.4',
      '192.168.1.1',
      '169.254.169.254',
      'fd00::1',
      'fe80::1',
      '100.64.0.1',
      '0.0.0.0',
      '::',
      '::ffff:127.0.0.1',
      '::ffff:10.0.0.1',
      '64:ff9b::a00:1',
      '2002:a00:1::',
      '224.0.0.1',
      '255.255.255.255',
    ]) {
      expect(p.addressAllowed(a, 'x'), a).toBe(false);
    }
    const listed = new OutboundPolicy({
      allowHttp: false,
      allowLoopback: false,
      allowlist: ['10.1.0.0/16', 'idp.corp.example', 'fd00::/8'],
    });
    expect(listed.addressAllowed('10.1.2.3', 'x')).toBe(true);
    expect(listed.addressAllowed('10.2.0.1', 'x')).toBe(false);
    expect(listed.addressAllowed('10.9.9.9', 'idp.corp.example')).toBe(true);
    expect(listed.addressAllowed('fd00::5', 'x')).toBe(true);
    expect(new OutboundPolicy({ allowHttp: true, allowLoopback: true, allowlist: [] }).addressAllowed('127.0.0.2', 'x')).toBe(true);
  });

  it('refuses plain HTTP unless allowed, and URLs with credentials', async () => {
    const p = new OutboundPolicy({ allowHttp: false, allowLoopback: true, allowlist: [] });
    expect(await refusal(p, `${allowedUrl}/ok`)).toBe('outbound_refused:scheme');
    expect(await refusal(p, 'ftp://example.com/x')).toBe('outbound_refused:scheme');
    expect(await refusal(strict(), allowedUrl.replace('http://', 'http://user:pw@'))).toBe('outbound_refused:scheme');
    expect(canaryHits).toEqual([]);
  });

  it('reaches an allowlisted address and refuses every other loopback address, literal or by name, before connecting', async () => {
    const p = strict();
    expect(await refusal(p, `${allowedUrl}/ok`)).toBe('answered 200');
    expect(await refusal(p, `${canaryUrl}/literal`)).toBe('outbound_refused:address');
    expect(await refusal(p, `${canaryUrl.replace('127.0.0.2', '[::ffff:127.0.0.2]')}/mapped`)).toBe('outbound_refused:address');
    // A name is checked after resolution, at connect time: `localhost` is loopback, and only 127.0.0.1 is listed.
    const noList = new OutboundPolicy({ allowHttp: true, allowLoopback: false, allowlist: [] });
    expect(await refusal(noList, `${allowedUrl.replace('127.0.0.1', 'localhost')}/by-name`)).toBe('outbound_refused:address');
    await noList.close();
    expect(await refusal(p, 'http://169.254.169.254/latest/meta-data/')).toBe('outbound_refused:address');
    expect(canaryHits).toEqual([]);
    await p.close();
  });

  it('does not follow a redirect to a refused address (or any redirect)', async () => {
    const p = strict();
    expect(await refusal(p, `${allowedUrl}/redirect`)).toBe('outbound_refused:redirect');
    expect(canaryHits).toEqual([]);
    await p.close();
  });

  it('bounds the response size (declared or streamed) and the time', async () => {
    const p = strict();
    expect(await refusal(p, `${allowedUrl}/big`)).toBe('outbound_refused:too_large');
    expect(await refusal(p, `${allowedUrl}/big-chunked`)).toBe('outbound_refused:too_large');
    expect(await refusal(p, `${allowedUrl}/slow`)).toMatch(/^error (TimeoutError|AbortError)$/);
    const ok = await p.fetch(`${allowedUrl}/ok`, { headers: { accept: 'application/json' } });
    expect(await ok.json()).toEqual({ ok: true });
    expect(ok).toBeInstanceOf(Response);
    await p.close();
  });
});
