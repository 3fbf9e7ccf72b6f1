import { Transform } from 'node:stream';
import { createBrotliDecompress, createGunzip, createInflate, createInflateRaw } from 'node:zlib';
import { ApiError } from '../errors.js';
import type { SeenTokens } from './upstream.js';

/** What comes back from an upstream before the agent sees it: decoded, then checked for the tokens it was sent. */

export const NULL_BODY_STATUS = new Set([204, 205, 304]);

/**
 * Decoders for an answer's Content-Encoding, last applied first (the broker asks for none, but a server may encode
 * anyway): gzip, deflate (zlib or raw, as sent) and br, stacked in any order. Anything else cannot be checked for
 * tokens, so it is refused rather than relayed. An answer without a body needs none.
 */
export function decodersFor(header: string | string[] | undefined, empty: boolean): Transform[] {
  if (header === undefined || empty) return [];
  const codings = (Array.isArray(header) ? header.join(',') : header)
    .split(',')
    .map((c) => c.trim().toLowerCase())
    .filter((c) => c && c !== 'identity');
  return codings.reverse().map((coding) => {
    if (coding === 'gzip' || coding === 'x-gzip') return createGunzip();
    if (coding === 'br') return createBrotliDecompress();
    if (coding === 'deflate') return inflateEither();
    throw new ApiError('upstream_encoding_unsupported', `the API answered in an encoding the broker cannot check (${coding.slice(0, 40)})`);
  });
}

/** `deflate` as servers send it: zlib-wrapped (RFC 9110) or raw, told apart by the first byte. */
function inflateEither(): Transform {
  let inner: Transform | null = null;
  return new Transform({
    transform(chunk: Buffer, _enc, done) {
      if (!inner) {
        // A zlib stream starts with a CMF byte whose low four bits are 8 (deflate).
        inner = (chunk[0]! & 0x0f) === 8 ? createInflate() : createInflateRaw();
        inner.on('data', (d: Buffer) => this.push(d));
        inner.on('error', (err) => this.destroy(err));
      }
      inner.write(chunk, () => done());
    },
    flush(done) {
      if (!inner) return done();
      inner.once('end', () => done());
      inner.end();
    },
  });
}

/**
 * Replaces any token the upstream was sent in a byte stream, including one split across chunks (the last
 * `longest − 1` bytes wait for the next chunk). Chunks without a token pass as they are.
 */
export function redacting(seen: SeenTokens): Transform {
  const keep = Math.max(0, ...seen.all.map((t) => Buffer.byteLength(t, 'latin1') - 1));
  let carry = Buffer.alloc(0);
  return new Transform({
    transform(chunk: Buffer, _enc, done) {
      const buf = seen.redactBytes(carry.length ? Buffer.concat([carry, chunk]) : chunk);
      const cut = Math.max(0, buf.length - keep);
      carry = Buffer.from(buf.subarray(cut));
      done(null, cut > 0 ? buf.subarray(0, cut) : undefined);
    },
    flush(done) {
      done(null, carry.length ? carry : undefined);
    },
  });
}
