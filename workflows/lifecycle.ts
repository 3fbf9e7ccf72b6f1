import type { TokenMetadata } from '../activities/index.js';
import { isTerminal } from '../lib/domain.js';
import type { CredentialState, Phase, RevokeRequest } from './messages.js';
import { nextWake, planRefreshAt, planRefreshRetryAt } from './schedule.js';

/**
 * The credential's lifecycle as data: the stage it is in, what can wake it, and the one step it takes next. Pure
 * (no Temporal, no I/O, the time passed in), so every stage × wake is a row of a table test; the workflow waits
 * where this module says, runs the step, and comes back. The state it reads is the workflow's plain state, which
 * histories carry across continue-as-new.
 *
 * awaiting_consent ──callback──▶ (exchange) ──▶ active ◀──▶ refreshing
 *        │ timeout / revoke                     │  ▲ step-up ▼ consent, timeout
 *        ▼                                      │  stepping_up (the current token still served and refreshed)
 *      ended ◀── TTL, revoke, invalid_grant ────┘
 */
export type Stage =
  | { kind: 'starting' }
  | { kind: 'awaiting_consent'; expiresAt: number }
  | { kind: 'active' }
  | { kind: 'refreshing'; steppingUp: boolean }
  | { kind: 'stepping_up'; expiresAt: number }
  | { kind: 'ended'; status: string };

export function stageOf(s: CredentialState): Stage {
  if (isTerminal(s.phase)) return { kind: 'ended', status: s.phase };
  switch (s.phase) {
    case 'starting':
      return { kind: 'starting' };
    case 'refreshing':
      return { kind: 'refreshing', steppingUp: s.stepUpPending === true };
    case 'awaiting_authorization':
      return s.stepUpPending
        ? { kind: 'stepping_up', expiresAt: s.authorizationExpiresAt! }
        : { kind: 'awaiting_consent', expiresAt: s.authorizationExpiresAt! };
    default:
      return { kind: 'active' };
  }
}

/** What the workflow's messages and its clock have brought since it last acted. */
export interface Wake {
  now: number;
  revoke: RevokeRequest | null;
  /** The authorization request whose callback arrived. */
  callback: string | null;
  stepUp: string[] | null;
  refreshRequested: boolean;
}

/** The next step, in the workflow's words. */
export type Step =
  | { do: 'revoke_and_end'; request: RevokeRequest }
  | { do: 'end'; status: 'revoked' | 'authorization_timed_out' | 'expired'; reason: string }
  | { do: 'exchange_code' }
  | { do: 'drop_step_up' }
  | { do: 'begin_step_up'; scopes: string[] }
  | { do: 'refresh' }
  | { do: 'warn_expiring'; warning: ExpiringWarning }
  | { do: 'wait' };

/** A `credential.expiring` warning: what ends, when, and when to say so. */
export interface ExpiringWarning {
  reason: 'ttl' | 'refresh_token';
  expiresAt: number;
  at: number;
}

export interface LifecycleOptions {
  /**
   * A step-up keeps the current token refreshed, and held to its TTL, while it waits for the user. Histories from
   * before that behaviour (the `refresh-during-step-up` patch) wait for the user only.
   */
  tendWhileSteppingUp: boolean;
  /**
   * Warn before the credential ends (`credential.expiring`): the lead time and the TTL it is measured against.
   * Null for histories from before warnings (the `expiring-warnings` patch).
   */
  warnExpiring?: { leadMs: number; ttlMs: number } | null;
}

const waitingForUser = (stage: Stage): stage is Extract<Stage, { expiresAt: number }> =>
  stage.kind === 'awaiting_consent' || stage.kind === 'stepping_up';

/** A refresh the agent asked for, unless the provider asked us to wait (Retry-After) and that time has not come. */
export function requestedRefreshNow(s: CredentialState, wake: Wake): boolean {
  return wake.refreshRequested && !(s.retryNotBefore && wake.now < s.retryNotBefore);
}

