import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { CredentialSchema } from '../../lib/db/entities.js';
import { fork } from '../../lib/db/orm.js';
import { MACHINE_USER, machineWorkflowId } from '../../lib/domain.js';
import type { ToolConfig } from '../../lib/tools.js';
import { freshOwner, startHarness, type Harness } from '../support/harness.js';

let h: Harness;
const PATH = '/api/v1/credentials/machine';

beforeAll(async () => {
  // The harness's sandbox issues 6 s access tokens; the machine tool uses the same server's client credentials.
  h = await startHarness({ accessTokenTtlSeconds: 6 });
  h.services.tools.add(
    (await import('../../lib/tools.js')).toTool({
      id: 'machine',
      tool_type: 'api',
      connection_params: { type: 'http', url: h.sandbox.issuer },
      auth: { type: 'client_credentials', issuer: h.sandbox.issuer, client_id: h.sandbox.clientId, client_secret: h.sandbox.clientSecret },
      manifest: [],
    } satisfies ToolConfig),
  );
});
afterAll(async () => {
  await h?.close();
});

async function machineRow(agent: string) {
  return fork(h.services.orm).findOne(
    CredentialSchema,
    { agentId: agent, userId: MACHINE_USER, toolId: 'machine' },
    { orderBy: { createdAt: 'desc' } },
  );
}

describe('machine access (client credentials)', () => {
  it('issues the tool’s token at once, shared by the agent’s users, refreshed before expiry, never in history', async () => {
    const alice = freshOwner('machine');
    const bob = { agent: alice.agent, user: `bob-${alice.user}` };
    const first = await h.call('POST', PATH, alice);
    expect(first.status, first.text).toBe(200);
    expect(first.json.status).toBe('active');
    const info = await h.introspect(first.json.access_token);
    expect(info.active).toBe(true);
    expect(info.client_id).toBe(h.sandbox.clientId);
    expect(info.sub).toBeUndefined();

    // Every user of the agent shares the machine's token (and its permissions).
    const forBob = await h.call('POST', PATH, bob);
    expect(forBob.json.access_token).toBe(first.json.access_token);
    // Another agent has its own.
    const other = await h.call('POST', PATH, freshOwner('machine-other'));
    expect(other.json.access_token).not.toBe(first.json.access_token);

    await vi.waitFor(async () => expect((await machineRow(alice.agent))!.tokenGeneration).toBeGreaterThanOrEqual(2), {
      timeout: 20_000,
      interval: 250,
    });
    await new Promise((r) => setTimeout(r, h.services.config.hotCacheMs + 50));
    const renewed = await h.call('POST', PATH, alice);
    expect(renewed.json.access_token).not.toBe(first.json.access_token);
    expect((await h.introspect(renewed.json.access_token)).active).toBe(true);

    const history = await h.client.workflow.getHandle(machineWorkflowId(alice.agent, 'machine')).fetchHistory();
    const decoded: string[] = [];
    for (const e of history.events ?? []) {
      for (const p of [
        ...(e.activityTaskCompletedEventAttributes?.result?.payloads ?? []),
        ...(e.workflowExecutionStartedEventAttributes?.input?.payloads ?? []),
      ]) {
        const [plain] = await h.services.codec.decode([p]);
        decoded.push(Buffer.from(plain!.data ?? new Uint8Array()).toString('utf8'));
      }
    }
    expect(decoded.join('\n')).toContain('generation');
    for (const token of [first.json.access_token, renewed.json.access_token, h.sandbox.clientSecret]) {
      expect(decoded.join('\n')).not.toContain(token);
      expect(JSON.stringify(history)).not.toContain(token);
    }

    const revoked = await h.call('DELETE', PATH, alice);
    expect(revoked.status).toBe(200);
    expect(revoked.json.status).toBe('revoked');
    expect((await machineRow(alice.agent))!.accessToken).toBeNull();
  });
});
