/**
 * The one answer to "when may this call run" (DESIGN.md §2 `rateLimit`, §3): one adaptive token bucket per
 * budgeted API action, shared by everything that calls the API of one account.
 *
 * - {@link BUDGET_OF} is the only map from an API action to its bucket; everything else (metrics, feedback)
 *   derives from it.
 * - {@link ApiBudget.acquire} is the only way to take a token. It is called right before a request goes on the
 *   wire: for a status poll in the RPC client's `beforeSend` hook, after signing (through a {@link Reservation}),
 *   and in the API client's `beforeAttempt` hook for every attempt of a retried call (device pages). Callers are
 *   served in the order they asked (FIFO); a free token with nobody waiting is taken synchronously.
 * - {@link ApiBudget.reserve}: the scheduler dispatches a status poll when {@link ApiBudget.delayMs} says a token is
 *   free, but the poll takes it only once its request is signed, a few hundred µs later. The reservation, made
 *   at dispatch, makes `delayMs` answer as if that token were taken already, so one free token is never promised
 *   to two polls, and the token's time is the request's (the server counts arrivals, so the window margin only
 *   has to cover the way from the socket to the server, not signing and serialising).
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

/** The budgeted buckets of one account (`check` and `register`: the provisioning submits, DESIGN.md §13). */
export type BudgetName = 'status' | 'page' | 'check' | 'register';

/** An account's `submitQps` when the rates give none (the configuration's default for an account). */
export const DEFAULT_SUBMIT_QPS = 5;

/** Which bucket each API action draws from (`null`: not budgeted, e.g. the one registration call of a batch). */
export const BUDGET_OF: Readonly<Record<ApiAction, BudgetName | null>> = {
  QueryBatchRegisterDeviceStatus: 'status',
  QueryPageByApplyId: 'page',
  BatchRegisterDeviceWithApplyId: null,
  // NOTE: Alibaba limits each submit action to 10 QPS per account on its own: two buckets at `submitQps` each.
  BatchCheckDeviceNames: 'check',
  BatchRegisterDevice: 'register',
};

/** The `rateLimit` keys a budget is made from (DESIGN.md §2). */
export interface BudgetRates {
  statusQps: number;
  pageQps: number;
  /** Each of BatchCheckDeviceNames and BatchRegisterDevice (the account's `rateLimit.submitQps`). @default {@link DEFAULT_SUBMIT_QPS} */
  submitQps?: number;
}

/**
 * The tuning of one action's adaptive bucket:
 * - a 1040 ms window keeps a margin against jitter between taking a token and the request's arrival (Alibaba counts
 *   requests per second on arrival). The status token is taken after signing, right before the request is handed
 *   to the connection pool ({@link ApiBudget.reserve}), so the margin covers only the way from there to the server;
 *   it costs 4 % of the rate (1100 ms, when the token was taken before signing, cost 9 %). NOTE: 1020 ms let 21
 *   requests of a 20 QPS budget arrive within one second in the two-account bench (docs/benchmarks.md §5). A burst after idle starts
 *   at half the allowance for its first second (slow start: its first requests open connections and arrive late
 *   and bunched);
 * - one throttled wave counts as one signal (1 s cooldown), and halves the rate;
 * - recovery is two-speed: back to 90 % of the throttled rate within a second (where the limit evidently is),
 *   then a slow additive probe (1 % of the configured rate per second) above it;
 * - with the scheduler's wake-up tick (`tickMs`; `DISPATCH_TICK_MS` in the daemon), the bucket saves up one
 *   tick's tokens and one more (`credit`) and answers token waits up to the next tick, so the polls of a tick leave
 *   together; a wait for the per-window guard is answered as it is, so the group that leaves the window is replaced
 *   at once and the rate stays that of `qps` per window.
 */
