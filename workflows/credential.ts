import {
  ApplicationFailure,
  allHandlersFinished,
  condition,
  log,
  makeContinueAsNewFunc,
  patched,
  proxyActivities,
  setHandler,
  uuid4,
  workflowInfo,
} from '@temporalio/workflow';
import type { createActivities, TokenMetadata } from '../activities/index.js';
import { isTerminal } from '../lib/domain.js';
import {
  callbackReceivedSignal,
  ensureAuthorizationUpdate,
  MAX_STEP_UPS,
  refreshNowUpdate,
  revokeUpdate,
  statusQuery,
  stepUpUpdate,
  UPDATE_REJECTIONS,
  type CredentialState,
  type CredentialView,
  type CredentialWorkflowInput,
  type Phase,
  type RevokeRequest,
} from './messages.js';
import { failureCode, isPermanent, retryAfterMs } from './failures.js';
import { HOLDS_TOKENS } from './options.js';
import { DEFAULT_MAX_CYCLES_PER_RUN, initialState, setPhase, view } from './state.js';
import { nextWake, planRefreshAt, planRefreshRetryAt } from './schedule.js';

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

/** An update refused by its validator, with a type the client switches on (never recorded in history). */
function rejected(type: string, message: string): ApplicationFailure {
  return ApplicationFailure.create({ type, message, nonRetryable: true });
}

