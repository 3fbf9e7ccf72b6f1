import type { IncomingMessage } from 'node:http';
import type { Request, RequestHandler } from 'express';
import { AgentAuthError, type AgentRegistry } from './identity/agents.js';
import { hasScope, type Rbac } from './identity/rbac.js';
import { IdentityError, type TrustManager } from './identity/trust.js';
import type { AuditEventType, AuditTrail } from '../lib/audit.js';
import { OWNER_ID_PATTERN } from '../lib/domain.js';
import type { PresentedIdentities } from '../lib/credentials/identities.js';
import type { ErrorCode } from './error-catalog.js';
import { ApiError, catalogCode } from './errors.js';

/** Who is asking, as verified: every credential operation uses these ids, never raw headers. */
export interface Caller {
  agentId: string;
  userId: string;
  /** The agent's grants; null for development-mode header agents (looked up when access control is on). */
  agentScopes: string[] | null;
  method: 'api_key' | 'assertion' | 'dev_headers';
  identityVerified: boolean;
  /** Who issued the user's identity (the trusted issuer that signed X-User-Identity); absent without one. */
  identityIssuer?: string;
}

declare module 'express-serve-static-core' {
  interface Request {
    caller?: Caller;
  }
}

export interface GateDeps {
  agents: AgentRegistry;
  trust: TrustManager | null;
  rbac: Rbac | null;
  audit: AuditTrail;
  developmentMode: boolean;
  /**
   * Where identities from enterprise identity providers are kept for the credential workflows, and whether an
   * issuer is one (some tool exchanges its identities).
   */
  identities?: { store: PresentedIdentities; exchanged: (issuer: string) => boolean };
}

/**
 * Authentication (agent credential + gateway-signed user identity) and access control (RBAC scopes for
 * both the agent and the user). Every refusal is a 401/403 with a stable code and an audit event.
 */
export class Gate {
  private readonly identities = new WeakMap<IncomingMessage, Promise<Caller>>();

  constructor(private readonly deps: GateDeps) {}

  authenticate(): RequestHandler {
    return async (req, _res, next) => {
      try {
        req.caller = await this.callerOf(req);
        next();
      } catch (err) {
        const apiError = toApiError(err);
        await this.deny(req, 'auth.denied', apiError.code);
        next(apiError);
      }
    };
  }

  /** Throws 403 unless both the agent and the user hold `scope`. */
  async authorize(req: Request, scope: string, context: { toolId?: string } = {}): Promise<void> {
    const code = await this.refusal(req.caller!, scope);
    if (!code) return;
    await this.deny(req, 'access.denied', code, { scope, ...context });
    throw new ApiError(code, code === 'agent_not_permitted' ? `this agent is not granted ${scope}` : `this user is not granted ${scope}`);
  }

  /** Why `caller` may not act under `scope` (the agent's grants and the user's roles must both hold it); null: it may. */
  async refusal(caller: Caller, scope: string): Promise<'agent_not_permitted' | 'user_not_permitted' | null> {
    const { rbac } = this.deps;
    if (!rbac) return null;
    const agentScopes = caller.agentScopes ?? (await this.deps.agents.get(caller.agentId))?.scopes ?? [];
    if (!hasScope(agentScopes, scope)) return 'agent_not_permitted';
    if (!hasScope(rbac.scopesOf(caller.userId), scope)) return 'user_not_permitted';
    return null;
  }

  /**
   * The verified caller of a request, established once per request: a fast lane that looks before Express and
   * Express's own `authenticate` share the answer (a single-use agent assertion is spent once, and a refusal is
   * the same refusal whichever of them reports it).
   */
  callerOf(req: IncomingMessage): Promise<Caller> {
    let caller = this.identities.get(req);
    if (!caller) {
      caller = this.identify((name) => {
        const value = req.headers[name];
        return Array.isArray(value) ? value[0] : value;
      });
      caller.catch(() => {});
      this.identities.set(req, caller);
    }
    return caller;
  }

  private async identify(header: (name: string) => string | undefined): Promise<Caller> {
    const { agents, trust, developmentMode } = this.deps;
    let agentId: string;
    let agentScopes: string[] | null = null;
    let method: Caller['method'];
    const authorization = header('authorization');
    if (authorization) {
      const agent = await agents.authenticate(authorization);
      ({ agentId, scopes: agentScopes, method } = { ...agent, scopes: agent.scopes });
    } else if (developmentMode && header('x-agent-id') !== undefined) {
      agentId = headerId(header, 'x-agent-id', 'invalid_agent_id');
      method = 'dev_headers';
    } else {
      throw new ApiError(
        'agent_authentication_required',
        developmentMode
          ? 'an agent credential (Authorization: Bearer …) or, in development mode, X-Agent-Id is required'
          : 'an agent credential is required (Authorization: Bearer …)',
      );
    }
    if (trust) {
      const token = header('x-user-identity');
      const identity = await trust.verify(token, agentId);
      const kept = this.deps.identities;
      // An enterprise identity: kept (encrypted) for the workflows that exchange it, before any of them needs it.
      if (kept?.exchanged(identity.issuer) && token && identity.expiresAt)
        await kept.store.keep({
          agentId,
          userId: identity.userId,
          issuer: identity.issuer,
          token,
          expiresAt: identity.expiresAt,
          ...(identity.issuedAt ? { issuedAt: identity.issuedAt } : {}),
        });
      return {
        agentId,
        userId: identity.userId,
        agentScopes,
        method,
        identityVerified: identity.verified,
        identityIssuer: identity.issuer,
      };
    }
    if (!developmentMode) throw new ApiError('user_identity_required', 'a signed user identity is required');
    if (header('x-user-id') === undefined) throw new ApiError('user_identity_required', 'X-User-Id is required in development mode');
    return { agentId, userId: headerId(header, 'x-user-id', 'invalid_user_id'), agentScopes, method, identityVerified: false };
  }

  private async deny(req: Request, eventType: AuditEventType, code: string, detail: Record<string, unknown> = {}): Promise<void> {
    await this.deps.audit.record(null, {
      eventType,
      outcome: 'denied',
      actor: req.caller ? `agent:${req.caller.agentId}` : 'unauthenticated',
      agentId: req.caller?.agentId ?? null,
      userId: req.caller?.userId ?? null,
      toolId: typeof detail.toolId === 'string' ? detail.toolId : null,
      requestId: req.id,
      ip: req.ip ?? null,
      detail: { code, method: req.method, path: req.baseUrl, ...detail },
    });
  }
}

function headerId(header: (name: string) => string | undefined, name: string, code: ErrorCode): string {
  const value = header(name) ?? '';
  if (!OWNER_ID_PATTERN.test(value)) throw new ApiError(code, `${name} has characters or a length that is not allowed`);
  return value;
}

function toApiError(err: unknown): ApiError {
  if (err instanceof ApiError) return err;
  if (err instanceof AgentAuthError) return new ApiError(catalogCode(err.code, 'agent_credential_invalid'), err.message);
  if (err instanceof IdentityError) return new ApiError(catalogCode(err.code, 'identity_invalid'), err.message, { status: err.status });
  throw err;
}
