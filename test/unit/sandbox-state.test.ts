import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it, vi } from 'vitest';

describe("the sandbox provider's state file (npm start)", () => {
  it('keeps grants and tokens across a restart, drops what expired, and still revokes by grant', async () => {
    const file = join(mkdtempSync(join(tmpdir(), 'sandbox-state-')), 'data', 'sandbox-state.json');
    const before = await import('../../sandbox/memory-adapter.js');
    before.persistSandboxState(file);
    await new before.SandboxAdapter('RefreshToken').upsert('rt-1', { grantId: 'g-1', accountId: 'alice' }, 3600);
    await new before.SandboxAdapter('Grant').upsert('g-1', { accountId: 'alice' });
    await new before.SandboxAdapter('Session').upsert('s-1', { accountId: 'alice' }, 0.001);
    await new Promise((r) => setTimeout(r, 10));
    before.saveSandboxState();

    // A new process: the module's memory starts empty, and the file brings the grants back.
    vi.resetModules();
    const after = await import('../../sandbox/memory-adapter.js');
    expect(await new after.SandboxAdapter('RefreshToken').find('rt-1')).toBeUndefined();
    after.persistSandboxState(file);
    expect(await new after.SandboxAdapter('RefreshToken').find('rt-1')).toEqual({ grantId: 'g-1', accountId: 'alice' });
    expect(await new after.SandboxAdapter('Grant').find('g-1')).toEqual({ accountId: 'alice' });
    expect(await new after.SandboxAdapter('Session').find('s-1')).toBeUndefined();
    await new after.SandboxAdapter('RefreshToken').revokeByGrantId('g-1');
    expect(await new after.SandboxAdapter('RefreshToken').find('rt-1')).toBeUndefined();
  });
});
