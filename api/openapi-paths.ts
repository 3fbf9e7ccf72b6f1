import { z } from 'zod';
import type { ZodOpenApiOperationObject, ZodOpenApiResponsesObject } from 'zod-openapi';
import { OWNER_ID_PATTERN } from '../lib/domain.js';
import { postBody } from './routes/credentials.js';
import { createBody, deliveriesQuery } from './routes/webhooks.js';
import * as S from './openapi-schemas.js';

/** The OpenAPI document's building blocks, and the agents' side of it: credentials, the gateway, webhooks. */
export const json = (schema: z.ZodType) => ({ content: { 'application/json': { schema } } });
export const html = (description: string) => ({ description, content: { 'text/html': { schema: z.string() } } });
export const ok = (description: string, schema: z.ZodType) => ({ description, ...json(schema) });
export const ERRORS = ['400', '401', '403', '404', '409', '413', '415', '429', '500', '502', '503'] as const;
export const errors = (statuses: readonly string[] = ERRORS): ZodOpenApiResponsesObject =>
  Object.fromEntries(statuses.map((s) => [s, ok(`Refused: see the error catalog (${s})`, S.ErrorResponse)]));
export const PAGE_ERRORS = ['400', '401', '403', '404', '409', '429', '500', '503'];
export const pageErrors = Object.fromEntries(PAGE_ERRORS.map((s) => [s, html(`A page saying why (${s})`)]));

export const ownerId = z.string().regex(OWNER_ID_PATTERN);
export const toolPath = z.object({ toolId: ownerId.meta({ description: 'The tool id (`GET /api/v1/tools`)', example: 'sandbox' }) });
export const uuid = z.uuid();
const agentAndUser: Record<string, string[]>[] = [
  { agentBearer: [], userIdentity: [] },
  { devAgent: [], devUser: [] },
];
export const op = (tag: string, o: Omit<ZodOpenApiOperationObject, 'tags' | 'responses'> & { responses: ZodOpenApiResponsesObject }) => ({
  tags: [tag],
  security: agentAndUser,
  ...o,
  responses: { ...errors(), ...o.responses },
});
export const publicOp = (tag: string, o: ZodOpenApiOperationObject) => ({ tags: [tag], security: [], ...o });

export const credentialPaths = {
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
export const webhookPaths = {
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
export const gatewayPaths = {
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
