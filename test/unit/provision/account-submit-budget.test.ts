/**
 * The submit budget is the account's ApiBudget (src/core/api-budget.ts): never more than `submitQps` submissions of
 * one action in any second (Alibaba: 10 per action and account), and the two submit actions do not share tokens.
 */

import { describe, expect, it } from 'vitest';

import { createApiBudget } from '../../../src/core/api-budget.js';
import type { Clock } from '../../../src/core/clock.js';

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

async function grants(qps: number | undefined, n: number): Promise<{ at: number[]; clock: Clock; budget: ReturnType<typeof createApiBudget> }> {
  const clock = instantClock();
  const budget = createApiBudget({ statusQps: 5, pageQps: 5, ...(qps === undefined ? {} : { submitQps: qps }) }, { clock });
  const at: number[] = [];
  for (let i = 0; i < n; i += 1) {
    await budget.acquire('BatchCheckDeviceNames');
    at.push(clock.now());
  }
  return { at, clock, budget };
}

function mostInOneSecond(at: readonly number[]): number {
  let most = 0;
  for (const t of at) most = Math.max(most, at.filter((u) => u >= t && u < t + 1000).length);
  return most;
}

describe('the account budget of the submit actions', () => {
  it('grants at most submitQps per second and action, and the two actions do not share tokens', async () => {
    const { at, clock, budget } = await grants(10, 60);
    expect(mostInOneSecond(at)).toBeLessThanOrEqual(10);
    // 60 grants take at least five seconds at 10 per second.
    expect(at.at(-1)! - at[0]!).toBeGreaterThanOrEqual(5000);
    const before = clock.now();
    await budget.acquire('BatchRegisterDevice');
    expect(clock.now()).toBe(before);
  });

  it('defaults to 5 per second and action (the configuration default of submitQps)', async () => {
    const { at } = await grants(undefined, 30);
    expect(mostInOneSecond(at)).toBeLessThanOrEqual(5);
    expect(at.at(-1)! - at[0]!).toBeGreaterThanOrEqual(5000);
  });
});
