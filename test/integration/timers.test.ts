import { Worker } from '@temporalio/worker';
import { afterAll, beforeAll, describe, expect, inject, it, vi } from 'vitest';
import { CredentialSchema } from '../../lib/db/entities.js';
import { fork } from '../../lib/db/orm.js';
import { credentialWorkflowId } from '../../lib/domain.js';
import { statusQuery } from '../../workflows/messages.js';
import { consent } from '../support/browser.js';
import { authorize, CREDENTIAL_PATH, latestRow, waitForStatus, withdrawGrant, type Who } from '../support/flows.js';
import { freshOwner, startHarness, type Harness } from '../support/harness.js';

const workflowIdOf = (who: Who) => credentialWorkflowId({ agentId: who.agent, userId: who.user, toolId: 'sandbox' });

describe('refresh', () => {
  let h: Harness;
  beforeAll(async () => {
    // 6 s access tokens: the workflow refreshes about 3 s after each grant (half the lifetime, minus jitter).
    h = await startHarness({ accessTokenTtlSeconds: 6, maxCyclesPerRun: 2 });
  });
  afterAll(async () => {
    await h?.close();
  });

  it('refreshes the access token before it expires, without anyone asking', async () => {
    const who = freshOwner('refresh');
    const { accessToken } = await authorize(h, who);
    const granted = await latestRow(h, who);
    expect(granted!.tokenGeneration).toBe(1);
    await vi.waitFor(async () => expect((await latestRow(h, who))!.tokenGeneration).toBeGreaterThanOrEqual(2), {
      timeout: 20_000,
      interval: 250,
    });
    const refreshed = await latestRow(h, who);
    expect(refreshed!.lastRefreshedAt!.getTime()).toBeLessThan(granted!.accessExpiresAt!.getTime());
    expect(refreshed!.refreshToken).not.toBe(granted!.refreshToken);

    const next = await h.call('POST', CREDENTIAL_PATH, who);
    expect(next.status).toBe(200);
    expect(next.json.access_token).not.toBe(accessToken);
    expect((await h.introspect(next.json.access_token)).active).toBe(true);
  });

  it('refreshes at once when the agent asks (it saw a 401)', async () => {
    const who = freshOwner('force');
    const { accessToken } = await authorize(h, who);
    const forced = await h.call('POST', CREDENTIAL_PATH, who, { force_refresh: true });
    expect(forced.status).toBe(200);
    expect(forced.json.access_token).not.toBe(accessToken);
    expect((await latestRow(h, who))!.tokenGeneration).toBeGreaterThanOrEqual(2);
  });

  it('keeps refreshing the current token while a step-up waits for the user; consent then brings the wider one', async () => {
    const who = freshOwner('step-up-refresh');
    const { accessToken } = await authorize(h, who);
    const stepUp = await h.call('POST', CREDENTIAL_PATH, who, { insufficient_scope: 'openid' });
    expect(stepUp.status, stepUp.text).toBe(202);
    // The user takes their time: the 6 s token is renewed meanwhile and the agent keeps being served.
    await vi.waitFor(async () => expect((await latestRow(h, who))!.tokenGeneration).toBeGreaterThanOrEqual(2), {
      timeout: 20_000,
      interval: 250,
    });
    const served = await h.call('POST', CREDENTIAL_PATH, who);
    expect(served.status).toBe(200);
    expect(served.json.access_token).not.toBe(accessToken);
    expect((await h.introspect(served.json.access_token)).active).toBe(true);
    // So does a refresh the agent asks for after a 401.
    const forced = await h.call('POST', CREDENTIAL_PATH, who, { force_refresh: true });
    expect(forced.status, forced.text).toBe(200);
    // The same link is still the step-up's, and consenting to it brings the wider scope.
    const again = await h.call('POST', CREDENTIAL_PATH, who, { insufficient_scope: 'openid' });
    expect(again.json.authorization_url).toBe(stepUp.json.authorization_url);
    const page = await h.consent(stepUp.json.authorization_url, { login: who.user });
    expect(page.status, page.html).toBe(200);
    await vi.waitFor(
      async () => {
        const wide = await h.call('POST', CREDENTIAL_PATH, who);
        expect(wide.status).toBe(200);
        expect(wide.json.scope.split(' ')).toContain('openid');
      },
      { timeout: 10_000, interval: 250 },
    );
    const view = await h.client.workflow.getHandle(workflowIdOf(who)).query(statusQuery);
    expect(['active', 'refreshing']).toContain(view.phase);
  });

  it('keeps the credential working across continue-as-new', async () => {
    const who = freshOwner('can');
    await authorize(h, who);
    const workflowId = workflowIdOf(who);
    // Two refreshes per run: after the second the workflow continues as new with its plain state.
    await vi.waitFor(
      async () => {
        const runs = [];
        for await (const wf of h.client.workflow.list({ query: `WorkflowId = '${workflowId}'` })) runs.push(wf);
        expect(runs.length).toBeGreaterThanOrEqual(2);
      },
      { timeout: 40_000, interval: 500 },
    );
    const view = await h.client.workflow.getHandle(workflowId).query(statusQuery);
    expect(['active', 'refreshing']).toContain(view.phase);
    const next = await h.call('POST', CREDENTIAL_PATH, who);
    expect(next.status).toBe(200);
    expect((await h.introspect(next.json.access_token)).active).toBe(true);
  });

  it('moves to reauthorization_required on invalid_grant, and the next request gets a new authorization URL', async () => {
    const who = freshOwner('invalid-grant');
    const { authorizationUrl } = await authorize(h, who);
    const row = await latestRow(h, who);
    // The user withdraws the grant at the provider.
    await withdrawGrant(h, who);

    const next = await h.call('POST', CREDENTIAL_PATH, who, { force_refresh: true });
    expect(next.status).toBe(202);
    expect(next.json.authorization_url).not.toBe(authorizationUrl);
    const ended = await fork(h.services.orm).findOneOrFail(CredentialSchema, { id: row!.id });
    expect(ended).toMatchObject({ status: 'reauthorization_required', endReason: 'invalid_grant', accessToken: null, refreshToken: null });
  });

  it('replays every history these tests made with the current workflow code (determinism)', async () => {
    const histories = [];
    for await (const wf of h.client.workflow.list({ query: `TaskQueue = '${h.taskQueue}'` })) {
      histories.push({ workflowId: wf.workflowId, history: await h.client.workflow.getHandle(wf.workflowId, wf.runId).fetchHistory() });
    }
    // Refreshes, a step-up with refreshes while it waited, continue-as-new, invalid_grant.
    expect(histories.length).toBeGreaterThanOrEqual(6);
    for await (const result of Worker.runReplayHistories(
      { workflowBundle: { codePath: inject('workflowBundlePath') }, dataConverter: { payloadCodecs: [h.services.codec] } },
      histories,
    )) {
      expect(result.error, result.workflowId).toBeUndefined();
    }
  });
});

