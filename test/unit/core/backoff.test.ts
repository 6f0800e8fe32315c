import fc from 'fast-check';
import { describe, expect, it } from 'vitest';

import type { PollingPolicy } from '../../../src/config/types.js';
import { backoffCapMs, nextDelayMs, spreadOverdueMs } from '../../../src/core/backoff.js';
import type { Random } from '../../../src/core/clock.js';
import { createSeededRandom } from '../../../src/core/clock.js';

const policy: PollingPolicy = {
  initialDelayMs: 2000,
  maxDelayMs: 60_000,
  multiplier: 2,
  stalledAfterMs: 900_000,
  timeoutMs: 86_400_000,
  awaitingRegistrationDelayMs: 300_000,
};

function fixedRandom(value: number): Random {
  return { float: () => value, nonce: () => 'n' };
}

describe('backoffCapMs', () => {
  it('grows exponentially from initialDelay and saturates at maxDelay', () => {
    expect([1, 2, 3, 4, 5, 6, 7, 8].map((a) => backoffCapMs(policy, a))).toEqual([
      2000, 4000, 8000, 16_000, 32_000, 60_000, 60_000, 60_000,
    ]);
  });

  it('uses the cap override (awaitingRegistrationDelay) instead of maxDelay', () => {
    expect(backoffCapMs(policy, 20, policy.awaitingRegistrationDelayMs)).toBe(300_000);
    expect(backoffCapMs(policy, 3, 5000)).toBe(5000);
  });

  it('never goes below initialDelay (attempt < 1, cap below initial, multiplier 1)', () => {
    expect(backoffCapMs(policy, 0)).toBe(2000);
    expect(backoffCapMs(policy, -3)).toBe(2000);
    expect(backoffCapMs(policy, 5, 500)).toBe(2000);
    expect(backoffCapMs({ ...policy, multiplier: 1 }, 50)).toBe(2000);
  });

  it('does not overflow for huge attempts, even with initialDelay 0', () => {
    expect(backoffCapMs(policy, 10_000)).toBe(60_000);
    expect(backoffCapMs(policy, Number.MAX_SAFE_INTEGER)).toBe(60_000);
    expect(backoffCapMs(policy, Infinity)).toBe(60_000);
    expect(backoffCapMs({ ...policy, initialDelayMs: 0 }, 5000)).toBe(60_000);
    expect(backoffCapMs({ ...policy, multiplier: 1e300 }, 4)).toBe(60_000);
  });

  it('is monotonic in attempt and within [initial, max(initial, cap)]', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 60_000 }),
        fc.integer({ min: 0, max: 10_000_000 }),
        fc.double({ min: 1, max: 10, noNaN: true }),
        fc.integer({ min: 0, max: 5000 }),
        (initialDelayMs, maxDelayMs, multiplier, attempt) => {
          const p = { initialDelayMs, maxDelayMs, multiplier };
          const a = backoffCapMs(p, attempt);
          const b = backoffCapMs(p, attempt + 1);
          expect(Number.isFinite(a)).toBe(true);
          expect(a).toBeGreaterThanOrEqual(initialDelayMs);
          expect(a).toBeLessThanOrEqual(Math.max(initialDelayMs, maxDelayMs));
          expect(b).toBeGreaterThanOrEqual(a);
        },
      ),
    );
  });
});

