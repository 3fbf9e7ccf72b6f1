import { describe, expect, it } from 'vitest';
import { nextWake, planRefreshAt, planRefreshRetryAt, REFRESH_JITTER_FRACTION } from '../../workflows/schedule.js';

const MIN = 60_000;

describe('planRefreshAt', () => {
  it('refreshes skew before expiry for long-lived tokens', () => {
    const at = planRefreshAt({ acquiredAt: 0, accessExpiresAt: 60 * MIN, skewMs: 5 * MIN, random: 0 });
    expect(at).toBe(55 * MIN);
  });

  it('never leads by more than half the lifetime of a short token', () => {
    const at = planRefreshAt({ acquiredAt: 0, accessExpiresAt: 60_000, skewMs: 5 * MIN, random: 0 });
    expect(at).toBe(30_000);
  });

  it('spreads refreshes over up to 20% of the lead, always before expiry', () => {
    const times = [0, 0.25, 0.5, 0.999].map((random) =>
      planRefreshAt({ acquiredAt: 0, accessExpiresAt: 60 * MIN, skewMs: 5 * MIN, random })!,
    );
    expect(new Set(times).size).toBe(4);
    for (const t of times) {
      expect(t).toBeLessThanOrEqual(55 * MIN);
      expect(t).toBeGreaterThanOrEqual(55 * MIN - 5 * MIN * REFRESH_JITTER_FRACTION);
    }
  });

  it('returns null for tokens that never expire', () => {
    expect(planRefreshAt({ acquiredAt: 0, accessExpiresAt: null, skewMs: MIN, random: 0.5 })).toBeNull();
  });
});

describe('planRefreshRetryAt', () => {
  it('backs off exponentially, capped, and never past expiry', () => {
    expect(planRefreshRetryAt(0, null, 1)).toBe(MIN);
    expect(planRefreshRetryAt(0, null, 2)).toBe(2 * MIN);
    expect(planRefreshRetryAt(0, null, 10)).toBe(15 * MIN);
    expect(planRefreshRetryAt(0, 90_000, 3)).toBe(89_000);
  });
});

describe('nextWake', () => {
  it('wakes for whichever comes first', () => {
    expect(nextWake(10, 20)).toBe(10);
    expect(nextWake(30, 20)).toBe(20);
    expect(nextWake(null, 20)).toBe(20);
  });
});
