import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { secretContext } from '../../lib/credentials/records.js';
import { AuthorizationRequestSchema, CredentialSchema } from '../../lib/db/entities.js';
import { fork } from '../../lib/db/orm.js';
import { credentialWorkflowId } from '../../lib/domain.js';
import { statusQuery } from '../../workflows/messages.js';
import { consent } from '../support/browser.js';
import { authorize, CREDENTIAL_PATH, latestRow, type Who } from '../support/flows.js';
import { freshOwner, startHarness, type Harness } from '../support/harness.js';
import { haystack } from '../support/history.js';

let h: Harness;
beforeAll(async () => {
  h = await startHarness({ accessTokenTtlSeconds: 6 });
});
afterAll(async () => {
  await h?.close();
});

const ownerOf = (who: Who) => ({ agentId: who.agent, userId: who.user, toolId: 'sandbox' });

describe('secrets stay in the vault', () => {
  it('never appear in workflow histories, queries, logs or database columns', async () => {
    const who = freshOwner('secrets');
    const owner = ownerOf(who);
    const secrets: Record<string, string> = { clientSecret: h.sandbox.clientSecret };

    const first = await h.call('POST', CREDENTIAL_PATH, who);
    const pending = await latestRow(h, who);
    const request = await fork(h.services.orm).findOneOrFail(AuthorizationRequestSchema, { credentialId: pending!.id });
    secrets.pkceVerifier = h.services.vault.decrypt(request.codeVerifier!, secretContext(owner, request.id, 'code_verifier'));
    const page = await consent(first.json.authorization_url, h.callbackPrefix, { login: who.user });
    expect(page.status).toBe(200);
    secrets.authorizationCode = page.callbackUrl.searchParams.get('code')!;

    const active = await h.call('POST', CREDENTIAL_PATH, who);
    secrets.accessToken1 = active.json.access_token;
    const row1 = await latestRow(h, who);
    secrets.refreshToken1 = h.services.vault.decrypt(row1!.refreshToken!, secretContext(owner, row1!.id, 'refresh_token'));

    await vi.waitFor(async () => expect((await latestRow(h, who))!.tokenGeneration).toBeGreaterThanOrEqual(2), {
      timeout: 20_000,
      interval: 250,
    });
    const row2 = await latestRow(h, who);
    secrets.accessToken2 = h.services.vault.decrypt(row2!.accessToken!, secretContext(owner, row2!.id, 'access_token'));
    secrets.refreshToken2 = h.services.vault.decrypt(row2!.refreshToken!, secretContext(owner, row2!.id, 'refresh_token'));

    // At rest: the columns hold only ciphertext.
    const raw = await fork(h.services.orm).getConnection().execute('select * from credentials where id = ?', [row2!.id]);
    expect(String(raw[0]!.access_token)).toMatch(/^v1\./);
    expect(String(raw[0]!.refresh_token)).toMatch(/^v1\./);
    const rawText = JSON.stringify(raw);
    const rawRequests = JSON.stringify(
      await fork(h.services.orm).getConnection().execute('select * from authorization_requests where credential_id = ?', [row2!.id]),
    );

    const query = JSON.stringify(await h.client.workflow.getHandle(credentialWorkflowId(owner)).query(statusQuery));
    expect((await h.call('DELETE', CREDENTIAL_PATH, who)).status).toBe(200);

    const histories: string[] = [];
    for await (const wf of h.client.workflow.list({ query: `WorkflowId = '${credentialWorkflowId(owner)}'` })) {
      const history = await h.client.workflow.getHandle(wf.workflowId, wf.runId).fetchHistory();
      expect(history.events!.length).toBeGreaterThan(5);
      // Encrypted in Temporal's database: the raw history does not even show the user id.
      expect(JSON.stringify(history)).not.toContain(who.user);
      const text = (await haystack(h.services.codec, history)).join('\n');
      expect(text).toContain(who.user);
      histories.push(text);
    }
    expect(histories.length).toBeGreaterThanOrEqual(1);
    const logs = h.logs.join('\n');

    expect(Object.keys(secrets)).toHaveLength(7);
    for (const [name, secret] of Object.entries(secrets)) {
      expect(secret, name).toBeTruthy();
      for (const [where, text] of Object.entries({ histories: histories.join('\n'), logs, query, rawText, rawRequests })) {
        expect(text.includes(secret), `${name} found in ${where}`).toBe(false);
      }
    }
  });

  it('refuses a ciphertext copied into another agent’s row instead of handing it out', async () => {
    const victim = freshOwner('victim');
    const thief = { agent: `${victim.agent}-thief`, user: victim.user };
    const { accessToken } = await authorize(h, victim);
    await authorize(h, thief);
    const victimRow = await latestRow(h, victim);
    const thiefRow = await latestRow(h, thief);
    await fork(h.services.orm).nativeUpdate(CredentialSchema, { id: thiefRow!.id }, { accessToken: victimRow!.accessToken });
    // Past the hot-path cache, so the next read sees the database.
    await sleep(h.services.config.hotCacheMs + 100);

    const stolen = await h.call('POST', CREDENTIAL_PATH, thief);
    expect(stolen.status).toBe(500);
    expect(stolen.json.error.code).toBe('credential_unreadable');
    expect(stolen.text).not.toContain(accessToken);
    expect((await h.call('POST', CREDENTIAL_PATH, victim)).json.access_token).toBe(accessToken);
  });
});
