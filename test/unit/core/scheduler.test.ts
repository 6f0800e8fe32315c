import { describe, expect, it } from 'vitest';

import { createManualClock } from '../../../src/core/clock.js';
import { Scheduler } from '../../../src/core/scheduler.js';
import { silentLog } from '../../helpers/fakes.js';

describe('Scheduler', () => {
  it('runs keys in due order, at most `concurrency` at once, and reschedules each at the due time its task answers', async () => {
    const clock = createManualClock(0);
    const runs: [string, number][] = [];
    let inFlight = 0;
    let maxInFlight = 0;
    const s = new Scheduler({
      concurrency: 2,
      clock,
      log: silentLog,
      graceMs: 100,
      run: async (key) => {
        runs.push([key, clock.now()]);
        inFlight += 1;
        maxInFlight = Math.max(maxInFlight, inFlight);
        await clock.sleep(50);
        inFlight -= 1;
        return key === 'c' ? null : clock.now() + 1000;
      },
    });
    s.push('b', 20);
    s.push('a', 10);
    s.push('c', 30);
    s.start();
    await clock.advance(1200);
    await s.stop();
    expect(maxInFlight).toBe(2);
    expect(runs.slice(0, 3)).toEqual([
      ['a', 10],
      ['b', 20],
      ['c', 60],
    ]);
    // a and b come back 1000 ms after their task ended; c answered null.
    expect(runs.slice(3)).toEqual([
      ['a', 1060],
      ['b', 1070],
    ]);
    expect(s.state).toBe('stopped');
  });

  it('holds the top key while holdMs is positive, and wakes early for an earlier push', async () => {
    const clock = createManualClock(0);
    const runs: [string, number][] = [];
    let holdUntil = 500;
    const s = new Scheduler({
      concurrency: 4,
      clock,
      log: silentLog,
      graceMs: 100,
      maxSleepMs: 60_000,
      holdMs: (_key, now) => Math.max(0, holdUntil - now),
      run: async (key) => {
        runs.push([key, clock.now()]);
        return null;
      },
    });
    s.push('late', 10_000);
    s.start();
    await clock.advance(100);
    s.push('early', 200);
    await clock.advance(400);
    expect(runs).toEqual([['early', 500]]);
    holdUntil = 0;
    await clock.advance(10_000);
    expect(runs).toEqual([
      ['early', 500],
      ['late', 10_000],
    ]);
    await s.stop();
  });

  it('stop() lets tasks finish within the grace period, then aborts their signal', async () => {
    const clock = createManualClock(0);
    let aborted = false;
    const s = new Scheduler({
      concurrency: 1,
      clock,
      log: silentLog,
      graceMs: 300,
      run: (_key, signal) =>
        new Promise<number | null>((resolve) => {
          signal.addEventListener('abort', () => {
            aborted = true;
            resolve(null);
          });
        }),
    });
    s.push('k', 0);
    s.start();
    await clock.advance(10);
    expect(s.busy('k')).toBe(true);
    const stopped = s.stop();
    await clock.advance(299);
    expect(aborted).toBe(false);
    await clock.advance(1);
    await stopped;
    expect(aborted).toBe(true);
    expect(s.state).toBe('stopped');
  });
});
