/**
 * The adaptive token bucket behind the API budget (api-budget.ts holds one per budgeted action; DESIGN.md §2
 * `rateLimit`, §3).
 *
 * Clock-only and deterministic: every method takes `now` (ms); nothing here owns a timer. The caller
 * (ApiBudget) asks {@link AdaptiveTokenBucket.tryTake}; on a non-zero answer it sleeps that long and asks again.
 * The bucket keeps no reservation queue (ApiBudget orders its waiters): a refused take holds no place, so a wait
 * never exceeds one token interval at the slowest rate
 * (`1000 / minRatePerSec` ms) or one window (`windowMs`, one second by default), and the tail is never
 * pushed out by minutes.
 *
 * How a take is decided (a GCRA-style token bucket plus a sliding-window guard):
 * - Tokens are spaced `1000 / currentRate` ms apart; the bucket holds up to `credit` tokens (`burst` unless
 *   set) and starts full.
 * - Independently of floating-point drift in that spacing, the last `W = max(1, ⌊ratePerSec⌋) + burst − 1`
 *   take times are kept, and a take is refused while the W-th last one is less than `windowMs` (default 1000)
 *   ago. So in any half-open 1-second window at most W takes succeed; with `burst: 1` that is
 *   `⌊ratePerSec⌋` (at least 1), which is what a server counting requests per second sees. A non-integer
 *   rate above 1 therefore runs at its floor over any one second.
 *
 * Adaptation (AIMD): {@link AdaptiveTokenBucket.penalize} (a throttling answer) halves the current rate,
 * not below `minRatePerSec`, and empties the bucket. The rate then recovers additively by
 * `recoveryPerSec` per second without throttling, up to `ratePerSec`.
 *
 * Clock steps backwards (`now` smaller than a previous call's) shift the stored times by the same amount,
 * so a wall-clock correction cannot stall the bucket for the length of the step.
 */

/** Options of one {@link AdaptiveTokenBucket}. */
export interface AdaptiveRateOptions {
  /** Requests per second at full speed (the configured `statusQps` / `pageQps`). */
  ratePerSec: number;
  /** Tokens the bucket can hold, i.e. requests allowed back to back. @default 1 */
  burst?: number;
  /**
   * Tokens the bucket may save up without raising the per-window guarantee (unlike `burst`): a caller that wakes
   * only every few token intervals (the scheduler's wake-up tick) finds the tokens of the whole interval and sends
   * them together, while any window still holds at most `⌊ratePerSec⌋ + burst − 1` takes. ≥ `burst`. @default `burst`
   */
  credit?: number;
  /**
   * A wait for the token schedule is answered up to the next multiple of this many ms (the caller's wake-up tick), so
   * the tokens of one tick are taken together; a wait for the window guard is answered as it is (sends taken together
   * leave the window together). Which tokens are free does not change. 0: off. @default 0
   */
  tickMs?: number;
  /** Floor of the adaptive rate. @default max(0.2, ratePerSec / 32), never above ratePerSec */
  minRatePerSec?: number;
  /** Additive recovery: rate units regained per second without throttling. @default ratePerSec / 20 */
  recoveryPerSec?: number;
  /**
   * Penalties within this many ms of the previous one empty the bucket but do not halve the rate again,
   * so one throttled wave of concurrent requests counts as one signal. @default 0 (every penalty halves)
   */
  penaltyCooldownMs?: number;
  /**
   * Length of the sliding window of the per-window guarantee. Raise it a little above one second (e.g. 1020)
   * to keep a margin against network jitter when a server counts requests per second on arrival; the cost is
   * a rate of `1000 / windowMs` of the configured one. Must be ≥ 1000. @default 1000
   */
  windowMs?: number;
  /**
   * Two-speed recovery after a penalty: within this many ms the rate climbs linearly from the halved rate back to
   * `safeFraction` of the rate at which throttling happened (where the server's limit evidently is), and only then
   * probes further at `recoveryPerSec`. 0 turns it off (plain additive recovery from the halved rate). @default 0
   */
  fastRecoveryMs?: number;
  /** Fraction of the throttled rate that fast recovery returns to. @default 0.9 */
  safeFraction?: number;
  /**
   * Slow start: a burst after an idle window (nothing taken for `windowMs`) runs at half the per-window allowance
   * for its first window. Its first requests open connections (and share the process with start-up work), so they
   * reach the server later and bunched; this keeps the server's per-second count within the limit anyway, at the
   * cost of half a second of budget per burst. @default false
   */
  coldStartMargin?: boolean;
}

/** One second: rates are per second. */
const SECOND_MS = 1000;
/** A caller that arrives less than this late (rounding of a returned wait) keeps its place in the schedule. */
const GRACE_MS = 1;
/** Float noise tolerated when rounding a wait up to whole ms. */
const WAIT_EPSILON_MS = 1e-6;

