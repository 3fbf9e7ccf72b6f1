import { describe, expect, it } from 'vitest';
import {
  afterFailedAcquire,
  afterFailedRefresh,
  decide,
  interrupts,
  mayContinueAsNew,
  nextWarning,
  shouldContinueAsNew,
  stageOf,
  wakeAt,
  withTokens,
  type Step,
  type Wake,
} from '../../workflows/lifecycle.js';
import type { CredentialState } from '../../workflows/messages.js';

const T = 1_000_000;
const base: CredentialState = {
  phase: 'active',
  credentialId: 'c',
  authorizationRequestId: 'r1',
  authorizationUrl: null,
  authorizationExpiresAt: null,
  generation: 1,
  acquiredAt: T - 60_000,
  accessExpiresAt: T + 600_000,
  ttlExpiresAt: T + 3_600_000,
  refreshAt: T + 300_000,
  hasRefreshToken: true,
  scope: 'a',
  failedRefreshes: 0,
  cyclesThisRun: 0,
  endReason: null,
};

const stages: Record<string, CredentialState> = {
  awaiting_consent: { ...base, phase: 'awaiting_authorization', generation: 0, authorizationExpiresAt: T + 60_000 },
  active: base,
  stepping_up: { ...base, phase: 'awaiting_authorization', stepUpPending: true, authorizationExpiresAt: T + 60_000 },
};

const revoke = { actor: 'agent:a', reason: 'done' };
const quiet: Wake = { now: T, revoke: null, callback: null, stepUp: null, refreshRequested: false };
const events: Record<string, Wake> = {
  'nothing (timer early)': quiet,
  callback: { ...quiet, callback: 'r1' },
  revoke: { ...quiet, revoke },
  'refresh requested': { ...quiet, refreshRequested: true },
  'refresh requested, provider said wait': { ...quiet, refreshRequested: true },
  'step-up requested': { ...quiet, stepUp: ['b'] },
  'refresh due': { ...quiet, now: T + 300_000 },
  'consent deadline passed': { ...quiet, now: T + 60_000 },
  'TTL reached': { ...quiet, now: T + 3_600_000 },
};

const wait: Step = { do: 'wait' };
const refresh: Step = { do: 'refresh' };
const expire: Step = { do: 'end', status: 'expired', reason: 'the credential reached its time to live' };
const timedOut: Step = { do: 'end', status: 'authorization_timed_out', reason: 'the user did not complete the authorization in time' };
const revokedNow: Step = { do: 'end', status: 'revoked', reason: 'revoked by agent:a: done' };
const revokeAtProvider: Step = { do: 'revoke_and_end', request: revoke };
const exchange: Step = { do: 'exchange_code' };
const drop: Step = { do: 'drop_step_up' };

/** stage × event → the step, with the step-up tending the current token (today's behaviour). */
const table: [string, string, Step][] = [
  ['awaiting_consent', 'nothing (timer early)', timedOut],
  ['awaiting_consent', 'callback', exchange],
  ['awaiting_consent', 'revoke', revokedNow],
  ['awaiting_consent', 'refresh requested', timedOut],
  ['awaiting_consent', 'step-up requested', timedOut],
  ['awaiting_consent', 'consent deadline passed', timedOut],
  ['active', 'nothing (timer early)', wait],
  ['active', 'callback', wait],
  ['active', 'revoke', revokeAtProvider],
  ['active', 'refresh requested', refresh],
  ['active', 'step-up requested', { do: 'begin_step_up', scopes: ['b'] }],
  ['active', 'refresh due', refresh],
  ['active', 'TTL reached', expire],
  ['stepping_up', 'nothing (timer early)', wait],
  ['stepping_up', 'callback', exchange],
  ['stepping_up', 'revoke', revokeAtProvider],
  ['stepping_up', 'refresh requested', refresh],
  ['stepping_up', 'step-up requested', wait],
  ['stepping_up', 'refresh due', refresh],
  ['stepping_up', 'consent deadline passed', drop],
  ['stepping_up', 'TTL reached', expire],
];

