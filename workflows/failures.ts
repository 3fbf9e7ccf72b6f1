import { ActivityFailure, ApplicationFailure } from '@temporalio/workflow';

/** The stable code of an activity failure (its ApplicationFailure type), for phases, logs and the agent. */
export function failureCode(err: unknown): string {
  const cause = err instanceof ActivityFailure ? err.cause : err;
  if (cause instanceof ApplicationFailure && cause.type) return cause.type;
  return 'activity_failed';
}

/** True for failures no retry can fix (invalid_grant, a refused configuration). */
export function isPermanent(err: unknown): boolean {
  const cause = err instanceof ActivityFailure ? err.cause : err;
  return cause instanceof ApplicationFailure && cause.nonRetryable === true;
}

/** The provider's Retry-After carried by a failed activity (its details), in ms; 0 when it said nothing. */
export function retryAfterMs(err: unknown): number {
  const cause = err instanceof ActivityFailure ? err.cause : err;
  if (!(cause instanceof ApplicationFailure)) return 0;
  const seconds = (cause.details?.[0] as { retryAfterSeconds?: unknown } | undefined)?.retryAfterSeconds;
  return typeof seconds === 'number' && seconds > 0 ? Math.min(seconds, 300) * 1000 : 0;
}
