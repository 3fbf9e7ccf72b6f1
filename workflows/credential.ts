import {
  allHandlersFinished,
  condition,
  log,
  makeContinueAsNewFunc,
  patched,
  proxyActivities,
  uuid4,
  workflowInfo,
} from '@temporalio/workflow';
import type { createActivities, TokenMetadata } from '../activities/index.js';
import { isoTime, isTerminal, type LifecycleEvent, type LifecycleEventType } from '../lib/domain.js';
import { type CredentialState, type CredentialView, type CredentialWorkflowInput, type Phase, type RevokeRequest } from './messages.js';
import { emptyInbox, registerHandlers } from './handlers.js';
import { failureCode, isPermanent, retryAfterMs } from './failures.js';
import { HOLDS_TOKENS } from './options.js';
import { DEFAULT_MAX_CYCLES_PER_RUN, initialState, setPhase, view } from './state.js';
import { announce, ENDED_EVENTS, revokedData } from './events.js';
import {
  afterFailedRefresh,
  decide,
  interrupts,
  warningKey,
  mayContinueAsNew,
  revokedBy,
  shouldContinueAsNew,
  wakeAt,
  withTokens,
  type Step,
  type Wake,
} from './lifecycle.js';

type Activities = ReturnType<typeof createActivities>;

const retry = { initialInterval: '1s', backoffCoefficient: 2, maximumInterval: '30s' } as const;
const authorization = proxyActivities<Activities>({
  ...HOLDS_TOKENS,
  retry: { ...retry, maximumAttempts: 8 },
});
// An agent is waiting on the answer: a few quick tries, then say why it failed.
const starting = proxyActivities<Activities>({
  startToCloseTimeout: '20s',
  retry: { ...retry, maximumInterval: '5s', maximumAttempts: 3 },
});
// While the provider is down the current token is still served; come back soon (or when it says, Retry-After).
const refreshing = proxyActivities<Activities>({
  ...HOLDS_TOKENS,
  retry: { ...retry, maximumInterval: '5s', maximumAttempts: 6 },
});
const bookkeeping = proxyActivities<Activities>({
  startToCloseTimeout: '20s',
  retry: { ...retry, maximumInterval: '60s' },
});

