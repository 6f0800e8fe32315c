import { describe, expect, it } from 'vitest';

import { ApiBudget, BUDGET_OF, budgetOptions, createApiBudget } from '../../../src/core/api-budget.js';
import { createManualClock } from '../../../src/core/clock.js';
import type { ApiAction } from '../../../src/core/ports.js';
import { DaemonError } from '../../../src/errors.js';

const plain = (qps: number): { ratePerSec: number } => ({ ratePerSec: qps });

describe('ApiBudget', () => {
  it('refuses every call, budgeted or not, while its gate says the account is not confirmed', async () => {
    const clock = createManualClock(0);
    let owned = false;
    const refusal = new DaemonError('lease not confirmed', { kind: 'store', scope: 'attempt', code: 'LeaseUnconfirmed' });
    const budget = createApiBudget({ statusQps: 5, pageQps: 5 }, { clock, gate: () => (owned ? null : refusal) });
    await expect(budget.acquire('QueryBatchRegisterDeviceStatus')).rejects.toBe(refusal);
    await expect(budget.acquire('BatchRegisterDeviceWithApplyId')).rejects.toBe(refusal);
    owned = true;
    await expect(budget.acquire('QueryBatchRegisterDeviceStatus')).resolves.toBeUndefined();
    await expect(budget.acquire('BatchRegisterDeviceWithApplyId')).resolves.toBeUndefined();
  });

  it('maps every API action to one bucket or none, and reports a rate for each budgeted action', () => {
    const clock = createManualClock(0);
    const budget = createApiBudget({ statusQps: 5, pageQps: 7 }, { clock });
    const rates = budget.rates();
    expect(rates).toEqual([
      { action: 'QueryBatchRegisterDeviceStatus', qps: 5 },
      { action: 'QueryPageByApplyId', qps: 7 },
      { action: 'BatchCheckDeviceNames', qps: 5 },
      { action: 'BatchRegisterDevice', qps: 5 },
    ]);
    // The submit actions each get the account's submitQps.
    expect(createApiBudget({ statusQps: 5, pageQps: 7, submitQps: 9 }, { clock }).rates().slice(2).map((r) => r.qps)).toEqual([9, 9]);
    const budgeted = (Object.keys(BUDGET_OF) as ApiAction[]).filter((a) => BUDGET_OF[a] !== null);
    expect(rates.map((r) => r.action)).toEqual(budgeted);
    expect(budgetOptions(10)).toMatchObject({ ratePerSec: 10, windowMs: 1040, coldStartMargin: true, recoveryPerSec: 0.1 });
  });

  it('grants a free token synchronously, then serves waiters in the order they asked, spaced by the rate', async () => {
    const clock = createManualClock(1000);
    const budget = new ApiBudget({ rates: { statusQps: 2, pageQps: 2 }, clock, tuning: plain });
    const order: string[] = [];
    const at: number[] = [];
    const take = (name: string): Promise<void> =>
      budget.acquire('QueryBatchRegisterDeviceStatus').then(() => {
        order.push(name);
        at.push(clock.now());
      });
    expect(budget.delayMs('QueryBatchRegisterDeviceStatus')).toBe(0);
    const first = take('a');
    // Taken at once: the next caller has to wait one interval.
    expect(budget.delayMs('QueryBatchRegisterDeviceStatus')).toBe(500);
    const rest = [take('b'), take('c'), take('d')];
    await first;
    await clock.advance(2000);
    await Promise.all(rest);
    expect(order).toEqual(['a', 'b', 'c', 'd']);
    expect(at).toEqual([1000, 1500, 2000, 2500]);
    // Unbudgeted actions never wait.
    await budget.acquire('BatchRegisterDeviceWithApplyId');
  });

  it('an aborted waiter leaves the queue and the next one gets its token', async () => {
    const clock = createManualClock(0);
    const budget = new ApiBudget({ rates: { statusQps: 1, pageQps: 1 }, clock, tuning: plain });
    await budget.acquire('QueryPageByApplyId');
    const ctl = new AbortController();
    const aborted = budget.acquire('QueryPageByApplyId', ctl.signal);
    const next = budget.acquire('QueryPageByApplyId');
    expect(budget.delayMs('QueryPageByApplyId')).toBeGreaterThan(0);
    ctl.abort(new Error('gone'));
    await expect(aborted).rejects.toThrow('gone');
    await clock.advance(1000);
    await next;
    expect(clock.now()).toBe(1000);
    await expect(budget.acquire('QueryPageByApplyId', ctl.signal)).rejects.toThrow('gone');
  });

  it('throttling feedback halves the rate of that action only', () => {
    const clock = createManualClock(0);
    const budget = new ApiBudget({ rates: { statusQps: 8, pageQps: 8 }, clock, tuning: plain });
    expect(budget.feedback('QueryBatchRegisterDeviceStatus', 'success')).toBe(false);
    expect(budget.feedback('BatchRegisterDeviceWithApplyId', 'throttled')).toBe(false);
    expect(budget.feedback('QueryBatchRegisterDeviceStatus', 'throttled')).toBe(true);
    const rates = new Map(budget.rates().map((r) => [r.action, r.qps]));
    expect(rates.get('QueryBatchRegisterDeviceStatus')).toBe(4);
    expect(rates.get('QueryPageByApplyId')).toBe(8);
  });

  it('a reservation counts as taken for delayMs until it is taken (at its own time) or cancelled', async () => {
    const clock = createManualClock(1000);
    const budget = new ApiBudget({ rates: { statusQps: 2, pageQps: 2 }, clock, tuning: plain });
    const A = 'QueryBatchRegisterDeviceStatus';
    expect(budget.delayMs(A)).toBe(0);
    const r = budget.reserve(A);
    // The free token is promised: a second dispatch waits one interval, as if it were taken now.
    expect(budget.delayMs(A)).toBe(500);
    expect(budget.delayMs('QueryPageByApplyId')).toBe(0);
    await clock.advance(3);
    expect(budget.delayMs(A)).toBe(500);
    expect(r.taken).toBe(false);
    await r.take();
    expect(r.taken).toBe(true);
    // Taken 3 ms after the reservation: the spacing runs from the reservation (signing does not stretch every
    // interval); the per-window guard counts the take.
    expect(budget.delayMs(A)).toBe(497);
    await expect(r.take()).rejects.toThrow('already used');
    r.cancel();
    expect(budget.delayMs(A)).toBe(497);
    // A cancelled reservation gives its token back.
    await clock.advance(500);
    const c = budget.reserve(A);
    expect(budget.delayMs(A)).toBe(500);
    c.cancel();
    c.cancel();
    expect(budget.delayMs(A)).toBe(0);
    // Two reservations: the third caller waits two intervals.
    const r1 = budget.reserve(A);
    const r2 = budget.reserve(A);
    expect(budget.delayMs(A)).toBe(1000);
    await r1.take();
    const second = r2.take();
    await clock.advance(500);
    await second;
    expect(clock.now()).toBe(2003);
  });

  it('a reservation marked sent moves its take to the send time for the per-window guard', async () => {
    const clock = createManualClock(0);
    const budget = new ApiBudget({ rates: { statusQps: 2, pageQps: 2 }, clock, tuning: (qps) => ({ ratePerSec: qps, windowMs: 1000 }) });
    const A = 'QueryBatchRegisterDeviceStatus';
    const first = budget.reserve(A);
    await first.take();
    await clock.advance(100);
    first.sent();
    await clock.advance(400);
    await budget.reserve(A).take();
    await clock.advance(500);
    // Two in any second: the third waits until one second after the first request left (100), not its token (0).
    expect(budget.delayMs(A)).toBe(100);
  });

  it('reserve throws the gate refusal, so a refused poll is never signed', () => {
    const clock = createManualClock(0);
    const refusal = new DaemonError('lease not confirmed', { kind: 'store', scope: 'attempt', code: 'LeaseUnconfirmed' });
    const budget = createApiBudget({ statusQps: 5, pageQps: 5 }, { clock, gate: () => refusal });
    expect(() => budget.reserve('QueryBatchRegisterDeviceStatus')).toThrow(refusal);
  });

  it('close() refuses the waiters and later calls', async () => {
    const clock = createManualClock(0);
    const budget = new ApiBudget({ rates: { statusQps: 1, pageQps: 1 }, clock, tuning: plain });
    await budget.acquire('QueryBatchRegisterDeviceStatus');
    const waiting = budget.acquire('QueryBatchRegisterDeviceStatus');
    budget.close();
    await expect(waiting).rejects.toThrow('closed');
    await expect(budget.acquire('QueryBatchRegisterDeviceStatus')).rejects.toThrow('closed');
    expect(clock.pendingSleeps()).toBe(0);
  });
});
