import { ApplicationFailure } from '@temporalio/common';
import { AuthorizationRequestSchema, CredentialSchema, type AuthorizationRequest, type Credential } from '../db/entities.js';
import { fork, type Em, type Orm } from '../db/orm.js';
import type { CredentialOwner } from '../domain.js';

/** An authorization request's one-time secrets, wiped once its code is spent or its credential ended. */
const WIPED_REQUEST = { codeVerifier: null, callbackParams: null, providerUrl: null };

/** The columns a provider's answer changes; `tokenGeneration` is the next one (the write's guard). */
export type TokenChanges = Partial<Credential> & { tokenGeneration: number };

/** Where a credential row and its authorization request come from: the workflow that owns them. */
export interface RowOrigin {
  owner: CredentialOwner;
  credentialId: string;
  workflowId: string;
}

/**
 * The credential workflow's door to its rows, used only by its activities (the tables' one writer): create the
 * row and its authorization requests, store a provider's answer, end. The API reads through CredentialRecords.
 */
export class CredentialStore {
  constructor(private readonly orm: Orm) {}

  /** One unit of work (an activity attempt's): rows read through it are written by its `flush`. */
  unit(): CredentialUnit {
    return new CredentialUnit(fork(this.orm));
  }

  /**
   * Stores a provider's answer in one transaction with `alongside` (its audit row), guarded by the token
   * generation the attempt read. An earlier try whose commit landed but whose answer was lost is no conflict.
   */
  async commitTokens(credential: Credential, changes: TokenChanges, alongside: (tx: Em) => Promise<unknown>): Promise<void> {
    await fork(this.orm).transactional(async (tx) => {
      const updated = await tx.nativeUpdate(CredentialSchema, { id: credential.id, tokenGeneration: credential.tokenGeneration }, changes);
      if (updated !== 1) {
        const current = await tx.findOne(CredentialSchema, { id: credential.id }, { fields: ['tokenGeneration'] });
        if (current?.tokenGeneration === changes.tokenGeneration) return;
        throw ApplicationFailure.nonRetryable('the credential changed under this attempt', 'generation_conflict');
      }
      await alongside(tx);
    });
    Object.assign(credential, changes);
  }

  /** The request's one-time secrets (verifier, callback, provider URL) are of no further use once its code is spent. */
  wipeRequest(tx: Em, requestId: string): Promise<number> {
    return tx.nativeUpdate(AuthorizationRequestSchema, { id: requestId }, WIPED_REQUEST);
  }

  /**
   * Marks the credential ended and wipes its secrets and its requests' (the row stays for audit). Null when the
   * authorization failed before its row was written. Idempotent: a row already ended keeps its first end.
   */
  async end(credentialId: string, status: string, reason: string): Promise<{ credential: Credential; em: Em } | null> {
    const em = fork(this.orm);
    const credential = await em.findOne(CredentialSchema, { id: credentialId });
    if (!credential) return null;
    const now = new Date();
    if (!credential.deletedAt) {
      Object.assign(credential, {
        status,
        endReason: reason.slice(0, 80),
        deletedAt: now,
        updatedAt: now,
        accessToken: null,
        refreshToken: null,
        dpopKey: null,
      });
    }
    await em.nativeUpdate(AuthorizationRequestSchema, { credentialId: credential.id, codeVerifier: { $ne: null } }, WIPED_REQUEST);
    await em.flush();
    return { credential, em };
  }
}

/** One activity attempt's reads and new rows (MikroORM's unit of work underneath). */
export class CredentialUnit {
  constructor(readonly em: Em) {}

  find(credentialId: string): Promise<Credential | null> {
    return this.em.findOne(CredentialSchema, { id: credentialId });
  }

  get(credentialId: string): Promise<Credential> {
    return this.em.findOneOrFail(CredentialSchema, { id: credentialId });
  }

  /** The workflow's row, created (awaiting authorization, generation 0) the first time it is asked for. */
  async open(origin: RowOrigin, now: Date): Promise<Credential> {
    const found = await this.find(origin.credentialId);
    if (found) return found;
    return this.em.create(CredentialSchema, {
      id: origin.credentialId,
      ...origin.owner,
      workflowId: origin.workflowId,
      status: 'awaiting_authorization',
      tokenGeneration: 0,
      createdAt: now,
      updatedAt: now,
    });
  }

  /**
   * When someone took the owner's connection back (the agent, the user or an admin; not the gateway replacing a token
   * the tool refused); null when never.
   */
  async lastRevokedAt({ agentId, userId, toolId }: Credential): Promise<Date | null> {
    const where = { agentId, userId, toolId, status: 'revoked', $not: { endReason: { $like: 'revoked by gateway:%' } } };
    const last = await this.em.findOne(CredentialSchema, where, { orderBy: { deletedAt: 'desc' }, fields: ['deletedAt'] });
    return last?.deletedAt ?? null;
  }

  /**
   * The upstream account a new consent for this credential must land on: its own (a step-up), else that of the
   * owner's previous credential when it ended needing re-authorization (the same connection, asked again). After
   * an expiry or a revocation any account may connect.
   */
  async pinnedAccount(credential: Credential): Promise<string | null> {
    if (credential.accountId) return credential.accountId;
    const previous = await this.em.findOne(
      CredentialSchema,
      {
        agentId: credential.agentId,
        userId: credential.userId,
        toolId: credential.toolId,
        id: { $ne: credential.id },
        accountId: { $ne: null },
      },
      { orderBy: { createdAt: 'desc' } },
    );
    return previous?.status === 'reauthorization_required' ? previous.accountId! : null;
  }

  /** An authorization request of this credential. */
  request(requestId: string, credentialId?: string): Promise<AuthorizationRequest | null> {
    return this.em.findOne(AuthorizationRequestSchema, credentialId ? { id: requestId, credentialId } : { id: requestId });
  }

  createRequest(
    origin: RowOrigin,
    fields: Pick<AuthorizationRequest, 'id' | 'stateHash' | 'codeVerifier' | 'redirectUri' | 'expiresAt' | 'createdAt'>,
  ): AuthorizationRequest {
    return this.em.create(AuthorizationRequestSchema, {
      ...fields,
      credentialId: origin.credentialId,
      workflowId: origin.workflowId,
      ...origin.owner,
    });
  }

  flush(): Promise<void> {
    return this.em.flush();
  }
}