describe('the credential lifecycle', () => {
  it.each(table)('%s + %s', (stage, event, step) => {
    expect(decide(stages[stage]!, events[event]!, { tendWhileSteppingUp: true })).toEqual(step);
  });

  it('a refresh due while stepping up renews the current token before the step-up is dropped', () => {
    const steppingUp = { ...stages.stepping_up!, authorizationExpiresAt: T + 900_000 };
    expect(decide(steppingUp, events['refresh due']!, { tendWhileSteppingUp: true })).toEqual(refresh);
    expect(decide(steppingUp, { ...quiet, now: T + 900_000 }, { tendWhileSteppingUp: true })).toEqual(refresh);
    expect(decide({ ...steppingUp, refreshAt: T + 950_000 }, { ...quiet, now: T + 900_000 }, { tendWhileSteppingUp: true })).toEqual(drop);
  });

  it('a step-up from before the refresh-during-step-up patch only waits for the user', () => {
    const old = { tendWhileSteppingUp: false };
    expect(decide(stages.stepping_up!, events['nothing (timer early)']!, old)).toEqual(drop);
    expect(decide(stages.stepping_up!, events.callback!, old)).toEqual(exchange);
    expect(decide(stages.stepping_up!, events.revoke!, old)).toEqual(revokeAtProvider);
    expect(wakeAt(stages.stepping_up!, quiet, old)).toBe(T + 60_000);
    expect(interrupts(stages.stepping_up!, events['refresh requested']!, old)).toBe(false);
  });

  it("follows the provider's Retry-After: a requested refresh waits for it, and the wait ends then", () => {
    const told = { ...base, retryNotBefore: T + 2_000 };
    const asked = events['refresh requested, provider said wait']!;
    expect(decide(told, asked, { tendWhileSteppingUp: true })).toEqual(wait);
    expect(interrupts(told, asked, { tendWhileSteppingUp: true })).toBe(false);
    expect(wakeAt(told, asked, { tendWhileSteppingUp: true })).toBe(T + 2_000);
    expect(decide(told, { ...asked, now: T + 2_000 }, { tendWhileSteppingUp: true })).toEqual(refresh);
  });

  it('wakes at the first of the refresh, the TTL and the consent deadline', () => {
    expect(wakeAt(base, quiet, { tendWhileSteppingUp: true })).toBe(T + 300_000);
    expect(wakeAt({ ...base, refreshAt: null }, quiet, { tendWhileSteppingUp: true })).toBe(T + 3_600_000);
    expect(wakeAt(stages.awaiting_consent!, quiet, { tendWhileSteppingUp: true })).toBe(T + 60_000);
    expect(wakeAt({ ...stages.stepping_up!, refreshAt: T + 30_000 }, quiet, { tendWhileSteppingUp: true })).toBe(T + 30_000);
  });

  it('is interrupted by what needs acting on in each stage, and nothing else', () => {
    const opts = { tendWhileSteppingUp: true };
    expect(interrupts(stages.awaiting_consent!, events['step-up requested']!, opts)).toBe(false);
    expect(interrupts(stages.awaiting_consent!, events['refresh requested']!, opts)).toBe(false);
    expect(interrupts(stages.awaiting_consent!, events.callback!, opts)).toBe(true);
    expect(interrupts(base, events.callback!, opts)).toBe(false);
    expect(interrupts(base, events['step-up requested']!, opts)).toBe(true);
    expect(interrupts(stages.stepping_up!, events['refresh requested']!, opts)).toBe(true);
  });

  it('names its stages, a step-up waiting for consent being one of them', () => {
    expect(stageOf(stages.stepping_up!)).toEqual({ kind: 'stepping_up', expiresAt: T + 60_000 });
    expect(stageOf({ ...stages.stepping_up!, phase: 'refreshing' })).toEqual({ kind: 'refreshing', steppingUp: true });
    expect(stageOf({ ...base, phase: 'revoked' })).toEqual({ kind: 'ended', status: 'revoked' });
    expect(decide({ ...base, phase: 'expired' }, events.revoke!, { tendWhileSteppingUp: true })).toEqual(wait);
  });

  it('continues as new when suggested or after its share of refreshes, with nothing pending', () => {
    expect(shouldContinueAsNew(base, { suggested: false, maxCyclesPerRun: 200 })).toBe(false);
    expect(shouldContinueAsNew({ ...base, cyclesThisRun: 200 }, { suggested: false, maxCyclesPerRun: 200 })).toBe(true);
    expect(shouldContinueAsNew(base, { suggested: true, maxCyclesPerRun: 200 })).toBe(true);
    expect(mayContinueAsNew({ revoke: null, refreshRequested: false })).toBe(true);
    expect(mayContinueAsNew({ revoke, refreshRequested: false })).toBe(false);
    expect(mayContinueAsNew({ revoke: null, refreshRequested: true })).toBe(false);
  });

  it('plans the next refresh from new tokens, or the user again at expiry when there is no refresh token', () => {
    const meta = {
      generation: 2,
      acquiredAt: T,
      accessExpiresAt: T + 3_600_000,
      ttlExpiresAt: T + 86_400_000,
      hasRefreshToken: true,
      scope: 'a',
    };
    let draws = 0;
    const random = () => (draws++, 0.5);
    expect(withTokens(meta, { now: T, skewMs: 300_000, random })).toMatchObject({
      generation: 2,
      failedRefreshes: 0,
      refreshAt: T + 3_600_000 - 300_000 - 30_000,
    });
    expect(withTokens({ ...meta, hasRefreshToken: false }, { now: T, skewMs: 300_000, random })).toMatchObject({
      refreshAt: T + 3_600_000,
    });
    // No refresh token, no draw: the workflow's random sequence stays as recorded histories have it.
    expect(draws).toBe(1);
  });

  it("retries a failed refresh soon, never past expiry, and not before the provider's Retry-After", () => {
    expect(afterFailedRefresh(base, { now: T, retryAfterMs: 0 })).toEqual({ failedRefreshes: 1, refreshAt: T + 60_000 });
    expect(afterFailedRefresh({ ...base, accessExpiresAt: T + 5_000 }, { now: T, retryAfterMs: 0 })).toEqual({
      failedRefreshes: 1,
      refreshAt: T + 4_000,
    });
    expect(afterFailedRefresh({ ...base, accessExpiresAt: T + 5_000 }, { now: T, retryAfterMs: 30_000 })).toEqual({
      failedRefreshes: 1,
      refreshAt: T + 30_000,
      retryNotBefore: T + 30_000,
    });
  });
});