describe('time to live', () => {
  let h: Harness;
  beforeAll(async () => {
    h = await startHarness({ secretsTtlSeconds: 3 });
  });
  afterAll(async () => {
    await h?.close();
  });

  it('ends the credential at its TTL, keeps the row marked deleted, and starts over on the next request', async () => {
    const who = freshOwner('ttl');
    const { accessToken } = await authorize(h, who);
    const status = await waitForStatus(h, who, 'expired', 20_000);
    expect(status.ended_at).toBeTruthy();
    const row = await latestRow(h, who);
    expect(row).toMatchObject({ status: 'expired', accessToken: null, refreshToken: null });
    expect(row!.deletedAt).toBeInstanceOf(Date);
    const next = await h.call('POST', CREDENTIAL_PATH, who);
    expect(next.status).toBe(202);
    expect(next.json.authorization_url).toBeTruthy();
    // Expired here, not at the provider: the broker simply stops handing it out.
    expect(next.json.access_token).toBeUndefined();
    expect(accessToken).toBeTruthy();
  });
});

describe('a user who never comes back', () => {
  let h: Harness;
  beforeAll(async () => {
    h = await startHarness({ authorizationTimeoutSeconds: 2 });
  });
  afterAll(async () => {
    await h?.close();
  });

  it('times the authorization out and refuses the late callback', async () => {
    const who = freshOwner('timeout');
    const first = await h.call('POST', CREDENTIAL_PATH, who);
    expect(first.status).toBe(202);
    await waitForStatus(h, who, 'authorization_timed_out', 15_000);
    const late = await consent(first.json.authorization_url, h.callbackPrefix, { login: who.user });
    expect(late.status).toBe(400);
    expect(late.html).toMatch(/expired|ended/);
    const next = await h.call('POST', CREDENTIAL_PATH, who);
    expect(next.status).toBe(202);
    expect(next.json.authorization_url).not.toBe(first.json.authorization_url);
  });
});
