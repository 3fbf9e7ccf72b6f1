import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { McpError } from '@modelcontextprotocol/sdk/types.js';
import type { ToolConfig } from '../lib/tools.js';
import { consent } from '../test/support/browser.js';
import { startStack, type RunSettings } from '../test/support/stack.js';

/**
 * The client the MCP conformance suite runs for each authorization scenario (`npm run conformance`): the broker
 * is the OAuth client. It starts the whole service with one tool — the scenario's MCP server, known by its URL
 * alone (and the scenario's pre-registered client, if any) — and plays only the agent and the user: the agent
 * calls the tool through the broker's MCP gateway; when the gateway answers -32042, the "user" opens the link in
 * a browser-like client (the scenario's authorization server approves at once). Discovery, registration, PKCE,
 * token requests, refresh and step-up are the broker's.
 */
interface Context {
  name?: string;
  client_id?: string;
  client_secret?: string;
  private_key_pem?: string;
  signing_algorithm?: string;
  /** Enterprise-managed authorization: the user's ID token from the enterprise identity provider, and that provider. */
  idp_client_id?: string;
  idp_id_token?: string;
  idp_issuer?: string;
  idp_token_endpoint?: string;
}

const serverUrl = process.argv.at(-1)!;
const context = JSON.parse(process.env.MCP_CONFORMANCE_CONTEXT ?? '{}') as Context;
const run = JSON.parse(readFileSync(process.env.CONFORMANCE_RUN_FILE!, 'utf8')) as RunSettings;
const machine = context.name?.startsWith('auth/client-credentials') ?? false;
const enterprise = Boolean(context.idp_id_token && context.idp_issuer && context.idp_client_id);

const tool: ToolConfig = {
  id: 'conformance',
  tool_type: 'mcp',
  connection_params: { type: 'streamable-http', url: serverUrl },
  auth: enterprise
    ? {
        // The user's enterprise identity is exchanged at the identity provider for an identity assertion grant,
        // which the scenario's authorization server redeems for the broker's pre-registered client.
        type: 'enterprise',
        client_id: context.client_id!,
        ...(context.client_secret ? { client_secret: context.client_secret } : {}),
        identity_provider: {
          issuer: context.idp_issuer!,
          client_id: context.idp_client_id!,
          ...(context.idp_token_endpoint ? { token_url: context.idp_token_endpoint } : {}),
        },
      }
    : machine
      ? {
          type: 'client_credentials',
          client_id: context.client_id!,
          ...(context.client_secret ? { client_secret: context.client_secret } : {}),
          // private_key_jwt with the key the scenario made (its server knows the public half).
          ...(context.private_key_pem
            ? {
                token_endpoint_auth_method: 'private_key_jwt' as const,
                client_private_key: context.private_key_pem,
                client_assertion_alg: (context.signing_algorithm ?? 'ES256') as 'ES256',
              }
            : {}),
        }
      : {
          type: 'oauth2',
          ...(context.client_id ? { client_id: context.client_id } : {}),
          ...(context.client_secret ? { client_secret: context.client_secret } : {}),
        },
  manifest: [],
};

const h = await startStack(run, {
  extraTools: [tool],
  // The scenario's identity provider publishes no keys: its ID token is accepted unverified (permissive mode, which
  // only development mode allows); the identity provider itself checks it when the broker exchanges it.
  ...(enterprise
    ? {
        trust: {
          verification_mode: 'permissive' as const,
          trusted_issuers: [
            { issuer: context.idp_issuer!, jwks_url: `${context.idp_issuer}/.well-known/jwks.json`, audience: context.idp_client_id! },
          ],
        },
      }
    : {}),
  // The scenarios' servers are on loopback over plain HTTP, which development mode allows.
  env: { LOG_LEVEL: 'warn', RATE_LIMIT_CALLBACK_IP_PER_MINUTE: '100000' },
});
h.services.log.level = 'warn';
let exitCode = 0;
try {
  const agent = new Client({ name: 'conformance-agent', version: '1.0.0' }, { capabilities: {} });
  await agent.connect(
    new StreamableHTTPClientTransport(new URL(`${h.baseUrl}/api/v1/mcp/conformance`), {
      // Ids of its own per run: workflows of earlier scenarios may still live on the shared Temporal server.
      requestInit: {
        headers: {
          'x-agent-id': `conformance-${randomUUID()}`,
          ...(enterprise ? { 'x-user-identity': context.idp_id_token! } : { 'x-user-id': 'conformance-user' }),
        },
      },
    }),
  );
  await asTheUser(() => agent.callTool({ name: 'test-tool', arguments: {} }));
  await asTheUser(() => agent.listTools());
  await agent.close();
} catch (err) {
  console.error(`conformance client failed: ${(err as Error).message}`);
  exitCode = 1;
} finally {
  await h.close();
}
process.exit(exitCode);

/** Runs an agent request; each -32042 is a link the user opens (a few times at most: first consent, step-up). */
async function asTheUser<T>(request: () => Promise<T>): Promise<T> {
  for (let attempt = 0; ; attempt++) {
    try {
      return await request();
    } catch (err) {
      if (!(err instanceof McpError) || attempt >= 3) throw err;
      if (err.code === -32004) {
        // The credential became usable this moment (machine access): ask again.
        await new Promise((r) => setTimeout(r, 200));
        continue;
      }
      if (err.code !== -32042) throw err;
      const [first] = (err.data as { elicitations: { url: string }[] }).elicitations;
      const page = await consent(first!.url, h.callbackPrefix, { login: 'conformance-user' });
      if (page.status !== 200 && page.status !== 202) throw new Error(`the callback page answered ${page.status}`, { cause: err });
    }
  }
}
