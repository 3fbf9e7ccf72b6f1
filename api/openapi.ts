import { z } from 'zod';
import { createDocument, type ZodOpenApiOperationObject, type ZodOpenApiResponsesObject } from 'zod-openapi';
import { OWNER_ID_PATTERN } from '../lib/domain.js';
import { auditQuery, credentialQuery, revokeBody } from './routes/admin.js';
import { body as codecBody } from './routes/codec.js';
import { postBody } from './routes/credentials.js';
import { createBody, deliveriesQuery } from './routes/webhooks.js';
import * as S from './openapi-schemas.js';

/**
 * The API's OpenAPI 3.1 document, served at /openapi.json: request shapes are the zod schemas the routes validate
 * with (zod-openapi renders them through zod's own JSON Schema conversion); responses are the views' shapes; every
 * operation lists the error statuses it can answer with the catalog's `Error` body. CI fuzzes the running quick
 * start with it (schemathesis).
 */
const json = (schema: z.ZodType) => ({ content: { 'application/json': { schema } } });
const html = (description: string) => ({ description, content: { 'text/html': { schema: z.string() } } });
const ok = (description: string, schema: z.ZodType) => ({ description, ...json(schema) });
const ERRORS = ['400', '401', '403', '404', '409', '413', '415', '429', '500', '502', '503'] as const;
const errors = (statuses: readonly string[] = ERRORS): ZodOpenApiResponsesObject =>
  Object.fromEntries(statuses.map((s) => [s, ok(`Refused: see the error catalog (${s})`, S.ErrorResponse)]));
const PAGE_ERRORS = ['400', '401', '403', '404', '409', '429', '500', '503'];
const pageErrors = Object.fromEntries(PAGE_ERRORS.map((s) => [s, html(`A page saying why (${s})`)]));

const ownerId = z.string().regex(OWNER_ID_PATTERN);
const toolPath = z.object({ toolId: ownerId.meta({ description: 'The tool id (`GET /api/v1/tools`)', example: 'sandbox' }) });
const uuid = z.uuid();
const agentAndUser: Record<string, string[]>[] = [
  { agentBearer: [], userIdentity: [] },
  { devAgent: [], devUser: [] },
];
const op = (tag: string, o: Omit<ZodOpenApiOperationObject, 'tags' | 'responses'> & { responses: ZodOpenApiResponsesObject }) => ({
  tags: [tag],
  security: agentAndUser,
  ...o,
  responses: { ...errors(), ...o.responses },
});
const publicOp = (tag: string, o: ZodOpenApiOperationObject) => ({ tags: [tag], security: [], ...o });

const credentialPaths = {
  '/api/v1/credentials/{toolId}': {
    post: op('Credentials', {
      operationId: 'getOrAuthorize',
      summary: 'Get the user’s credential for the tool, or the link to authorize it (refresh or step up on request)',
      requestParams: { path: toolPath },
      requestBody: { content: { 'application/json': { schema: postBody } } },
      responses: {
        '200': ok('Active: the token (where tokens are exposed), its expiry and scope', S.ActiveCredential),
        '202': ok('The user must authorize: show them `authorization_url`', S.AuthorizationRequired),
      },
    }),
    get: op('Credentials', {
      operationId: 'credentialStatus',
      summary: 'The credential’s status (never a token); `wait` long-polls while an authorization is pending',
      requestParams: {
        path: toolPath,
        query: z.object({
          wait: z
            .string()
            .regex(/^\d{1,2}$/)
            .optional()
            .meta({ description: 'Seconds, 0 to 60' }),
        }),
      },
      responses: { '200': ok('The status', S.CredentialView) },
    }),
    delete: op('Credentials', {
      operationId: 'revokeCredential',
      summary: 'Revoke at the provider and end the credential',
      requestParams: { path: toolPath },
      responses: { '200': ok('The ended credential', S.CredentialView) },
    }),
  },
  '/api/v1/credentials/{toolId}/check': {
    post: op('Credentials', {
      operationId: 'checkManifest',
      summary: 'MCP tools: list the server’s tools with the stored credential and compare them with the manifest',
      requestParams: { path: toolPath },
      responses: { '200': ok('The comparison', S.ManifestCheck) },
    }),
  },
  '/api/v1/tools': {
    get: op('Credentials', {
      operationId: 'listTools',
      summary: 'The configured tools',
      responses: { '200': ok('The tools', S.ToolList) },
    }),
  },
};