/** Whether a stage's wait ends before its timer: a message that needs acting on now. */
export function interrupts(s: CredentialState, wake: Wake, opts: LifecycleOptions): boolean {
  const stage = stageOf(s);
  if (waitingForUser(stage)) {
    const tend = stage.kind === 'stepping_up' && opts.tendWhileSteppingUp;
    return wake.callback !== null || wake.revoke !== null || (tend && requestedRefreshNow(s, wake));
  }
  return wake.revoke !== null || requestedRefreshNow(s, wake) || wake.stepUp !== null;
}

/** When a stage's wait ends by itself (epoch ms). */
export function wakeAt(s: CredentialState, wake: Wake, opts: LifecycleOptions): number {
  const stage = stageOf(s);
  if (waitingForUser(stage)) {
    const tend = stage.kind === 'stepping_up' && opts.tendWhileSteppingUp;
    return tend ? Math.min(stage.expiresAt, nextWake(s.refreshAt, s.ttlExpiresAt!), warningAt(s, opts)) : stage.expiresAt;
  }
  // A refresh the agent asked for while the provider said "not yet" happens the moment it allows.
  const deferredUntil = wake.refreshRequested && s.retryNotBefore ? s.retryNotBefore : Infinity;
  return Math.min(nextWake(s.refreshAt, s.ttlExpiresAt!), deferredUntil, warningAt(s, opts));
}

/**
 * The next `credential.expiring` warning not yet sent: before the TTL, and before the refresh token dies where
 * that comes first. The lead is at most half the life it warns about (a one-hour credential is not warned at birth).
 */
export function nextWarning(s: CredentialState, opts: LifecycleOptions): ExpiringWarning | null {
  const w = opts.warnExpiring;
  if (!w || s.ttlExpiresAt === null) return null;
  const warned = new Set(s.warned ?? []);
  const candidates: ExpiringWarning[] = [];
  if (!warned.has(warningKey('ttl', s.ttlExpiresAt)))
    candidates.push({ reason: 'ttl', expiresAt: s.ttlExpiresAt, at: s.ttlExpiresAt - Math.min(w.leadMs, w.ttlMs / 2) });
  const dies = s.refreshExpiresAt ?? null;
  if (dies !== null && s.hasRefreshToken && dies < s.ttlExpiresAt && !warned.has(warningKey('refresh_token', dies))) {
    // Measured from when this expiry was set: a sliding window renewed at every refresh never comes due.
    const life = Math.max(0, dies - (s.refreshIssuedAt ?? s.acquiredAt ?? dies));
    candidates.push({ reason: 'refresh_token', expiresAt: dies, at: dies - Math.min(w.leadMs, life / 2) });
  }
  return candidates.sort((a, b) => a.at - b.at)[0] ?? null;
}

/** What `warned` records for a warning: its reason and the end it warned of (a new end is warned of again). */
export function warningKey(reason: ExpiringWarning['reason'], expiresAt: number): string {
  return `${reason}:${expiresAt}`;
}

function warningAt(s: CredentialState, opts: LifecycleOptions): number {
  return nextWarning(s, opts)?.at ?? Infinity;
}

/** The current credential's own clock: its TTL ends it, a due or requested refresh renews it, an end ahead is told. */
function tendCurrent(s: CredentialState, wake: Wake, opts: LifecycleOptions): Step | null {
  if (wake.now >= s.ttlExpiresAt!) return { do: 'end', status: 'expired', reason: 'the credential reached its time to live' };
  if (requestedRefreshNow(s, wake) || (s.refreshAt !== null && wake.now >= s.refreshAt)) return { do: 'refresh' };
  const warning = nextWarning(s, opts);
  if (warning && wake.now >= warning.at) return { do: 'warn_expiring', warning };
  return null;
}

