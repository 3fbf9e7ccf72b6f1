import { Router } from 'express';
import type { ToolRegistry } from '../../lib/tools.js';
import type { Gate } from '../auth.js';

/** GET /api/v1/tools: the configured tools with their auth type and manifest (no client secrets). */
export function toolRoutes(deps: { tools: ToolRegistry; gate: Gate }): Router {
  const router = Router();
  router.use(deps.gate.authenticate());
  router.get('/', (_req, res) => {
    res.json({
      tools: deps.tools.list().map((t) => ({
        id: t.id,
        name: t.name,
        tool_type: t.toolType,
        provider: t.provider ?? null,
        connection: t.connection,
        auth: {
          type: t.auth.type,
          scopes: t.auth.scopeList,
          discovery: t.toolType === 'mcp' && !t.auth.issuer && !t.auth.authorization_url ? 'mcp' : t.auth.issuer ? 'issuer' : 'endpoints',
        },
        manifest: t.manifest,
      })),
    });
  });
  return router;
}
