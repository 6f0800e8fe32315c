/**
 * The scheduler: one loop over one min-heap of due times, with a cap on tasks in flight. It knows keys and due
 * times only; what a task does, and when it is due next, is the runner's business (`run` resolves with the next
 * due time, or null).
 *
 * Lifecycle: created ──start()──► running ──stop()──► draining (in-flight tasks finish, ≤ grace) ──► stopped.
 *
 * Invariants:
 * - A key is either in the heap (waiting for its due time) or in flight, never both; so one key has at most one
 *   task running, and a task's next due time is its own answer.
 * - The loop always takes the earliest due key. Before dispatching it asks `holdMs(key)` (the API budget, for
 *   work that needs a token): while that is positive it sleeps instead, so budgeted work leaves in due order and
 *   no key starves.
 * - One sleep at a time, woken early only when something becomes due before it ends (a push of an earlier key,
 *   a free slot while the loop waits for one, stop). An idle loop sleeps `maxSleepMs` at a time.
 * - With `wakeTickMs`, a sleep until a due time ends on the next multiple of the tick (by the clock; the budget puts
 *   its token waits on the same tick, see api-budget.ts), so work due within one tick goes out in one wake-up: a sleeping process pays most of a request's CPU for being
 *   woken (docs/benchmarks.md §5), so one wake-up per group instead of per poll. Work is never started early, only
 *   up to one tick late.
 * - After stop(), tasks in flight get `graceMs` to finish; then the signal handed to every task aborts.
 */
import { AbortedError, coerceError } from '../errors.js';
import type { Clock } from './clock.js';
import { DueHeap } from './heap.js';
import type { Log } from './ports.js';

export type SchedulerState = 'created' | 'running' | 'draining' | 'stopped';

export interface SchedulerOptions {
  /** Runs the work of one key; resolves with when the key is due next (null: not any more). */
  run(key: string, signal: AbortSignal): Promise<number | null>;
  /** How long the key's work must wait before it may start (0: now). @default always 0 */
  holdMs?(key: string, now: number): number;
  /** Tasks in flight at once (`rateLimit.concurrency`). */
  concurrency: number;
  clock: Clock;
  log: Log;
  /** How long tasks in flight may finish after stop(). */
  graceMs: number;
  /** Longest single sleep; the loop re-checks `now` after waking (timers fire early or late). @default 60000 */
  maxSleepMs?: number;
  /** Sleeps until due work end on multiples of this many ms (see the module comment). 0: off. @default 0 */
  wakeTickMs?: number;
}

/** The daemon's wake-up tick ({@link SchedulerOptions.wakeTickMs}): polls are at most this late, never early. */
export const DISPATCH_TICK_MS = 100;

/** See the module comment. */
export class Scheduler {
  readonly #o: SchedulerOptions;
  readonly #heap = new DueHeap();
  readonly #inFlight = new Map<string, Promise<void>>();
  /** Aborted when tasks in flight must give up (stop, past the grace period). Shared by every task. */
  readonly #abort = new AbortController();
  #state: SchedulerState = 'created';
  #loop: Promise<void> | null = null;
  /** Reused across sleeps until a wake aborts it. */
  #wake: AbortController | null = null;
  /** When the current sleep ends (-Infinity: not sleeping). */
  #sleepUntil = -Infinity;
  #waitingForSlot = false;

  constructor(options: SchedulerOptions) {
    if (!Number.isInteger(options.concurrency) || options.concurrency < 1) {
      throw new RangeError(`Expected \`concurrency\` to be an integer ≥ 1, got \`${String(options.concurrency)}\``);
    }
    const tick = options.wakeTickMs ?? 0;
    if (!(tick >= 0 && Number.isFinite(tick))) throw new RangeError(`Expected \`wakeTickMs\` to be a finite number ≥ 0, got \`${String(tick)}\``);
    this.#o = options;
  }

  get state(): SchedulerState {
    return this.#state;
  }

  /** The signal every task receives: aborted once stop()'s grace period has passed. */
  get signal(): AbortSignal {
    return this.#abort.signal;
  }

