import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { expect, vi } from 'vitest';
import { CredentialSchema } from '../../lib/db/entities.js';
import { secretContext } from '../../lib/credentials/records.js';
import { fork } from '../../lib/db/orm.js';
import { toTool, type ToolConfig } from '../../lib/tools.js';
import { SANDBOX_SCOPES } from '../../sandbox/provider.js';
import type { Harness } from './harness.js';

export type Who = { agent: string; user: string };
export type { CallerSpec } from './harness.js';
export const CREDENTIAL_PATH = '/api/v1/credentials/sandbox';

/** The whole user journey: the agent asks, the user consents at the provider, the agent gets a token. */
export async function authorize(h: Harness, who: Who): Promise<{ accessToken: string; authorizationUrl: string }> {
  const first = await h.call('POST', CREDENTIAL_PATH, who);
  expect(first.status).toBe(202);
  const page = await h.consent(first.json.authorization_url, { login: who.user });
  expect(page.status, page.html).toBe(200);
  const second = await h.call('POST', CREDENTIAL_PATH, who);
  expect(second.status).toBe(200);
  return { accessToken: second.json.access_token, authorizationUrl: first.json.authorization_url };
}

/** The newest credential row of an owner, straight from the database. */
export async function latestRow(h: Harness, who: Who, toolId = 'sandbox') {
  return fork(h.services.orm).findOne(
    CredentialSchema,
    { agentId: who.agent, userId: who.user, toolId },
    { orderBy: { createdAt: 'desc' } },
  );
}

/** Polls until the API reports the wanted status (timers fire on the real server clock). */
export async function waitForStatus(h: Harness, who: Who, status: string, timeout = 30_000) {
  return vi.waitFor(
    async () => {
      const res = await h.call('GET', CREDENTIAL_PATH, who);
      expect(res.json?.status).toBe(status);
      return res.json;
    },
    { timeout, interval: 250 },
  );
}

/** Where the broker's start page sends the browser: the provider's authorization URL. */
export async function providerUrlBehind(startLink: string): Promise<URL> {
  const res = await fetch(startLink, { redirect: 'manual' });
  return new URL(res.headers.get('location')!);
}

/** The tools an MCP server lists to a client holding `token` (the official SDK client). */
export async function listMcpTools(url: string, token: string): Promise<string[]> {
  const client = new Client({ name: 'agent', version: '1.0.0' });
  await client.connect(new StreamableHTTPClientTransport(new URL(url), { requestInit: { headers: { authorization: `Bearer ${token}` } } }));
  try {
    return (await client.listTools()).tools.map((t) => t.name).sort();
  } finally {
    await client.close();
  }
}

/** Another tool on the harness's sandbox provider, added while it runs (its settings beside the sandbox's own). */
export function addSandboxTool(h: Harness, id: string, auth: Record<string, unknown> = {}, extra: Record<string, unknown> = {}): void {
  h.services.tools.add(
    toTool({
      id,
      tool_type: 'api',
      connection_params: { type: 'http', url: h.sandbox.issuer },
      auth: {
        type: 'oauth2',
        issuer: h.sandbox.issuer,
        client_id: h.sandbox.clientId,
        client_secret: h.sandbox.clientSecret,
        scopes: SANDBOX_SCOPES,
        ...auth,
      },
      manifest: [],
      ...extra,
    } as ToolConfig),
  );
}

/** The user withdraws the grant at the provider: the credential's refresh token is revoked there (RFC 7009). */
export async function withdrawGrant(h: Harness, who: Who, toolId = 'sandbox'): Promise<void> {
  const row = (await latestRow(h, who, toolId))!;
  const owner = { agentId: who.agent, userId: who.user, toolId };
  const refreshToken = h.services.vault.decrypt(row.refreshToken!, secretContext(owner, row.id, 'refresh_token'));
  const revoked = await fetch(`${h.sandbox.issuer}/token/revocation`, {
    method: 'POST',
    headers: {
      authorization: `Basic ${Buffer.from(`${h.sandbox.clientId}:${h.sandbox.clientSecret}`).toString('base64')}`,
      'content-type': 'application/x-www-form-urlencoded',
    },
    body: new URLSearchParams({ token: refreshToken, token_type_hint: 'refresh_token' }),
  });
  expect(revoked.status).toBe(200);
}
