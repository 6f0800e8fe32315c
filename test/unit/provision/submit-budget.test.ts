/** The submit budget: never more than 10 submissions of one action in any second (Alibaba's per-account limit). */

import { describe, expect, it } from 'vitest';

import type { Clock } from '../../../src/core/clock.js';
import { SUBMIT_QPS_LIMIT, createSubmitBudget } from '../../../src/provision/submit-budget.js';

function instantClock(): Clock & { t: number } {
  const c = {
    t: 0,
    now: () => c.t,
    sleep: (ms: number) => {
      c.t += ms;
      return Promise.resolve();
    },
  };
  return c;
}

describe('createSubmitBudget', () => {
  it('grants at most 10 per second and action, and the two actions do not share tokens', async () => {
    const clock = instantClock();
    const budget = createSubmitBudget(clock);
    const at: number[] = [];
    for (let i = 0; i < 60; i += 1) {
      await budget.acquire('BatchCheckDeviceNames');
      at.push(clock.now());
    }
    for (let i = 0; i < at.length; i += 1) {
      const inWindow = at.filter((t) => t >= at[i]! && t < at[i]! + 1000).length;
      expect(inWindow).toBeLessThanOrEqual(SUBMIT_QPS_LIMIT);
    }
    // 60 grants take at least five seconds at 10 per second.
    expect(at.at(-1)! - at[0]!).toBeGreaterThanOrEqual(5000);
    const before = clock.now();
    await budget.acquire('BatchRegisterDevice');
    expect(clock.now()).toBe(before);
  });
});
