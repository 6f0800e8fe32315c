import fc from 'fast-check';
import { describe, expect, it } from 'vitest';

import { DueHeap } from '../../../src/core/heap.js';
import { AdaptiveTokenBucket, RateLimiterSet } from '../../../src/core/rate-limiter.js';

/** The most successes that fall into one half-open window [t, t + 1000). Input is non-decreasing. */
function maxInAnyWindow(times: readonly number[]): number {
  let best = 0;
  let j = 0;
  for (let i = 0; i < times.length; i += 1) {
    if (j < i) j = i;
    while (j < times.length && (times[j] as number) - (times[i] as number) < 1000) j += 1;
    best = Math.max(best, j - i);
  }
  return best;
}

const RATES = [1, 5, 20, 30, 2.5];
const INTEGER_RATES = [1, 5, 20, 30];

/**
 * An arbitrary caller: each step waits `gap` ms (or the returned wait plus a little, when it respects
 * waits), then calls tryTake; now and then a throttling answer penalizes the bucket.
 */
const callerSteps = fc.array(
  fc.record({
    gap: fc.oneof(
      fc.constant(0),
      fc.integer({ min: 0, max: 40 }),
      fc.integer({ min: 0, max: 1500 }),
      fc.double({ min: 0, max: 120, noNaN: true }),
    ),
    respectWait: fc.boolean(),
    penalize: fc.integer({ min: 0, max: 30 }).map((n) => n === 0),
  }),
  { maxLength: 400 },
);

interface Run {
  successes: number[];
  waits: number[];
}

function runCaller(
  bucket: AdaptiveTokenBucket,
  start: number,
  plan: readonly { gap: number; respectWait: boolean; penalize: boolean }[],
): Run {
  const successes: number[] = [];
  const waits: number[] = [];
  let now = start;
  let lastWait = 0;
  for (const s of plan) {
    now += s.respectWait && lastWait > 0 ? lastWait + (s.gap % 3) : s.gap;
    if (s.penalize) bucket.penalize(now);
    lastWait = bucket.tryTake(now);
    if (lastWait === 0) successes.push(now);
    else waits.push(lastWait);
  }
  return { successes, waits };
}

/** A caller that always sleeps exactly the returned wait: the fastest legal caller. */
function greedy(bucket: AdaptiveTokenBucket, start: number, durationMs: number): number[] {
  const successes: number[] = [];
  let now = start;
  while (now < start + durationMs) {
    const wait = bucket.tryTake(now);
    if (wait === 0) successes.push(now);
    else now += wait;
  }
  return successes;
}

