import type { Request } from 'express';
import { MACHINE_USER, MAX_WORKFLOW_ID_LENGTH, workflowIdFits, type CredentialOwner } from '../lib/domain.js';
import { exchangesIdentity, type ToolRegistry } from '../lib/tools.js';
import { ApiError } from './errors.js';

/** The credential's owner is always the verified caller: no header or parameter can name another. */
export function resolveOwner(req: Request, tools: ToolRegistry): CredentialOwner {
  return ownerOf(req.caller!, req.params.toolId as string, tools);
}

/** The owner of `toolId`'s credential for a verified caller (the tool configured, the ids within bounds). */
export function ownerOf(
  { agentId, userId, identityIssuer }: { agentId: string; userId: string; identityIssuer?: string | undefined },
  toolId: string,
  tools: ToolRegistry,
): CredentialOwner {
  const tool = tools.get(toolId);
  if (!tool) throw new ApiError('tool_not_found', 'no tool with this id is configured');
  // Enterprise tools: the user's identity must come from the tool's identity provider (it is what the broker exchanges).
  if (exchangesIdentity(tool) && identityIssuer !== tool.auth.identity_provider?.issuer) {
    throw new ApiError(
      'enterprise_identity_required',
      `this tool needs the user's identity from ${tool.auth.identity_provider?.issuer ?? 'its identity provider'} (X-User-Identity)`,
    );
  }
  // Machine access: one credential per (agent, tool), shared by every user of the agent.
  const owner = { agentId, userId: tool.auth.type === 'client_credentials' ? MACHINE_USER : userId, toolId };
  if (!workflowIdFits(owner)) {
    throw new ApiError(
      'ids_too_long',
      `the agent, user and tool ids together are too long (at most ${MAX_WORKFLOW_ID_LENGTH} characters once encoded)`,
    );
  }
  return owner;
}
