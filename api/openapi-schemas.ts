import { z } from 'zod';
import { ERROR_CATALOG } from './error-catalog.js';
import { LIFECYCLE_EVENT_TYPES } from '../lib/domain.js';

/** Response shapes for the OpenAPI document (what the views write); request shapes are the routes' own schemas. */
const when = z.string().nullable();
const codes = Object.keys(ERROR_CATALOG) as [string, ...string[]];

export const ErrorResponse = z
  .looseObject({ error: z.looseObject({ code: z.enum(codes), message: z.string() }) })
  .meta({ id: 'Error', description: 'Every refusal: a stable `code` from the catalog and a message (some add `authorization_url`).' });

export const ActiveCredential = z
  .looseObject({
    status: z.literal('active'),
    access_token: z.string().optional().meta({ description: 'Absent where tokens are not exposed (use the gateway).' }),
    token_type: z.string().optional(),
    expires_at: when,
    scope: z.string().nullable(),
  })
  .meta({ id: 'ActiveCredential' });

export const AuthorizationRequired = z
  .looseObject({ status: z.literal('authorization_required'), authorization_url: z.string(), expires_at: z.string() })
  .meta({ id: 'AuthorizationRequired' });

export const CredentialView = z
  .looseObject({
    status: z.string(),
    credential_id: z.string(),
    agent_id: z.string().optional(),
    user_id: z.string().optional(),
    tool_id: z.string(),
    scope: z.string().nullable(),
    expires_at: when,
    credential_expires_at: when,
    refresh_token_expires_at: when,
    account: z.looseObject({ id: z.string(), name: z.string().nullable() }).nullable(),
    created_at: z.string(),
    updated_at: z.string(),
    ended_at: when,
    end_reason: z.string().nullable(),
    authorization_url: z.string().optional(),
    authorization_expires_at: when.optional(),
  })
  .meta({ id: 'CredentialStatus' });

export const ManifestCheck = z
  .looseObject({
    status: z.string(),
    server_tools: z.array(z.string()),
    missing: z.array(z.string()),
    changed: z.array(z.looseObject({ name: z.string(), fields: z.array(z.string()) })),
    extra: z.array(z.string()),
  })
  .meta({ id: 'ManifestCheck' });

export const ToolList = z
  .looseObject({ tools: z.array(z.looseObject({ id: z.string(), tool_type: z.string() })) })
  .meta({ id: 'ToolList' });

const page = <T extends z.ZodType>(item: T) => z.looseObject({ items: z.array(item), next_offset: z.number().int().nullable() });
export const CredentialPage = page(CredentialView).meta({ id: 'CredentialPage' });
export const AuditPage = page(
  z.looseObject({ id: z.string(), at: z.string(), event_type: z.string(), outcome: z.string(), actor: z.string() }),
).meta({ id: 'AuditPage' });
export const OffboardReceipts = z
  .looseObject({
    user_id: z.string(),
    revoked: z.array(
      z.looseObject({
        agent_id: z.string(),
        tool_id: z.string(),
        status: z.string(),
        revocation: z.string().nullable(),
        provider_error: z.string().optional(),
      }),
    ),
  })
  .meta({ id: 'OffboardReceipts' });

export const WebhookSubscription = z
  .looseObject({
    id: z.string(),
    url: z.string(),
    events: z.array(z.enum(LIFECYCLE_EVENT_TYPES as [string, ...string[]])),
    all_agents: z.boolean(),
    agent_id: z.string().nullable(),
    description: z.string().nullable(),
    created_at: z.string(),
    secret: z.string().optional().meta({ description: 'Only when made or rotated.' }),
  })
  .meta({ id: 'WebhookSubscription' });
export const WebhookList = z.looseObject({ items: z.array(WebhookSubscription) }).meta({ id: 'WebhookList' });
export const DeliveryList = z
  .looseObject({
    items: z.array(
      z.looseObject({
        id: z.string(),
        event_id: z.string(),
        event_type: z.string(),
        status: z.enum(['pending', 'delivered', 'failed', 'dropped']),
        attempts: z.number().int(),
        last_status_code: z.number().int().nullable(),
        last_error: z.string().nullable(),
        last_attempt_at: when,
        delivered_at: when,
        created_at: z.string(),
      }),
    ),
  })
  .meta({ id: 'DeliveryList' });
export const Redelivery = z.looseObject({ delivery_id: z.string(), status: z.literal('pending') }).meta({ id: 'Redelivery' });

export const Connections = z
  .looseObject({
    user_id: z.string(),
    connections: z.array(z.looseObject({ credential_id: z.string(), tool_id: z.string(), agent_id: z.string() })),
    csrf_token: z.string(),
  })
  .meta({ id: 'Connections' });
export const Disconnected = z.looseObject({ disconnected: z.number().int() }).meta({ id: 'Disconnected' });

export const Health = z.looseObject({ status: z.string() }).meta({ id: 'Health' });
export const Readiness = z
  .looseObject({ status: z.enum(['ready', 'not_ready']), checks: z.record(z.string(), z.string()) })
  .meta({ id: 'Readiness' });
export const Jwks = z.looseObject({ keys: z.array(z.looseObject({ kty: z.string() })) }).meta({ id: 'JWKS' });
export const JsonRpc = z
  .looseObject({ jsonrpc: z.literal('2.0') })
  .meta({ id: 'JsonRpcMessage', description: 'An MCP JSON-RPC message (or a batch).' });
export const CodecPayloads = z.looseObject({ payloads: z.array(z.looseObject({})) }).meta({ id: 'CodecPayloads' });
