import { Readable, Transform } from 'node:stream';
import { createBrotliDecompress, createGunzip, createInflate, createInflateRaw } from 'node:zlib';
import { ApiError } from '../errors.js';
import type { SeenTokens } from './upstream.js';

/** What comes back from an upstream before the agent sees it: decoded, then checked for the tokens it was sent. */

export const NULL_BODY_STATUS = new Set([204, 205, 304]);

/** More codings than any server has a reason to stack (each is a decompressor): refused. */
const MAX_CODINGS = 5;

/**
 * The codings of an answer's Content-Encoding, in the order they must be undone (the broker asks for none, but a
 * server may encode anyway): gzip, deflate and br, stacked in any order. Anything else cannot be checked for
 * tokens, so it is refused rather than relayed (502 upstream_encoding_unsupported).
 */
export function codingsOf(header: string | string[] | undefined): string[] {
  if (header === undefined) return [];
  const codings = (Array.isArray(header) ? header.join(',') : header)
    .split(',')
    .map((c) => c.trim().toLowerCase())
    .filter((c) => c && c !== 'identity')
    .map((c) => (c === 'x-gzip' ? 'gzip' : c));
  const unknown = codings.find((c) => c !== 'gzip' && c !== 'deflate' && c !== 'br');
  if (unknown !== undefined || codings.length > MAX_CODINGS)
    throw new ApiError(
      'upstream_encoding_unsupported',
      `the API answered in an encoding the broker cannot check (${(unknown ?? `${codings.length} codings`).slice(0, 40)})`,
    );
  return codings.reverse();
}

/**
 * `body` decoded from `codings` (from codingsOf): the source to read, and the decoders to pipe it through. The first
 * bytes are looked at first: a body with none needs no decoder (`empty`), and `deflate` as servers send it is
 * zlib-wrapped (RFC 9110) or raw, told apart by its first byte (a zlib stream's CMF byte has 8 in its low bits).
 */
export async function decodersFor(body: Readable, codings: string[]): Promise<{ source: Readable; stages: Transform[]; empty: boolean }> {
  if (!codings.length) return { source: body, stages: [], empty: false };
  const chunks = body[Symbol.asyncIterator]() as AsyncIterator<Buffer>;
  let first: Buffer | undefined;
  while (!first?.length) {
    const next = await chunks.next();
    if (next.done) return { source: body, stages: [], empty: true };
    first = next.value;
  }
  const head = first;
  const source = Readable.from(
    (async function* () {
      yield head;
      for (let next = await chunks.next(); !next.done; next = await chunks.next()) yield next.value;
    })(),
    { objectMode: false },
  );
  const stages = codings.map((coding, i) => {
    if (coding === 'gzip') return createGunzip();
    if (coding === 'br') return createBrotliDecompress();
    return i === 0 && (head[0]! & 0x0f) !== 8 ? createInflateRaw() : createInflate();
  });
  return { source, stages, empty: false };
}

/**
 * Replaces any token the upstream was sent in a byte stream, including one split across chunks (the last
 * `longest − 1` bytes wait for the next chunk). Chunks without a token pass as they are.
 */
export function redacting(seen: SeenTokens): Transform {
  const keep = Math.max(0, seen.longest - 1);
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
