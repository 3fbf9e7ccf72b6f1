import { Router } from 'express';
import { verifyReconnect } from '../../lib/credentials/reconnect.js';
import type { ToolRegistry } from '../../lib/tools.js';
import type { Vault } from '../../lib/vault/crypto.js';
import type { CredentialBroker } from '../broker.js';
import { sendPage } from '../html.js';
import type { AgentRegistry } from '../identity/agents.js';
import type { TrustManager } from '../identity/trust.js';

/**
 * GET /api/v1/auth/tool/reconnect: the link a `credential.reauthorization_required` event carries. It starts the
 * owner's authorization again and sends the browser to the start page, which checks who the browser's user is.
 */
export function reconnectRoutes(deps: {
  vault: Vault;
  broker: CredentialBroker;
  tools: ToolRegistry;
  agents: AgentRegistry;
  /** Production (identities verified): the link's agent must still be registered and enabled. */
  trust: TrustManager | null;
}): Router {
  const router = Router();
  router.get('/', async (req, res) => {
    const owner = verifyReconnect(deps.vault, req.query);
    const agent = owner && deps.trust ? await deps.agents.get(owner.agentId) : null;
    const agentGone = Boolean(deps.trust) && (!agent || Boolean(agent.disabledAt));
    if (!owner || !deps.tools.get(owner.toolId) || agentGone)
      return sendPage(
        res,
        400,
        'Link not valid',
        'This link is not known here or has expired. Go back to your agent and start again.',
        false,
      );
    // A look, not a use: opening the link does not count as the agent using the credential.
    if (await deps.broker.readActive(owner, { quiet: true }))
      return sendPage(
        res,
        200,
        'Already connected',
        'This account is connected. You can close this window and return to your agent.',
        true,
      );
    const view = await deps.broker.shared(owner, 'ensure', 5_000);
    if (view && view !== 'pending' && view.phase === 'awaiting_authorization' && view.authorizationUrl) {
      res.setHeader('Cache-Control', 'no-store');
      return res.redirect(302, view.authorizationUrl);
    }
    sendPage(res, 503, 'Try again', 'The connection could not be started just now. Try this link again in a moment.', false);
  });
  return router;
}