describe('tokens obtained without a browser (machine access, exchanged identities)', () => {
  const failure = (code: string, permanent: boolean) => ({ code, permanent, now: T });
  it.each([
    [
      'a first attempt that fails, however',
      { ...base, phase: 'starting' as const },
      failure('provider_unavailable', false),
      { end: 'authorization_failed' },
    ],
    ['a refused grant', base, failure('invalid_grant', true), { end: 'authorization_failed' }],
    ['a server that is unwell', base, failure('provider_unavailable', false), 'retry'],
    ["the user's identity expired while the token still lives", base, failure('identity_expired', true), 'retry'],
    [
      "the user's identity expired and so did the token",
      { ...base, accessExpiresAt: T - 1 },
      failure('identity_expired', true),
      { end: 'expired' },
    ],
    [
      "the user's identity expired before any token",
      { ...base, phase: 'starting' as const },
      failure('identity_expired', true),
      { end: 'authorization_failed' },
    ],
  ])('%s', (_name, state, failed, next) => {
    expect(afterFailedAcquire(state, failed)).toEqual(next);
  });
});

describe('credential.expiring warnings', () => {
  const warn = { tendWhileSteppingUp: true, warnExpiring: { leadMs: 600_000, ttlMs: 3_660_000 } };
  const ttlWarning = { reason: 'ttl', expiresAt: T + 3_600_000, at: T + 3_000_000 } as const;

  it('warns the lead time before the TTL, once, and wakes for it', () => {
    expect(nextWarning(base, warn)).toEqual(ttlWarning);
    const afterRefresh = { ...base, refreshAt: T + 3_500_000 };
    expect(wakeAt(afterRefresh, quiet, warn)).toBe(T + 3_000_000);
    expect(decide(afterRefresh, { ...quiet, now: T + 3_000_000 }, warn)).toEqual({ do: 'warn_expiring', warning: ttlWarning });
    expect(decide({ ...afterRefresh, warned: ['ttl:' + (T + 3_600_000)] }, { ...quiet, now: T + 3_000_000 }, warn)).toEqual(wait);
    expect(wakeAt({ ...afterRefresh, warned: ['ttl:' + (T + 3_600_000)] }, quiet, warn)).toBe(T + 3_500_000);
  });

  it('warns at half the life when the lead is longer than that', () => {
    const shortLife = { tendWhileSteppingUp: true, warnExpiring: { leadMs: 86_400_000, ttlMs: 3_660_000 } };
    expect(nextWarning(base, shortLife)!.at).toBe(T + 3_600_000 - 1_830_000);
  });

  it('warns before a refresh token that dies before the TTL, first', () => {
    const dying = { ...base, refreshExpiresAt: T + 1_000_000 };
    // Its life from the consent is 1,060 s: half of it (530 s) is shorter than the 600 s lead.
    expect(nextWarning(dying, warn)).toEqual({ reason: 'refresh_token', expiresAt: T + 1_000_000, at: T + 1_000_000 - 530_000 });
    expect(nextWarning({ ...dying, warned: ['refresh_token:' + (T + 1_000_000)] }, warn)).toEqual(ttlWarning);
    // A refresh token that outlives the TTL, or none at all, is not worth a warning of its own.
    expect(nextWarning({ ...base, refreshExpiresAt: T + 9_000_000 }, warn)).toEqual(ttlWarning);
    expect(nextWarning({ ...dying, hasRefreshToken: false }, warn)).toEqual(ttlWarning);
  });

  it('refreshes and ends before it warns, and histories from before warnings never warn', () => {
    expect(decide(base, { ...quiet, now: T + 3_600_000 }, warn)).toEqual(expire);
    expect(decide({ ...base, refreshAt: T + 3_000_000 }, { ...quiet, now: T + 3_000_000 }, warn)).toEqual(refresh);
    expect(nextWarning(base, { tendWhileSteppingUp: true, warnExpiring: null })).toBeNull();
    expect(decide(base, { ...quiet, now: T + 3_100_000 }, { tendWhileSteppingUp: true })).toEqual(refresh);
  });
});
