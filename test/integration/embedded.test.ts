import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { authorize, CREDENTIAL_PATH, latestRow } from '../support/flows.js';
import { freshOwner, startHarness, type Harness } from '../support/harness.js';

let h: Harness;
beforeAll(async () => {
  h = await startHarness({ database: 'sqlite' });
});
afterAll(async () => {
  await h?.close();
});

describe('the embedded database (quick start default)', () => {
  it('runs the whole lifecycle on SQLite', async () => {
    expect(h.services.orm.config.get('dbName')).toMatch(/broker\.sqlite$/);
    const who = freshOwner('sqlite');
    const { accessToken } = await authorize(h, who);
    expect((await h.introspect(accessToken)).active).toBe(true);
    expect((await latestRow(h, who))!.accessToken).toMatch(/^v1\./);
    const revoked = await h.call('DELETE', CREDENTIAL_PATH, who);
    expect(revoked.json.status).toBe('revoked');
    expect((await h.introspect(accessToken)).active).toBe(false);
  });
});
