import { defineEntity, type InferEntity } from '@mikro-orm/core';

/** One authorization of one (agent, user, tool); its tokens are ciphertext. Rows are never removed. */
export const CredentialSchema = defineEntity({
  name: 'Credential',
  tableName: 'credentials',
  properties: (p) => ({
    id: p.uuid().primary(),
    agentId: p.string().length(200),
    userId: p.string().length(200),
    toolId: p.string().length(200),
    workflowId: p.string().length(700),
    status: p.string().length(40),
    accessToken: p.text().nullable(),
    refreshToken: p.text().nullable(),
    tokenType: p.string().length(40).nullable(),
    scope: p.text().nullable(),
    accessExpiresAt: p.datetime().nullable(),
    acquiredAt: p.datetime().nullable(),
    ttlExpiresAt: p.datetime().nullable(),
    /** Bumped on every token write: a retried exchange or refresh sees it already happened. */
    tokenGeneration: p.integer().default(0),
    lastRefreshedAt: p.datetime().nullable(),
    createdAt: p.datetime(),
    updatedAt: p.datetime(),
    /** Set when the credential ended; the row stays for audit. */
    deletedAt: p.datetime().nullable(),
    endReason: p.string().length(80).nullable(),
    /** The authorization server that issued the tokens (refresh and revocation go only there); null before 2026-11-28. */
    issuer: p.text().nullable(),
    /** When the refresh token dies, where the provider said (or the catalog knows); null when unknown. */
    refreshExpiresAt: p.datetime().nullable(),
    /** The upstream account the consent landed on (pinned for re-authorizations); null when unknown. */
    accountId: p.string().length(300).nullable(),
    accountName: p.string().length(300).nullable(),
    /** When an agent last used it (read or through the gateway), written at most once a minute. */
    lastUsedAt: p.datetime().nullable(),
    /** The DPoP key its tokens are bound to (a private JWK, encrypted); null when the server does not bind them. */
    dpopKey: p.text().nullable(),
  }),
  indexes: [{ properties: ['agentId', 'userId', 'toolId', 'createdAt'] }],
});
export type Credential = InferEntity<typeof CredentialSchema>;

/** One pending authorization: the hashed `state`, the encrypted PKCE verifier, then the callback. */
export const AuthorizationRequestSchema = defineEntity({
  name: 'AuthorizationRequest',
  tableName: 'authorization_requests',
  properties: (p) => ({
    id: p.uuid().primary(),
    credentialId: p.uuid(),
    workflowId: p.string().length(700),
    agentId: p.string().length(200),
    userId: p.string().length(200),
    toolId: p.string().length(200),
    stateHash: p.string().length(64).unique(),
    codeVerifier: p.text().nullable(),
    redirectUri: p.text(),
    expiresAt: p.datetime(),
    createdAt: p.datetime(),
    consumedAt: p.datetime().nullable(),
    /** The callback's query (code, iss, error), encrypted: the code never travels through Temporal. */
    callbackParams: p.text().nullable(),
    /** The provider's authorization URL (it carries the state), encrypted; users reach it through our start page. */
    providerUrl: p.text().nullable(),
  }),
});
export type AuthorizationRequest = InferEntity<typeof AuthorizationRequestSchema>;

/** Who did what to which credential, and how it went. Never a secret. */
export const AuditEventSchema = defineEntity({
  name: 'AuditEvent',
  tableName: 'audit_events',
  properties: (p) => ({
    id: p.uuid().primary(),
    at: p.datetime(),
    eventType: p.string().length(80),
    outcome: p.string().length(40),
    actor: p.string().length(200),
    agentId: p.string().length(200).nullable(),
    userId: p.string().length(200).nullable(),
    toolId: p.string().length(200).nullable(),
    credentialId: p.uuid().nullable(),
    requestId: p.string().length(100).nullable(),
    ip: p.string().length(100).nullable(),
    detail: p.json<Record<string, unknown>>().nullable(),
  }),
  indexes: [{ properties: ['at'] }, { properties: ['agentId', 'userId', 'toolId'] }],
});
export type AuditEvent = InferEntity<typeof AuditEventSchema>;

/** A registered agent: its grants and, for signed assertions, its public keys. */
export const AgentSchema = defineEntity({
  name: 'Agent',
  tableName: 'agents',
  properties: (p) => ({
    id: p.string().length(200).primary(),
    description: p.text().nullable(),
    scopes: p.json<string[]>(),
    jwksUrl: p.text().nullable(),
    jwks: p.json<{ keys: Record<string, unknown>[] }>().nullable(),
    createdAt: p.datetime(),
    disabledAt: p.datetime().nullable(),
  }),
});
export type Agent = InferEntity<typeof AgentSchema>;

/** An agent's secret key, stored only as a hash; shown once when issued. */
export const AgentKeySchema = defineEntity({
  name: 'AgentKey',
  tableName: 'agent_keys',
  properties: (p) => ({
    id: p.string().length(32).primary(),
    agentId: p.string().length(200),
    secretHash: p.string().length(64),
    label: p.string().length(200).nullable(),
    createdAt: p.datetime(),
    revokedAt: p.datetime().nullable(),
  }),
});
export type AgentKey = InferEntity<typeof AgentKeySchema>;

