import type { Request } from 'express';
import { OWNER_ID_PATTERN } from '../lib/domain.js';
import { ApiError } from './errors.js';

export interface Caller {
  agentId: string;
  userId: string;
}

/**
 * Who is asking. Development mode trusts plain X-Agent-Id / X-User-Id headers; production refuses them
 * (agent credentials and gateway-signed user identities are required there).
 */
export function identifyCaller(req: Request, developmentMode: boolean): Caller {
  if (!developmentMode) {
    throw new ApiError(401, 'authentication_required', 'agent authentication is required; plain identity headers are accepted only in development mode');
  }
  const agentId = req.get('x-agent-id');
  const userId = req.get('x-user-id');
  if (!agentId || !userId) throw new ApiError(401, 'identity_required', 'X-Agent-Id and X-User-Id headers are required');
  if (!OWNER_ID_PATTERN.test(agentId)) throw new ApiError(400, 'invalid_agent_id', 'X-Agent-Id has characters or a length that is not allowed');
  if (!OWNER_ID_PATTERN.test(userId)) throw new ApiError(400, 'invalid_user_id', 'X-User-Id has characters or a length that is not allowed');
  return { agentId, userId };
}