describe('AdaptiveTokenBucket: at most ⌊rate⌋ takes in any half-open 1-second window (burst 1)', () => {
  for (const rate of RATES) {
    it(`rate ${rate}: arbitrary callers, respecting waits or not, with throttling penalties`, () => {
      const limit = Math.max(1, Math.floor(rate));
      fc.assert(
        fc.property(callerSteps, fc.integer({ min: 0, max: 2_000_000_000_000 }), (plan, start) => {
          const bucket = new AdaptiveTokenBucket({ ratePerSec: rate }, start);
          const { successes } = runCaller(bucket, start, plan);
          expect(maxInAnyWindow(successes)).toBeLessThanOrEqual(limit);
        }),
        { numRuns: 250 },
      );
    });

    it(`rate ${rate}: a caller probing every ms from the start`, () => {
      const bucket = new AdaptiveTokenBucket({ ratePerSec: rate }, 0);
      const successes: number[] = [];
      for (let now = 0; now < 5000; now += 1) if (bucket.tryTake(now) === 0) successes.push(now);
      expect(successes[0]).toBe(0); // the bucket starts with one token
      expect(maxInAnyWindow(successes)).toBe(Math.max(1, Math.floor(rate)));
    });
  }

  it('fractional-ms callers cannot slip an extra take in through floating-point drift', () => {
    fc.assert(
      fc.property(
        fc.constantFrom(3, 7, 30, 49),
        fc.array(fc.double({ min: 0, max: 50, noNaN: true }), { minLength: 50, maxLength: 500 }),
        (rate, gaps) => {
          const bucket = new AdaptiveTokenBucket({ ratePerSec: rate }, 0.1);
          const successes: number[] = [];
          let now = 0.1;
          for (const g of gaps) {
            const w = bucket.tryTake(now);
            if (w === 0) successes.push(now);
            now += w > 0 ? Math.min(w, g) : g;
          }
          expect(maxInAnyWindow(successes)).toBeLessThanOrEqual(rate);
        },
      ),
      { numRuns: 200 },
    );
  });

  it('regression: a gap a hair under one second is refused (no `oldest + 1000 − now` rounding to 0)', () => {
    const bucket = new AdaptiveTokenBucket({ ratePerSec: 1 }, 0);
    expect(bucket.tryTake(5.684341886080803e-14)).toBe(0);
    const second = 5.684341886080803e-14 + 1000; // 1000.0000000000001
    expect(bucket.tryTake(second)).toBe(0);
    expect(2000 - second).toBeLessThan(1000); // while `second + 1000 − 2000` is 0
    expect(bucket.tryTake(2000)).toBeGreaterThan(0);
  });

  it('regression: float noise does not add a whole ms to a wait', () => {
    const bucket = new AdaptiveTokenBucket({ ratePerSec: 0.5 }, 0);
    let now = 8.319602784467861e-10;
    bucket.penalize(now);
    now += bucket.tryTake(now);
    bucket.penalize(now);
    expect(bucket.tryTake(now)).toBe(5000); // 1000 / minRate, not 5001
  });

  it('with burst b, b takes succeed at once and a window holds at most ⌊rate⌋ + b − 1', () => {
    const bucket = new AdaptiveTokenBucket({ ratePerSec: 5, burst: 3 }, 0);
    expect([bucket.tryTake(0), bucket.tryTake(0), bucket.tryTake(0)]).toEqual([0, 0, 0]);
    expect(bucket.tryTake(0)).toBe(200);
    expect(bucket.maxPerWindow).toBe(7);
    const successes = [0, 0, 0, ...greedy(bucket, 0, 10_000)];
    expect(maxInAnyWindow(successes)).toBeLessThanOrEqual(7);
  });
});

describe('AdaptiveTokenBucket: windowMs margin', () => {
  it('windowMs 1050 keeps 50 ms of margin against arrival jitter, at about 95% of the rate', () => {
    const bucket = new AdaptiveTokenBucket({ ratePerSec: 30, windowMs: 1050 }, 0);
    const successes = greedy(bucket, 0, 30_000);
    // Even if each request arrived up to 25 ms early or late, no 1-second window would see 31.
    let worst = 0;
    for (let i = 0; i + 30 < successes.length; i += 1) {
      worst = Math.max(worst, 1050 - ((successes[i + 30] as number) - (successes[i] as number)));
    }
    expect(worst).toBeLessThanOrEqual(0);
    expect(successes.length / 30).toBeGreaterThanOrEqual((30 * 1000) / 1050 - 0.1);
    expect(() => new AdaptiveTokenBucket({ ratePerSec: 30, windowMs: 999 }, 0)).toThrow(/`windowMs`/);
  });
});