/** Agent assertion ids already used (hashed), kept until the assertion would have expired: no replay. */
export const UsedAssertionSchema = defineEntity({
  name: 'UsedAssertion',
  tableName: 'used_assertions',
  properties: (p) => ({
    id: p.string().length(64).primary(),
    agentId: p.string().length(200),
    expiresAt: p.datetime(),
  }),
});

/** A client registered with an authorization server (dynamic registration), reused per issuer. */
export const ClientRegistrationSchema = defineEntity({
  name: 'ClientRegistration',
  tableName: 'client_registrations',
  properties: (p) => ({
    id: p.uuid().primary(),
    issuer: p.text(),
    redirectUri: p.text(),
    clientId: p.text(),
    /** Encrypted; null for public clients. */
    clientSecret: p.text().nullable(),
    tokenEndpointAuthMethod: p.string().length(60),
    createdAt: p.datetime(),
  }),
  uniques: [{ properties: ['issuer', 'redirectUri'] }],
});
export type ClientRegistration = InferEntity<typeof ClientRegistrationSchema>;

/** An HTTPS endpoint that receives an agent's lifecycle events (all agents' when agentId is null); secret encrypted. */
export const WebhookSubscriptionSchema = defineEntity({
  name: 'WebhookSubscription',
  tableName: 'webhook_subscriptions',
  properties: (p) => ({
    id: p.uuid().primary(),
    /** Null: the operator's subscription to every agent's events. */
    agentId: p.string().length(200).nullable(),
    url: p.text(),
    /** Event types; empty means all. */
    events: p.json<string[]>(),
    description: p.string().length(200).nullable(),
    /** The Standard Webhooks signing secret (`whsec_…`), encrypted; shown once when made or rotated. */
    secret: p.text(),
    createdBy: p.string().length(200),
    createdAt: p.datetime(),
    deletedAt: p.datetime().nullable(),
  }),
  indexes: [{ properties: ['agentId'] }],
});
export type WebhookSubscription = InferEntity<typeof WebhookSubscriptionSchema>;

/** One lifecycle event, as its workflow recorded it (the payload every delivery of it sends). */
export const WebhookEventSchema = defineEntity({
  name: 'WebhookEvent',
  tableName: 'webhook_events',
  properties: (p) => ({
    id: p.uuid().primary(),
    type: p.string().length(80),
    agentId: p.string().length(200),
    userId: p.string().length(200),
    toolId: p.string().length(200),
    credentialId: p.uuid(),
    /** The JSON body sent, exactly: retries send the same bytes. */
    payload: p.text(),
    at: p.datetime(),
  }),
});
export type WebhookEvent = InferEntity<typeof WebhookEventSchema>;

/** One event to one subscription: its attempts and how they went. */
export const WebhookDeliverySchema = defineEntity({
  name: 'WebhookDelivery',
  tableName: 'webhook_deliveries',
  properties: (p) => ({
    id: p.uuid().primary(),
    eventId: p.uuid(),
    subscriptionId: p.uuid(),
    /** pending | delivered | failed | dropped (its subscription was deleted first) */
    status: p.string().length(20),
    attempts: p.integer().default(0),
    lastStatusCode: p.integer().nullable(),
    lastError: p.string().length(200).nullable(),
    lastAttemptAt: p.datetime().nullable(),
    deliveredAt: p.datetime().nullable(),
    createdAt: p.datetime(),
  }),
  uniques: [{ properties: ['eventId', 'subscriptionId'] }],
  indexes: [{ properties: ['subscriptionId', 'createdAt'] }],
});
export type WebhookDelivery = InferEntity<typeof WebhookDeliverySchema>;

/**
 * The enterprise identity (an ID token from the tool's identity provider) an agent last presented for a user, kept
 * encrypted for the credential workflows that exchange it (ID-JAG, token exchange): one row per (agent, user, issuer).
 */
export const PresentedIdentitySchema = defineEntity({
  name: 'PresentedIdentity',
  tableName: 'presented_identities',
  properties: (p) => ({
    /** SHA-256 of agent, user and issuer. */
    id: p.string().length(64).primary(),
    agentId: p.string().length(200),
    userId: p.string().length(200),
    issuer: p.text(),
    token: p.text(),
    expiresAt: p.datetime(),
    /** The token's `iat`: an identity issued before a credential was revoked does not restore it. */
    issuedAt: p.datetime().nullable(),
    updatedAt: p.datetime(),
  }),
});
export type PresentedIdentity = InferEntity<typeof PresentedIdentitySchema>;

export const entities = [
  CredentialSchema,
  AuthorizationRequestSchema,
  AuditEventSchema,
  AgentSchema,
  AgentKeySchema,
  UsedAssertionSchema,
  ClientRegistrationSchema,
  WebhookSubscriptionSchema,
  WebhookEventSchema,
  WebhookDeliverySchema,
  PresentedIdentitySchema,
];
