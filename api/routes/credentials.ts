import { Router, type Request, type RequestHandler, type Response } from 'express';
import { z } from 'zod';
import type { AuditEventType, AuditTrail } from '../../lib/audit.js';
import type { CredentialBroker } from '../broker.js';
import { isoTime, type CredentialOwner } from '../../lib/domain.js';
import { resolveOwner } from '../owner.js';
import { compareManifest, listServerTools } from '../mcp-check.js';
import { SeenTokens, userFetch } from '../gateway/upstream.js';
import type { OutboundPolicy } from '../../lib/net/outbound.js';
import type { OAuthClients } from '../../lib/oauth/client.js';
import type { ToolRegistry } from '../../lib/tools.js';
import type { CredentialWaits } from '../waits.js';
import { ApiError, parseOr400 } from '../errors.js';
import { authorizationFailed, stepUpFor, unavailable } from '../gateway/links.js';
import { credentialView } from '../views.js';
import type { Gate } from '../auth.js';

export interface CredentialRoutesDeps {
  broker: CredentialBroker;
  tools: ToolRegistry;
  audit: AuditTrail;
  gate: Gate;
  /** Where a step-up learns which scopes the tool allows (an MCP server's own list, once per process). */
  oauth: OAuthClients;
  outbound: OutboundPolicy;
  waits: CredentialWaits;
  /** Rate limit per authenticated agent. */
  agentLimiter?: RequestHandler;
  /** Whether access tokens are returned to agents (a tool's `expose_token` overrides). */
  exposeTokens: boolean;
}

const SCOPE_TOKENS = /^[\x21\x23-\x5b\x5d-\x7e]+( [\x21\x23-\x5b\x5d-\x7e]+)*$/;
export const postBody = z
  .object({
    force_refresh: z.boolean().optional(),
    /** The tool answered 403 insufficient_scope with these scopes: authorize again for them (step-up). */
    insufficient_scope: z.string().max(1000).regex(SCOPE_TOKENS, 'must be space-separated scope tokens').optional(),
  })
  .strict();
const MAX_WAIT_SECONDS = 60;
/** How long a request that needs the workflow (authorize, force refresh) waits for it. */
const ACTION_WAIT_MS = 10_000;

