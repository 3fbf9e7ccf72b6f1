import { setTimeout as sleep } from 'node:timers/promises';
import { WithStartWorkflowOperation, WorkflowNotFoundError, type Client } from '@temporalio/client';
import { ownerOf, secretContext } from '../activities/index.js';
import {
  AgentIdKey,
  callbackReceivedSignal,
  CredentialStatusKey,
  ensureAuthorizationUpdate,
  refreshNowUpdate,
  revokeUpdate,
  statusQuery,
  ToolIdKey,
  UserIdKey,
  type CredentialView,
  type CredentialWorkflowInput,
  type RevokeRequest,
} from '../workflows/messages.js';
import type { credentialWorkflow } from '../workflows/credential.js';
import { CredentialSchema, type Credential } from './db/entities.js';
import { fork, type Em, type Orm } from './db/orm.js';
import { credentialWorkflowId, isTerminal, type CredentialOwner } from './domain.js';
import type { Vault, VaultError } from './vault/crypto.js';

export interface BrokerSettings {
  taskQueue: string;
  secretsTtlSeconds: number;
  authorizationTimeoutSeconds: number;
  refreshSkewSeconds: number;
  maxCyclesPerRun?: number;
}

export interface ActiveCredential {
  credentialId: string;
  accessToken: string;
  tokenType: string;
  expiresAt: Date | null;
  scope: string | null;
}

/**
 * An access token this close to expiry is not handed out. Kept small: while a provider is down the current
 * token is the best there is, and it is served until it really expires.
 */
const MIN_REMAINING_MS = 1_000;

export class BrokerError extends Error {
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

/**
 * The agent-facing operations. Reads go to the database (a row read and a decrypt); Temporal is asked only
 * when something must happen: start an authorization, refresh early, revoke.
 */
export class CredentialBroker {
  constructor(
    private readonly orm: Orm,
    private readonly vault: Vault,
    private readonly temporal: Client,
    private readonly settings: BrokerSettings,
  ) {}

  /** The newest row of this owner, ended or not. */
  async latest(owner: CredentialOwner, em: Em = fork(this.orm)): Promise<Credential | null> {
    return em.findOne(CredentialSchema, { ...owner }, { orderBy: { createdAt: 'desc' } });
  }

  /** The hot path: a usable access token from the vault, or null. */
  async readActive(owner: CredentialOwner, em: Em = fork(this.orm)): Promise<ActiveCredential | null> {
    const row = await em.findOne(
      CredentialSchema,
      { ...owner, status: 'active', deletedAt: null },
      { orderBy: { createdAt: 'desc' } },
    );
    if (!row?.accessToken) return null;
    if (row.accessExpiresAt && row.accessExpiresAt.getTime() - Date.now() < MIN_REMAINING_MS) return null;
    let accessToken: string;
    try {
      accessToken = this.vault.decrypt(row.accessToken, secretContext(ownerOf(row), row.id, 'access_token'));
    } catch (err) {
      // Tampered, moved between rows, or encrypted with a key that is no longer configured.
      throw new BrokerError('credential_unreadable', `the stored credential cannot be decrypted (${(err as VaultError).code ?? 'error'})`);
    }
    return {
      credentialId: row.id,
      accessToken,
      tokenType: row.tokenType ?? 'bearer',
      expiresAt: row.accessExpiresAt ?? null,
      scope: row.scope ?? null,
    };
  }

  /** Starts the credential's workflow if none runs, and returns what the agent should do next. */
  async ensureAuthorization(owner: CredentialOwner): Promise<CredentialView> {
    const workflowId = credentialWorkflowId(owner);
    const input: CredentialWorkflowInput = {
      owner,
      ttlSeconds: this.settings.secretsTtlSeconds,
      authorizationTimeoutSeconds: this.settings.authorizationTimeoutSeconds,
      refreshSkewSeconds: this.settings.refreshSkewSeconds,
      ...(this.settings.maxCyclesPerRun ? { maxCyclesPerRun: this.settings.maxCyclesPerRun } : {}),
    };
    for (let attempt = 0; attempt < 5; attempt++) {
      const start = new WithStartWorkflowOperation<typeof credentialWorkflow>('credentialWorkflow', {
        workflowId,
        taskQueue: this.settings.taskQueue,
        args: [input],
        workflowIdConflictPolicy: 'USE_EXISTING',
        typedSearchAttributes: [
          { key: AgentIdKey, value: owner.agentId },
          { key: UserIdKey, value: owner.userId },
          { key: ToolIdKey, value: owner.toolId },
          { key: CredentialStatusKey, value: 'starting' },
        ],
      });
      try {
        const view = await this.temporal.workflow.executeUpdateWithStart(ensureAuthorizationUpdate, {
          startWorkflowOperation: start,
        });
        // A run that is just ending answers with its final phase: the next attempt starts a fresh one.
        if (!isTerminal(view.phase)) return view;
      } catch (err) {
        if (!isClosedWorkflowError(err) || attempt === 4) throw err;
      }
      await sleep(100 * (attempt + 1));
    }
    throw new BrokerError('workflow_busy', 'the credential is changing state; try again');
  }

  async refreshNow(owner: CredentialOwner): Promise<CredentialView | null> {
    const handle = this.temporal.workflow.getHandle(credentialWorkflowId(owner));
    try {
      return await handle.executeUpdate(refreshNowUpdate);
    } catch (err) {
      if (isClosedWorkflowError(err) || isRejectedUpdate(err)) return null;
      throw err;
    }
  }

  /** Revokes and ends the running workflow; null when there is none. */
  async revoke(owner: CredentialOwner, request: RevokeRequest): Promise<CredentialView | null> {
    const handle = this.temporal.workflow.getHandle(credentialWorkflowId(owner));
    try {
      return await handle.executeUpdate(revokeUpdate, { args: [request] });
    } catch (err) {
      if (isClosedWorkflowError(err)) return null;
      throw err;
    }
  }

  async query(owner: CredentialOwner): Promise<CredentialView | null> {
    try {
      return await this.temporal.workflow.getHandle(credentialWorkflowId(owner)).query(statusQuery);
    } catch (err) {
      if (isClosedWorkflowError(err)) return null;
      throw err;
    }
  }

  async signalCallback(workflowId: string, authorizationRequestId: string): Promise<boolean> {
    try {
      await this.temporal.workflow.getHandle(workflowId).signal(callbackReceivedSignal, { authorizationRequestId });
      return true;
    } catch (err) {
      if (err instanceof WorkflowNotFoundError) return false;
      throw err;
    }
  }
}

function isClosedWorkflowError(err: unknown): boolean {
  if (err instanceof WorkflowNotFoundError) return true;
  const text = `${(err as Error)?.name} ${(err as Error)?.message} ${String((err as { cause?: unknown })?.cause ?? '')}`;
  return /workflow execution already completed|not found|WorkflowUpdateFailedError.*completed/i.test(text);
}

function isRejectedUpdate(err: unknown): boolean {
  return (err as Error)?.name === 'WorkflowUpdateFailedError';
}
