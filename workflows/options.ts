/**
 * Activities that receive tokens from a provider: they heartbeat every second, so a worker that died is noticed
 * within the heartbeat timeout and the retry comes in seconds; and they may hold the provider's answer while the
 * database is unreachable for up to STORE_BOUND_MS (activities/index.ts, 5 minutes), so their start-to-close
 * timeout is longer than that.
 */
export const HOLDS_TOKENS = { startToCloseTimeout: '6m', heartbeatTimeout: '10s' } as const;
