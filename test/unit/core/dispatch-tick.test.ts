/**
 * The wake-up tick: the scheduler sleeps to multiples of `wakeTickMs`, and the budget saves up one tick's tokens
 * (`credit`), so the polls of one tick leave in one wake-up, the rate is kept, and no window holds more than the
 * configured QPS.
 */
import { describe, expect, it } from 'vitest';

import { budgetOptions, createApiBudget } from '../../../src/core/api-budget.js';
import { createManualClock } from '../../../src/core/clock.js';
import { AdaptiveTokenBucket } from '../../../src/core/rate-limiter.js';
import { DISPATCH_TICK_MS, Scheduler } from '../../../src/core/scheduler.js';
import { silentLog } from '../../helpers/fakes.js';

/** Most of `times` in any half-open window of `windowMs`. */
function busiest(times: number[], windowMs: number): number {
  const sorted = [...times].sort((a, b) => a - b);
  let best = 0;
  let lo = 0;
  for (let hi = 0; hi < sorted.length; hi += 1) {
    while ((sorted[hi] as number) - (sorted[lo] as number) >= windowMs) lo += 1;
    best = Math.max(best, hi - lo + 1);
  }
  return best;
}

describe('the dispatch tick', () => {
  it('starts due work on the next tick, never before its due time and at most one tick late', async () => {
    const clock = createManualClock(0);
    const runs: [string, number][] = [];
    const s = new Scheduler({
      concurrency: 8,
      clock,
      log: silentLog,
      graceMs: 100,
      wakeTickMs: 100,
      run: async (key) => {
        runs.push([key, clock.now()]);
        return null;
      },
    });
    s.start();
    await clock.advance(1);
    for (const [key, due] of [['a', 110], ['b', 150], ['c', 199], ['d', 200], ['e', 201], ['f', 1234]] as const) s.push(key, due);
    await clock.advance(2000);
    await s.stop();
    expect(runs).toEqual([
      ['a', 200],
      ['b', 200],
      ['c', 200],
      ['d', 200],
      ['e', 300],
      ['f', 1300],
    ]);
  });

  it('without a tick, each key starts at its own due time (the old behaviour)', async () => {
    const clock = createManualClock(0);
    const runs: number[] = [];
    const s = new Scheduler({ concurrency: 8, clock, log: silentLog, graceMs: 100, run: async () => (runs.push(clock.now()), null) });
    s.start();
    await clock.advance(1);
    s.push('a', 110);
    s.push('b', 150);
    await clock.advance(500);
    await s.stop();
    expect(runs).toEqual([110, 150]);
  });

  it('rejects a negative or non-finite tick', () => {
    const base = { concurrency: 1, clock: createManualClock(0), log: silentLog, graceMs: 1, run: async () => null };
    expect(() => new Scheduler({ ...base, wakeTickMs: -1 })).toThrow(/wakeTickMs/);
    expect(() => new Scheduler({ ...base, wakeTickMs: Number.POSITIVE_INFINITY })).toThrow(/wakeTickMs/);
  });

  it('a bucket with a tick answers token waits up to the tick and window waits as they are', () => {
    const b = new AdaptiveTokenBucket({ ratePerSec: 10, credit: 2, tickMs: 100, windowMs: 1000 }, 0);
    expect([b.tryTake(0), b.tryTake(0)]).toEqual([0, 0]);
    // The next token is free at 100 ms: on the tick already. At 130 ms the following one (200) is on the tick too.
    expect(b.peek(0)).toBe(100);
    expect(b.tryTake(100)).toBe(0);
    expect(b.peek(130)).toBe(70);
    const plain = new AdaptiveTokenBucket({ ratePerSec: 10, credit: 2, windowMs: 1000 }, 0);
    plain.tryTake(0);
    plain.tryTake(0);
    plain.tryTake(100);
    expect(plain.peek(130)).toBe(70);
    // A token 35 ms away is answered up to the tick: 33.3 ms spacing at 30 a second, asked at 1 ms after a take at 0.
    const t = new AdaptiveTokenBucket({ ratePerSec: 30, tickMs: 100, windowMs: 1000 }, 0);
    expect(t.tryTake(0)).toBe(0);
    expect(t.peek(1)).toBe(99);
    // The window guard: 30 takes in the first 100 ms of a window of 1000; the wait ends when the first leaves it.
    const w = new AdaptiveTokenBucket({ ratePerSec: 30, credit: 30, tickMs: 100, windowMs: 1000 }, 0);
    for (let i = 0; i < 30; i += 1) expect(w.tryTake(5)).toBe(0);
    expect(w.peek(950)).toBe(55);
  });

  it('a bucket with credit saves up tokens without raising the per-window allowance', () => {
    const b = new AdaptiveTokenBucket({ ratePerSec: 30, credit: 4, windowMs: 1000 }, 0);
    expect(b.maxPerWindow).toBe(30);
    // Full at the start: four back to back, then one interval (33.3 ms).
    expect([0, 0, 0, 0, 0].map(() => b.tryTake(0))).toEqual([0, 0, 0, 0, 34]);
    // Woken every 100 ms, it finds three tokens each time; no window of one second ever holds more than 30.
    const taken: number[] = [0, 0, 0, 0];
    for (let t = 100; t < 10_000; t += 100) {
      while (b.tryTake(t) === 0) taken.push(t);
    }
    expect(busiest(taken, 1000)).toBe(30);
    // The rate is kept: 30 a second less what the window guard holds back (≥ 29.5 over ten seconds).
    expect(taken.length).toBeGreaterThanOrEqual(295);
    expect(() => new AdaptiveTokenBucket({ ratePerSec: 5, burst: 3, credit: 2 }, 0)).toThrow(/credit/);
  });

  it('budgetOptions saves one tick of tokens and one more with a tick, none without', () => {
    expect(budgetOptions(30).credit).toBe(1);
    expect(budgetOptions(30, 100).credit).toBe(4);
    expect(budgetOptions(5, 100).credit).toBe(2);
    expect(budgetOptions(30, 100)).toMatchObject({ ratePerSec: 30, windowMs: 1040 });
  });

  it('scheduler and budget together: polls leave in groups, at the full rate of the budget, ≤ statusQps in every window', async () => {
    const clock = createManualClock(0);
    const budget = createApiBudget({ statusQps: 30, pageQps: 5 }, { clock, tickMs: DISPATCH_TICK_MS });
    const sent: number[] = [];
    const s = new Scheduler({
      concurrency: 8,
      clock,
      log: silentLog,
      graceMs: 100,
      wakeTickMs: DISPATCH_TICK_MS,
      holdMs: (_key, now) => budget.delayMs('QueryBatchRegisterDeviceStatus', now),
      run: async () => {
        const r = budget.reserve('QueryBatchRegisterDeviceStatus');
        await r.take();
        sent.push(clock.now());
        // Every key is due again 12 s later (a poll's next delay); 400 keys demand 33 a second, above the budget.
        return clock.now() + 12_000;
      },
    });
    for (let i = 0; i < 400; i += 1) s.push(`k${i}`, Math.floor((i * 12_000) / 400));
    s.start();
    await clock.advance(30_000);
    await s.stop();
    const steady = sent.filter((t) => t >= 5000 && t < 25_000);
    // The sends leave in groups: about 11 wake-ups a second for 29 sends, not one per send.
    const perWake = new Map<number, number>();
    for (const t of steady) perWake.set(t, (perWake.get(t) ?? 0) + 1);
    expect(perWake.size / 20).toBeLessThanOrEqual(12);
    const grouped = [...perWake.values()].filter((n) => n >= 2).reduce((a, n) => a + n, 0);
    expect(grouped / steady.length).toBeGreaterThanOrEqual(0.85);
    // At most 30 in any 1040 ms window (the budget's), so at most 30 in any one second.
    expect(busiest(sent, 1040)).toBeLessThanOrEqual(30);
    // The rate is the budget's own, 30 per 1040 ms (28.8 a second): the tick costs none of it.
    expect(steady.length / 20).toBeGreaterThanOrEqual(28.5);
  });
});
