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

  it('scheduler and budget together: polls leave in groups on the ticks, at the full rate, ≤ statusQps in every window', async () => {
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
    // Every send is on a tick: one wake-up for the group.
    expect(steady.every((t) => t % DISPATCH_TICK_MS === 0)).toBe(true);
    const perTick = new Map<number, number>();
    for (const t of steady) perTick.set(t, (perTick.get(t) ?? 0) + 1);
    expect(Math.max(...perTick.values())).toBeGreaterThanOrEqual(2);
    // At most 30 in any 1040 ms window (the budget's), so at most 30 in any one second.
    expect(busiest(sent, 1040)).toBeLessThanOrEqual(30);
    // The rate is the budget's: 30 per 1040 ms, less at most one tick of slack per window.
    expect(steady.length / 20).toBeGreaterThanOrEqual(27);
  });
});