const webhookId = z.object({ id: uuid });
const webhookScope = z.object({ all_agents: z.enum(['true', 'false']).optional() });
const webhookPaths = {
  '/api/v1/webhooks': {
    post: op('Webhooks', {
      operationId: 'createWebhook',
      summary: 'Subscribe an endpoint to lifecycle events (the secret is shown only here)',
      requestBody: { content: { 'application/json': { schema: createBody } } },
      responses: { '201': ok('The subscription and its signing secret', S.WebhookSubscription) },
    }),
    get: op('Webhooks', {
      operationId: 'listWebhooks',
      summary: 'The agent’s (or, with all_agents, the operator’s) subscriptions',
      requestParams: { query: webhookScope },
      responses: { '200': ok('The subscriptions', S.WebhookList) },
    }),
  },
  '/api/v1/webhooks/{id}': {
    get: op('Webhooks', {
      operationId: 'getWebhook',
      summary: 'One subscription',
      requestParams: { path: webhookId, query: webhookScope },
      responses: { '200': ok('The subscription', S.WebhookSubscription) },
    }),
    delete: op('Webhooks', {
      operationId: 'deleteWebhook',
      summary: 'Delete a subscription',
      requestParams: { path: webhookId, query: webhookScope },
      responses: { '204': { description: 'Deleted' } },
    }),
  },
  '/api/v1/webhooks/{id}/rotate-secret': {
    post: op('Webhooks', {
      operationId: 'rotateWebhookSecret',
      summary: 'A new signing secret (the old one stops at once)',
      requestParams: { path: webhookId, query: webhookScope },
      responses: { '200': ok('The subscription and its new secret', S.WebhookSubscription) },
    }),
  },
  '/api/v1/webhooks/{id}/deliveries': {
    get: op('Webhooks', {
      operationId: 'listDeliveries',
      summary: 'Recent deliveries with their status and attempts',
      requestParams: { path: webhookId, query: deliveriesQuery },
      responses: { '200': ok('The deliveries, newest first', S.DeliveryList) },
    }),
  },
  '/api/v1/webhooks/{id}/deliveries/{deliveryId}/redeliver': {
    post: op('Webhooks', {
      operationId: 'redeliver',
      summary: 'Send a delivery again (same webhook-id)',
      requestParams: { path: z.object({ id: uuid, deliveryId: uuid }), query: webhookScope },
      responses: { '202': ok('Queued', S.Redelivery) },
    }),
  },
};

const adminPaths = {
  '/api/v1/admin/credentials': {
    get: op('Admin', {
      operationId: 'adminListCredentials',
      summary: 'Credentials as metadata (credential:admin)',
      requestParams: { query: credentialQuery },
      responses: { '200': ok('A page', S.CredentialPage) },
    }),
  },
  '/api/v1/admin/credentials/{credentialId}': {
    delete: op('Admin', {
      operationId: 'adminRevoke',
      summary: 'Revoke one credential',
      requestParams: { path: z.object({ credentialId: z.string() }) },
      requestBody: { content: { 'application/json': { schema: revokeBody } } },
      responses: { '200': ok('The ended credential', S.CredentialView) },
    }),
  },
  '/api/v1/admin/users/{userId}/revoke-all': {
    post: op('Admin', {
      operationId: 'adminOffboard',
      summary: 'Offboard a user: revoke every credential, with a receipt per credential',
      requestParams: { path: z.object({ userId: ownerId }) },
      requestBody: { content: { 'application/json': { schema: revokeBody } } },
      responses: { '200': ok('The receipts', S.OffboardReceipts) },
    }),
  },
  '/api/v1/admin/audit': {
    get: op('Admin', {
      operationId: 'adminAudit',
      summary: 'The audit trail',
      requestParams: { query: auditQuery },
      responses: { '200': ok('A page', S.AuditPage) },
    }),
  },
};

