import { createCipheriv, createDecipheriv, createHash, createHmac, hkdfSync, randomBytes, timingSafeEqual } from 'node:crypto';

/** Who a secret belongs to and where it lives; bound into the ciphertext as additional data. */
export interface SecretContext {
  agentId: string;
  userId: string;
  toolId: string;
  /** The row the secret is stored in, so a ciphertext cannot be moved to another row. */
  recordId: string;
  /** The column, so an access token cannot be swapped for a refresh token. */
  field: string;
}

export class VaultError extends Error {
  constructor(
    readonly code: 'invalid_key' | 'unknown_key_id' | 'malformed_ciphertext' | 'decryption_failed',
    message: string,
  ) {
    super(message);
  }
}

interface MasterKey {
  id: string;
  key: Buffer;
}

const FORMAT = 'v1';
const HKDF_SALT = Buffer.from('agent-credential-broker/credential-key/v1');

/**
 * Parses CREDENTIALS_ENCRYPTION_KEY: `id:base64key[,id:base64key…]` (the first encrypts, all decrypt)
 * or one bare base64 key whose id is derived from its hash.
 */
export function parseMasterKeys(spec: string): MasterKey[] {
  const keys = spec
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean)
    .map((part) => {
      const sep = part.indexOf(':');
      const [id, material] = sep > 0 ? [part.slice(0, sep), part.slice(sep + 1)] : [undefined, part];
      const key = Buffer.from(material, 'base64');
      if (key.length !== 32) throw new VaultError('invalid_key', 'each encryption key must be 32 bytes, base64-encoded');
      const keyId = id ?? createHash('sha256').update(key).digest('hex').slice(0, 8);
      if (!/^[A-Za-z0-9_-]{1,32}$/.test(keyId)) throw new VaultError('invalid_key', 'key ids may hold only letters, digits, - and _');
      return { id: keyId, key };
    });
  if (keys.length === 0) throw new VaultError('invalid_key', 'no encryption key given');
  return keys;
}

export function generateMasterKeySpec(): string {
  return `k${Date.now().toString(36)}:${randomBytes(32).toString('base64')}`;
}

/**
 * AES-256-GCM with a per-agent key derived from the master key by HKDF, and the owner and location of
 * each secret bound as additional data: a ciphertext decrypts only for its own agent, user, tool and row.
 */
export class Vault {
  private readonly keys: MasterKey[];
  private readonly derived = new Map<string, Buffer>();
  private readonly stateKey: Buffer;

  constructor(masterKeySpec: string) {
    this.keys = parseMasterKeys(masterKeySpec);
    this.stateKey = Buffer.from(hkdfSync('sha256', this.keys[0]!.key, HKDF_SALT, 'authorization-state', 32));
  }

  get currentKeyId(): string {
    return this.keys[0]!.id;
  }

  encrypt(plaintext: string, ctx: SecretContext): string {
    const master = this.keys[0]!;
    const iv = randomBytes(12);
    const cipher = createCipheriv('aes-256-gcm', this.agentKey(master, ctx.agentId), iv);
    cipher.setAAD(additionalData(ctx));
    const ct = Buffer.concat([cipher.update(plaintext, 'utf8'), cipher.final()]);
    return [FORMAT, master.id, iv.toString('base64url'), cipher.getAuthTag().toString('base64url'), ct.toString('base64url')].join('.');
  }

  decrypt(blob: string, ctx: SecretContext): string {
    const parts = blob.split('.');
    if (parts.length !== 5 || parts[0] !== FORMAT) throw new VaultError('malformed_ciphertext', 'stored secret has an unknown format');
    const [, keyId, iv, tag, ct] = parts as [string, string, string, string, string];
    const master = this.keys.find((k) => k.id === keyId);
    if (!master) throw new VaultError('unknown_key_id', `stored secret was encrypted with key id ${keyId}, which is not configured`);
    try {
      const decipher = createDecipheriv('aes-256-gcm', this.agentKey(master, ctx.agentId), Buffer.from(iv, 'base64url'));
      decipher.setAAD(additionalData(ctx));
      decipher.setAuthTag(Buffer.from(tag, 'base64url'));
      return Buffer.concat([decipher.update(Buffer.from(ct, 'base64url')), decipher.final()]).toString('utf8');
    } catch {
      throw new VaultError('decryption_failed', 'stored secret does not decrypt for this agent, user, tool and record');
    }
  }

  /** A key per master key for another purpose (the Temporal payload codec), current first. */
  deriveKeys(purpose: string): { id: string; key: Buffer }[] {
    return this.keys.map((k) => ({ id: k.id, key: Buffer.from(hkdfSync('sha256', k.key, HKDF_SALT, purpose, 32)) }));
  }

  /** An unguessable value derived from an id: lets a retried activity rebuild the same `state`. */
  deriveToken(purpose: string, id: string): string {
    return createHmac('sha256', this.stateKey).update(`${purpose}\0${id}`).digest('base64url');
  }

  private agentKey(master: MasterKey, agentId: string): Buffer {
    const cacheKey = `${master.id}\0${agentId}`;
    let key = this.derived.get(cacheKey);
    if (!key) {
      key = Buffer.from(hkdfSync('sha256', master.key, HKDF_SALT, `agent:${agentId}`, 32));
      if (this.derived.size >= 10_000) this.derived.clear();
      this.derived.set(cacheKey, key);
    }
    return key;
  }
}

export function sha256Hex(value: string): string {
  return createHash('sha256').update(value).digest('hex');
}

/** Compares a presented secret with the expected one in constant time (hashed first, so length tells nothing either). */
export function secretsEqual(presented: string, expected: string): boolean {
  return timingSafeEqual(createHash('sha256').update(presented).digest(), createHash('sha256').update(expected).digest());
}

function additionalData(ctx: SecretContext): Buffer {
  return Buffer.from(JSON.stringify([FORMAT, ctx.agentId, ctx.userId, ctx.toolId, ctx.recordId, ctx.field]));
}
