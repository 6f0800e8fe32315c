/**
 * Time and randomness, injected everywhere (style guide rule 2). This file and `main.ts` are the only
 * places that read the real clock or the real random source.
 */

/** Milliseconds since the epoch, and an abortable sleep. */
export interface Clock {
  now(): number;
  /** Resolves after `ms`, or rejects with the signal's reason when aborted. */
  sleep(ms: number, signal?: AbortSignal): Promise<void>;
}

/** Random numbers and request nonces. */
export interface Random {
  /** Uniform in [0, 1). */
  float(): number;
  /** A unique request nonce (SignatureNonce / x-acs-signature-nonce). */
  nonce(): string;
}

export const systemClock: Clock = {
  now: () => Date.now(),
  sleep: (ms, signal) =>
    new Promise<void>((resolve, reject) => {
      if (signal?.aborted) {
        reject(abortReason(signal));
        return;
      }
      const onAbort = (): void => {
        clearTimeout(timer);
        reject(abortReason(signal));
      };
      const timer = setTimeout(
        () => {
          signal?.removeEventListener('abort', onAbort);
          resolve();
        },
        Math.max(0, ms),
      );
      signal?.addEventListener('abort', onAbort, { once: true });
    }),
};

/**
 * One turn of the event loop (a macrotask: timers, I/O and HTTP requests run before it resolves), for long
 * loops that work in slices. Injected where tests need it otherwise, like the clock.
 */
export const systemYield = (): Promise<void> => new Promise<void>((resolve) => setImmediate(resolve));

export const systemRandom: Random = {
  float: () => Math.random(),
  nonce: () => globalThis.crypto.randomUUID(),
};

function abortReason(signal: AbortSignal | undefined): Error {
  const reason: unknown = signal?.reason;
  return reason instanceof Error ? reason : new Error('aborted', { cause: reason });
}

/**
 * A deterministic PRNG (mulberry32) for tests, simulators and benchmarks: the same seed gives the same run.
 */
export function createSeededRandom(seed: number): Random {
  let state = seed >>> 0;
  let counter = 0;
  const next = (): number => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  return {
    float: next,
    nonce: () => {
      counter += 1;
      const hex = Math.floor(next() * 0xffffffff)
        .toString(16)
        .padStart(8, '0');
      return `${hex}-${counter.toString(16).padStart(8, '0')}-${seed.toString(16)}`;
    },
  };
}

/**
 * A clock that only moves when told to. `sleep` resolves when `advance`/`set` passes its deadline,
 * in deadline order. Used by unit tests instead of real sleeps.
 */
export interface ManualClock extends Clock {
  /** Move time forward by `ms`, resolving due sleepers in order, and let their continuations run. */
  advance(ms: number): Promise<void>;
  /** Number of pending sleeps. */
  pendingSleeps(): number;
}

export function createManualClock(startMs = 0): ManualClock {
  let now = startMs;
  let seq = 0;
  const sleepers: { at: number; seq: number; resolve: () => void }[] = [];
  // NOTE: lets the continuations of resolved sleeps run (several hops of awaits, and I/O-free setImmediate work)
  // before time moves on, so what they observe with now() is the time they woke at.
  const flush = async (): Promise<void> => {
    for (let round = 0; round < 3; round += 1) {
      for (let i = 0; i < 20; i += 1) await Promise.resolve();
      await new Promise<void>((r) => setImmediate(r));
    }
  };
  return {
    now: () => now,
    sleep(ms, signal) {
      return new Promise<void>((resolve, reject) => {
        if (signal?.aborted) {
          reject(abortReason(signal));
          return;
        }
        const onAbort = (): void => {
          const idx = sleepers.indexOf(entry);
          if (idx >= 0) sleepers.splice(idx, 1);
          reject(abortReason(signal));
        };
        // NOTE: the listener goes when the sleep ends, as with real timers: a signal reused across sleeps (the
        // scheduler's wake controller) must not collect one listener per sleep.
        const entry = {
          at: now + Math.max(0, ms),
          seq: (seq += 1),
          resolve: () => {
            signal?.removeEventListener('abort', onAbort);
            resolve();
          },
        };
        sleepers.push(entry);
        signal?.addEventListener('abort', onAbort, { once: true });
      });
    },
    async advance(ms) {
      const target = now + ms;
      // Work that is already runnable runs at the current time, before time moves.
      await flush();
      for (;;) {
        sleepers.sort((a, b) => a.at - b.at || a.seq - b.seq);
        const first = sleepers[0];
        if (first === undefined || first.at > target) break;
        sleepers.shift();
        now = Math.max(now, first.at);
        first.resolve();
        await flush();
      }
      now = target;
      await flush();
    },
    pendingSleeps: () => sleepers.length,
  };
}

/**
 * One cancellable one-shot timer (request deadlines). Cheaper than an AbortSignal per request: no controller,
 * no event listeners; `set` returns an opaque handle for `clear`.
 */
export interface Timers {
  set(ms: number, onFire: () => void): unknown;
  clear(handle: unknown): void;
}

export const systemTimers: Timers = {
  set: (ms, onFire) => setTimeout(onFire, Math.max(0, ms)),
  clear: (handle) => clearTimeout(handle as ReturnType<typeof setTimeout>),
};