  /** Schedules `key` at `dueAt` (or moves it there). A key in flight is rescheduled by its task's answer instead. */
  push(key: string, dueAt: number): void {
    if (this.#inFlight.has(key)) return;
    this.#heap.push(key, dueAt);
    if (dueAt < this.#sleepUntil) this.#wakeUp();
  }

  /** Unschedules `key` (a task in flight is not affected). */
  remove(key: string): void {
    this.#heap.remove(key);
  }

  /** The key waits in the heap. */
  scheduled(key: string): boolean {
    return this.#heap.has(key);
  }

  /** A task is running for the key. */
  busy(key: string): boolean {
    return this.#inFlight.has(key);
  }

  /** Starts the loop. */
  start(): void {
    if (this.#state !== 'created') throw new Error(`Scheduler.start() called in state ${this.#state}`);
    this.#state = 'running';
    this.#loop = this.#run();
  }

  /** Stops dispatching, lets tasks in flight finish within the grace period, then aborts the rest. */
  async stop(): Promise<void> {
    if (this.#state === 'created') this.#state = 'stopped';
    if (this.#state === 'running') this.#state = 'draining';
    this.#wakeUp();
    await this.#loop;
  }

  async #run(): Promise<void> {
    const { clock } = this.#o;
    const maxSleep = this.#o.maxSleepMs ?? 60_000;
    const tick = this.#o.wakeTickMs ?? 0;
    /** From `now`, the sleep of `ms` ending on the next tick (not before `ms`). */
    const onTick = (now: number, ms: number): number => (tick > 0 ? Math.min(maxSleep, Math.ceil((now + ms) / tick) * tick - now) : ms);
    try {
      while (this.#state === 'running') {
        const top = this.#heap.peek();
        const now = clock.now();
        if (!top) await this.#sleep(maxSleep);
        else if (top.dueAt > now) await this.#sleep(onTick(now, Math.min(top.dueAt - now, maxSleep)));
        else if (this.#inFlight.size >= this.#o.concurrency) await this.#sleep(maxSleep, true);
        else {
          const hold = this.#o.holdMs?.(top.key, now) ?? 0;
          // NOTE: not put on the tick: the budget answers its token waits on the tick itself, and a wait for its
          // per-window guard must end when the group it waits for leaves the window, or the rate drops by a tick per
          // window (30 per 1100 ms instead of 30 per 1040 ms at a 100 ms tick).
          if (hold > 0) await this.#sleep(Math.min(hold, maxSleep));
          else this.#dispatch(this.#heap.pop()!.key);
        }
      }
    } catch (err) {
      this.#o.log.error({ err: coerceError(err) }, 'scheduler loop crashed');
    }
    await this.#drain();
    this.#state = 'stopped';
  }

  #dispatch(key: string): void {
    const task = this.#o
      .run(key, this.#abort.signal)
      .catch((err: unknown): null => {
        // The runner answers its own failures with a due time; reaching here is a bug. The key waits for the next
        // reconcile instead of spinning.
        this.#o.log.error({ err: coerceError(err), key }, 'batch task failed unexpectedly');
        return null;
      })
      .then((due) => {
        this.#inFlight.delete(key);
        if (due !== null && this.#state === 'running') this.push(key, due);
        if (this.#waitingForSlot) this.#wakeUp();
      });
    this.#inFlight.set(key, task);
  }

  async #drain(): Promise<void> {
    if (this.#inFlight.size === 0) return;
    const grace = this.#o.graceMs;
    const all = Promise.allSettled([...this.#inFlight.values()]);
    const timer = new AbortController();
    const timedOut = await Promise.race([
      all.then(() => false),
      this.#o.clock.sleep(grace, timer.signal).then(
        () => true,
        () => false,
      ),
    ]);
    timer.abort();
    if (timedOut) {
      this.#o.log.warn({ inFlight: this.#inFlight.size, graceMs: grace }, 'requests still in flight after the grace period; aborting them');
      this.#abort.abort(new AbortedError('shutdown'));
      await Promise.allSettled([...this.#inFlight.values()]);
    }
  }

  async #sleep(ms: number, forSlot = false): Promise<void> {
    const wake = (this.#wake ??= new AbortController());
    this.#sleepUntil = forSlot ? Infinity : this.#o.clock.now() + ms;
    this.#waitingForSlot = forSlot;
    try {
      await this.#o.clock.sleep(Math.max(0, ms), wake.signal);
    } catch {
      // woken early: re-check
    } finally {
      this.#sleepUntil = -Infinity;
      this.#waitingForSlot = false;
    }
  }

  #wakeUp(): void {
    const wake = this.#wake;
    if (!wake || this.#sleepUntil === -Infinity) return;
    this.#wake = null;
    wake.abort();
  }
}