/** A deterministic adaptive token bucket for one API action. See the module comment. */
export class AdaptiveTokenBucket {
  /** The configured full rate (requests per second). */
  readonly maxRate: number;
  /** The floor of the adaptive rate. */
  readonly minRate: number;
  /** Tokens the bucket can hold back to back beyond the rate (raises the per-window allowance). */
  readonly burst: number;
  /** Tokens the bucket can save up (≥ burst; does not raise the per-window allowance). */
  readonly credit: number;
  /** Token waits end on multiples of this (0: off). */
  readonly tickMs: number;
  /** Rate units regained per second without throttling. */
  readonly recoveryPerSec: number;
  /** At most this many takes succeed in any half-open window of {@link windowMs} (so of one second too). */
  readonly maxPerWindow: number;
  /** Length of the sliding window of the {@link maxPerWindow} guarantee (ms). */
  readonly windowMs: number;
  private readonly cooldownMs: number;
  private readonly fastRecoveryMs: number;
  private readonly coldStartMargin: boolean;
  private lastTakeAt = -Infinity;
  private readonly safeFraction: number;
  /** Where fast recovery climbs to after the last penalty (= baseRate when fast recovery is off). */
  private kneeRate: number;

  /** Rate right after the last penalty (or the max rate), and when that was. */
  private baseRate: number;
  private baseAt: number;
  private lastPenaltyAt = -Infinity;
  /** Theoretical arrival time of the next token (GCRA): a take is allowed once now ≥ tat − (credit−1)·interval. */
  private tat: number;
  /** Ring of the last `maxPerWindow` take times. */
  private readonly ring: Float64Array;
  private ringCount = 0;
  private ringHead = 0;
  private lastNow: number;
  /** Scratch copy of the ring for {@link peekAfter} (no allocation per call). */
  private readonly scratch: Float64Array;

  constructor(options: AdaptiveRateOptions, now: number) {
    const rate = options.ratePerSec;
    assertNumber('ratePerSec', rate, rate > 0 && Number.isFinite(rate), 'a finite number > 0');
    const burst = options.burst ?? 1;
    assertNumber('burst', burst, Number.isInteger(burst) && burst >= 1 && burst <= 1_000_000, 'an integer ≥ 1');
    const credit = options.credit ?? burst;
    assertNumber('credit', credit, Number.isInteger(credit) && credit >= burst && credit <= 1_000_000, `an integer ≥ burst (${burst})`);
    const minRate = options.minRatePerSec ?? Math.min(rate, Math.max(0.2, rate / 32));
    assertNumber('minRatePerSec', minRate, minRate > 0 && minRate <= rate, `a number > 0 and ≤ ratePerSec (${rate})`);
    const recovery = options.recoveryPerSec ?? rate / 20;
    assertNumber('recoveryPerSec', recovery, recovery >= 0 && Number.isFinite(recovery), 'a finite number ≥ 0');
    const cooldown = options.penaltyCooldownMs ?? 0;
    assertNumber('penaltyCooldownMs', cooldown, cooldown >= 0 && Number.isFinite(cooldown), 'a finite number ≥ 0');
    const windowMs = options.windowMs ?? SECOND_MS;
    assertNumber('windowMs', windowMs, windowMs >= SECOND_MS && Number.isFinite(windowMs), 'a finite number ≥ 1000');
    assertNumber('now', now, Number.isFinite(now), 'a finite number');

    const fast = options.fastRecoveryMs ?? 0;
    assertNumber('fastRecoveryMs', fast, fast >= 0 && Number.isFinite(fast), 'a finite number ≥ 0');
    const safe = options.safeFraction ?? 0.9;
    assertNumber('safeFraction', safe, safe > 0 && safe <= 1, 'a number in (0, 1]');
    this.fastRecoveryMs = fast;
    this.coldStartMargin = options.coldStartMargin ?? false;
    this.safeFraction = safe;
    this.kneeRate = rate;
    this.maxRate = rate;
    this.minRate = minRate;
    this.burst = burst;
    this.credit = credit;
    const tickMs = options.tickMs ?? 0;
    assertNumber('tickMs', tickMs, tickMs >= 0 && Number.isFinite(tickMs), 'a finite number ≥ 0');
    this.tickMs = tickMs;
    this.recoveryPerSec = recovery;
    this.cooldownMs = cooldown;
    this.windowMs = windowMs;
    this.maxPerWindow = Math.max(1, Math.floor(rate)) + burst - 1;
    this.ring = new Float64Array(this.maxPerWindow);
    this.scratch = new Float64Array(this.maxPerWindow);
    this.baseRate = rate;
    this.baseAt = now;
    this.tat = now;
    this.lastNow = now;
  }