describe('AdaptiveTokenBucket: throughput and bounded waits', () => {
  for (const rate of INTEGER_RATES) {
    it(`rate ${rate}: the fastest legal caller achieves the full rate`, () => {
      const successes = greedy(new AdaptiveTokenBucket({ ratePerSec: rate }, 1000), 1000, 30_000);
      expect(successes.length / 30).toBeGreaterThanOrEqual(0.95 * rate);
      expect(successes.length / 30).toBeLessThanOrEqual(rate + 1 / 30);
    });

    it(`rate ${rate}: rounding returned waits up to whole ms does not erode the rate`, () => {
      const successes = greedy(new AdaptiveTokenBucket({ ratePerSec: rate * 7 }, 0), 0, 30_000);
      expect(successes.length).toBeGreaterThanOrEqual(30 * rate * 7 - 1);
    });

    it(`rate ${rate}: every wait is at most 1000 / minRate ms, whatever the caller and the throttling`, () => {
      fc.assert(
        fc.property(callerSteps, (plan) => {
          const bucket = new AdaptiveTokenBucket({ ratePerSec: rate }, 0);
          const bound = Math.ceil(1000 / bucket.minRate);
          const { waits } = runCaller(bucket, 0, plan);
          for (const w of waits) {
            expect(Number.isInteger(w)).toBe(true);
            expect(w).toBeGreaterThanOrEqual(1);
            expect(w).toBeLessThanOrEqual(bound);
          }
        }),
        { numRuns: 150 },
      );
    });
  }

  it('regression: float noise in the schedule does not refuse a caller that slept the answered wait (rate 30, [2015, 0, 0, 0])', () => {
    const bucket = new AdaptiveTokenBucket({ ratePerSec: 30 }, 0);
    let now = 0;
    for (const g of [2015, 0, 0, 0]) {
      now += g;
      const w = bucket.tryTake(now);
      if (w > 0) expect(bucket.tryTake(now + w)).toBe(0);
      now += w;
    }
  });

  it('a caller that sleeps exactly the returned wait then gets its token (no queue ahead of it)', () => {
    fc.assert(
      fc.property(fc.constantFrom(...RATES), fc.array(fc.nat({ max: 3000 }), { maxLength: 100 }), (rate, gaps) => {
        const bucket = new AdaptiveTokenBucket({ ratePerSec: rate }, 0);
        let now = 0;
        for (const g of gaps) {
          now += g;
          const w = bucket.tryTake(now);
          if (w > 0) expect(bucket.tryTake(now + w)).toBe(0);
          now += w;
        }
      }),
      { numRuns: 200 },
    );
  });

  it('after heavy throttling the wait is bounded by the slowest interval, not by a backlog', () => {
    const bucket = new AdaptiveTokenBucket({ ratePerSec: 30 }, 0);
    for (let i = 0; i < 50; i += 1) bucket.penalize(0);
    expect(bucket.currentRate(0)).toBe(bucket.minRate);
    // 1000 refused callers in a row do not push each other out.
    let maxWait = 0;
    for (let i = 0; i < 1000; i += 1) maxWait = Math.max(maxWait, bucket.tryTake(0));
    expect(maxWait).toBeLessThanOrEqual(Math.ceil(1000 / bucket.minRate));
  });

  it('5,000 due batches polled by one loop: ≥ 95% of the rate over 30 s, FIFO, nobody polled twice', () => {
    for (const rate of [5, 30]) {
      const heap = new DueHeap();
      for (let i = 0; i < 5000; i += 1) heap.push(`batch-${i}`, 0);
      const bucket = new AdaptiveTokenBucket({ ratePerSec: rate }, 0);
      const polled: string[] = [];
      const times: number[] = [];
      let now = 0;
      while (now < 30_000) {
        const next = heap.peek();
        if (next === undefined) break;
        if (next.dueAt > now) {
          now = next.dueAt;
          continue;
        }
        const wait = bucket.tryTake(now);
        if (wait > 0) {
          now += wait;
          continue;
        }
        heap.pop();
        polled.push(next.key);
        times.push(now);
        heap.push(next.key, now + 60_000);
      }
      expect(polled.length / 30).toBeGreaterThanOrEqual(0.95 * rate);
      expect(maxInAnyWindow(times)).toBeLessThanOrEqual(rate);
      expect(new Set(polled).size).toBe(polled.length);
      expect(polled.slice(0, 3)).toEqual(['batch-0', 'batch-1', 'batch-2']);
      expect(polled.at(-1)).toBe(`batch-${polled.length - 1}`);
    }
  });
});