const connectionId = z.object({ credentialId: z.string() });
const userAuth: Record<string, string[]>[] = [{ userIdentity: [] }, { userSession: [] }];
const userPaths = {
  '/api/v1/me/connections': {
    get: {
      tags: ['Users'],
      operationId: 'myConnections',
      summary: 'The signed-in user’s connections (HTML for a browser, JSON with Accept: application/json)',
      security: userAuth,
      responses: {
        '200': {
          description: 'The page, or the connections',
          content: { 'text/html': { schema: z.string() }, 'application/json': { schema: S.Connections } },
        },
        ...errors(),
      },
    },
  },
  '/api/v1/me/connections/session': {
    post: {
      tags: ['Users'],
      operationId: 'devSignIn',
      summary: 'Development mode: sign in as a user id (a signed cookie)',
      security: [],
      requestBody: { content: { 'application/x-www-form-urlencoded': { schema: z.object({ user: ownerId }) } } },
      responses: { '303': { description: 'Back to the page' }, ...errors() },
    },
  },
  '/api/v1/me/connections/disconnect-all': {
    post: {
      tags: ['Users'],
      operationId: 'disconnectAll',
      summary: 'Disconnect every connection (same origin and the page’s token required)',
      security: userAuth,
      requestBody: { content: { 'application/json': { schema: z.object({ csrf: z.string().optional() }) } } },
      responses: { '200': ok('How many', S.Disconnected), '303': { description: 'Back to the page' }, ...errors() },
    },
  },
  '/api/v1/me/connections/{credentialId}/disconnect': {
    post: {
      tags: ['Users'],
      operationId: 'disconnectOne',
      summary: 'Disconnect one connection',
      security: userAuth,
      requestParams: { path: connectionId },
      requestBody: { content: { 'application/json': { schema: z.object({ csrf: z.string().optional() }) } } },
      responses: { '200': ok('How many', S.Disconnected), '303': { description: 'Back to the page' }, ...errors() },
    },
  },
};

const anyBody = { description: 'The upstream API’s own answer, streamed', content: { '*/*': { schema: z.string() } } };
const proxyOp = (method: string) =>
  op('Gateway', {
    operationId: `proxy${method}`,
    summary: `${method.toUpperCase()} through the HTTP proxy as the user`,
    requestParams: { path: z.object({ toolId: ownerId, path: z.string() }) },
    responses: { '200': anyBody, default: anyBody },
  });
const mcpAnswer = {
  description: 'MCP (JSON, or an event stream)',
  content: { 'application/json': { schema: z.looseObject({}) }, 'text/event-stream': { schema: z.string() } },
};
const mcpOp = (method: string, summary: string) =>
  op('Gateway', {
    operationId: `mcp${method}`,
    summary,
    requestParams: { path: toolPath, header: z.object({ 'mcp-session-id': z.string().optional() }) },
    ...(method === 'Post'
      ? { requestBody: { content: { 'application/json': { schema: z.union([S.JsonRpc, z.array(S.JsonRpc)]) } } } }
      : {}),
    responses: Object.fromEntries(['200', '202', '204', ...ERRORS, '405', '406'].map((s) => [s, mcpAnswer])),
  });
const gatewayPaths = {
  '/api/v1/mcp/{toolId}': {
    post: mcpOp('Post', 'MCP (Streamable HTTP) to the tool’s server, as the user'),
    get: mcpOp('Get', 'The session’s event stream'),
    delete: mcpOp('Delete', 'End the session'),
  },
  '/api/v1/proxy/{toolId}/{path}': {
    get: proxyOp('Get'),
    post: proxyOp('Post'),
    put: proxyOp('Put'),
    patch: proxyOp('Patch'),
    delete: proxyOp('Delete'),
  },
};

