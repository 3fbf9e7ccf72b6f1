import { mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { temporal } from '@temporalio/proto';
import { Worker } from '@temporalio/worker';
import { describe, expect, inject, it } from 'vitest';
import { EncryptionCodec } from '../../lib/temporal/codec.js';
import { Vault } from '../../lib/vault/crypto.js';
import { authorize, CREDENTIAL_PATH, waitForStatus, withdrawGrant } from '../support/flows.js';
import { freshOwner, startHarness } from '../support/harness.js';

/**
 * Recorded workflow histories replay with the current workflow code, forever: a change that would break a
 * running credential's history fails here (use `patched()`). The fixtures under test/fixtures/histories are
 * recorded with `RECORD_HISTORIES=1 npx vitest run test/integration/replay.test.ts`, each scenario on the code of
 * its day; payloads are encrypted with the fixture key below (a test key that protects nothing).
 */
const FIXTURES = resolve(import.meta.dirname, '..', 'fixtures', 'histories');
const FIXTURE_KEY = 'fixture:3q2+7wAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=';
const History = temporal.api.history.v1.History;
/** protobufjs's own JSON form of a history (64-bit numbers and bytes as strings), which it reads back exactly. */
const JSON_FORM = { longs: String, enums: String, bytes: String };
const codec = new EncryptionCodec(new Vault(FIXTURE_KEY).deriveKeys('temporal-payload-codec'));

describe.runIf(process.env.RECORD_HISTORIES === '1')('recording histories', () => {
  it('records every lifecycle path of the credential and machine workflows', { timeout: 180_000 }, async () => {
    const label = process.env.RECORD_LABEL ?? new Date().toISOString().slice(0, 10);
    const h = await startHarness({
      accessTokenTtlSeconds: 6,
      refreshSkewSeconds: 2,
      secretsTtlSeconds: 25,
      authorizationTimeoutSeconds: 5,
      maxCyclesPerRun: 2,
      extraTools: [
        {
          id: 'machine',
          tool_type: 'api',
          connection_params: { type: 'http', url: 'http://127.0.0.1:1' },
          auth: { type: 'client_credentials', issuer: 'http://127.0.0.1:1', client_id: 'x', client_secret: 'y' },
          manifest: [],
        },
      ],
      env: { CREDENTIALS_ENCRYPTION_KEY: FIXTURE_KEY },
    });
    try {
      const revoked = freshOwner('rec-revoke');
      await authorize(h, revoked);
      await h.call('DELETE', CREDENTIAL_PATH, revoked);

      const ttl = freshOwner('rec-refresh-ttl');
      await authorize(h, ttl);
      await h.call('POST', CREDENTIAL_PATH, ttl, { force_refresh: true });
      // Refreshes on the timer, continue-as-new every two refreshes, then the end at the TTL.
      await waitForStatus(h, ttl, 'expired', 60_000);

      const stepUp = freshOwner('rec-step-up');
      await authorize(h, stepUp);
      const wider = await h.call('POST', CREDENTIAL_PATH, stepUp, { insufficient_scope: 'openid' });
      expect(wider.status).toBe(202);
      // The current token is refreshed while the step-up waits for the user.
      await new Promise((r) => setTimeout(r, 4_500));
      expect((await h.consent(wider.json.authorization_url, { login: stepUp.user })).status).toBe(200);
      await h.call('DELETE', CREDENTIAL_PATH, stepUp);

      const lost = freshOwner('rec-invalid-grant');
      await authorize(h, lost);
      await withdrawGrant(h, lost);
      await waitForStatus(h, lost, 'reauthorization_required', 30_000);

      const late = freshOwner('rec-timeout');
      expect((await h.call('POST', CREDENTIAL_PATH, late)).status).toBe(202);
      await waitForStatus(h, late, 'authorization_timed_out', 30_000);

      // A machine credential whose token endpoint is unreachable: it fails to start and says why.
      const machine = await h.call('POST', '/api/v1/credentials/machine', freshOwner('rec-machine'));
      expect([502, 503]).toContain(machine.status);

      mkdirSync(FIXTURES, { recursive: true });
      let written = 0;
      for await (const wf of h.client.workflow.list({ query: `TaskQueue = '${h.taskQueue}'` })) {
        const history = await h.client.workflow.getHandle(wf.workflowId, wf.runId).fetchHistory();
        const name = `${label}-${wf.workflowId
          .split(':')[2]!
          .replace(/[^a-z0-9-]/gi, '')
          .slice(0, 40)}-${wf.runId}.json`;
        writeFileSync(join(FIXTURES, name), `${JSON.stringify(History.toObject(History.fromObject(history), JSON_FORM))}\n`);
        written++;
      }
      expect(written).toBeGreaterThanOrEqual(8);
    } finally {
      await h.close();
    }
  });
});

describe('recorded histories', () => {
  it('replay with the current workflow code', async () => {
    const files = readdirSync(FIXTURES).filter((f) => f.endsWith('.json'));
    expect(files.length).toBeGreaterThanOrEqual(8);
    const histories = files.map((f) => ({
      workflowId: f,
      history: History.fromObject(JSON.parse(readFileSync(join(FIXTURES, f), 'utf8'))),
    }));
    const failures: string[] = [];
    for await (const result of Worker.runReplayHistories(
      { workflowBundle: { codePath: inject('workflowBundlePath') }, dataConverter: { payloadCodecs: [codec] } },
      histories,
    )) {
      if (result.error) failures.push(`${result.workflowId}: ${result.error.message}`);
    }
    expect(failures).toEqual([]);
  });
});
