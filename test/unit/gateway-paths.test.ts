import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { brotliCompressSync, deflateRawSync, deflateSync, gzipSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { joinUnder, proxyToolId } from '../../api/gateway/proxy-path.js';
import { codingsOf, decodersFor, redacting } from '../../api/gateway/scan.js';
import { SeenTokens } from '../../api/gateway/upstream.js';

/** The HTTP proxy's pure parts: where a request may go, and what comes back before the agent sees it. */
describe('the proxy path', () => {
  it.each([
    ['/api/v1/proxy/github', 'github'],
    ['/api/v1/proxy/github/repos?x=1', 'github'],
    ['/api/v1/proxy/my%20tool/x', 'my tool'],
    ['/api/v1/proxy/?x', null],
    ['/api/v1/proxy/%E0%A4%A/x', null],
  ])('%s names tool %s', (url, tool) => {
    expect(proxyToolId(url)).toBe(tool);
  });

  it('appends, never resolves, and refuses whatever could leave the base', () => {
    expect(joinUnder('https://api.example.com/v1/', '/repos/a', '?q=1').href).toBe('https://api.example.com/v1/repos/a?q=1');
    expect(joinUnder('https://api.example.com', '/x', '').href).toBe('https://api.example.com/x');
    for (const rest of ['/../admin', '/%2e%2e/admin', '/a%2fb', '//evil.test/x', '/x@evil.test', '/a\\\\b', '/http://evil.test/', '/%zz'])
      expect(() => joinUnder('https://api.example.com/v1', rest, ''), rest).toThrow(/not allowed/);
    expect(() => joinUnder('https://api.example.com/v1', '/x', '?a#frag')).toThrow(/fragments/);
  });
});

describe('what comes back', () => {
  const body = Buffer.from(JSON.stringify({ echoed: 'Bearer tok-123456', again: 'tok-123456' }));
  const decode = async (encoding: string | undefined, bytes: Buffer) => {
    const out: Buffer[] = [];
    const seen = new SeenTokens();
    seen.add('tok-123456');
    const sink = new Writable({
      write(chunk: Buffer, _enc, done) {
        out.push(chunk);
        done();
      },
    });
    // An empty chunk first, then the bytes split so that the token straddles two chunks.
    const source = Readable.from([Buffer.alloc(0), bytes.subarray(0, 5), bytes.subarray(5)]);
    const { source: decoded, stages } = await decodersFor(source, codingsOf(encoding));
    await pipeline([decoded, ...stages, redacting(seen), sink]);
    return JSON.parse(Buffer.concat(out).toString()) as unknown;
  };

  it.each([
    ['none', undefined, body],
    ['gzip', 'gzip', gzipSync(body)],
    ['x-gzip', 'X-Gzip', gzipSync(body)],
    ['deflate (zlib)', 'deflate', deflateSync(body)],
    ['deflate (raw, as some servers send it)', 'deflate', deflateRawSync(body)],
    ['br', 'br', brotliCompressSync(body)],
    ['gzip then br', 'gzip, br', brotliCompressSync(gzipSync(body))],
    ['identity listed', 'identity', body],
  ])('%s: decoded, and the token split across chunks replaced', async (_name, encoding, bytes) => {
    expect(await decode(encoding, bytes)).toEqual({ echoed: 'Bearer [redacted]', again: '[redacted]' });
  });

  it('refuses an encoding it cannot decode or too many stacked, and decodes nothing for an empty answer', async () => {
    for (const header of ['zstd', 'gzip, compress', Array(6).fill('gzip').join(', ')])
      expect(() => codingsOf(header), header).toThrow(expect.objectContaining({ code: 'upstream_encoding_unsupported' }));
    expect(codingsOf('gzip, br')).toEqual(['br', 'gzip']);
    expect(await decodersFor(Readable.from([Buffer.alloc(0)]), ['gzip'])).toMatchObject({ stages: [], empty: true });
  });
});