const pagePaths = {
  '/api/v1/auth/tool/start': {
    get: publicOp('Browser', {
      operationId: 'startPage',
      summary: 'Where an authorization link leads: checks the browser’s user, then sends it to the provider',
      requestParams: { query: z.object({ request: z.string().optional(), token: z.string().optional() }) },
      responses: { '200': html('Already connected'), '302': { description: 'To the provider' }, ...pageErrors },
    }),
  },
  '/api/v1/auth/tool/callback': {
    get: publicOp('Browser', {
      operationId: 'callbackPage',
      summary: 'The provider’s redirect (accepted only from the browser that passed the start page)',
      requestParams: {
        query: z.object({
          state: z.string().optional(),
          code: z.string().optional(),
          error: z.string().optional(),
          iss: z.string().optional(),
        }),
      },
      responses: { '200': html('Connected'), '202': html('Still finishing'), ...pageErrors },
    }),
  },
  '/api/v1/auth/tool/reconnect': {
    get: publicOp('Browser', {
      operationId: 'reconnectPage',
      summary: 'The link in credential.reauthorization_required: starts the authorization again',
      requestParams: {
        query: z.object({
          agent: z.string().optional(),
          user: z.string().optional(),
          tool: z.string().optional(),
          expires: z.string().optional(),
          sig: z.string().optional(),
        }),
      },
      responses: { '200': html('Already connected'), '302': { description: 'To the start page' }, ...pageErrors },
    }),
  },
};

const servicePaths = {
  '/healthz': { get: publicOp('Service', { operationId: 'health', summary: 'Liveness', responses: { '200': ok('Alive', S.Health) } }) },
  '/readyz': {
    get: publicOp('Service', {
      operationId: 'ready',
      summary: 'Readiness: the database and Temporal',
      responses: { '200': ok('Ready', S.Readiness), '503': ok('Not ready', S.Readiness) },
    }),
  },
  '/metrics': {
    get: publicOp('Service', {
      operationId: 'metrics',
      summary: 'Prometheus metrics (bearer token when METRICS_TOKEN is set)',
      responses: {
        '200': { description: 'Prometheus text', content: { 'text/plain': { schema: z.string() } } },
        ...errors(['401', '429']),
      },
    }),
  },
  '/oauth/jwks.json': {
    get: publicOp('Service', {
      operationId: 'jwks',
      summary: 'Public keys of the broker’s client assertions',
      responses: { '200': ok('The keys', S.Jwks), ...errors(['429']) },
    }),
  },
  '/openapi.json': {
    get: publicOp('Service', {
      operationId: 'openapi',
      summary: 'This document',
      responses: { '200': ok('OpenAPI 3.1', z.looseObject({ openapi: z.string() })) },
    }),
  },
  '/docs': {
    get: publicOp('Service', { operationId: 'docs', summary: 'The API reference page', responses: { '200': html('The reference') } }),
  },
  '/codec/{operation}': {
    post: {
      tags: ['Service'],
      operationId: 'codec',
      summary: 'The Temporal Web UI’s codec server (operators with credential:admin)',
      security: [{ agentBearer: [] }],
      requestParams: { path: z.object({ operation: z.enum(['encode', 'decode']) }) },
      requestBody: { content: { 'application/json': { schema: codecBody } } },
      responses: { '200': ok('The payloads', S.CodecPayloads), ...errors() },
    },
  },
};

export function openApiDocument(publicOrigin: string) {
  return createDocument({
    openapi: '3.1.0',
    info: {
      title: 'Credential broker',
      version: '0.1.0',
      description:
        'Per-user OAuth credentials for AI agents: get or authorize, the MCP gateway and HTTP proxy, webhooks, the users’ page, administration. Errors: `{"error": {"code", "message"}}` with a stable code (see the README’s catalog).',
      license: { name: 'Apache-2.0', identifier: 'Apache-2.0' },
    },
    servers: [{ url: publicOrigin }],
    paths: { ...credentialPaths, ...gatewayPaths, ...webhookPaths, ...userPaths, ...adminPaths, ...pagePaths, ...servicePaths },
    components: {
      securitySchemes: {
        agentBearer: { type: 'http', scheme: 'bearer', description: 'The agent’s key, or a signed single-use agent assertion' },
        userIdentity: { type: 'apiKey', in: 'header', name: 'X-User-Identity', description: 'The user, as your gateway signed it' },
        devAgent: { type: 'apiKey', in: 'header', name: 'X-Agent-Id', description: 'Development mode only' },
        devUser: { type: 'apiKey', in: 'header', name: 'X-User-Id', description: 'Development mode only' },
        userSession: { type: 'apiKey', in: 'cookie', name: 'acb-me', description: 'Development mode: the users’ page sign-in' },
      },
    },
  });
}