  /**
   * Takes a token: returns 0 when one was taken, otherwise the whole number of ms (≥ 1) until one will be
   * available. A refusal takes nothing and reserves nothing.
   *
   * `scheduledAt` (≤ `now`, default `now`): when the caller was granted the right to take, if earlier (a
   * reservation made when the token was free, taken once the request is signed). The token spacing runs from
   * there, so the time spent signing is not added to every interval; the per-window guard counts `now`, the
   * time the request really leaves.
   */
  tryTake(now: number, scheduledAt: number = now): number {
    const wait = this.peek(now);
    if (wait > 0) return wait;
    const interval = SECOND_MS / this.rateAt(now);
    const anchor = Math.min(now, scheduledAt);

    // NOTE: a caller that slept a rounded-up wait arrives a fraction of a ms late; keeping the schedule
    // anchored (instead of restarting it at `now`) stops that rounding from eroding the rate.
    const base = anchor - this.tat >= GRACE_MS ? anchor : this.tat;
    this.tat = base + interval;
    if (this.coldStartMargin && now - this.lastTakeAt >= this.windowMs) {
      for (let i = Math.floor(this.maxPerWindow / 2); i > 0; i -= 1) this.record(now);
    }
    this.record(now);
    this.lastTakeAt = now;
    return 0;
  }

  /** The wait {@link tryTake} would answer now, without taking anything (0 = a token is available). */
  peek(now: number): number {
    this.observe(now);
    const interval = SECOND_MS / this.rateAt(now);
    // NOTE: float noise in the schedule (tat 2115.0000000001 for a caller back at 2115) is no wait: a caller that
    // slept exactly the answered wait gets its token. The per-window guard below stays exact.
    const rawTokenWait = this.tat - (this.credit - 1) * interval - now;
    let tokenWait = rawTokenWait > WAIT_EPSILON_MS ? rawTokenWait : 0;
    if (tokenWait > 0 && this.tickMs > 0) tokenWait = Math.ceil((now + tokenWait) / this.tickMs) * this.tickMs - now;
    let windowWait = 0;
    if (this.ringCount === this.maxPerWindow) {
      // NOTE: written as `now − oldest` on purpose: `oldest + windowMs − now` can round to 0 for a gap a hair
      // under the window, while this is the very difference an observer of the take times computes.
      const sinceOldest = now - (this.ring[this.ringHead] as number);
      if (sinceOldest < this.windowMs) windowWait = Math.max(Number.MIN_VALUE, this.windowMs - sinceOldest);
    }
    const wait = Math.max(tokenWait, windowWait);
    // NOTE: the epsilon keeps float noise (5000.000000000001) from adding a whole ms to the wait; a caller
    // that wakes that hair too early is refused again with a 1 ms wait, and the take rules stay exact.
    return wait > 0 ? Math.max(1, Math.ceil(wait - WAIT_EPSILON_MS)) : 0;
  }

  /**
   * The request of the take recorded at `takenAt` reached its socket at `sentAt`: the per-window guard counts that
   * time instead (a request held up between its token and its write, e.g. behind other work of a busy event loop,
   * would otherwise arrive bunched with the next ones). Only a later time is recorded; an unknown take is ignored.
   */
  markSent(takenAt: number, sentAt: number): void {
    if (!(sentAt > takenAt)) return;
    for (let i = this.ringCount - 1; i >= 0; i -= 1) {
      const slot = (this.ringHead + i) % this.maxPerWindow;
      if (this.ring[slot] === takenAt) {
        this.ring[slot] = sentAt;
        return;
      }
    }
  }

  /**
   * The wait {@link peek} would answer at `now` if `pending` more tokens were taken first, at `now` (callers that
   * were promised a token and have not taken it yet: the API budget's reservations). Takes nothing.
   */
  peekAfter(now: number, pending: number): number {
    if (pending <= 0) return this.peek(now);
    const saved = { tat: this.tat, ringCount: this.ringCount, ringHead: this.ringHead, lastTakeAt: this.lastTakeAt, lastNow: this.lastNow };
    this.scratch.set(this.ring);
    let at = now;
    for (let i = 0; i < pending; i += 1) {
      // NOTE: a reserved token that would itself wait is taken when it becomes free; later ones follow it.
      at += this.peek(at);
      this.tryTake(at);
    }
    const wait = this.peek(at) + (at - now);
    this.tat = saved.tat;
    this.ringCount = saved.ringCount;
    this.ringHead = saved.ringHead;
    this.lastTakeAt = saved.lastTakeAt;
    // NOTE: the simulated takes may have moved `lastNow` ahead of the real clock; a later real call must not see
    // that as a backward step.
    this.lastNow = Math.max(saved.lastNow, now);
    this.ring.set(this.scratch);
    return wait;
  }