/** The one step to take after a wait, given what woke the workflow. */
export function decide(s: CredentialState, wake: Wake, opts: LifecycleOptions): Step {
  const stage = stageOf(s);
  if (stage.kind === 'ended' || stage.kind === 'starting' || stage.kind === 'refreshing') return { do: 'wait' };
  if (waitingForUser(stage)) {
    const steppingUp = stage.kind === 'stepping_up';
    if (wake.revoke) {
      // A step-up waits beside a live credential: revoking ends that credential at the provider too.
      return steppingUp ? { do: 'revoke_and_end', request: wake.revoke } : { do: 'end', status: 'revoked', reason: revokedBy(wake.revoke) };
    }
    if (wake.callback !== null) return { do: 'exchange_code' };
    if (!(steppingUp && opts.tendWhileSteppingUp)) {
      // Timed out. A step-up the user never completed leaves the credential as it was.
      return steppingUp
        ? { do: 'drop_step_up' }
        : { do: 'end', status: 'authorization_timed_out', reason: 'the user did not complete the authorization in time' };
    }
    return tendCurrent(s, wake, opts) ?? (wake.now >= stage.expiresAt ? { do: 'drop_step_up' } : { do: 'wait' });
  }
  if (wake.revoke) return { do: 'revoke_and_end', request: wake.revoke };
  if (wake.stepUp) return { do: 'begin_step_up', scopes: wake.stepUp };
  return tendCurrent(s, wake, opts) ?? { do: 'wait' };
}

export function revokedBy(request: RevokeRequest): string {
  return `revoked by ${request.actor}: ${request.reason}`;
}

/** Continue-as-new when the server suggests it or this run has done its share of refreshes (history stays short). */
export function shouldContinueAsNew(s: CredentialState, opts: { suggested: boolean; maxCyclesPerRun: number }): boolean {
  return opts.suggested || s.cyclesThisRun >= opts.maxCyclesPerRun;
}

/** …once nothing is pending that the next run would not know about. */
export function mayContinueAsNew(wake: Pick<Wake, 'revoke' | 'refreshRequested'>): boolean {
  return !wake.revoke && !wake.refreshRequested;
}

/** The state after tokens arrived: what they are, and when to refresh them (without a refresh token: at expiry, to ask the user again). */
export function withTokens(meta: TokenMetadata, opts: { now: number; skewMs: number; random: () => number }): Partial<CredentialState> {
  return {
    generation: meta.generation,
    acquiredAt: meta.acquiredAt,
    accessExpiresAt: meta.accessExpiresAt,
    ttlExpiresAt: meta.ttlExpiresAt,
    hasRefreshToken: meta.hasRefreshToken,
    scope: meta.scope,
    refreshExpiresAt: meta.refreshExpiresAt ?? null,
    failedRefreshes: 0,
    refreshAt: meta.hasRefreshToken
      ? planRefreshAt({ acquiredAt: opts.now, accessExpiresAt: meta.accessExpiresAt, skewMs: opts.skewMs, random: opts.random() })
      : meta.accessExpiresAt,
  };
}

/**
 * After a refresh that failed for a transient reason: the current token is still served, and the next try comes
 * soon, never past its expiry, and not before the provider said (Retry-After; histories from before carry none).
 */
export function afterFailedRefresh(s: CredentialState, opts: { now: number; retryAfterMs: number }): Partial<CredentialState> {
  const failedRefreshes = s.failedRefreshes + 1;
  const planned = planRefreshRetryAt(opts.now, s.accessExpiresAt, failedRefreshes);
  if (!opts.retryAfterMs) return { failedRefreshes, refreshAt: planned };
  const retryNotBefore = opts.now + opts.retryAfterMs;
  return { failedRefreshes, refreshAt: Math.max(planned, retryNotBefore), retryNotBefore };
}

/**
 * A token the broker obtains without a browser (machine access, a user's exchanged identity) could not be obtained:
 * a first attempt that fails ends the credential (the agent hears why), and so does a refused grant; the user's
 * identity having expired ends it only once the token it still holds has expired too (a fresher identity presented
 * meanwhile renews it); anything else keeps the current token and tries again (afterFailedRefresh's timing).
 */
export function afterFailedAcquire(
  s: CredentialState,
  failure: { code: string; permanent: boolean; now: number },
): 'retry' | { end: Phase } {
  if (s.phase === 'starting') return { end: 'authorization_failed' };
  if (failure.code === 'identity_expired')
    return s.accessExpiresAt !== null && s.accessExpiresAt > failure.now ? 'retry' : { end: 'expired' };
  return failure.permanent ? { end: 'authorization_failed' } : 'retry';
}
