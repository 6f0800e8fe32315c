/**
 * The one answer to "when may this call run" (DESIGN.md §2 `rateLimit`, §3): one adaptive token bucket per
 * budgeted API action, shared by everything that calls the API of one account.
 *
 * - {@link BUDGET_OF} is the only map from an API action to its bucket; everything else (metrics, feedback)
 *   derives from it.
 * - {@link ApiBudget.acquire} is the only way to take a token. It is called right before a request goes on the
 *   wire: by the batch runner for a status poll (one attempt per poll), and by the API client's `beforeAttempt`
 *   hook for every attempt of a retried call (device pages). Callers are served in the order they asked (FIFO);
 *   a free token with nobody waiting is taken synchronously, so a caller that asks as soon as it is dispatched
 *   keeps its place in due order.
 * - {@link ApiBudget.feedback} turns the outcome of an attempt into the adaptive rate (throttling halves it).
 * - {@link ApiBudget.rates} gives the current rate per action, for `ibw_rate_limit_qps{action}`.
 *
 * One budget belongs to one Alibaba account (its QPS quota is per account): {@link createApiBudget} makes one
 * from a `rateLimit` section; several accounts are several budgets.
 *
 * Waiting costs one sleep per bucket, whatever the number of waiters: the head of the queue sleeps until the
 * bucket grants, then the queue is served in order.
 */
import type { DaemonError } from '../errors.js';
import type { Clock } from './clock.js';
import type { ApiAction, Log } from './ports.js';
import { type AdaptiveRateOptions, AdaptiveTokenBucket } from './rate-limiter.js';

/** The budgeted buckets of one account. */
export type BudgetName = 'status' | 'page';

/** Which bucket each API action draws from (`null`: not budgeted, e.g. the one registration call of a batch). */
export const BUDGET_OF: Readonly<Record<ApiAction, BudgetName | null>> = {
  QueryBatchRegisterDeviceStatus: 'status',
  QueryPageByApplyId: 'page',
  BatchRegisterDeviceWithApplyId: null,
  BatchCheckDeviceNames: null,
  BatchRegisterDevice: null,
};

/** The `rateLimit` keys a budget is made from (DESIGN.md §2). */
export interface BudgetRates {
  statusQps: number;
  pageQps: number;
}

/**
 * The tuning of one action's adaptive bucket:
 * - a 1100 ms window keeps a margin against jitter between taking a token and the request's arrival (Alibaba counts
 *   requests per second on arrival; a busy event loop or a new connection delays some requests more than others),
 *   and a burst after idle starts at half the allowance for its first second (slow start: its first requests open
 *   connections and arrive late and bunched). NOTE: once the loop really runs at the budget (the token taken at its
 *   grant, quiet polls not waiting for an fsync), 1020 ms let 29 requests of a 28 QPS budget arrive within one second
 *   on a loaded machine, and 1050 ms 21 of 20 (new connections opened mid-run arrive bunched);
 * - one throttled wave counts as one signal (1 s cooldown), and halves the rate;
 * - recovery is two-speed: back to 90 % of the throttled rate within a second (where the limit evidently is),
 *   then a slow additive probe (1 % of the configured rate per second) above it.
 */
export function budgetOptions(qps: number): AdaptiveRateOptions {
  return {
    ratePerSec: qps,
    windowMs: 1100,
    coldStartMargin: true,
    penaltyCooldownMs: 1000,
    fastRecoveryMs: 1000,
    safeFraction: 0.9,
    recoveryPerSec: qps / 100,
  };
}

/** The outcome of one attempt, as the API client reports it (`AttemptInfo.outcome`: `throttled`, `success`, …). */
export type AttemptOutcome = string;

export interface ApiBudgetOptions {
  rates: BudgetRates;
  clock: Clock;
  /** Receives one warn line per throttling answer. */
  log?: Log;
  /** Bucket tuning per configured rate. @default {@link budgetOptions} */
  tuning?: (qps: number) => AdaptiveRateOptions;
  /**
   * Whether calls may run at all: while it returns an error, every acquire (budgeted action or not) is refused with
   * it. The daemon uses it for a replica that cannot confirm it owns the account (DESIGN.md §12). @default none
   */
  gate?: () => DaemonError | null;
}

interface Waiter {
  resolve(): void;
  reject(err: Error): void;
  signal: AbortSignal | undefined;
  onAbort: (() => void) | null;
}

interface Lane {
  bucket: AdaptiveTokenBucket;
  /** Callers waiting for a token, in the order they asked. */
  waiters: Waiter[];
  /** The head of the queue is sleeping until the bucket grants. */
  pumping: boolean;
}

const GRANTED: Promise<void> = Promise.resolve();

/** The API budget of one account. See the module comment. */
export class ApiBudget {
  readonly #clock: Clock;
  readonly #log: Log | undefined;
  readonly #gate: (() => DaemonError | null) | undefined;
  readonly #lanes = new Map<BudgetName, Lane>();
  /** Aborted by close(): ends the pump's sleep and refuses the waiters left. */
  readonly #closed = new AbortController();

