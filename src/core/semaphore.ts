/**
 * A counting semaphore for API requests in flight (`rateLimit.concurrency`).
 *
 * Non-blocking by design: the watcher loop calls {@link Semaphore.tryAcquire}, and when that fails it
 * awaits {@link Semaphore.whenAvailable} (together with its other wake-up sources) and tries again.
 * `whenAvailable` does not acquire: every waiter is woken when a slot frees, and the ones that lose the
 * race simply wait again, so no wake-up is ever lost.
 *
 * Invariant: `0 ≤ inFlight ≤ max`. Releasing more than was acquired is a programmer error and throws.
 */

/** A counting semaphore with a non-blocking acquire and promise-based wake-ups. */
export class Semaphore {
  /** Slots in total. */
  readonly max: number;
  private count = 0;
  private availableWaiters: (() => void)[] = [];
  private idleWaiters: (() => void)[] = [];

  constructor(max: number) {
    if (typeof max !== 'number' || !Number.isInteger(max) || max < 1) {
      throw new RangeError(`Expected \`max\` to be an integer ≥ 1, got \`${String(max)}\` (${typeof max})`);
    }
    this.max = max;
  }

  /** Slots taken right now. */
  get inFlight(): number {
    return this.count;
  }

  /** Takes a slot if one is free; returns whether it did. */
  tryAcquire(): boolean {
    if (this.count >= this.max) return false;
    this.count += 1;
    return true;
  }

  /** Gives a slot back and wakes every {@link whenAvailable} waiter (and {@link whenIdle} ones at zero). */
  release(): void {
    if (this.count <= 0) throw new Error('Semaphore.release() called with nothing in flight');
    this.count -= 1;
    const waiters = this.availableWaiters;
    this.availableWaiters = [];
    for (const wake of waiters) wake();
    if (this.count === 0) {
      const idle = this.idleWaiters;
      this.idleWaiters = [];
      for (const wake of idle) wake();
    }
  }

  /**
   * Resolves when a slot frees, or at once if one is free now. Does not take the slot. Rejects with the
   * signal's reason if `signal` aborts first.
   */
  whenAvailable(signal?: AbortSignal): Promise<void> {
    if (this.count < this.max) return Promise.resolve();
    return this.wait('available', signal);
  }

  /** Resolves when nothing is in flight (for graceful shutdown), or at once if that is already so. */
  whenIdle(signal?: AbortSignal): Promise<void> {
    if (this.count === 0) return Promise.resolve();
    return this.wait('idle', signal);
  }

  private wait(kind: 'available' | 'idle', signal: AbortSignal | undefined): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      if (signal?.aborted === true) {
        reject(abortReason(signal));
        return;
      }
      const onAbort = (): void => {
        const list = kind === 'available' ? this.availableWaiters : this.idleWaiters;
        const i = list.indexOf(wake);
        if (i >= 0) list.splice(i, 1);
        reject(abortReason(signal));
      };
      const wake = (): void => {
        signal?.removeEventListener('abort', onAbort);
        resolve();
      };
      (kind === 'available' ? this.availableWaiters : this.idleWaiters).push(wake);
      signal?.addEventListener('abort', onAbort, { once: true });
    });
  }
}

function abortReason(signal: AbortSignal | undefined): Error {
  const reason: unknown = signal?.reason;
  return reason instanceof Error ? reason : new Error('aborted', { cause: reason });
}
