import { ApplicationFailure, condition, setHandler } from '@temporalio/workflow';
import { isTerminal } from '../lib/domain.js';
import {
  awaitConsentUpdate,
  callbackReceivedSignal,
  deliverCallbackUpdate,
  ensureAuthorizationUpdate,
  MAX_STEP_UPS,
  refreshNowUpdate,
  revokeUpdate,
  statusQuery,
  stepUpUpdate,
  UPDATE_REJECTIONS,
  type CredentialState,
  type RevokeRequest,
} from './messages.js';
import { view } from './state.js';

/** What the credential workflow's messages leave for its main loop. */
export interface Inbox {
  /** The authorization request whose callback arrived. */
  callback: string | null;
  revoke: RevokeRequest | null;
  refreshRequested: boolean;
  /** Refreshes finished, so a refresh-now update knows when its attempt is done. */
  refreshAttempts: number;
  stepUp: string[] | null;
  stepUpsBegun: number;
  /** Code exchanges finished, and whether the last one stored tokens (for deliverCallback). */
  exchanges: number;
  lastExchangeConnected: boolean;
  /** Why the last exchange failed (its stable code), for the page the user sees. */
  lastExchangeCode?: string | null;
  /** The credential is ending (its row already says so): requests wait for the end instead of joining this run. */
  ending?: boolean;
}

export function emptyInbox(): Inbox {
  return {
    callback: null,
    revoke: null,
    refreshRequested: false,
    refreshAttempts: 0,
    stepUp: null,
    stepUpsBegun: 0,
    exchanges: 0,
    lastExchangeConnected: false,
  };
}

/** An update refused by its validator, with a type the client switches on (never recorded in history). */
function rejected(type: string, message: string): ApplicationFailure {
  return ApplicationFailure.create({ type, message, nonRetryable: true });
}

/**
 * The credential workflow's signal, query and update handlers: thin, they put what arrived into the inbox and wait
 * for the main loop to act on it (Temporal's safe-message-handlers shape). Registered before the workflow's first
 * await, in this order.
 */
export function registerHandlers(s: CredentialState, inbox: Inbox): void {
  setHandler(statusQuery, () => view(s));
  // A step-up's consent may arrive while the current token is being refreshed.
  const expecting = (requestId: string) =>
    (s.phase === 'awaiting_authorization' || (s.stepUpPending === true && s.phase === 'refreshing')) &&
    requestId === s.authorizationRequestId &&
    inbox.callback === null;
  setHandler(callbackReceivedSignal, ({ authorizationRequestId }) => {
    if (expecting(authorizationRequestId)) inbox.callback = authorizationRequestId;
  });
  setHandler(
    deliverCallbackUpdate,
    async ({ authorizationRequestId }) => {
      const before = inbox.exchanges;
      inbox.callback = authorizationRequestId;
      await condition(() => inbox.exchanges > before || isTerminal(s.phase));
      const connected = inbox.exchanges > before && inbox.lastExchangeConnected;
      return { connected, ...(!connected && inbox.lastExchangeCode ? { code: inbox.lastExchangeCode } : {}), view: view(s) };
    },
    {
      validator: ({ authorizationRequestId }) => {
        if (typeof authorizationRequestId !== 'string' || !expecting(authorizationRequestId))
          throw rejected(UPDATE_REJECTIONS.callbackNotExpected, 'this authorization is not waiting for that callback');
      },
    },
  );
  // No timer: the wait ends with the authorization (consent, failure, its own deadline, revocation).
  setHandler(awaitConsentUpdate, async () => {
    // `starting` too: the row already says awaiting_authorization while the link is being made.
    await condition(() => s.phase !== 'starting' && !(s.phase === 'awaiting_authorization' && !s.stepUpPending));
    return view(s);
  });
  setHandler(ensureAuthorizationUpdate, async () => {
    await condition(
      () => s.phase !== 'starting' && s.phase !== 'refreshing' && inbox.callback === null && (!inbox.ending || isTerminal(s.phase)),
    );
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
}
