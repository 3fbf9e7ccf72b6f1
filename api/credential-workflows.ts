import { setTimeout as sleep } from 'node:timers/promises';
import {
  WithStartWorkflowOperation,
  WorkflowNotFoundError,
  WorkflowUpdateFailedError,
  WorkflowUpdateStage,
  type Client,
  type WorkflowUpdateHandle,
} from '@temporalio/client';
import { ApplicationFailure } from '@temporalio/common';
import {
  AgentIdKey,
  awaitConsentUpdate,
  CredentialStatusKey,
  deliverCallbackUpdate,
  ensureAuthorizationUpdate,
  refreshNowUpdate,
  revokeUpdate,
  statusQuery,
  stepUpUpdate,
  ToolIdKey,
  UPDATE_REJECTIONS,
  UserIdKey,
  type CallbackOutcome,
  type CredentialView,
  type CredentialWorkflowInput,
  type MachineWorkflowInput,
  type RevokeRequest,
} from '../workflows/messages.js';
import type { credentialWorkflow } from '../workflows/credential.js';
import { credentialWorkflowId, isTerminal, MACHINE_USER, machineWorkflowId, type CredentialOwner } from '../lib/domain.js';

export interface WorkflowSettings {
  taskQueue: string;
  secretsTtlSeconds: number;
  authorizationTimeoutSeconds: number;
  refreshSkewSeconds: number;
  expiringLeadSeconds?: number;
  maxCyclesPerRun?: number;
  /** Tools whose users' credentials come without consent (their identity exchanged): renewed like machine tokens. */
  exchangesIdentity?: (toolId: string) => boolean;
}

export class BrokerError extends Error {
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

/** How a delivered callback ended, as the page the user sees needs it. */
export type CallbackResult = 'connected' | 'refused' | 'account_mismatch' | 'pending' | 'closed';

/**
 * The API's requests to credential workflows (Temporal updates and queries): start or join an authorization,
 * refresh now, step up, revoke, deliver a callback, wait for consent. Validator refusals arrive as
 * ApplicationFailure types (UPDATE_REJECTIONS), never as message text.
 */
export class CredentialWorkflows {
  constructor(
    private readonly temporal: Client,
    private readonly settings: WorkflowSettings,
  ) {}

  /**
   * A credential no one needs to consent to — machine access, or a user's exchanged enterprise identity: a token an
   * activity obtains and renews (the machine workflow), no browser in between.
   */
  obtainsItself(owner: CredentialOwner): boolean {
    return owner.userId === MACHINE_USER || (this.settings.exchangesIdentity?.(owner.toolId) ?? false);
  }

  /** Starts the credential's workflow if none runs, and returns what the agent should do next. */
  async ensure(owner: CredentialOwner): Promise<CredentialView> {
    const workflowId = workflowIdOf(owner);
    const machine = owner.userId === MACHINE_USER;
    const obtained = this.obtainsItself(owner);
    const cycles = this.settings.maxCyclesPerRun ? { maxCyclesPerRun: this.settings.maxCyclesPerRun } : {};
    const input: CredentialWorkflowInput | MachineWorkflowInput = obtained
      ? { owner, refreshSkewSeconds: this.settings.refreshSkewSeconds, ...cycles }
      : {
          owner,
          ttlSeconds: this.settings.secretsTtlSeconds,
          authorizationTimeoutSeconds: this.settings.authorizationTimeoutSeconds,
          refreshSkewSeconds: this.settings.refreshSkewSeconds,
          ...(this.settings.expiringLeadSeconds ? { expiringLeadSeconds: this.settings.expiringLeadSeconds } : {}),
          ...cycles,
        };
    for (let attempt = 0; attempt < 5; attempt++) {
      const start = new WithStartWorkflowOperation<typeof credentialWorkflow>(
        obtained ? 'machineCredentialWorkflow' : 'credentialWorkflow',
        {
          workflowId,
          taskQueue: this.settings.taskQueue,
          args: [input as CredentialWorkflowInput],
          workflowIdConflictPolicy: 'USE_EXISTING',
          typedSearchAttributes: [
            { key: AgentIdKey, value: owner.agentId },
            { key: UserIdKey, value: owner.userId },
            { key: ToolIdKey, value: owner.toolId },
            { key: CredentialStatusKey, value: 'starting' },
          ],
          // What the Web UI's list and workflow page say this is (the phase is the workflow's current details).
          staticSummary: `${machine ? 'machine' : 'credential'} · ${owner.agentId} · ${machine ? '' : `${owner.userId} · `}${owner.toolId}`,
          staticDetails: `agent **${owner.agentId}**, user **${owner.userId}**, tool **${owner.toolId}**`,
        },
      );
      try {
        const view = await this.temporal.workflow.executeUpdateWithStart(ensureAuthorizationUpdate, {
          startWorkflowOperation: start,
        });
        // A failed authorization says why (the caller reports it); a run that is just ending otherwise
        // answers with its final phase, and the next attempt starts a fresh one.
        if (!isTerminal(view.phase) || view.phase === 'authorization_failed') return view;
      } catch (err) {
        if (!isClosedWorkflowError(err) || attempt === 4) throw err;
      }
      await sleep(100 * (attempt + 1));
    }
    throw new BrokerError('workflow_busy', 'the credential is changing state; try again');
  }

