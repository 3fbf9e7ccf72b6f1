/** Pure timing rules for a credential's timers (workflow-safe: no I/O, randomness passed in). */

export interface RefreshPlanInput {
  acquiredAt: number;
  /** Epoch ms when the access token expires; null when it never does. */
  accessExpiresAt: number | null;
  /** How long before expiry to refresh, at most. */
  skewMs: number;
  /** A number in [0, 1): spreads a crowd of credentials over a window instead of one instant. */
  random: number;
}

/** Fraction of the lead time used as jitter. */
export const REFRESH_JITTER_FRACTION = 0.2;

/**
 * When to refresh: `skew` before expiry, but never more than half the token's lifetime ahead (a 60 s token
 * is refreshed after ~30 s, not at once), minus up to 20% of that lead as jitter.
 */
export function planRefreshAt({ acquiredAt, accessExpiresAt, skewMs, random }: RefreshPlanInput): number | null {
  if (accessExpiresAt === null) return null;
  const lifetime = Math.max(0, accessExpiresAt - acquiredAt);
  const lead = Math.min(skewMs, lifetime / 2);
  const jitter = lead * REFRESH_JITTER_FRACTION * Math.min(Math.max(random, 0), 1);
  return Math.round(accessExpiresAt - lead - jitter);
}

/** When a failed refresh is tried again: soon, but never past the access token's expiry. */
export function planRefreshRetryAt(now: number, accessExpiresAt: number | null, attempt: number): number {
  const backoff = Math.min(60_000 * 2 ** Math.max(0, attempt - 1), 15 * 60_000);
  const at = now + backoff;
  return accessExpiresAt === null ? at : Math.min(at, Math.max(now + 1_000, accessExpiresAt - 1_000));
}

/** The next moment the workflow must wake up in the active phase. */
export function nextWake(refreshAt: number | null, ttlExpiresAt: number): number {
  return refreshAt === null ? ttlExpiresAt : Math.min(refreshAt, ttlExpiresAt);
}
