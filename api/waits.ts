import { setTimeout as sleep } from 'node:timers/promises';
import type { CredentialOwner } from '../lib/domain.js';
import { ApiError } from './errors.js';

export interface WaitSettings {
  /** Long polls one agent may hold open at once in this process. */
  maxPerAgent: number;
  /** How long a watch whose source failed (Temporal unreachable) waits before it asks again. */
  retryMs: number;
}

/**
 * Long polls (`GET …?wait=`): however many callers wait on one credential, one watch asks the workflow (see
 * CredentialWorkflows.awaitConsent); nothing reads a table in a loop. A wait ends when its caller hangs up, and
 * the watch stops asking when its last waiter left.
 */
export class CredentialWaits {
  private readonly watches = new Map<string, Watch>();
  private readonly perAgent = new Map<string, number>();

  constructor(private readonly settings: WaitSettings = { maxPerAgent: 20, retryMs: 1_000 }) {}

  /** Callers waiting now, and the watches that serve them (for tests and metrics). */
  get waiting(): number {
    return [...this.perAgent.values()].reduce((a, b) => a + b, 0);
  }

  get watching(): number {
    return this.watches.size;
  }

  /**
   * Resolves when `settled` resolves (the credential left the state being waited on), at the deadline, or when
   * `signal` aborts (the caller left), whichever comes first. `settled` gets a signal that aborts when nobody
   * waits any more.
   */
  async wait(owner: CredentialOwner, deadline: number, signal: AbortSignal, settled: (stop: AbortSignal) => Promise<void>): Promise<void> {
    const held = this.perAgent.get(owner.agentId) ?? 0;
    if (held >= this.settings.maxPerAgent) {
      throw new ApiError('too_many_waits', `this agent already holds ${held} waiting requests; wait for one to end`);
    }
    this.perAgent.set(owner.agentId, held + 1);
    const key = `${owner.agentId}\0${owner.userId}\0${owner.toolId}`;
    let watch = this.watches.get(key);
    const fresh = !watch;
    watch ??= new Watch(settled, this.settings.retryMs, () => this.watches.delete(key));
    this.watches.set(key, watch);
    try {
      const joined = watch.join(deadline, signal);
      if (fresh) watch.start();
      await joined;
    } finally {
      const left = (this.perAgent.get(owner.agentId) ?? 1) - 1;
      if (left > 0) this.perAgent.set(owner.agentId, left);
      else this.perAgent.delete(owner.agentId);
    }
  }
}

class Watch {
  private readonly waiters = new Set<() => void>();
  private stop = new AbortController();

  constructor(
    private readonly settled: (stop: AbortSignal) => Promise<void>,
    private readonly retryMs: number,
    private readonly done: () => void,
  ) {}

  join(deadline: number, signal: AbortSignal): Promise<void> {
    return new Promise<void>((resolve) => {
      const leave = () => {
        clearTimeout(timer);
        signal.removeEventListener('abort', leave);
        this.waiters.delete(leave);
        if (this.waiters.size === 0) this.stop.abort();
        resolve();
      };
      const timer = setTimeout(leave, Math.max(0, deadline - Date.now()));
      this.waiters.add(leave);
      if (signal.aborted) leave();
      else signal.addEventListener('abort', leave, { once: true });
    });
  }

  start(): void {
    void this.run();
  }

  private async run(): Promise<void> {
    while (this.waiters.size > 0) {
      if (this.stop.signal.aborted) this.stop = new AbortController();
      try {
        await this.settled(this.stop.signal);
        for (const leave of [...this.waiters]) leave();
        break;
      } catch {
        // Stopped because the last waiter left (and someone came since: ask again at once), or the source
        // failed (Temporal restarting): not an answer; ask again shortly while anyone waits.
        if (!this.stop.signal.aborted && this.waiters.size > 0) await sleep(this.retryMs);
      }
    }
    // Synchronous from the last check on: nobody can join a watch that is about to be dropped.
    this.done();
  }
}