export function budgetOptions(qps: number, tickMs = 0): AdaptiveRateOptions {
  return {
    ratePerSec: qps,
    credit: tickMs > 0 ? Math.ceil((qps * tickMs) / 1000) + 1 : 1,
    tickMs,
    windowMs: 1040,
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
  /** Bucket tuning per configured rate. @default {@link budgetOptions} with {@link tickMs} */
  tuning?: (qps: number) => AdaptiveRateOptions;
  /** The wake-up tick of the scheduler that dispatches the budgeted calls ({@link budgetOptions}). @default 0 */
  tickMs?: number;
  /**
   * Whether calls may run at all: while it returns an error, every acquire (budgeted action or not) is refused with
   * it. The daemon uses it for a replica that cannot confirm it owns the account (DESIGN.md §12). @default none
   */
  gate?: () => DaemonError | null;
}

interface Waiter {
  /** Called with the grant time. */
  resolve(at: number): void;
  reject(err: Error): void;
  signal: AbortSignal | undefined;
  onAbort: (() => void) | null;
}

/** A token promised to one caller, taken (or given back) once. See {@link ApiBudget.reserve}. */
export interface Reservation {
  /** Takes the promised token, as {@link ApiBudget.acquire} would (waits if it is not free yet). */
  take(signal?: AbortSignal): Promise<void>;
  /** Gives the promise back without taking (nothing was sent). Does nothing after take or cancel. */
  cancel(): void;
  /** Whether take() was called. */
  readonly taken: boolean;
  /**
   * The request left (was handed to its socket) now: the per-window guard counts this time instead of the take's
   * ({@link AdaptiveTokenBucket.markSent}). Does nothing before the token was granted.
   */
  sent(): void;
}

interface Lane {
  bucket: AdaptiveTokenBucket;
  /** Reservations not taken or cancelled yet. */
  reserved: number;
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
    const tickMs = options.tickMs ?? 0;
    const tuning = options.tuning ?? ((qps: number) => budgetOptions(qps, tickMs));
    const now = options.clock.now();
    const submitQps = options.rates.submitQps ?? DEFAULT_SUBMIT_QPS;
    const qps: Record<BudgetName, number> = { status: options.rates.statusQps, page: options.rates.pageQps, check: submitQps, register: submitQps };
    for (const name of Object.keys(qps) as BudgetName[]) {
      this.#lanes.set(name, { bucket: new AdaptiveTokenBucket(tuning(qps[name]), now), reserved: 0, waiters: [], pumping: false });
    }
  }

  /**
   * Resolves once a token of `action`'s bucket is taken for the caller (at once, synchronously taken, when one is
   * free and nobody waits). Rejects with the signal's reason when `signal` aborts first, or when the budget closes.
   * Actions without a bucket resolve at once.
   */
  acquire(action: ApiAction, signal?: AbortSignal): Promise<void> {
    return this.#acquire(action, signal, undefined, undefined);
  }

  /** {@link acquire}; `scheduledAt`: when a reservation was made (the token spacing runs from there). */
  #acquire(action: ApiAction, signal: AbortSignal | undefined, scheduledAt: number | undefined, onGrant: ((at: number) => void) | undefined): Promise<void> {
    const refused = this.#gate?.();
    if (refused) return Promise.reject(refused);
    const lane = this.#lane(action);
    if (!lane) return GRANTED;
    if (signal?.aborted) return Promise.reject(abortReason(signal));
    if (this.#closed.signal.aborted) return Promise.reject(new Error('API budget closed'));
    const now = this.#clock.now();
    if (lane.waiters.length === 0 && lane.bucket.tryTake(now, scheduledAt) === 0) {
      onGrant?.(now);
      return GRANTED;
    }
    return new Promise<void>((resolve, reject) => {
      const granted = (at: number): void => {
        onGrant?.(at);
        resolve();
      };
      const waiter: Waiter = { resolve: granted, reject, signal, onAbort: null };
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
   * How long from `now` before an {@link acquire} of `action` would be granted at once: 0 when a token is free,
   * nobody waits and no reservation is outstanding (a reserved token counts as taken now). Callers that schedule
   * work (the watcher loop) dispatch a budgeted call only at 0, so at most one caller at a time waits for a token
   * and the calls go out in the order they were due.
   */
  delayMs(action: ApiAction, now: number = this.#clock.now()): number {
    const lane = this.#lane(action);
    if (!lane) return 0;
    const wait = lane.reserved > 0 ? lane.bucket.peekAfter(now, lane.reserved) : lane.bucket.peek(now);
    return lane.waiters.length > 0 ? Math.max(1, wait) : wait;
  }

  /**
   * Promises the next token of `action` to one caller, who takes it later with {@link Reservation.take} (right
   * before its request is sent) or gives it back with {@link Reservation.cancel}. Until then {@link delayMs}
   * counts it as taken. An action without a bucket gets a reservation that takes nothing. Throws the gate's
   * refusal (like {@link acquire} rejects with it), so a refused call is not even signed.
   */
  reserve(action: ApiAction): Reservation {
    const refused = this.#gate?.();
    if (refused) throw refused;
    const lane = this.#lane(action);
    if (lane) lane.reserved += 1;
    const at = this.#clock.now();
    let done = false;
    let taken = false;
    let grantedAt: number | null = null;
    const settle = (): void => {
      if (done) return;
      done = true;
      if (lane) lane.reserved -= 1;
    };
    return {
      take: (signal) => {
        if (done) return Promise.reject(new Error('reservation already used'));
        settle();
        taken = true;
        return this.#acquire(action, signal, at, (t) => {
          grantedAt = t;
        });
      },
      cancel: settle,
      sent: () => {
        if (lane && grantedAt !== null) lane.bucket.markSent(grantedAt, this.#clock.now());
      },
      get taken() {
        return taken;
      },
    };
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
          else waiter.resolve(this.#clock.now());
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
export function createApiBudget(rates: BudgetRates, deps: { clock: Clock; log?: Log; gate?: () => DaemonError | null; tickMs?: number }): ApiBudget {
  return new ApiBudget({
    rates,
    clock: deps.clock,
    ...(deps.log ? { log: deps.log } : {}),
    ...(deps.gate ? { gate: deps.gate } : {}),
    ...(deps.tickMs !== undefined ? { tickMs: deps.tickMs } : {}),
  });
}

function abortReason(signal: AbortSignal): Error {
  const reason: unknown = signal.reason;
  return reason instanceof Error ? reason : new Error('aborted', { cause: reason });
}