/** POST (get or authorize), GET (status, long-poll with ?wait=), DELETE (revoke) on /api/v1/credentials/{toolId}. */
export function credentialRoutes(deps: CredentialRoutesDeps): Router {
  const router = Router();
  const { broker, audit, gate } = deps;
  router.use(gate.authenticate());
  if (deps.agentLimiter) router.use(deps.agentLimiter);

  router.post('/:toolId', async (req, res) => {
    const owner = resolveOwner(req, deps.tools);
    await gate.authorize(req, `tool:${owner.toolId}:use`, { toolId: owner.toolId });
    const body = parseOr400(postBody, req.body ?? {}, 'body');
    if (body.insufficient_scope) {
      let stepped;
      try {
        stepped = await stepUpFor(deps, deps.tools.get(owner.toolId)!, owner, body.insufficient_scope.split(' '));
      } catch (err) {
        if (err instanceof ApiError && (err.code === 'scope_not_allowed' || err.code === 'scope_already_granted'))
          await record(req, owner, 'credential.step_up', 'denied', { code: err.code, scopes: body.insufficient_scope });
        throw err;
      }
      await record(req, owner, 'credential.step_up', stepped ? 'success' : 'failure', {
        credentialId: stepped?.credentialId ?? null,
        scopes: body.insufficient_scope,
      });
      if (stepped?.phase === 'awaiting_authorization' && stepped.authorizationUrl) {
        return res.status(202).json({
          status: 'authorization_required',
          authorization_url: stepped.authorizationUrl,
          expires_at: isoTime(stepped.authorizationExpiresAt),
          reason: 'insufficient_scope',
        });
      }
    }
    if (body.force_refresh) {
      const refreshed = await broker.shared(owner, 'refresh', ACTION_WAIT_MS);
      if (refreshed === 'pending') throw unavailable(owner, 'the refresh is still running');
      await record(req, owner, 'credential.refresh_requested', refreshed ? 'success' : 'failure', { phase: refreshed?.phase ?? 'none' });
      // Refreshed (also while a step-up waits for the user): the new token; else authorize below.
      const hit = refreshed ? await broker.readActive(owner) : null;
      if (hit) return sendActive(req, res, owner, hit);
    } else {
      const hit = await broker.usable(owner);
      if (hit === 'late') throw unavailable(owner, 'the credential is being refreshed');
      if (hit) return sendActive(req, res, owner, hit);
    }
    const view = await broker.shared(owner, 'ensure', ACTION_WAIT_MS);
    if (view === 'pending' || view === null) throw unavailable(owner, 'the credential is changing state');
    if (view.phase === 'authorization_failed') {
      const reason = view.endReason ?? 'authorization_failed';
      await record(req, owner, 'credential.authorization_required', 'failure', { credentialId: view.credentialId, code: reason });
      throw authorizationFailed(reason);
    }
    if (view.phase === 'awaiting_authorization') {
      await record(req, owner, 'credential.authorization_required', 'success', { credentialId: view.credentialId });
      return res.status(202).json({
        status: 'authorization_required',
        authorization_url: view.authorizationUrl,
        expires_at: isoTime(view.authorizationExpiresAt),
      });
    }
    const active = await broker.readActive(owner);
    if (active) return sendActive(req, res, owner, active);
    throw unavailable(owner, `the credential is ${view.phase}`);
  });

  router.get('/:toolId', async (req, res) => {
    const owner = resolveOwner(req, deps.tools);
    await gate.authorize(req, `tool:${owner.toolId}:use`, { toolId: owner.toolId });
    const { wait: rawWait, ...unknown } = req.query;
    if (Object.keys(unknown).length)
      throw new ApiError('invalid_request', `unknown query parameter ${Object.keys(unknown)[0]!.slice(0, 40)}`);
    const wait = parseWait(rawWait);
    let row = await broker.latest(owner);
    // Only a pending authorization can still become active by itself.
    if (wait > 0 && row?.status === 'awaiting_authorization') {
      const gone = new AbortController();
      res.on('close', () => gone.abort());
      const credentialId = row.id;
      // The workflow answers when the user has consented (or the authorization ended): no table is polled.
      await deps.waits.wait(owner, Date.now() + wait * 1000, gone.signal, (stop) =>
        broker.workflows.awaitConsent(owner, credentialId, stop),
      );
      // The caller hung up: nobody is left to answer.
      if (gone.signal.aborted) return;
      row = await broker.latest(owner);
    }
    await record(req, owner, 'credential.status_read', row ? 'success' : 'failure', {
      credentialId: row?.id ?? null,
      status: row?.status ?? 'not_found',
    });
    if (!row) throw new ApiError('credential_not_found', 'no credential exists for this tool; POST to start an authorization');
    const body: Record<string, unknown> = credentialView(row);
    if (row.status === 'awaiting_authorization') {
      const view = await broker.query(owner);
      if (view?.authorizationUrl) {
        body.authorization_url = view.authorizationUrl;
        body.authorization_expires_at = isoTime(view.authorizationExpiresAt);
      }
    }
    res.json(body);
  });

  // Checks the stored credential against its MCP server: lists the tools there and compares the manifest.
  router.post('/:toolId/check', async (req, res) => {
    const owner = resolveOwner(req, deps.tools);
    await gate.authorize(req, `tool:${owner.toolId}:use`, { toolId: owner.toolId });
    const tool = deps.tools.get(owner.toolId)!;
    if (tool.toolType !== 'mcp') throw new ApiError('not_an_mcp_tool', 'only MCP tools can be checked against their server');
    const active = await broker.readActive(owner);
    if (!active) throw new ApiError('credential_not_active', 'there is no active credential to check; POST to authorize first');
    let serverTools;
    try {
      // The stored credential as the gateway sends it (a DPoP-bound one with its proofs).
      serverTools = await listServerTools(tool, userFetch({ broker, outbound: deps.outbound, owner, tool, seen: new SeenTokens() }));
    } catch (err) {
      const status = (err as { code?: unknown }).code;
      await record(req, owner, 'credential.checked', 'failure', { credentialId: active.credentialId, code: 'mcp_unreachable' });
      throw new ApiError(
        'mcp_unreachable',
        `the MCP server did not answer with its tools${typeof status === 'number' ? ` (${status})` : ''}`,
      );
    }
    const report = compareManifest(tool.manifest, serverTools);
    await record(req, owner, 'credential.checked', 'success', { credentialId: active.credentialId, status: report.status });
    res.json(report);
  });

  router.delete('/:toolId', async (req, res) => {
    const owner = resolveOwner(req, deps.tools);
    await gate.authorize(req, `tool:${owner.toolId}:revoke`, { toolId: owner.toolId });
    const view = await broker.revoke(owner, { actor: `agent:${owner.agentId}`, reason: 'revoked through the API' });
    if (!view) {
      await record(req, owner, 'credential.revoke', 'failure', { code: 'credential_not_found' });
      throw new ApiError('credential_not_found', 'no live credential exists for this tool');
    }
    await record(req, owner, 'credential.revoke', 'success', { credentialId: view.credentialId, phase: view.phase });
    const row = await broker.latest(owner);
    res.json(row ? credentialView(row) : { status: view.phase });
  });

  return router;

  async function sendActive(
    req: Request,
    res: Response,
    owner: CredentialOwner,
    hit: Awaited<ReturnType<CredentialBroker['readActive']>> & object,
  ) {
    // No credential leaves unaudited: with the audit buffer full (the database away too long), none leaves.
    if (audit.saturated)
      throw new ApiError('audit_unavailable', 'the audit trail cannot be written; no credential is issued until it can', {
        retryAfterSeconds: 5,
        expectedKey: 'audit',
      });
    // A DPoP-bound token is of no use without the key only the broker holds: it is used through the gateway only.
    const exposed = !hit.proofKey && (deps.tools.get(owner.toolId)?.exposeToken ?? deps.exposeTokens);
    await record(req, owner, 'credential.issued', 'success', { credentialId: hit.credentialId, ...(exposed ? {} : { token: 'withheld' }) });
    res.setHeader('Cache-Control', 'no-store');
    const expiresAt = hit.expiresAt?.toISOString() ?? null;
    // Tokens stay home: the agent learns the credential is usable, and uses it through the gateway.
    if (!exposed) return res.status(200).json({ status: 'active', expires_at: expiresAt, scope: hit.scope });
    return res.status(200).json({
      status: 'active',
      access_token: hit.accessToken,
      token_type: hit.tokenType,
      expires_at: expiresAt,
      scope: hit.scope,
    });
  }

  async function record(req: Request, owner: CredentialOwner, eventType: AuditEventType, outcome: string, detail: Record<string, unknown>) {
    const hot = eventType === 'credential.issued' || eventType === 'credential.status_read';
    await audit.record(
      null,
      {
        eventType,
        outcome,
        actor: `agent:${owner.agentId}`,
        ...owner,
        credentialId: typeof detail.credentialId === 'string' ? detail.credentialId : null,
        requestId: req.id,
        ip: req.ip ?? null,
        detail,
      },
      { batched: hot },
    );
  }
}

function parseWait(raw: unknown): number {
  if (raw === undefined) return 0;
  if (typeof raw !== 'string' || !/^\d{1,3}$/.test(raw) || Number(raw) > MAX_WAIT_SECONDS) {
    throw new ApiError('invalid_wait', `wait must be a whole number of seconds from 0 to ${MAX_WAIT_SECONDS}`);
  }
  return Number(raw);
}
