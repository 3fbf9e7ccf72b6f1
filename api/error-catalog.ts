/**
 * Every error code the API answers with, its HTTP status, and when it happens: the one list callers switch on
 * (`{"error": {"code", "message"}}`). A code not listed here cannot be thrown (ApiError takes only these), and a
 * test checks that the README names each.
 */
export const ERROR_CATALOG = {
  // The request itself
  bad_request: { status: 400, when: 'the request is malformed (framing, encoding)' },
  invalid_json: { status: 400, when: 'the body is not valid JSON' },
  invalid_request: { status: 400, when: 'a parameter or body field is missing, unknown or malformed' },
  invalid_wait: { status: 400, when: '`wait` is not a whole number of seconds from 0 to 60' },
  invalid_agent_id: { status: 400, when: 'X-Agent-Id has characters or a length that is not allowed' },
  invalid_user_id: { status: 400, when: 'X-User-Id has characters or a length that is not allowed' },
  ids_too_long: { status: 400, when: 'the agent, user and tool ids together would exceed the workflow id limit' },
  https_required: { status: 400, when: 'a production request came over plain HTTP' },
  not_an_mcp_tool: { status: 400, when: 'only MCP tools can be checked against their server or reached through the MCP gateway' },
  not_an_api_tool: { status: 400, when: 'only HTTP API tools (`tool_type: api`) can be reached through the proxy' },
  invalid_proxy_path: {
    status: 400,
    when: "the proxied path could leave the tool's base URL (dot segments, encoded slashes, `@`, backslashes, absolute)",
  },
  invalid_webhook_url: {
    status: 400,
    when: 'the webhook URL is not absolute, has a fragment, or is refused by the outbound policy (scheme, private address)',
  },
  mcp_session_required: { status: 400, when: 'an MCP request without a session id that is not `initialize`' },
  mcp_session_not_found: { status: 404, when: 'the MCP session id is unknown, ended, or belongs to another caller' },
  payload_not_decodable: { status: 400, when: 'the codec could not process a payload with the configured keys' },
  payload_too_large: { status: 413, when: 'the body is larger than the endpoint accepts' },
  unsupported_encoding: { status: 415, when: 'the body encoding is not supported' },
  headers_too_large: { status: 431, when: 'the request headers are too large' },
  not_found: { status: 404, when: 'no such endpoint' },
  // Who is asking
  agent_authentication_required: { status: 401, when: 'no agent credential was presented' },
  agent_credential_invalid: { status: 401, when: 'the agent key is unknown, revoked, or its agent disabled' },
  agent_assertion_invalid: { status: 401, when: 'the agent assertion does not verify' },
  agent_assertion_replayed: { status: 401, when: 'the agent assertion was already used' },
  user_identity_required: { status: 401, when: 'no signed user identity was presented' },
  identity_malformed: { status: 401, when: 'the user identity is not a well-formed JWT' },
  identity_algorithm_not_allowed: { status: 401, when: 'the user identity is not signed with an allowed algorithm' },
  identity_untrusted_issuer: { status: 401, when: 'the user identity was not issued by a trusted issuer' },
  identity_wrong_audience: { status: 401, when: 'the user identity is for another audience' },
  identity_expired: { status: 401, when: 'the user identity has expired' },
  identity_not_yet_valid: { status: 401, when: 'the user identity is not valid yet' },
  identity_lifetime_exceeded: { status: 401, when: 'the user identity lives longer than the configured maximum' },
  identity_missing_times: { status: 401, when: 'the user identity carries neither iat nor exp' },
  identity_invalid_claims: { status: 401, when: 'the user identity has an invalid claim' },
  identity_invalid_subject: { status: 401, when: 'the user identity has no usable subject' },
  identity_unknown_key: { status: 401, when: 'the user identity is signed with an unknown key' },
  identity_bad_signature: { status: 401, when: 'the user identity signature does not verify' },
  identity_keys_unavailable: { status: 401, when: "the issuer's keys could not be fetched" },
  identity_invalid: { status: 401, when: 'the user identity does not verify' },
  identity_agent_mismatch: { status: 403, when: 'the user identity was issued for another agent' },
  identity_agent_missing: { status: 403, when: 'the user identity names no agent and its issuer requires one' },
  enterprise_identity_required: {
    status: 403,
    when: "the tool exchanges the user's enterprise identity, and X-User-Identity is not from its identity provider (or none is kept, or it was issued before the connection was revoked)",
  },
  operator_authentication_required: { status: 401, when: 'the codec endpoint needs a valid operator access token' },
  metrics_authentication_required: { status: 401, when: '/metrics needs its bearer token (METRICS_TOKEN)' },
  // What they may do
  agent_not_permitted: { status: 403, when: 'the agent is not granted the scope' },
  user_not_permitted: { status: 403, when: 'the user is not granted the scope' },
  operator_not_permitted: { status: 403, when: 'decoding payloads needs credential:admin' },
  cross_site_request: { status: 403, when: "a state-changing request to the user's connections page came from another site (Origin)" },
  csrf_token_invalid: { status: 403, when: "a state-changing request to the user's connections page lacked the page's token" },
  scope_not_allowed: { status: 403, when: 'a step-up asked for a scope the tool does not allow' },
  rate_limited: { status: 429, when: 'too many requests from this address or agent' },
  too_many_waits: { status: 429, when: 'the agent already holds the most long polls allowed' },
  too_many_sessions: { status: 429, when: 'the agent already holds the most MCP gateway sessions allowed in this process' },
  authorization_required: { status: 403, when: 'proxy: the user has not authorized this tool yet; the body carries `authorization_url`' },
  reauthorization_required: {
    status: 403,
    when: 'proxy: the tool refused even a refreshed token; the body carries a new `authorization_url`',
  },
  insufficient_scope: { status: 403, when: 'proxy: the tool needs wider scopes; the body carries the step-up `authorization_url`' },
  too_many_webhooks: { status: 409, when: 'the agent already holds the most webhook subscriptions allowed' },
  // The credential
  tool_not_found: { status: 404, when: 'no tool with this id is configured' },
  credential_not_found: { status: 404, when: 'no credential exists (or none is live) for this tool' },
  webhook_not_found: { status: 404, when: 'no webhook subscription with this id (for this agent, or for all agents)' },
  delivery_not_found: { status: 404, when: 'no webhook delivery with this id for this subscription' },
  credential_ended: { status: 409, when: 'the credential has already ended' },
  credential_not_active: { status: 409, when: 'there is no active credential to check' },
  step_up_limit_reached: { status: 409, when: 'the credential was widened the maximum number of times' },
  scope_already_granted: { status: 409, when: 'a step-up asked for scopes the credential already holds: another consent would not help' },
  // The authorization server or the MCP server
  outbound_refused: { status: 502, when: "a URL the tool's servers named is refused by the outbound policy" },
  pkce_not_supported: { status: 502, when: 'the authorization server does not support PKCE S256' },
  resource_metadata_not_found: { status: 502, when: 'the MCP server publishes no protected resource metadata' },
  authorization_server_not_found: { status: 502, when: 'no authorization server metadata was found' },
  invalid_metadata: { status: 502, when: 'the metadata is inconsistent, or no client can be registered' },
  access_denied: { status: 502, when: 'the user or the provider declined the authorization' },
  invalid_grant: { status: 502, when: 'the provider refused the grant' },
  authorization_unavailable: { status: 502, when: 'the authorization could not start or complete' },
  mcp_unreachable: { status: 502, when: 'the MCP server did not answer with its tools' },
  upstream_unreachable: { status: 502, when: 'the proxied API could not be reached' },
  upstream_encoding_unsupported: {
    status: 502,
    when: 'the proxied API answered in a content encoding the broker cannot decode (and so cannot check for tokens)',
  },
  // The broker's own parts
  credential_unavailable: { status: 503, when: 'the credential cannot be served this second (refresh late); see Retry-After' },
  workflow_busy: { status: 503, when: 'the credential is changing state' },
  audit_unavailable: { status: 503, when: 'the audit trail cannot be written, so no credential is issued' },
  service_unavailable: { status: 503, when: 'the database is unreachable' },
  credential_unreadable: { status: 500, when: 'the stored credential cannot be decrypted (tampered, moved, or its key is gone)' },
  internal_error: { status: 500, when: 'anything else; nothing about it is disclosed' },
} as const satisfies Record<string, { status: number; when: string }>;

export type ErrorCode = keyof typeof ERROR_CATALOG;

export function isErrorCode(code: string): code is ErrorCode {
  return Object.hasOwn(ERROR_CATALOG, code);
}
