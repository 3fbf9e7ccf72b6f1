import { z } from 'zod';
import { createDocument } from 'zod-openapi';
import { auditQuery, credentialQuery, revokeBody } from './routes/admin.js';
import { body as codecBody } from './routes/codec.js';
import * as S from './openapi-schemas.js';
import { credentialPaths, errors, gatewayPaths, html, ok, op, ownerId, pageErrors, publicOp, webhookPaths } from './openapi-paths.js';

/**
 * The API's OpenAPI 3.1 document, served at /openapi.json: request shapes are the zod schemas the routes validate
 * with (zod-openapi renders them through zod's own JSON Schema conversion); responses are the views' shapes; every
 * operation lists the error statuses it can answer with the catalog's `Error` body. CI fuzzes the running quick
 * start with it (schemathesis).
 */
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