describe('AdaptiveTokenBucket: adaptation', () => {
  it('penalize halves the current rate and empties the bucket', () => {
    const bucket = new AdaptiveTokenBucket({ ratePerSec: 20 }, 0);
    expect(bucket.currentRate(0)).toBe(20);
    bucket.penalize(0);
    expect(bucket.currentRate(0)).toBe(10);
    expect(bucket.tryTake(0)).toBe(100); // empty: the next token is one (new) interval away
    expect(bucket.tryTake(100)).toBe(0);
    bucket.penalize(100); // 10 + 0.1 s of recovery at 1/s, halved
    expect(bucket.currentRate(100)).toBeCloseTo(5.05, 10);
  });

  it('never drops below the floor (default max(0.2, rate/32), or the option)', () => {
    const a = new AdaptiveTokenBucket({ ratePerSec: 30 }, 0);
    expect(a.minRate).toBe(30 / 32);
    for (let i = 0; i < 20; i += 1) a.penalize(0);
    expect(a.currentRate(0)).toBe(30 / 32);

    const b = new AdaptiveTokenBucket({ ratePerSec: 5 }, 0);
    expect(b.minRate).toBe(0.2);
    for (let i = 0; i < 20; i += 1) b.penalize(0);
    expect(b.currentRate(0)).toBe(0.2);

    const c = new AdaptiveTokenBucket({ ratePerSec: 30, minRatePerSec: 10 }, 0);
    c.penalize(0);
    c.penalize(0);
    expect(c.currentRate(0)).toBe(10);

    const d = new AdaptiveTokenBucket({ ratePerSec: 0.1 }, 0);
    expect(d.minRate).toBe(0.1); // the default floor never exceeds the rate
  });

  it('recovers additively (default rate/20 per second) up to the configured rate', () => {
    const bucket = new AdaptiveTokenBucket({ ratePerSec: 20 }, 0);
    bucket.penalize(0); // 10
    expect(bucket.currentRate(1000)).toBeCloseTo(11, 10);
    expect(bucket.currentRate(5000)).toBeCloseTo(15, 10);
    expect(bucket.currentRate(10_000)).toBe(20);
    expect(bucket.currentRate(100_000)).toBe(20);
    // A penalty during recovery halves the recovered rate.
    bucket.penalize(100_000);
    expect(bucket.currentRate(100_000)).toBe(10);
    const custom = new AdaptiveTokenBucket({ ratePerSec: 20, recoveryPerSec: 2 }, 0);
    custom.penalize(0);
    expect(custom.currentRate(2500)).toBeCloseTo(15, 10);
  });

  it('recovered rate shows in the spacing of takes', () => {
    const stuck = new AdaptiveTokenBucket({ ratePerSec: 10, recoveryPerSec: 0 }, 0);
    for (let i = 0; i < 3; i += 1) stuck.penalize(0); // 1.25/s for good
    expect(greedy(stuck, 0, 8000).length).toBe(9); // emptied by the penalty: takes at 800, 1600, … 7200

    const bucket = new AdaptiveTokenBucket({ ratePerSec: 10 }, 0);
    for (let i = 0; i < 3; i += 1) bucket.penalize(0); // 1.25/s, +0.5/s each second
    const early = greedy(bucket, 0, 4000).length; // ∫ 1.25 + 0.5t over 4 s ≈ 9
    const late = greedy(bucket, 30_000, 4000).length; // fully recovered (1.25 + 0.5·17.5 = 10)
    expect(early).toBeGreaterThanOrEqual(7);
    expect(early).toBeLessThanOrEqual(10);
    expect(late).toBeGreaterThanOrEqual(39);
  });

  it('currentRate is never above the configured rate, never below the floor', () => {
    fc.assert(
      fc.property(
        fc.constantFrom(...RATES),
        fc.array(fc.record({ dt: fc.integer({ min: 0, max: 5000 }), penalize: fc.boolean() }), { maxLength: 200 }),
        (rate, ops) => {
          const bucket = new AdaptiveTokenBucket({ ratePerSec: rate }, 0);
          let now = 0;
          for (const o of ops) {
            now += o.dt;
            if (o.penalize) bucket.penalize(now);
            const r = bucket.currentRate(now);
            expect(r).toBeLessThanOrEqual(bucket.maxRate);
            expect(r).toBeGreaterThanOrEqual(bucket.minRate);
          }
        },
      ),
    );
  });

  it('penaltyCooldownMs folds a wave of throttled answers into one halving', () => {
    const bucket = new AdaptiveTokenBucket({ ratePerSec: 32, penaltyCooldownMs: 1000 }, 0);
    for (let i = 0; i < 8; i += 1) bucket.penalize(i * 10);
    expect(bucket.currentRate(70)).toBeCloseTo(16 + 1.6 * 0.07, 10);
    bucket.penalize(1000);
    expect(bucket.currentRate(1000)).toBeLessThan(9);
  });

  it('a clock stepping backwards does not stall the bucket for the size of the step', () => {
    const bucket = new AdaptiveTokenBucket({ ratePerSec: 5 }, 1_000_000);
    expect(bucket.tryTake(1_000_000)).toBe(0);
    // Wall clock corrected one hour back.
    const wait = bucket.tryTake(1_000_000 - 3_600_000);
    expect(wait).toBeGreaterThan(0);
    expect(wait).toBeLessThanOrEqual(200);
    expect(bucket.tryTake(1_000_000 - 3_600_000 + wait)).toBe(0);
  });

  it('rejects bad options with a message naming the option', () => {
    expect(() => new AdaptiveTokenBucket({ ratePerSec: 0 }, 0)).toThrow(
      'Expected `ratePerSec` to be a finite number > 0, got `0` (number)',
    );
    expect(() => new AdaptiveTokenBucket({ ratePerSec: 5, burst: 1.5 }, 0)).toThrow(/`burst`/);
    expect(() => new AdaptiveTokenBucket({ ratePerSec: 5, minRatePerSec: 6 }, 0)).toThrow(/`minRatePerSec`/);
    expect(() => new AdaptiveTokenBucket({ ratePerSec: 5, recoveryPerSec: -1 }, 0)).toThrow(/`recoveryPerSec`/);
    expect(() => new AdaptiveTokenBucket({ ratePerSec: 5 }, Number.NaN)).toThrow(/`now`/);
  });
});

