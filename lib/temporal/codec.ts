import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import type { Payload, PayloadCodec } from '@temporalio/common';
import proto from '@temporalio/proto';

// A CommonJS package: Node's ESM loader sees only its default export.
const { temporal } = proto;
const ENCODING = 'binary/encrypted';
const KEY_ID = 'encryption-key-id';
const enc = new TextEncoder();
const dec = new TextDecoder();

export interface CodecKey {
  id: string;
  key: Buffer;
}

/**
 * Encrypts every Temporal payload (AES-256-GCM, key id in the metadata), so Temporal's own database holds
 * ciphertext. The second layer: secrets are never in payloads in the first place.
 */
export class EncryptionCodec implements PayloadCodec {
  constructor(private readonly keys: CodecKey[]) {
    if (keys.length === 0) throw new Error('the payload codec needs a key');
  }

  async encode(payloads: Payload[]): Promise<Payload[]> {
    const { id, key } = this.keys[0]!;
    return payloads.map((p) => {
      const iv = randomBytes(12);
      const cipher = createCipheriv('aes-256-gcm', key, iv);
      const ct = Buffer.concat([cipher.update(temporal.api.common.v1.Payload.encode(p).finish()), cipher.final()]);
      return {
        metadata: { encoding: enc.encode(ENCODING), [KEY_ID]: enc.encode(id) },
        data: Buffer.concat([iv, cipher.getAuthTag(), ct]),
      };
    });
  }

  async decode(payloads: Payload[]): Promise<Payload[]> {
    return payloads.map((p) => {
      if (!p.metadata || dec.decode(p.metadata.encoding) !== ENCODING) return p;
      const keyId = dec.decode(p.metadata[KEY_ID]);
      const key = this.keys.find((k) => k.id === keyId);
      if (!key) throw new Error(`payload encrypted with unknown key id ${keyId}`);
      const data = Buffer.from(p.data ?? new Uint8Array());
      const decipher = createDecipheriv('aes-256-gcm', key.key, data.subarray(0, 12));
      decipher.setAuthTag(data.subarray(12, 28));
      const plain = Buffer.concat([decipher.update(data.subarray(28)), decipher.final()]);
      return temporal.api.common.v1.Payload.decode(plain);
    });
  }
}
