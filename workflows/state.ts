import { setCurrentDetails, upsertSearchAttributes, uuid4 } from '@temporalio/workflow';
import { CredentialStatusKey, type CredentialState, type CredentialView, type Phase } from './messages.js';

/** Refreshes per run before a credential workflow continues as new (keeps each history bounded). */
export const DEFAULT_MAX_CYCLES_PER_RUN = 200;

/** A new credential's state; user credentials also get the id of their first authorization request. */
export function initialState(opts: { authorizationRequest: boolean }): CredentialState {
  return {
    phase: 'starting',
    credentialId: uuid4(),
    authorizationRequestId: opts.authorizationRequest ? uuid4() : null,
    authorizationUrl: null,
    authorizationExpiresAt: null,
    generation: 0,
    acquiredAt: null,
    accessExpiresAt: null,
    ttlExpiresAt: null,
    refreshAt: null,
    hasRefreshToken: false,
    scope: null,
    failedRefreshes: 0,
    cyclesThisRun: 0,
    endReason: null,
  };
}

/** Moves to a phase and mirrors it in the CredentialStatus search attribute (Web UI filters). */
export function setPhase(s: CredentialState, phase: Phase): void {
  if (s.phase === phase) return;
  s.phase = phase;
  upsertSearchAttributes([{ key: CredentialStatusKey, value: phase }]);
  // The Web UI shows it on the workflow page (a query, not history: old histories replay unchanged).
  setCurrentDetails(`phase **${phase}**${s.endReason ? ` — ${s.endReason}` : ''}`);
}

/** What queries and updates answer: metadata only, never a token; the link only while it can be used. */
export function view(s: CredentialState): CredentialView {
  return {
    phase: s.phase,
    credentialId: s.credentialId,
    authorizationUrl: s.phase === 'awaiting_authorization' ? s.authorizationUrl : null,
    authorizationExpiresAt: s.phase === 'awaiting_authorization' ? s.authorizationExpiresAt : null,
    accessExpiresAt: s.accessExpiresAt,
    ttlExpiresAt: s.ttlExpiresAt,
    refreshAt: s.refreshAt,
    generation: s.generation,
    endReason: s.endReason,
    revocation: s.revocation ?? null,
  };
}