  async refreshNow(owner: CredentialOwner): Promise<CredentialView | null> {
    const handle = this.temporal.workflow.getHandle(workflowIdOf(owner));
    try {
      return await handle.executeUpdate(refreshNowUpdate);
    } catch (err) {
      if (isClosedWorkflowError(err) || isRejectedUpdate(err)) return null;
      throw err;
    }
  }

  async stepUp(owner: CredentialOwner, scopes: string[]): Promise<CredentialView | null> {
    const handle = this.temporal.workflow.getHandle(workflowIdOf(owner));
    try {
      return await handle.executeUpdate(stepUpUpdate, { args: [{ scopes }] });
    } catch (err) {
      if (rejectionOf(err) === UPDATE_REJECTIONS.stepUpLimit) {
        throw new BrokerError(
          'step_up_limit_reached',
          'this credential was already widened the maximum number of times; revoke it and authorize again',
        );
      }
      if (isClosedWorkflowError(err) || isRejectedUpdate(err)) return null;
      throw err;
    }
  }

  async revoke(owner: CredentialOwner, request: RevokeRequest): Promise<CredentialView | null> {
    const handle = this.temporal.workflow.getHandle(workflowIdOf(owner));
    try {
      return await handle.executeUpdate(revokeUpdate, { args: [request] });
    } catch (err) {
      if (isClosedWorkflowError(err)) return null;
      throw err;
    }
  }

  async query(owner: CredentialOwner): Promise<CredentialView | null> {
    try {
      return await this.temporal.workflow.getHandle(workflowIdOf(owner)).query(statusQuery);
    } catch (err) {
      if (isClosedWorkflowError(err)) return null;
      throw err;
    }
  }

  /**
   * Hands the callback to the workflow, which takes it for the code exchange (`closed`: it no longer waits for
   * this callback). The returned `outcome` waits up to `waitMs` for the exchange: the workflow answers when the
   * tokens are stored or the provider refused. Update id = request id: a retried delivery joins the first.
   */
  async deliverCallback(
    workflowId: string,
    authorizationRequestId: string,
  ): Promise<'closed' | { outcome: (waitMs: number) => Promise<CallbackResult> }> {
    let update: WorkflowUpdateHandle<CallbackOutcome>;
    try {
      update = await this.temporal.workflow.getHandle(workflowId).startUpdate(deliverCallbackUpdate, {
        args: [{ authorizationRequestId }],
        updateId: `callback:${authorizationRequestId}`,
        waitForStage: WorkflowUpdateStage.ACCEPTED,
      });
    } catch (err) {
      if (isClosedWorkflowError(err) || rejectionOf(err) === UPDATE_REJECTIONS.callbackNotExpected) return 'closed';
      throw err;
    }
    return {
      outcome: async (waitMs) => {
        const stop = new AbortController();
        const timer = setTimeout(() => stop.abort(), waitMs);
        try {
          const outcome = await this.temporal.withAbortSignal(stop.signal, () => update.result());
          return outcome.connected ? 'connected' : outcome.code === 'account_mismatch' ? 'account_mismatch' : 'refused';
        } catch (err) {
          // Still exchanging: the workflow goes on without us, and the page says so.
          if (stop.signal.aborted) return 'pending';
          throw err;
        } finally {
          clearTimeout(timer);
        }
      },
    };
  }

  /**
   * Resolves when the credential's first authorization stops waiting for the user. One update per credential
   * (its id is fixed), shared by every API process that waits; `signal` ends only this caller's wait — the
   * update itself holds no timer and ends with the authorization, so an abandoned wait costs nothing.
   */
  async awaitConsent(owner: CredentialOwner, credentialId: string, signal: AbortSignal): Promise<void> {
    const handle = this.temporal.workflow.getHandle(workflowIdOf(owner));
    await this.temporal.withAbortSignal(signal, async () => {
      try {
        const update = await handle.startUpdate(awaitConsentUpdate, {
          updateId: `await-consent:${credentialId}`,
          waitForStage: WorkflowUpdateStage.ACCEPTED,
        });
        await update.result();
      } catch (err) {
        if (!isClosedWorkflowError(err)) throw err;
      }
    });
  }
}

/** Delegated credentials have a workflow per (agent, user, tool); machine credentials one per (agent, tool). */
function workflowIdOf(owner: CredentialOwner): string {
  return owner.userId === MACHINE_USER ? machineWorkflowId(owner.agentId, owner.toolId) : credentialWorkflowId(owner);
}

function isClosedWorkflowError(err: unknown): boolean {
  if (err instanceof WorkflowNotFoundError) return true;
  const text = `${(err as Error)?.name} ${(err as Error)?.message} ${String((err as { cause?: unknown })?.cause ?? '')}`;
  return /workflow execution already completed|not found|WorkflowUpdateFailedError.*completed/i.test(text);
}

function isRejectedUpdate(err: unknown): boolean {
  return err instanceof WorkflowUpdateFailedError;
}

/** The type of the ApplicationFailure a validator refused an update with (see UPDATE_REJECTIONS). */
function rejectionOf(err: unknown): string | undefined {
  if (!(err instanceof WorkflowUpdateFailedError)) return undefined;
  return err.cause instanceof ApplicationFailure ? (err.cause.type ?? undefined) : undefined;
}
