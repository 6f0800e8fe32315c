import { describe, expect, it } from 'vitest';

import { Semaphore } from '../../../src/core/semaphore.js';

/** Lets pending promise callbacks run. */
async function settle(): Promise<void> {
  for (let i = 0; i < 5; i += 1) await Promise.resolve();
}

describe('Semaphore', () => {
  it('hands out at most max slots', () => {
    const s = new Semaphore(2);
    expect(s.max).toBe(2);
    expect(s.tryAcquire()).toBe(true);
    expect(s.tryAcquire()).toBe(true);
    expect(s.tryAcquire()).toBe(false);
    expect(s.inFlight).toBe(2);
    s.release();
    expect(s.inFlight).toBe(1);
    expect(s.tryAcquire()).toBe(true);
    expect(s.tryAcquire()).toBe(false);
  });

  it('throws on a release with nothing in flight, and on a bad max', () => {
    expect(() => new Semaphore(1).release()).toThrow(/nothing in flight/);
    expect(() => new Semaphore(0)).toThrow('Expected `max` to be an integer ≥ 1, got `0` (number)');
    expect(() => new Semaphore(1.5)).toThrow(RangeError);
  });

  it('whenAvailable resolves at once when a slot is free', async () => {
    const s = new Semaphore(1);
    let done = false;
    void s.whenAvailable().then(() => (done = true));
    await settle();
    expect(done).toBe(true);
  });

  it('whenAvailable waits for a release, and wakes every waiter without taking the slot', async () => {
    const s = new Semaphore(1);
    s.tryAcquire();
    const woken: number[] = [];
    void s.whenAvailable().then(() => woken.push(1));
    void s.whenAvailable().then(() => woken.push(2));
    await settle();
    expect(woken).toEqual([]);
    s.release();
    await settle();
    expect(woken).toEqual([1, 2]);
    expect(s.inFlight).toBe(0);
    // The waiters race for the slot; exactly one wins.
    expect([s.tryAcquire(), s.tryAcquire()]).toEqual([true, false]);
  });

  it('whenAvailable rejects with the abort reason and forgets the waiter', async () => {
    const s = new Semaphore(1);
    s.tryAcquire();
    const ac = new AbortController();
    const p = s.whenAvailable(ac.signal);
    ac.abort(new Error('shutting down'));
    await expect(p).rejects.toThrow('shutting down');
    const pre = new AbortController();
    pre.abort();
    await expect(s.whenAvailable(pre.signal)).rejects.toBeInstanceOf(Error);
    s.release(); // must not touch the aborted waiter
    expect(s.inFlight).toBe(0);
  });

  it('whenIdle resolves once nothing is in flight', async () => {
    const s = new Semaphore(3);
    s.tryAcquire();
    s.tryAcquire();
    let idle = false;
    void s.whenIdle().then(() => (idle = true));
    s.release();
    await settle();
    expect(idle).toBe(false);
    s.release();
    await settle();
    expect(idle).toBe(true);
    await expect(s.whenIdle()).resolves.toBeUndefined();
  });
});