  constructor(options: ApiBudgetOptions) {
    this.#clock = options.clock;
    this.#log = options.log;
    this.#gate = options.gate;
    const tuning = options.tuning ?? budgetOptions;
    const now = options.clock.now();
    const qps: Record<BudgetName, number> = { status: options.rates.statusQps, page: options.rates.pageQps };
    for (const name of Object.keys(qps) as BudgetName[]) {
      this.#lanes.set(name, { bucket: new AdaptiveTokenBucket(tuning(qps[name]), now), waiters: [], pumping: false });
    }
  }

  /**
   * Resolves once a token of `action`'s bucket is taken for the caller (at once, synchronously taken, when one is
   * free and nobody waits). Rejects with the signal's reason when `signal` aborts first, or when the budget closes.
   * Actions without a bucket resolve at once.
   */
  acquire(action: ApiAction, signal?: AbortSignal): Promise<void> {
    const refused = this.#gate?.();
    if (refused) return Promise.reject(refused);
    const lane = this.#lane(action);
    if (!lane) return GRANTED;
    if (signal?.aborted) return Promise.reject(abortReason(signal));
    if (this.#closed.signal.aborted) return Promise.reject(new Error('API budget closed'));
    if (lane.waiters.length === 0 && lane.bucket.tryTake(this.#clock.now()) === 0) return GRANTED;
    return new Promise<void>((resolve, reject) => {
      const waiter: Waiter = { resolve, reject, signal, onAbort: null };
      if (signal) {
        waiter.onAbort = () => {
          const i = lane.waiters.indexOf(waiter);
          if (i >= 0) lane.waiters.splice(i, 1);
          reject(abortReason(signal));
        };
        signal.addEventListener('abort', waiter.onAbort, { once: true });
      }
      lane.waiters.push(waiter);
      void this.#pump(lane);
    });
  }

  /**
   * How long from `now` before an {@link acquire} of `action` would be granted at once: 0 when a token is free and
   * nobody waits. Callers that schedule work (the watcher loop) dispatch a budgeted call only at 0, so at most one
   * caller at a time waits for a token and the calls go out in the order they were due.
   */
  delayMs(action: ApiAction, now: number = this.#clock.now()): number {
    const lane = this.#lane(action);
    if (!lane) return 0;
    const wait = lane.bucket.peek(now);
    return lane.waiters.length > 0 ? Math.max(1, wait) : wait;
  }

  /** Feedback from one attempt: a throttling answer slows the action's bucket down. Returns whether it did. */
  feedback(action: ApiAction, outcome: AttemptOutcome): boolean {
    if (outcome !== 'throttled') return false;
    const lane = this.#lane(action);
    if (!lane) return false;
    const now = this.#clock.now();
    lane.bucket.penalize(now);
    this.#log?.warn({ action, qps: lane.bucket.currentRate(now) }, 'throttled by Alibaba Cloud; slowing down');
    return true;
  }

  /** The current adaptive rate of every budgeted action (requests per second). */
  rates(now: number = this.#clock.now()): { action: ApiAction; qps: number }[] {
    const out: { action: ApiAction; qps: number }[] = [];
    for (const action of Object.keys(BUDGET_OF) as ApiAction[]) {
      const lane = this.#lane(action);
      if (lane) out.push({ action, qps: lane.bucket.currentRate(now) });
    }
    return out;
  }

  /** Refuses every waiter and every later acquire; ends the pending sleep. */
  close(): void {
    this.#closed.abort(new Error('API budget closed'));
  }

  #lane(action: ApiAction): Lane | undefined {
    const name = BUDGET_OF[action];
    return name === null ? undefined : this.#lanes.get(name);
  }

  /** Serves the queue in order, sleeping until the bucket grants the head. One pump per lane. */
  async #pump(lane: Lane): Promise<void> {
    if (lane.pumping) return;
    lane.pumping = true;
    try {
      while (lane.waiters.length > 0) {
        const wait = lane.bucket.tryTake(this.#clock.now());
        if (wait === 0) {
          const waiter = lane.waiters.shift() as Waiter;
          if (waiter.onAbort) waiter.signal?.removeEventListener('abort', waiter.onAbort);
          // The gate again at the grant: a waiter queued while the account was confirmed must not go out after its
          // lease stopped being trusted (a process paused while it waited, the database gone meanwhile).
          const refused = this.#gate?.();
          if (refused) waiter.reject(refused);
          else waiter.resolve();
          continue;
        }
        await this.#clock.sleep(wait, this.#closed.signal);
      }
    } catch (err) {
      // Closed: nobody may take a token any more.
      for (const waiter of lane.waiters.splice(0)) {
        if (waiter.onAbort) waiter.signal?.removeEventListener('abort', waiter.onAbort);
        waiter.reject(err instanceof Error ? err : new Error('API budget closed'));
      }
    } finally {
      lane.pumping = false;
    }
  }
}

/** One account's budget from its `rateLimit` section. */
export function createApiBudget(rates: BudgetRates, deps: { clock: Clock; log?: Log; gate?: () => DaemonError | null }): ApiBudget {
  return new ApiBudget({ rates, clock: deps.clock, ...(deps.log ? { log: deps.log } : {}), ...(deps.gate ? { gate: deps.gate } : {}) });
}

function abortReason(signal: AbortSignal): Error {
  const reason: unknown = signal.reason;
  return reason instanceof Error ? reason : new Error('aborted', { cause: reason });
}