describe('RateLimiterSet', () => {
  it('keeps one independent bucket per action', () => {
    const set = new RateLimiterSet({ status: { ratePerSec: 5 }, page: { ratePerSec: 10 } }, 0);
    expect(set.actions()).toEqual(['status', 'page']);
    expect(set.tryTake('status', 0)).toBe(0);
    expect(set.tryTake('status', 0)).toBe(200);
    expect(set.tryTake('page', 0)).toBe(0);
    set.penalize('page', 50);
    expect(set.currentRate('page', 50)).toBe(5);
    expect(set.currentRate('status', 50)).toBe(5);
    expect(set.tryTake('status', 200)).toBe(0);
    expect(set.bucket('page').maxRate).toBe(10);
  });

  it('throws on an unknown action (a programmer error)', () => {
    const set = new RateLimiterSet<'status' | 'page'>({ status: { ratePerSec: 5 }, page: { ratePerSec: 5 } }, 0);
    expect(() => set.tryTake('nope' as 'status', 0)).toThrow(RangeError);
  });
});

describe('two-speed recovery (fastRecoveryMs)', () => {
  it('halves on throttling, climbs back to safeFraction of the throttled rate within fastRecoveryMs, then probes slowly', () => {
    const b = new AdaptiveTokenBucket({ ratePerSec: 20, fastRecoveryMs: 1000, safeFraction: 0.9, recoveryPerSec: 0.2 }, 0);
    expect(b.currentRate(0)).toBe(20);
    b.penalize(10_000);
    expect(b.currentRate(10_000)).toBe(10);
    expect(b.currentRate(10_500)).toBeCloseTo(14, 6);
    expect(b.currentRate(11_000)).toBeCloseTo(18, 6);
    expect(b.currentRate(16_000)).toBeCloseTo(19, 6);
    expect(b.currentRate(100_000)).toBe(20);
  });

  it('converges under a lower server limit: averages at least 85 % of it', () => {
    // A server limit of 10/s, a budget of 20/s: every take above the limit in its 1 s window is "throttled".
    const b = new AdaptiveTokenBucket({ ratePerSec: 20, fastRecoveryMs: 1000, recoveryPerSec: 0.1, penaltyCooldownMs: 1000, windowMs: 1020 }, 0);
    const accepted: number[] = [];
    let throttled = 0;
    let t = 0;
    while (t < 60_000) {
      const wait = b.tryTake(t);
      if (wait > 0) {
        t += wait;
        continue;
      }
      const inWindow = accepted.filter((a) => a > t - 1000).length;
      if (inWindow >= 10) {
        throttled += 1;
        b.penalize(t);
      } else accepted.push(t);
    }
    const late = accepted.filter((a) => a >= 30_000).length / 30;
    expect(late / 10).toBeGreaterThanOrEqual(0.85);
    expect(throttled / (throttled + accepted.length)).toBeLessThan(0.05);
  });
});

