import type { OAuthClients } from '../../lib/oauth/client.js';
import type { Tool } from '../../lib/tools.js';
import type { CredentialOwner } from '../../lib/domain.js';
import type { CredentialBroker } from '../broker.js';
import type { CredentialView } from '../../workflows/messages.js';
import { ApiError, catalogCode } from '../errors.js';
import { fingerprint, type AuthNeed } from './upstream.js';

/** A link to show the user, and why. */
export interface ConsentLink {
  url: string;
  expiresAt: number | null;
  reason: 'authorization_required' | 'insufficient_scope' | 'reauthorization_required';
  credentialId: string;
}

/** How long a request that needs the workflow (authorize, step up) waits for it. */
const ACTION_WAIT_MS = 10_000;

/** Why an authorization could not start, as the workflow reports it (stable codes for agents). */
const STARTUP_FAILURES = new Set([
  'outbound_refused',
  'pkce_not_supported',
  'resource_metadata_not_found',
  'authorization_server_not_found',
  'invalid_metadata',
  'access_denied',
  'invalid_grant',
  'identity_expired',
  'enterprise_identity_required',
]);

/** 503 with Retry-After: the credential exists but cannot be served this second (logged once a minute). */
export function unavailable(owner: CredentialOwner, why: string): ApiError {
  return new ApiError('credential_unavailable', `${why}; try again shortly`, {
    retryAfterSeconds: 1,
    expectedKey: `${owner.agentId}\0${owner.userId}\0${owner.toolId}`,
  });
}

/** Why the worker could not exchange a user's identity: the agent must present a (newer) one. */
const IDENTITY_REFUSALS = new Set(['identity_required', 'identity_predates_revocation']);

/** A failed authorization as the agent hears it: the workflow's reason when it is a stable code. */
export function authorizationFailed(reason: string | null): ApiError {
  // No usable identity from the tool's identity provider was kept for this user (ID-JAG, token exchange).
  const code = IDENTITY_REFUSALS.has(reason ?? '') ? 'enterprise_identity_required' : (reason ?? 'authorization_failed');
  return new ApiError(
    STARTUP_FAILURES.has(code) ? catalogCode(code, 'authorization_unavailable') : 'authorization_unavailable',
    `the authorization could not start or complete: ${code}`,
  );
}

/**
 * Step-up scopes beyond what the tool allows (its allowed_scopes, else its scopes, else the MCP server's list):
 * a challenge from a tool cannot widen a credential past what the operator configured.
 */
export async function scopesNotAllowed(oauth: OAuthClients, tool: Tool, requested: string[]): Promise<string[]> {
  let allowed: string[];
  try {
    allowed = (await oauth.forTool(tool)).allowedScopes;
  } catch {
    throw new ApiError('authorization_unavailable', "the tool's authorization server could not be reached; try again");
  }
  return requested.filter((scope) => !allowed.includes(scope));
}

/**
 * What a step-up for `requested` asks for: the scopes not yet held, and the union of held and requested (the new
 * consent must not drop what the credential already has). No missing scope: the credential holds them all, and
 * another consent would not change what the tool decides (a repeated challenge is not a reason to ask the user).
 */
export function planStepUp(held: string | null, requested: string[]): { missing: string[]; scopes: string[] } {
  const have = new Set((held ?? '').split(' ').filter(Boolean));
  const missing = [...new Set(requested)].filter((s) => !have.has(s));
  return { missing, scopes: [...new Set([...have, ...requested])] };
}

/** Step-up with the checks both doors share: only scopes the tool allows, never for scopes already held. */
export async function stepUpFor(
  deps: { broker: CredentialBroker; oauth: OAuthClients },
  tool: Tool,
  owner: CredentialOwner,
  requested: string[],
): Promise<CredentialView | null> {
  const plan = planStepUp((await deps.broker.readActive(owner))?.scope ?? null, requested);
  if (!plan.missing.length)
    throw new ApiError('scope_already_granted', 'the credential already holds these scopes; another consent would not change the answer');
  // No consent to widen: a machine token's or an exchanged identity's scopes are what the tool's configuration asks for.
  if (deps.broker.obtainsItself(owner))
    throw new ApiError('scope_not_allowed', "this tool's credential is obtained without consent; widen its configured scopes instead");
  const refused = await scopesNotAllowed(deps.oauth, tool, plan.missing);
  if (refused.length) throw new ApiError('scope_not_allowed', `this tool does not allow the scope ${refused[0]!.slice(0, 100)}`);
  return deps.broker.stepUp(owner, plan.scopes);
}

/**
 * The link the user must open before a call through the gateway can succeed: a first authorization, a new one
 * when the tool refused even a refreshed token, or a step-up for the scopes the tool asked for. `active`: a
 * usable credential exists after all (another request completed it); the caller may retry.
 */
export async function consentLinkFor(
  deps: { broker: CredentialBroker; oauth: OAuthClients },
  tool: Tool,
  owner: CredentialOwner,
  need: AuthNeed,
): Promise<ConsentLink | 'active'> {
  const { broker } = deps;
  if (need.kind === 'step_up') {
    const stepped = await stepUpFor(deps, tool, owner, need.scopes);
    if (stepped?.phase === 'awaiting_authorization' && stepped.authorizationUrl)
      return link(stepped.authorizationUrl, stepped.authorizationExpiresAt, 'insufficient_scope', stepped.credentialId);
    throw unavailable(owner, 'the step-up could not start');
  }
  if (need.kind === 'reauthorize') {
    // The provider's tokens no longer open the tool: this credential is over, and the user authorizes again — unless
    // another request has already replaced the refused token (then its credential stands).
    const current = await broker.readActive(owner);
    if (current && fingerprint(current.accessToken) === need.refused)
      await broker.revoke(owner, { actor: 'gateway', reason: 'the tool refused the refreshed token' });
  }
  const view = await broker.shared(owner, 'ensure', ACTION_WAIT_MS);
  if (view === 'pending' || view === null) throw unavailable(owner, 'the credential is changing state');
  if (view.phase === 'authorization_failed') throw authorizationFailed(view.endReason);
  if (view.phase === 'awaiting_authorization' && view.authorizationUrl) {
    const reason = need.kind === 'reauthorize' ? 'reauthorization_required' : 'authorization_required';
    return link(view.authorizationUrl, view.authorizationExpiresAt, reason, view.credentialId);
  }
  if (view.phase === 'active' || view.phase === 'refreshing') return 'active';
  throw unavailable(owner, `the credential is ${view.phase}`);
}

function link(url: string, expiresAt: number | null, reason: ConsentLink['reason'], credentialId: string): ConsentLink {
  return { url, expiresAt, reason, credentialId };
}
