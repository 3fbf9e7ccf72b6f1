export { BrokerClient, type BrokerClientOptions, type BrokerIdentity, type Credential, type CredentialStatus } from './client.js';
export { BrokerApiError, ERROR_CODES, type ErrorCode } from './errors.js';
export { agentAssertion, type AgentAssertionOptions } from './assertion.js';
export { verifyWebhook, WebhookVerificationError, type LifecycleEvent } from './webhooks.js';
// The MCP helpers need the official MCP SDK: `@credential-broker/client/mcp`.
