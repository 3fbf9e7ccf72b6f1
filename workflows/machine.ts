import {
  allHandlersFinished,
  condition,
  makeContinueAsNewFunc,
  patched,
  proxyActivities,
  setHandler,
  workflowInfo,
} from '@temporalio/workflow';
import type { createActivities, TokenMetadata } from '../activities/index.js';
import { isoTime, isTerminal, MACHINE_USER, type LifecycleEvent, type RevocationOutcome } from '../lib/domain.js';
import { announce, ENDED_EVENTS, revokedData } from './events.js';
import {
  ensureAuthorizationUpdate,
  revokeUpdate,
  statusQuery,
  type CredentialState,
  type CredentialView,
  type MachineWorkflowInput,
  type Phase,
  type RevokeRequest,
} from './messages.js';
import { failureCode, isPermanent } from './failures.js';
import { afterFailedAcquire, revokedBy, shouldContinueAsNew } from './lifecycle.js';
import { HOLDS_TOKENS } from './options.js';
import { planRefreshAt, planRefreshRetryAt } from './schedule.js';
import { DEFAULT_MAX_CYCLES_PER_RUN, initialState, setPhase, view } from './state.js';

type Activities = ReturnType<typeof createActivities>;
const retry = { initialInterval: '1s', backoffCoefficient: 2, maximumInterval: '30s', maximumAttempts: 5 } as const;
const acts = proxyActivities<Activities>({ startToCloseTimeout: '20s', retry });
const tokens = proxyActivities<Activities>({ ...HOLDS_TOKENS, retry });

/**
 * A token the broker obtains without a browser, kept valid by obtaining a new one before expiry, stored encrypted
 * like any credential; the only writer of its row. The tool's own machine token for one agent (client credentials),
 * or one user's token from their exchanged enterprise identity (ID-JAG, token exchange) — no redirect either way.
 */
export async function machineCredentialWorkflow(input: MachineWorkflowInput): Promise<CredentialView> {
  const s: CredentialState = input.state ?? initialState({ authorizationRequest: false });
  const inbox: { revoke: RevokeRequest | null; attempts: number } = { revoke: null, attempts: 0 };
  // A user's credential (an exchanged enterprise identity), not the machine's: revoked at the provider too, and its
  // agent told what happened (webhooks). Machine histories, recorded before these existed, never take these paths.
  const usersOwn = input.owner.userId !== MACHINE_USER;
  setHandler(statusQuery, () => view(s));
  setHandler(ensureAuthorizationUpdate, async () => {
    await condition(() => s.phase !== 'starting' || inbox.attempts > 0);
    return view(s);
  });
  setHandler(revokeUpdate, async (request) => {
    inbox.revoke ??= request;
    await condition(() => isTerminal(s.phase));
    return view(s);
  });

  while (!isTerminal(s.phase)) {
    if (s.phase === 'starting' || (s.refreshAt !== null && Date.now() >= s.refreshAt)) {
      await acquire();
      continue;
    }
    if (
      shouldContinueAsNew(s, {
        suggested: workflowInfo().continueAsNewSuggested,
        maxCyclesPerRun: input.maxCyclesPerRun ?? DEFAULT_MAX_CYCLES_PER_RUN,
      })
    ) {
      await condition(allHandlersFinished);
      if (!inbox.revoke) {
        return await makeContinueAsNewFunc<typeof machineCredentialWorkflow>({
          typedSearchAttributes: workflowInfo().typedSearchAttributes,
        })({ ...input, state: { ...s, cyclesThisRun: 0 } });
      }
    }
    const wait = s.refreshAt === null ? undefined : Math.max(0, s.refreshAt - Date.now());
    await (wait === undefined ? condition(() => inbox.revoke !== null) : condition(() => inbox.revoke !== null, wait));
    if (inbox.revoke) {
      const request = inbox.revoke;
      const receipt = usersOwn && patched('enterprise-revocation') ? { ...revokedData(request), revocation: await revokeAtProvider() } : {};
      await end('revoked', revokedBy(request), receipt);
    }
  }
  await condition(allHandlersFinished);
  return view(s);

  async function acquire(): Promise<void> {
    try {
      apply(
        await tokens.acquireMachineToken({
          owner: input.owner,
          workflowId: workflowInfo().workflowId,
          credentialId: s.credentialId,
          expectedGeneration: s.generation,
        }),
      );
      const first = s.phase === 'starting';
      setPhase(s, 'active');
      s.cyclesThisRun++;
      if (usersOwn && first)
        await announce(input.owner, s.credentialId, 'credential.active', { scope: s.scope, expires_at: isoTime(s.accessExpiresAt) });
    } catch (err) {
      const next = afterFailedAcquire(s, { code: failureCode(err), permanent: isPermanent(err), now: Date.now() });
      if (next === 'retry') {
        // The server is unwell (or the user's identity ran out): the current token is served until it expires; try
        // again before that.
        s.failedRefreshes++;
        s.refreshAt = planRefreshRetryAt(Date.now(), s.accessExpiresAt, s.failedRefreshes);
      } else {
        await end(next.end, failureCode(err));
      }
    } finally {
      inbox.attempts++;
    }
  }

  function apply(meta: TokenMetadata): void {
    s.generation = meta.generation;
    s.acquiredAt = meta.acquiredAt;
    s.accessExpiresAt = meta.accessExpiresAt;
    s.scope = meta.scope;
    s.failedRefreshes = 0;
    s.refreshAt = planRefreshAt({
      acquiredAt: Date.now(),
      accessExpiresAt: meta.accessExpiresAt,
      skewMs: input.refreshSkewSeconds * 1000,
      random: Math.random(),
    });
  }

  /** What the provider said to revoking the tokens (RFC 7009); the credential ends here whatever it said. */
  async function revokeAtProvider(): Promise<RevocationOutcome> {
    try {
      s.revocation = { outcome: (await acts.revokeAtProvider({ credentialId: s.credentialId })).outcome };
    } catch (err) {
      s.revocation = { outcome: 'provider_failed', code: failureCode(err) };
    }
    return s.revocation.outcome;
  }

  async function end(phase: Phase, reason: string, data: LifecycleEvent['data'] = {}): Promise<void> {
    await acts.endCredential({ credentialId: s.credentialId, status: phase, reason });
    const type = ENDED_EVENTS[phase];
    if (usersOwn && type) await announce(input.owner, s.credentialId, type, { status: phase, reason, ...data });
    s.endReason = reason;
    s.refreshAt = null;
    setPhase(s, phase);
  }
}