describe('nextDelayMs', () => {
  it('is 0 for attempt 0: the first poll is immediate', () => {
    expect(nextDelayMs(policy, 0, fixedRandom(0.99))).toBe(0);
  });

  it('after a phase change the caller resets attempt to 1, so the next delay is exactly initialDelay', () => {
    // Full jitter in [initial, initial·multiplier^0] = [initial, initial].
    for (const r of [0, 0.5, 0.999999]) expect(nextDelayMs(policy, 1, fixedRandom(r))).toBe(2000);
  });

  it('spans exactly [initialDelay, cap] in whole ms', () => {
    expect(nextDelayMs(policy, 3, fixedRandom(0))).toBe(2000);
    expect(nextDelayMs(policy, 3, fixedRandom(0.9999999999))).toBe(8000);
    expect(nextDelayMs(policy, 30, fixedRandom(0.9999999999))).toBe(60_000);
    expect(nextDelayMs(policy, 30, fixedRandom(0.9999999999), 300_000)).toBe(300_000);
  });

  it('stays within bounds for any attempt and random value, and is an integer', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 100_000 }),
        fc.double({ min: 0, max: 1, maxExcluded: true, noNaN: true }),
        fc.option(fc.integer({ min: 0, max: 1_000_000 }), { nil: undefined }),
        (attempt, r, cap) => {
          const d = nextDelayMs(policy, attempt, fixedRandom(r), cap);
          expect(Number.isInteger(d)).toBe(true);
          expect(d).toBeGreaterThanOrEqual(policy.initialDelayMs);
          expect(d).toBeLessThanOrEqual(backoffCapMs(policy, attempt, cap));
        },
      ),
    );
  });

  it('is uniform: mean near the midpoint, both ends reached, with a seeded Random', () => {
    const random = createSeededRandom(42);
    const n = 40_000;
    let sum = 0;
    let min = Infinity;
    let max = -Infinity;
    const buckets = new Array<number>(10).fill(0);
    for (let i = 0; i < n; i += 1) {
      const d = nextDelayMs(policy, 4, random); // [2000, 16000]
      sum += d;
      min = Math.min(min, d);
      max = Math.max(max, d);
      const bucket = Math.min(9, Math.floor(((d - 2000) / 14_001) * 10));
      buckets[bucket] = (buckets[bucket] ?? 0) + 1;
    }
    expect(Math.abs(sum / n - 9000)).toBeLessThan(9000 * 0.02);
    expect(min).toBeLessThan(2000 + 100);
    expect(max).toBeGreaterThan(16_000 - 100);
    // Each tenth of the range gets its share (±10%).
    for (const count of buckets) expect(Math.abs(count - n / 10)).toBeLessThan(n / 100);
  });

  it('attempt 0 and negative/NaN attempts mean "not polled yet"', () => {
    expect(nextDelayMs(policy, -1, fixedRandom(0.5))).toBe(0);
    expect(nextDelayMs(policy, Number.NaN, fixedRandom(0.5))).toBe(0);
  });
});

describe('spreadOverdueMs', () => {
  it('keeps a future due time', () => {
    expect(spreadOverdueMs(1000, 5000, 60_000, fixedRandom(0.5))).toBe(5000);
  });

  it('spreads an overdue (or exactly due) time over [now, now + window)', () => {
    expect(spreadOverdueMs(1000, 1000, 60_000, fixedRandom(0))).toBe(1000);
    expect(spreadOverdueMs(1000, 10, 60_000, fixedRandom(0.5))).toBe(31_000);
    expect(spreadOverdueMs(1000, 10, 60_000, fixedRandom(0.9999999))).toBe(60_999);
  });

  it('spreads many overdue polls evenly instead of bursting', () => {
    const random = createSeededRandom(7);
    const perSecond = new Array<number>(30).fill(0);
    let outside = 0;
    for (let i = 0; i < 30_000; i += 1) {
      const t = spreadOverdueMs(0, -i, 30_000, random);
      if (t < 0 || t >= 30_000) outside += 1;
      const s = Math.floor(t / 1000);
      perSecond[s] = (perSecond[s] ?? 0) + 1;
    }
    expect(outside).toBe(0);
    expect(Math.max(...perSecond)).toBeLessThan(1200);
    expect(Math.min(...perSecond)).toBeGreaterThan(800);
  });

  it('with a zero window, overdue polls are due now', () => {
    expect(spreadOverdueMs(500, 0, 0, fixedRandom(0.7))).toBe(500);
  });
});
