import { setTimeout as sleep } from 'node:timers/promises';

/**
 * The database being unreachable (down, restarting, out of connections) as opposed to refusing a statement:
 * worth waiting for, never a reason to throw away what only this process holds.
 */
const UNREACHABLE =
  /ECONNREFUSED|ECONNRESET|EPIPE|Connection terminated|connect ETIMEDOUT|Timeout acquiring a connection|timeout exceeded when trying to connect|the database system is (shutting down|starting up|in recovery mode)|terminating connection|Connection ended unexpectedly|server closed the connection|SQLITE_BUSY/i;

export function isDatabaseUnreachable(err: unknown): boolean {
  for (let e: unknown = err, depth = 0; e && depth < 4; e = (e as { cause?: unknown }).cause, depth++) {
    if (UNREACHABLE.test(`${(e as Error).message ?? ''} ${(e as { code?: unknown }).code ?? ''}`)) return true;
  }
  return false;
}

export interface PersistOptions {
  /** Give up after this long (then the caller's failure stands). */
  boundMs: number;
  /** Called while waiting (an activity heartbeats, so Temporal knows the attempt is alive). */
  onWait?: (attempt: number) => void;
  firstDelayMs?: number;
  maxDelayMs?: number;
}

/**
 * Runs `write` until it succeeds, retrying only while the database is unreachable, for at most `boundMs`.
 * For writes whose input exists nowhere else (a provider's rotated tokens): they wait for the database
 * instead of being dropped.
 */
export async function persistThroughOutage<T>(write: () => Promise<T>, opts: PersistOptions): Promise<T> {
  const deadline = Date.now() + opts.boundMs;
  let delay = opts.firstDelayMs ?? 200;
  for (let attempt = 1; ; attempt++) {
    try {
      return await write();
    } catch (err) {
      if (!isDatabaseUnreachable(err) || Date.now() + delay > deadline) throw err;
      opts.onWait?.(attempt);
      await sleep(delay);
      delay = Math.min(delay * 2, opts.maxDelayMs ?? 2_000);
    }
  }
}