  /** A throttling answer: halve the current rate (not below the floor) and empty the bucket. */
  penalize(now: number): void {
    this.observe(now);
    if (now - this.lastPenaltyAt >= this.cooldownMs) {
      const throttledAt = this.rateAt(now);
      // NOTE: throttled again soon after a fast recovery: the knee was too optimistic, recover slowly this time.
      const knownBad = now - this.lastPenaltyAt < this.fastRecoveryMs + this.cooldownMs + SECOND_MS * 2;
      this.baseRate = Math.max(this.minRate, throttledAt / 2);
      this.kneeRate =
        this.fastRecoveryMs > 0 && !knownBad ? Math.max(this.baseRate, throttledAt * this.safeFraction) : this.baseRate;
      this.baseAt = now;
      this.lastPenaltyAt = now;
    }
    const interval = SECOND_MS / this.rateAt(now);
    // Empty: the next token is one interval away, with no burst credit left.
    this.tat = Math.max(this.tat, now + this.credit * interval);
  }

  /** The adaptive rate at `now`: the post-penalty rate plus additive recovery since, capped at {@link maxRate}. */
  currentRate(now: number): number {
    this.observe(now);
    return this.rateAt(now);
  }

  private rateAt(now: number): number {
    const elapsed = Math.max(0, now - this.baseAt);
    if (this.fastRecoveryMs > 0 && elapsed < this.fastRecoveryMs) {
      return Math.min(this.maxRate, this.baseRate + ((this.kneeRate - this.baseRate) * elapsed) / this.fastRecoveryMs);
    }
    const probeSec = Math.max(0, elapsed - this.fastRecoveryMs) / 1000;
    return Math.min(this.maxRate, this.kneeRate + this.recoveryPerSec * probeSec);
  }

  private record(now: number): void {
    const slot = (this.ringHead + this.ringCount) % this.maxPerWindow;
    if (this.ringCount === this.maxPerWindow) {
      this.ring[this.ringHead] = now;
      this.ringHead = (this.ringHead + 1) % this.maxPerWindow;
    } else {
      this.ring[slot] = now;
      this.ringCount += 1;
    }
  }

  /** Keeps time monotonic from the bucket's point of view (see the module comment). */
  private observe(now: number): void {
    if (Number.isNaN(now)) throw new RangeError('Expected `now` to be a number, got `NaN`');
    if (now >= this.lastNow) {
      this.lastNow = now;
      return;
    }
    const shift = now - this.lastNow;
    this.tat += shift;
    this.baseAt += shift;
    this.lastPenaltyAt += shift;
    this.lastTakeAt += shift;
    for (let i = 0; i < this.ringCount; i += 1) {
      const slot = (this.ringHead + i) % this.maxPerWindow;
      this.ring[slot] = (this.ring[slot] as number) + shift;
    }
    this.lastNow = now;
  }
}

/** One {@link AdaptiveTokenBucket} per API action, e.g. `{ status: …, page: … }`. */
export class RateLimiterSet<A extends string> {
  private readonly buckets: Map<A, AdaptiveTokenBucket>;

  constructor(rates: Record<A, AdaptiveRateOptions>, now: number) {
    this.buckets = new Map();
    for (const action of Object.keys(rates) as A[]) {
      this.buckets.set(action, new AdaptiveTokenBucket(rates[action], now));
    }
  }

  /** See {@link AdaptiveTokenBucket.tryTake}. */
  tryTake(action: A, now: number): number {
    return this.bucket(action).tryTake(now);
  }

  /** See {@link AdaptiveTokenBucket.penalize}. */
  peek(action: A, now: number): number {
    return this.bucket(action).peek(now);
  }

  penalize(action: A, now: number): void {
    this.bucket(action).penalize(now);
  }

  /** See {@link AdaptiveTokenBucket.currentRate}. */
  currentRate(action: A, now: number): number {
    return this.bucket(action).currentRate(now);
  }

  /** The configured actions, in insertion order. */
  actions(): A[] {
    return [...this.buckets.keys()];
  }

  /** The bucket of `action` (for metrics: `maxRate`, `minRate`). */
  bucket(action: A): AdaptiveTokenBucket {
    const b = this.buckets.get(action);
    if (b === undefined) throw new RangeError(`Unknown rate-limited action \`${action}\``);
    return b;
  }
}

function assertNumber(name: string, value: number, ok: boolean, expected: string): void {
  if (typeof value !== 'number' || !ok) {
    throw new RangeError(`Expected \`${name}\` to be ${expected}, got \`${String(value)}\` (${typeof value})`);
  }
}
