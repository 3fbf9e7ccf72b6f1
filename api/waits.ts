import { setTimeout as sleep } from 'node:timers/promises';
import type { CredentialOwner } from '../lib/domain.js';
import { ApiError } from './errors.js';

export interface WaitSettings {
  /** How often a watch reads the credential. */
  pollMs: number;
  /** Long polls one agent may hold open at once in this process. */
  maxPerAgent: number;
}

/**
 * Long polls (`GET …?wait=`): however many callers wait on one credential, one watch reads it; a wait ends
 * when its caller hangs up, and the watch stops when its last waiter left.
 */
export class CredentialWaits {
  private readonly watches = new Map<string, Watch>();
  private readonly perAgent = new Map<string, number>();

  constructor(private readonly settings: WaitSettings = { pollMs: 200, maxPerAgent: 20 }) {}

  /** Callers waiting now, and the watches that serve them (for tests and metrics). */
  get waiting(): number {
    return [...this.perAgent.values()].reduce((a, b) => a + b, 0);
  }

  get watching(): number {
    return this.watches.size;
  }

  /**
   * Resolves when `settled()` says the credential left the state being waited on, at the deadline, or when
   * `signal` aborts (the caller left), whichever comes first.
   */
  async wait(owner: CredentialOwner, deadline: number, signal: AbortSignal, settled: () => Promise<boolean>): Promise<void> {
    const held = this.perAgent.get(owner.agentId) ?? 0;
    if (held >= this.settings.maxPerAgent) {
      throw new ApiError('too_many_waits', `this agent already holds ${held} waiting requests; wait for one to end`);
    }
    this.perAgent.set(owner.agentId, held + 1);
    const key = `${owner.agentId}\0${owner.userId}\0${owner.toolId}`;
    let watch = this.watches.get(key);
    const fresh = !watch;
    watch ??= new Watch(settled, this.settings.pollMs, () => this.watches.delete(key));
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
    private readonly settled: () => Promise<boolean>,
    private readonly pollMs: number,
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
    let finished = false;
    try {
      while (this.waiters.size > 0) {
        await sleep(this.pollMs, undefined, { signal: this.stop.signal });
        let changed = false;
        try {
          changed = await this.settled();
        } catch {
          // A failed read (the database restarting) is not an answer: keep watching until the deadline.
        }
        if (changed) {
          finished = true;
          for (const leave of [...this.waiters]) leave();
        }
      }
    } catch {
      // Stopped: the last waiter left.
    }
    // Someone joined while the watch was stopping: go on for them.
    if (!finished && this.waiters.size > 0) {
      this.stop = new AbortController();
      return this.run();
    }
    this.done();
  }
}