describe('coldStartMargin (slow start)', () => {
  it('a burst after idle gets half the allowance in its first window, then the full rate', () => {
    const b = new AdaptiveTokenBucket({ ratePerSec: 10, coldStartMargin: true }, 0);
    const taken: number[] = [];
    for (let t = 0; t < 3000; t += 1) if (b.tryTake(t) === 0) taken.push(t);
    expect(taken.filter((t) => t < 1000)).toHaveLength(5);
    expect(taken.filter((t) => t >= 1000 && t < 2000)).toHaveLength(10);
    // Even if the first five requests of the burst all arrive at the same late moment, no window holds 11.
    const arrivals = taken.map((t, i) => (i < 5 ? 450 : t)).sort((a, b) => a - b);
    for (const a of arrivals) expect(arrivals.filter((x) => x >= a && x < a + 1000).length).toBeLessThanOrEqual(10);
    // After an idle window the next burst starts slow again; a busy bucket never does.
    const later: number[] = [];
    for (let t = 10_000; t < 11_000; t += 1) if (b.tryTake(t) === 0) later.push(t);
    expect(later).toHaveLength(5);
  });
});

describe('AdaptiveTokenBucket: scheduledAt (a reservation taken after signing)', () => {
  it('runs the spacing from the reservation, so the signing time is not added to every interval', () => {
    const anchored = new AdaptiveTokenBucket({ ratePerSec: 10 }, 0);
    const plainBucket = new AdaptiveTokenBucket({ ratePerSec: 10 }, 0);
    expect(anchored.tryTake(0)).toBe(0);
    expect(plainBucket.tryTake(0)).toBe(0);
    // Both reserved at 100 (when the token was free) and taken at 105, once signed.
    expect(anchored.tryTake(105, 100)).toBe(0);
    expect(plainBucket.tryTake(105)).toBe(0);
    expect(anchored.peek(150)).toBe(50);
    expect(plainBucket.peek(150)).toBe(55);
    // A scheduledAt later than now is treated as now.
    expect(anchored.tryTake(300, 400)).toBe(0);
    expect(anchored.peek(350)).toBe(50);
  });

  it('peekAfter answers as if the pending takes happened now, and takes nothing', () => {
    const b = new AdaptiveTokenBucket({ ratePerSec: 4, windowMs: 1000 }, 0);
    expect(b.peekAfter(0, 0)).toBe(0);
    expect(b.peekAfter(0, 1)).toBe(250);
    expect(b.peekAfter(0, 3)).toBe(750);
    // Four takes fill the window of 4 per second: the fifth waits for the first to leave it.
    expect(b.peekAfter(0, 4)).toBe(1000);
    expect(b.tryTake(0)).toBe(0);
    expect(b.peek(0)).toBe(250);
  });
});

describe('AdaptiveTokenBucket: markSent (the request reached its socket later than its token)', () => {
  it('the per-window guard counts the send time, so a held-up request does not arrive bunched with the next ones', () => {
    const late = new AdaptiveTokenBucket({ ratePerSec: 30, windowMs: 1020 }, 0);
    const onTime = new AdaptiveTokenBucket({ ratePerSec: 30, windowMs: 1020 }, 0);
    for (let i = 0; i < 30; i += 1) {
      expect(late.tryTake(i * 34)).toBe(0);
      expect(onTime.tryTake(i * 34)).toBe(0);
    }
    // The first request waited 70 ms between its token and its socket.
    late.markSent(0, 70);
    expect(onTime.peek(1020)).toBe(0);
    expect(late.peek(1020)).toBe(70);
    // Earlier times and unknown takes change nothing.
    late.markSent(34, 10);
    late.markSent(5, 500);
    expect(late.peek(1020)).toBe(70);
  });
});
