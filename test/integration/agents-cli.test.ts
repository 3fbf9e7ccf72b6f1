import { execFile } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { AgentRegistry } from '../../api/identity/agents.js';
import { AgentKeySchema } from '../../lib/db/entities.js';
import { fork, openOrm } from '../../lib/db/orm.js';

const run = promisify(execFile);

describe('npm run agents', () => {
  it('creates an agent whose key is shown once, stored only as a hash, and can be revoked', async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'agents-cli-'));
    const env = { ...process.env, DATA_DIR: dataDir, DATABASE_URL: '' };
    const cli = (...args: string[]) => run('npx', ['tsx', 'scripts/agents.ts', ...args], { env });
    const created = await cli('create', 'cli-agent', '--scopes', 'tool:sandbox:use');
    const key = /^(acb_[0-9a-f]{16}_[A-Za-z0-9_-]{43})$/m.exec(created.stdout)?.[1];
    expect(key).toBeDefined();
    const keyId = key!.split('_')[1]!;

    const orm = await openOrm({ databaseUrl: undefined, dataDir });
    try {
      const stored = await fork(orm).findOneOrFail(AgentKeySchema, { id: keyId });
      expect(stored.secretHash).toMatch(/^[0-9a-f]{64}$/);
      expect(key).not.toContain(stored.secretHash);
      const registry = new AgentRegistry(orm, { assertionAudience: 'x' });
      expect(await registry.authenticate(`Bearer ${key}`)).toEqual({
        agentId: 'cli-agent',
        scopes: ['tool:sandbox:use'],
        method: 'api_key',
      });

      expect((await cli('list')).stdout).toContain('cli-agent\tactive\ttool:sandbox:use');
      expect((await cli('revoke-key', keyId)).stdout.trim()).toBe('revoked');
      await expect(new AgentRegistry(orm, { assertionAudience: 'x' }).authenticate(`Bearer ${key}`)).rejects.toMatchObject({
        code: 'agent_credential_invalid',
      });
      await expect(cli('create', 'cli-agent')).rejects.toMatchObject({ stderr: expect.stringContaining('already exists') });
    } finally {
      await orm.close();
    }
  });
});