/** One (agent, user, tool) authorization, from the user's consent to its end. The only writer of its credential. */
export async function credentialWorkflow(input: CredentialWorkflowInput): Promise<CredentialView> {
  const s: CredentialState = input.state ?? initialState({ authorizationRequest: true });
  const owner = input.owner;
  // Set by handlers, read by the main loop (an object, so the compiler does not narrow them away).
  const inbox = emptyInbox();
  // Messages become entries in the inbox; validators refuse with types the client switches on.
  registerHandlers(s, inbox);

  if (s.phase === 'starting') {
    try {
      const begun = await starting.beginAuthorization({
        owner,
        workflowId: workflowInfo().workflowId,
        credentialId: s.credentialId,
        authorizationRequestId: s.authorizationRequestId!,
        authorizationTimeoutSeconds: input.authorizationTimeoutSeconds,
      });
      s.authorizationUrl = begun.authorizationUrl;
      s.authorizationExpiresAt = begun.authorizationExpiresAt;
      setPhase(s, 'awaiting_authorization');
    } catch (err) {
      // Discovery, registration or configuration failed: the agent hears why at once.
      await end('authorization_failed', failureCode(err));
    }
  }

  while (!isTerminal(s.phase)) {
    // While a step-up waits for the user, the current credential is still served: keep refreshing it and keep its
    // time to live (histories from before this change waited for the user only).
    const waitingForUser = s.phase === 'awaiting_authorization';
    const opts = {
      tendWhileSteppingUp: waitingForUser && s.stepUpPending === true && patched('refresh-during-step-up'),
      warnExpiring:
        s.phase !== 'starting' && patched('expiring-warnings')
          ? { leadMs: (input.expiringLeadSeconds ?? DEFAULT_EXPIRING_LEAD_SECONDS) * 1000, ttlMs: input.ttlSeconds * 1000 }
          : null,
    };
    if (
      !waitingForUser &&
      shouldContinueAsNew(s, {
        suggested: workflowInfo().continueAsNewSuggested,
        maxCyclesPerRun: input.maxCyclesPerRun ?? DEFAULT_MAX_CYCLES_PER_RUN,
      })
    ) {
      await condition(allHandlersFinished);
      if (mayContinueAsNew(inbox)) {
        const next = makeContinueAsNewFunc<typeof credentialWorkflow>({ typedSearchAttributes: workflowInfo().typedSearchAttributes });
        return await next({ ...input, state: { ...s, cyclesThisRun: 0 } });
      }
    }
    // Sleep until the stage's own clock (consent deadline, refresh, TTL) or a message, then take one step.
    await condition(() => interrupts(s, wake(), opts), Math.max(0, wakeAt(s, wake(), opts) - Date.now()));
    await take(decide(s, wake(), opts));
  }

  await condition(allHandlersFinished);
  return view(s);

  /** What the messages and the clock have brought: the lifecycle's input. */
  function wake(): Wake {
    return {
      now: Date.now(),
      revoke: inbox.revoke,
      callback: inbox.callback,
      stepUp: inbox.stepUp,
      refreshRequested: inbox.refreshRequested,
    };
  }

  /** Runs one step the lifecycle decided on. */
  async function take(step: Step): Promise<void> {
    switch (step.do) {
      case 'revoke_and_end':
        return revoke(step.request);
      case 'end':
        // Revoked while waiting for the user: there were no tokens to revoke.
        if (step.status === 'revoked') s.revocation = { outcome: 'nothing_to_revoke' };
        return end(step.status, step.reason, step.status === 'revoked' && inbox.revoke ? revokedData(inbox.revoke) : {});
      case 'exchange_code':
        return completeAuthorization();
      case 'drop_step_up':
        return backToActive();
      case 'begin_step_up':
        return beginStepUp(step.scopes);
      case 'refresh':
        inbox.refreshRequested = false;
        await refresh();
        inbox.refreshAttempts++;
        return;
      case 'warn_expiring':
        s.warned = [...(s.warned ?? []), warningKey(step.warning.reason, step.warning.expiresAt)].slice(-8);
        return tell('credential.expiring', { reason: step.warning.reason, expires_at: isoTime(step.warning.expiresAt) });
      case 'wait':
        return;
    }
  }

  function applyTokens(meta: TokenMetadata): void {
    const before = s.refreshExpiresAt ?? null;
    Object.assign(s, withTokens(meta, { now: Date.now(), skewMs: input.refreshSkewSeconds * 1000, random: Math.random }));
    if ((s.refreshExpiresAt ?? null) !== before) s.refreshIssuedAt = Date.now();
  }

  async function beginStepUp(scopes: string[]): Promise<void> {
    inbox.stepUp = null;
    s.extraScopes = [...new Set([...(s.extraScopes ?? []), ...scopes])];
    s.stepUps = (s.stepUps ?? 0) + 1;
    s.authorizationRequestId = uuid4();
    try {
      const begun = await starting.beginAuthorization({
        owner,
        workflowId: workflowInfo().workflowId,
        credentialId: s.credentialId,
        authorizationRequestId: s.authorizationRequestId,
        authorizationTimeoutSeconds: input.authorizationTimeoutSeconds,
        extraScopes: s.extraScopes,
      });
      s.authorizationUrl = begun.authorizationUrl;
      s.authorizationExpiresAt = begun.authorizationExpiresAt;
      s.stepUpPending = true;
      setPhase(s, 'awaiting_authorization');
    } catch (err) {
      log.warn('step-up could not start', { code: failureCode(err) });
    } finally {
      inbox.stepUpsBegun++;
    }
  }

  function backToActive(): void {
    s.stepUpPending = false;
    s.authorizationUrl = null;
    s.authorizationExpiresAt = null;
    setPhase(s, 'active');
  }

  async function completeAuthorization(): Promise<void> {
    const steppingUp = s.stepUpPending === true;
    try {
      const meta = await authorization.exchangeCode({
        credentialId: s.credentialId,
        authorizationRequestId: inbox.callback!,
        expectedGeneration: s.generation,
        ttlSeconds: input.ttlSeconds,
      });
      applyTokens(meta);
      inbox.callback = null;
      inbox.lastExchangeConnected = true;
      backToActive();
      await tell('credential.active', {
        scope: s.scope,
        expires_at: isoTime(s.accessExpiresAt),
        ttl_expires_at: isoTime(s.ttlExpiresAt),
        step_up: steppingUp,
      });
    } catch (err) {
      inbox.callback = null;
      inbox.lastExchangeConnected = false;
      const code = failureCode(err);
      inbox.lastExchangeCode = code;
      log.warn('authorization failed', { code });
      // A declined or failed step-up keeps the credential that was already there.
      if (s.stepUpPending) {
        backToActive();
        await tell('authorization.failed', { status: 'active', reason: code, step_up: true });
      } else await end('authorization_failed', code);
    }
    // Only now is the outcome visible everywhere (row, phase): deliverCallback may answer.
    inbox.exchanges++;
  }

  async function refresh(): Promise<void> {
    if (!s.hasRefreshToken) {
      await end('reauthorization_required', 'the access token expired and the provider gave no refresh token');
      return;
    }
    setPhase(s, 'refreshing');
    const wasFailing = s.failedRefreshes >= REFRESH_FAILING_AFTER;
    try {
      applyTokens(await refreshing.refreshCredential({ credentialId: s.credentialId, expectedGeneration: s.generation }));
      if (s.retryNotBefore) s.retryNotBefore = null;
      s.cyclesThisRun++;
      setPhase(s, resumePhase());
      if (wasFailing) await tell('credential.recovered', { expires_at: isoTime(s.accessExpiresAt) });
    } catch (err) {
      const code = failureCode(err);
      if (isPermanent(err)) {
        await end('reauthorization_required', code);
        return;
      }
      // The provider is unwell: keep serving the current token and try again before it expires.
      Object.assign(s, afterFailedRefresh(s, { now: Date.now(), retryAfterMs: retryAfterMs(err) }));
      log.warn('refresh failed, will retry', { code, failedRefreshes: s.failedRefreshes });
      setPhase(s, resumePhase());
      if (s.failedRefreshes === REFRESH_FAILING_AFTER) {
        await tell('credential.refresh_failing', { code, failed_refreshes: s.failedRefreshes, expires_at: isoTime(s.accessExpiresAt) });
      }
    }
  }

  /** After a refresh: back to waiting for the user when a step-up is pending, else active. */
  function resumePhase(): Phase {
    return s.stepUpPending ? 'awaiting_authorization' : 'active';
  }

  async function revoke(request: RevokeRequest): Promise<void> {
    try {
      const done = await bookkeeping.revokeAtProvider({ credentialId: s.credentialId });
      // Histories from before receipts carry only the flag.
      s.revocation = { outcome: done.outcome ?? (done.revokedAtProvider ? 'revoked_at_provider' : 'provider_has_no_revocation') };
    } catch (err) {
      // Revocation at the provider failed for good: the credential still ends here, and the audit says so.
      s.revocation = { outcome: 'provider_failed', code: failureCode(err) };
      log.warn('revocation at provider failed', { code: s.revocation.code });
    }
    await end('revoked', revokedBy(request), revokedData(request));
  }

  async function end(phase: Phase, reason: string, data: LifecycleEvent['data'] = {}): Promise<void> {
    // From here the row says ended while the phase does not yet (the event is told first): a request for the
    // credential waits for the end and then starts afresh. Histories from before events never waited.
    inbox.ending = patched('lifecycle-events');
    await bookkeeping.endCredential({ credentialId: s.credentialId, status: phase, reason });
    // Told before the phase turns: whoever waits on the end (a revoke) sees the workflow complete with it.
    const type = ENDED_EVENTS[phase];
    const receipt: LifecycleEvent['data'] = s.revocation ? { revocation: s.revocation.outcome } : {};
    if (type) await tell(type, { status: phase, reason, ...data, ...receipt });
    s.endReason = reason;
    s.refreshAt = null;
    s.authorizationUrl = null;
    setPhase(s, phase);
  }

  function tell(type: LifecycleEventType, data: LifecycleEvent['data']): Promise<void> {
    return announce(owner, s.credentialId, type, data);
  }
}

/** `credential.expiring` this long before the end, unless the workflow was told otherwise (at most half the life). */
const DEFAULT_EXPIRING_LEAD_SECONDS = 24 * 3600;

/** A transient refresh failure that outlasted its retries this many times in a row is worth telling the agent. */
const REFRESH_FAILING_AFTER = 1;
