import { createHash } from 'node:crypto';
import { McpError, UrlElicitationRequiredError, type ServerNotification } from '@modelcontextprotocol/sdk/types.js';
import { ProtocolError, SdkError, SdkErrorCode } from '@modelcontextprotocol/client';
import type { CredentialOwner } from '../../lib/domain.js';
import type { Tool } from '../../lib/tools.js';
import type { GatewayDeps } from './deps.js';
import { consentLinkFor, type ConsentLink } from './links.js';
import { apiToMcp, GATEWAY_RPC_ERRORS } from './mcp-errors.js';
import type { AuthNeed, SeenTokens } from './upstream.js';

/**
 * What an agent's MCP session hears when a call could not go through: -32042 with the link the user must open
 * when only they can fix it (and, once they have consented, `notifications/elicitation/complete` on the session's
 * open event stream), else the refusal or the upstream's error with a stable code and no token in it.
 */
export class ConsentPrompts {
  /** Credentials whose consent this session waits for. */
  private readonly watching = new Set<string>();

  constructor(
    private readonly deps: GatewayDeps,
    private readonly tool: Tool,
    private readonly owner: CredentialOwner,
    private readonly seen: SeenTokens,
    private readonly notify: (notification: ServerNotification) => Promise<void>,
    private readonly ended: AbortSignal,
  ) {}

  async errorFor(err: unknown, need: AuthNeed | null): Promise<McpError> {
    if (need) {
      let link: ConsentLink | 'active';
      try {
        link = await consentLinkFor(this.deps, this.tool, this.owner, need);
      } catch (linkErr) {
        return apiToMcp(linkErr);
      }
      if (link === 'active') {
        return new McpError(GATEWAY_RPC_ERRORS.unavailable, 'the credential was just authorized; try again', {
          code: 'credential_unavailable',
        });
      }
      const elicitationId = createHash('sha256').update(link.url).digest('hex').slice(0, 32);
      if (link.reason !== 'insufficient_scope') this.announceWhenConsented(link.credentialId, elicitationId);
      const message =
        link.reason === 'insufficient_scope'
          ? `${this.tool.name} needs more permissions: open the link to grant them`
          : `Connect your ${this.tool.name} account: open the link to authorize`;
      return new UrlElicitationRequiredError([{ mode: 'url', elicitationId, url: link.url, message }], message);
    }
    // A method the server's revision no longer has (2026-07-28 removed logging/setLevel and resource subscriptions).
    if (err instanceof SdkError && err.code === SdkErrorCode.MethodNotSupportedByProtocolVersion)
      return new McpError(-32601, "the tool's server does not support this method");
    // The upstream's own JSON-RPC error (its client is the SDK v2: ProtocolError), passed on with no token in it.
    if (err instanceof McpError || err instanceof ProtocolError)
      return new McpError(err.code, this.seen.redact(err.message), this.seen.redactJson(err.data));
    return apiToMcp(err);
  }

  /** Once the user has consented, an open event stream on this session hears `notifications/elicitation/complete`. */
  private announceWhenConsented(credentialId: string, elicitationId: string): void {
    if (this.watching.has(credentialId) || this.watching.size >= 8) return;
    this.watching.add(credentialId);
    void this.deps.broker.workflows
      .awaitConsent(this.owner, credentialId, this.ended)
      .then(async () => {
        if (!(await this.deps.broker.readActive(this.owner))) return;
        await this.notify({ method: 'notifications/elicitation/complete', params: { elicitationId } });
      })
      .catch(() => {})
      .finally(() => this.watching.delete(credentialId));
  }
}
