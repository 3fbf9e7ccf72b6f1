import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';

/** `npm start`'s script with this environment, to its end (it must end by itself: nothing may have started). */
function start(env: Record<string, string>) {
  return spawnSync(process.execPath, ['--import', 'tsx', 'scripts/start.ts'], {
    env: { ...process.env, TEMPORAL_ADDRESS: '', DATABASE_URL: '', ...env },
    encoding: 'utf8',
    timeout: 60_000,
  });
}

describe('npm start with a configuration mistake', () => {
  it('says what is wrong and exits before starting anything (no Temporal dev server, no database)', () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'broker-start-'));
    const toolsFile = join(dataDir, 'tools.yaml');
    writeFileSync(toolsFile, 'tools:\n  - id: broken\n    tool_type: api\n');
    const run = start({ DATA_DIR: dataDir, TOOLS_CONFIG: toolsFile });
    expect(run.status).toBe(2);
    expect(run.stderr).toMatch(/broken/);
    expect(run.stderr).not.toMatch(/at .*\.ts:\d+/);
    expect(run.stdout).not.toMatch(/temporal dev server/);
    expect(existsSync(join(dataDir, 'temporal.db'))).toBe(false);
    expect(existsSync(join(dataDir, 'broker.sqlite'))).toBe(false);

    const badEnv = start({ DATA_DIR: dataDir, SECRETS_TTL_SECONDS: 'soon' });
    expect(badEnv.status).toBe(2);
    expect(badEnv.stderr).toMatch(/SECRETS_TTL_SECONDS/);
  });
});
