import type { AuditTrail } from '../../lib/audit.js';
import type { Logger } from '../../lib/log.js';
import type { OutboundPolicy } from '../../lib/net/outbound.js';
import type { OAuthClients } from '../../lib/oauth/client.js';
import type { ToolRegistry } from '../../lib/tools.js';
import type { Gate } from '../auth.js';
import type { CredentialBroker } from '../broker.js';

/** What the gateway (MCP sessions and the HTTP proxy) needs from the API process. */
export interface GatewayDeps {
  broker: CredentialBroker;
  tools: ToolRegistry;
  gate: Gate;
  audit: AuditTrail;
  outbound: OutboundPolicy;
  oauth: OAuthClients;
  log: Logger;
}
