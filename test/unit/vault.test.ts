import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { parseMasterKeys, Vault, VaultError, type SecretContext } from '../../lib/vault/crypto.js';

const key = (id: string) => `${id}:${randomBytes(32).toString('base64')}`;
const ctx: SecretContext = { agentId: 'agent-a', userId: 'alice', toolId: 'github', recordId: 'row-1', field: 'access_token' };

function decryptError(vault: Vault, blob: string, c: SecretContext): string | undefined {
  try {
    vault.decrypt(blob, c);
    return undefined;
  } catch (err) {
    return err instanceof VaultError ? err.code : 'other';
  }
}

describe('Vault', () => {
  it('round-trips a secret and stores no plaintext', () => {
    const vault = new Vault(key('k1'));
    const blob = vault.encrypt('gho_secret_token_value', ctx);
    expect(blob.startsWith('v1.k1.')).toBe(true);
    expect(blob).not.toContain('gho_secret_token_value');
    expect(vault.decrypt(blob, ctx)).toBe('gho_secret_token_value');
  });

  it('uses a fresh IV each time', () => {
    const vault = new Vault(key('k1'));
    expect(vault.encrypt('same', ctx)).not.toBe(vault.encrypt('same', ctx));
  });

  it.each([
    ['another agent', { agentId: 'agent-b' }],
    ['another user', { userId: 'bob' }],
    ['another tool', { toolId: 'slack' }],
    ['another row', { recordId: 'row-2' }],
    ['another column', { field: 'refresh_token' }],
  ])('refuses a ciphertext moved to %s', (_label, change) => {
    const vault = new Vault(key('k1'));
    const blob = vault.encrypt('secret', ctx);
    expect(decryptError(vault, blob, { ...ctx, ...change })).toBe('decryption_failed');
  });

  it('refuses a tampered ciphertext', () => {
    const vault = new Vault(key('k1'));
    const parts = vault.encrypt('secret', ctx).split('.');
    const ct = Buffer.from(parts[4]!, 'base64url');
    ct[0]! ^= 0xff;
    parts[4] = ct.toString('base64url');
    expect(decryptError(vault, parts.join('.'), ctx)).toBe('decryption_failed');
  });

  it('decrypts with an older key after rotation and encrypts with the new one', () => {
    const oldKey = key('old');
    const before = new Vault(oldKey);
    const blob = before.encrypt('secret', ctx);
    const after = new Vault(`${key('new')},${oldKey}`);
    expect(after.decrypt(blob, ctx)).toBe('secret');
    expect(after.encrypt('secret', ctx).split('.')[1]).toBe('new');
    expect(decryptError(new Vault(key('other')), blob, ctx)).toBe('unknown_key_id');
  });

  it('rejects malformed stored values and bad keys', () => {
    const vault = new Vault(key('k1'));
    expect(decryptError(vault, 'plaintext-token', ctx)).toBe('malformed_ciphertext');
    expect(() => parseMasterKeys('k1:c2hvcnQ=')).toThrow(/32 bytes/);
    expect(() => parseMasterKeys('')).toThrow(/no encryption key/);
    expect(parseMasterKeys(randomBytes(32).toString('base64'))[0]!.id).toMatch(/^[0-9a-f]{8}$/);
  });

  it('derives the same state for the same request id and a different one otherwise', () => {
    const vault = new Vault(key('k1'));
    expect(vault.deriveToken('state', 'a')).toBe(vault.deriveToken('state', 'a'));
    expect(vault.deriveToken('state', 'a')).not.toBe(vault.deriveToken('state', 'b'));
    expect(vault.deriveToken('state', 'a')).toMatch(/^[A-Za-z0-9_-]{43}$/);
  });
});