/** One (agent, user, tool) authorization, from the user's consent to its end. The only writer of its credential. */
export async function credentialWorkflow(input: CredentialWorkflowInput): Promise<CredentialView> {
  const s: CredentialState = input.state ?? initialState({ authorizationRequest: true });
  const owner = input.owner;
  // Set by handlers, read by the main loop (an object, so the compiler does not narrow them away).
  const inbox: {
    callback: string | null;
    revoke: RevokeRequest | null;
    refreshRequested: boolean;
    refreshAttempts: number;
    stepUp: string[] | null;
    stepUpsBegun: number;
  } = {
    callback: null,
    revoke: null,
    refreshRequested: false,
    refreshAttempts: 0,
    stepUp: null,
    stepUpsBegun: 0,
  };

  setHandler(statusQuery, () => view(s));
  setHandler(callbackReceivedSignal, ({ authorizationRequestId }) => {
    // A step-up's consent may arrive while the current token is being refreshed.
    if (
      (s.phase === 'awaiting_authorization' || (s.stepUpPending && s.phase === 'refreshing')) &&
      authorizationRequestId === s.authorizationRequestId
    ) {
      inbox.callback = authorizationRequestId;
    }
  });
  setHandler(ensureAuthorizationUpdate, async () => {
    await condition(() => s.phase !== 'starting' && s.phase !== 'refreshing' && inbox.callback === null);
    return view(s);
  });
  setHandler(
    refreshNowUpdate,
    async () => {
      const before = inbox.refreshAttempts;
      inbox.refreshRequested = true;
      await condition(() => inbox.refreshAttempts > before || isTerminal(s.phase));
      return view(s);
    },
    {
      validator: () => {
        // Active, or still served while a step-up waits for the user.
        const serving = s.phase === 'active' || s.phase === 'refreshing' || (s.stepUpPending && s.phase === 'awaiting_authorization');
        if (!serving) throw rejected(UPDATE_REJECTIONS.notServing, `credential is ${s.phase}, not active`);
      },
    },
  );
  setHandler(
    stepUpUpdate,
    async ({ scopes }) => {
      // One step-up at a time: while one waits for the user, its link is the answer.
      if (s.stepUpPending) return view(s);
      const before = inbox.stepUpsBegun;
      inbox.stepUp = [...new Set([...(inbox.stepUp ?? []), ...scopes])];
      await condition(() => inbox.stepUpsBegun > before || isTerminal(s.phase));
      return view(s);
    },
    {
      validator: ({ scopes }) => {
        if ((s.stepUps ?? 0) >= MAX_STEP_UPS && !s.stepUpPending)
          throw rejected(UPDATE_REJECTIONS.stepUpLimit, 'the step-up limit is reached');
        if (s.phase !== 'active' && s.phase !== 'refreshing' && !s.stepUpPending)
          throw rejected(UPDATE_REJECTIONS.notServing, `credential is ${s.phase}, not active`);
        if (!Array.isArray(scopes) || scopes.length === 0) throw rejected(UPDATE_REJECTIONS.invalidArguments, 'no scopes to add');
      },
    },
  );
  setHandler(revokeUpdate, async (request) => {
    inbox.revoke ??= request;
    await condition(() => isTerminal(s.phase));
    return view(s);
  });

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
    if (s.phase === 'awaiting_authorization') {
      // While a step-up waits for the user, the current credential is still served: keep refreshing it and
      // keep its time to live (histories from before this change waited for the user only).
      const keepCurrent = s.stepUpPending === true && patched('refresh-during-step-up');
      const wakeAt = keepCurrent ? Math.min(s.authorizationExpiresAt!, nextWake(s.refreshAt, s.ttlExpiresAt!)) : s.authorizationExpiresAt!;
      await condition(
        () => inbox.callback !== null || inbox.revoke !== null || (keepCurrent && requestedRefreshNow()),
        Math.max(0, wakeAt - Date.now()),
      );
      if (inbox.revoke) {
        if (s.stepUpPending) await revoke(inbox.revoke);
        else await end('revoked', `revoked by ${inbox.revoke.actor}: ${inbox.revoke.reason}`);
      } else if (inbox.callback !== null) {
        await completeAuthorization();
      } else if (!keepCurrent) {
        // Timed out. A step-up the user never completed leaves the credential as it was.
        if (s.stepUpPending) backToActive();
        else await end('authorization_timed_out', 'the user did not complete the authorization in time');
      } else if (!(await tendCurrent()) && Date.now() >= s.authorizationExpiresAt!) {
        backToActive();
      }
      continue;
    }

    // Active: sleep until the next refresh, the end of the TTL, or a message.
    if (workflowInfo().continueAsNewSuggested || s.cyclesThisRun >= (input.maxCyclesPerRun ?? DEFAULT_MAX_CYCLES_PER_RUN)) {
      await condition(allHandlersFinished);
      if (!inbox.revoke && !inbox.refreshRequested) {
        const next = makeContinueAsNewFunc<typeof credentialWorkflow>({
          typedSearchAttributes: workflowInfo().typedSearchAttributes,
        });
        return await next({ ...input, state: { ...s, cyclesThisRun: 0 } });
      }
    }
    // A refresh the agent asked for while the provider said "not yet" happens the moment it allows.
    const deferredUntil = inbox.refreshRequested && s.retryNotBefore ? s.retryNotBefore : Infinity;
    const wakeAt = Math.min(nextWake(s.refreshAt, s.ttlExpiresAt!), deferredUntil);
    await condition(() => inbox.revoke !== null || requestedRefreshNow() || inbox.stepUp !== null, Math.max(0, wakeAt - Date.now()));
    if (inbox.revoke) {
      await revoke(inbox.revoke);
    } else if (inbox.stepUp) {
      await beginStepUp(inbox.stepUp);
    } else {
      await tendCurrent();
    }
  }

  await condition(allHandlersFinished);
  return view(s);

  /** The current credential's own clock: its TTL ends it, a due or requested refresh renews it. True if either did. */
  async function tendCurrent(): Promise<boolean> {
    if (Date.now() >= s.ttlExpiresAt!) {
      await end('expired', 'the credential reached its time to live');
      return true;
    }
    if (requestedRefreshNow() || (s.refreshAt !== null && Date.now() >= s.refreshAt)) {
      inbox.refreshRequested = false;
      await refresh();
      inbox.refreshAttempts++;
      return true;
    }
    return false;
  }

  /** A refresh the agent asked for, unless the provider asked us to wait (Retry-After) and the time has not come. */
  function requestedRefreshNow(): boolean {
    return inbox.refreshRequested && !(s.retryNotBefore && Date.now() < s.retryNotBefore);
  }

  function applyTokens(meta: TokenMetadata): void {
    s.generation = meta.generation;
    s.acquiredAt = meta.acquiredAt;
    s.accessExpiresAt = meta.accessExpiresAt;
    s.ttlExpiresAt = meta.ttlExpiresAt;
    s.hasRefreshToken = meta.hasRefreshToken;
    s.scope = meta.scope;
    s.failedRefreshes = 0;
    s.refreshAt = s.hasRefreshToken
      ? planRefreshAt({
          acquiredAt: Date.now(),
          accessExpiresAt: meta.accessExpiresAt,
          skewMs: input.refreshSkewSeconds * 1000,
          random: Math.random(),
        })
      : // Without a refresh token nothing can be renewed: wake at expiry to ask the user again.
        meta.accessExpiresAt;
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
    try {
      const meta = await authorization.exchangeCode({
        credentialId: s.credentialId,
        authorizationRequestId: inbox.callback!,
        expectedGeneration: s.generation,
        ttlSeconds: input.ttlSeconds,
      });
      applyTokens(meta);
      inbox.callback = null;
      backToActive();
    } catch (err) {
      inbox.callback = null;
      const code = failureCode(err);
      log.warn('authorization failed', { code });
      // A declined or failed step-up keeps the credential that was already there.
      if (s.stepUpPending) backToActive();
      else await end('authorization_failed', code);
    }
  }

  async function refresh(): Promise<void> {
    if (!s.hasRefreshToken) {
      await end('reauthorization_required', 'the access token expired and the provider gave no refresh token');
      return;
    }
    setPhase(s, 'refreshing');
    try {
      applyTokens(await refreshing.refreshCredential({ credentialId: s.credentialId, expectedGeneration: s.generation }));
      if (s.retryNotBefore) s.retryNotBefore = null;
      s.cyclesThisRun++;
      setPhase(s, resumePhase());
    } catch (err) {
      const code = failureCode(err);
      if (isPermanent(err)) {
        await end('reauthorization_required', code);
        return;
      }
      // The provider is unwell: keep serving the current token and try again before it expires.
      s.failedRefreshes++;
      s.refreshAt = planRefreshRetryAt(Date.now(), s.accessExpiresAt, s.failedRefreshes);
      // The provider said when to come back: not before (histories from before never carry a Retry-After).
      const wait = retryAfterMs(err);
      if (wait) {
        s.retryNotBefore = Date.now() + wait;
        s.refreshAt = Math.max(s.refreshAt, s.retryNotBefore);
      }
      log.warn('refresh failed, will retry', { code, failedRefreshes: s.failedRefreshes });
      setPhase(s, resumePhase());
    }
  }

  /** After a refresh: back to waiting for the user when a step-up is pending, else active. */
  function resumePhase(): Phase {
    return s.stepUpPending ? 'awaiting_authorization' : 'active';
  }

  async function revoke(request: RevokeRequest): Promise<void> {
    try {
      await bookkeeping.revokeAtProvider({ credentialId: s.credentialId });
    } catch (err) {
      // Revocation at the provider failed for good: the credential still ends here, and the audit says so.
      log.warn('revocation at provider failed', { code: failureCode(err) });
    }
    await end('revoked', `revoked by ${request.actor}: ${request.reason}`);
  }

  async function end(phase: Phase, reason: string): Promise<void> {
    await bookkeeping.endCredential({ credentialId: s.credentialId, status: phase, reason });
    s.endReason = reason;
    s.refreshAt = null;
    s.authorizationUrl = null;
    setPhase(s, phase);
  }
}
