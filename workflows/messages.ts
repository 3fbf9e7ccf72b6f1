import { defineQuery, defineSignal, defineUpdate } from '@temporalio/workflow';
import { defineSearchAttributeKey, SearchAttributeType } from '@temporalio/common';
import type { CredentialOwner, CredentialStatus, Revocation } from '../lib/domain.js';

/** Typed search attributes, registered on the server, so operators filter by them in the Web UI. */
export const AgentIdKey = defineSearchAttributeKey('AgentId', SearchAttributeType.KEYWORD);
export const UserIdKey = defineSearchAttributeKey('UserId', SearchAttributeType.KEYWORD);
export const ToolIdKey = defineSearchAttributeKey('ToolId', SearchAttributeType.KEYWORD);
export const CredentialStatusKey = defineSearchAttributeKey('CredentialStatus', SearchAttributeType.KEYWORD);
export const SEARCH_ATTRIBUTE_KEYS = [AgentIdKey, UserIdKey, ToolIdKey, CredentialStatusKey];

export type Phase = CredentialStatus | 'starting';

/** What the workflow carries across continue-as-new: plain JSON, never a secret. */
export interface CredentialState {
  phase: Phase;
  credentialId: string;
  authorizationRequestId: string | null;
  authorizationUrl: string | null;
  authorizationExpiresAt: number | null;
  /** Token generation last written by this workflow (idempotency key for exchange and refresh). */
  generation: number;
  acquiredAt: number | null;
  accessExpiresAt: number | null;
  ttlExpiresAt: number | null;
  refreshAt: number | null;
  hasRefreshToken: boolean;
  scope: string | null;
  failedRefreshes: number;
  /** Refreshes finished in this run, to continue-as-new before history grows long. */
  cyclesThisRun: number;
  endReason: string | null;
  /** Scopes added by step-up authorizations, beyond the tool's own. */
  extraScopes?: string[];
  stepUps?: number;
  /** The pending authorization widens an active credential (which stays in use meanwhile). */
  stepUpPending?: boolean;
  /** The provider asked not to be called before this (Retry-After on a failed refresh); epoch ms. */
  retryNotBefore?: number | null;
  /** When the refresh token dies, where known; epoch ms. */
  refreshExpiresAt?: number | null;
  /** When that expiry was last set (a new or renewed refresh token): the life a warning's lead is measured on. */
  refreshIssuedAt?: number | null;
  /** What revoking did at the provider (set when the credential was revoked). */
  revocation?: Revocation;
  /** The `credential.expiring` warnings already sent (`ttl:<ends>`, `refresh_token:<ends>`): once per end. */
  warned?: string[];
}

export interface CredentialWorkflowInput {
  owner: CredentialOwner;
  ttlSeconds: number;
  authorizationTimeoutSeconds: number;
  refreshSkewSeconds: number;
  /** Continue-as-new after this many refreshes in one run (also when the server suggests it). */
  maxCyclesPerRun?: number;
  /** `credential.expiring` this long before the TTL or the refresh token ends (default a day; at most half the life). */
  expiringLeadSeconds?: number;
  state?: CredentialState;
}

export interface MachineWorkflowInput {
  owner: CredentialOwner;
  refreshSkewSeconds: number;
  maxCyclesPerRun?: number;
  state?: CredentialState;
}

/** What queries and updates return: phase and timestamps, never a secret. */
export interface CredentialView {
  phase: Phase;
  credentialId: string;
  authorizationUrl: string | null;
  authorizationExpiresAt: number | null;
  accessExpiresAt: number | null;
  ttlExpiresAt: number | null;
  refreshAt: number | null;
  generation: number;
  endReason: string | null;
  /** Set once revoked: what happened at the provider (revoked there, it has no revocation, or it failed). */
  revocation?: Revocation | null;
}

export interface CallbackReceived {
  authorizationRequestId: string;
}

export interface CallbackOutcome {
  /** True when the code was exchanged and the tokens are stored. */
  connected: boolean;
  /** Why not, when the exchange failed (`account_mismatch`, `access_denied`, …). */
  code?: string;
  view: CredentialView;
}

export interface RevokeRequest {
  reason: string;
  actor: string;
}

/** Starts the authorization if needed and returns once there is an URL to show or a token to read. */
export const ensureAuthorizationUpdate = defineUpdate<CredentialView, []>('ensureAuthorization');
/** The agent saw a 401: refresh now and return once the attempt finished. */
export const refreshNowUpdate = defineUpdate<CredentialView, []>('refreshNow');
/** The tool said `insufficient_scope`: authorize again for the wider scopes (a bounded number of times). */
export const stepUpUpdate = defineUpdate<CredentialView, [{ scopes: string[] }]>('stepUp');
export const MAX_STEP_UPS = 2;
/** Why a validator refused an update: the ApplicationFailure type the client switches on. */
export const UPDATE_REJECTIONS = {
  stepUpLimit: 'step_up_limit_reached',
  notServing: 'credential_not_serving',
  invalidArguments: 'invalid_update_arguments',
  callbackNotExpected: 'callback_not_expected',
} as const;
/** Revoke at the provider and end; returns the final view. */
export const revokeUpdate = defineUpdate<CredentialView, [RevokeRequest]>('revoke');
/** The provider redirected the user back: exchange the code (it stays in the vault) and answer how that went. */
export const deliverCallbackUpdate = defineUpdate<CallbackOutcome, [CallbackReceived]>('deliverCallback');
/**
 * Returns once the first authorization is no longer waiting for the user (connected, failed, expired, revoked).
 * Sent with one update id per credential, so every waiting API process shares the same update.
 */
export const awaitConsentUpdate = defineUpdate<CredentialView, []>('awaitConsent');
/** Histories from before deliverCallback: the callback arrived as a signal (kept so they replay). */
export const callbackReceivedSignal = defineSignal<[CallbackReceived]>('callbackReceived');
export const statusQuery = defineQuery<CredentialView>('status');
