import fc from 'fast-check';
import { describe, expect, it } from 'vitest';

import { DueHeap } from '../../../src/core/heap.js';

/** A slow, obviously correct model: key → (dueAt, seq), ordered by a full sort. */
class ReferenceSchedule {
  private readonly entries = new Map<string, { dueAt: number; seq: number }>();
  private seq = 0;
  push(key: string, dueAt: number): void {
    this.entries.set(key, { dueAt, seq: (this.seq += 1) });
  }
  remove(key: string): boolean {
    return this.entries.delete(key);
  }
  sorted(): { key: string; dueAt: number }[] {
    return [...this.entries]
      .sort(([, a], [, b]) => a.dueAt - b.dueAt || a.seq - b.seq)
      .map(([key, { dueAt }]) => ({ key, dueAt }));
  }
  pop(): { key: string; dueAt: number } | undefined {
    const first = this.sorted()[0];
    if (first !== undefined) this.entries.delete(first.key);
    return first;
  }
  get size(): number {
    return this.entries.size;
  }
}

const op = fc.oneof(
  // Few distinct keys and due times, so updates and ties are frequent.
  fc.record({
    kind: fc.constant('push' as const),
    key: fc.integer({ min: 0, max: 30 }),
    dueAt: fc.integer({ min: 0, max: 20 }),
  }),
  fc.record({ kind: fc.constant('remove' as const), key: fc.integer({ min: 0, max: 30 }) }),
  fc.record({ kind: fc.constant('pop' as const) }),
);

describe('DueHeap', () => {
  it('empty heap', () => {
    const h = new DueHeap();
    expect(h.size).toBe(0);
    expect(h.peek()).toBeUndefined();
    expect(h.pop()).toBeUndefined();
    expect(h.remove('x')).toBe(false);
    expect(h.has('x')).toBe(false);
    expect(h.dueAt('x')).toBeUndefined();
  });

  it('pops in due order', () => {
    const h = new DueHeap();
    h.push('c', 30);
    h.push('a', 10);
    h.push('b', 20);
    expect(h.peek()).toEqual({ key: 'a', dueAt: 10 });
    expect([h.pop(), h.pop(), h.pop(), h.pop()]).toEqual([
      { key: 'a', dueAt: 10 },
      { key: 'b', dueAt: 20 },
      { key: 'c', dueAt: 30 },
      undefined,
    ]);
  });

  it('is FIFO among equal due times, and an update counts as a fresh insertion', () => {
    const h = new DueHeap();
    for (const k of ['k0', 'k1', 'k2', 'k3', 'k4', 'k5', 'k6', 'k7']) h.push(k, 100);
    h.push('k2', 100); // re-pushed: now last among the 100s
    h.push('early', 50);
    const order: string[] = [];
    for (let e = h.pop(); e !== undefined; e = h.pop()) order.push(e.key);
    expect(order).toEqual(['early', 'k0', 'k1', 'k3', 'k4', 'k5', 'k6', 'k7', 'k2']);
  });

  it('push on a present key moves it instead of duplicating it', () => {
    const h = new DueHeap();
    h.push('a', 10);
    h.push('b', 20);
    h.push('a', 30);
    expect(h.size).toBe(2);
    expect(h.dueAt('a')).toBe(30);
    expect(h.pop()?.key).toBe('b');
    h.push('a', 1);
    expect(h.peek()).toEqual({ key: 'a', dueAt: 1 });
  });

  it('rejects NaN due times', () => {
    expect(() => new DueHeap().push('a', Number.NaN)).toThrow(RangeError);
  });

  it('matches a sorted reference under random pushes, updates, removes and pops', () => {
    fc.assert(
      fc.property(fc.array(op, { maxLength: 300 }), (ops) => {
        const h = new DueHeap();
        const ref = new ReferenceSchedule();
        for (const o of ops) {
          if (o.kind === 'push') {
            h.push(`k${o.key}`, o.dueAt);
            ref.push(`k${o.key}`, o.dueAt);
          } else if (o.kind === 'remove') {
            expect(h.remove(`k${o.key}`)).toBe(ref.remove(`k${o.key}`));
          } else {
            expect(h.pop()).toEqual(ref.pop());
          }
          expect(h.size).toBe(ref.size);
          expect(h.peek()).toEqual(ref.sorted()[0]);
        }
        for (const { key, dueAt } of ref.sorted()) {
          expect(h.has(key)).toBe(true);
          expect(h.dueAt(key)).toBe(dueAt);
        }
        expect([...h.entries()].sort((a, b) => a.key.localeCompare(b.key))).toEqual(
          ref.sorted().sort((a, b) => a.key.localeCompare(b.key)),
        );
        // Draining gives exactly the reference order.
        const drained: { key: string; dueAt: number }[] = [];
        for (let e = h.pop(); e !== undefined; e = h.pop()) drained.push(e);
        expect(drained).toEqual(ref.sorted());
      }),
      { numRuns: 300 },
    );
  });

  it('handles 100k entries with updates and removals', () => {
    const h = new DueHeap();
    const n = 100_000;
    // A deterministic scramble of due times.
    for (let i = 0; i < n; i += 1) h.push(`b${i}`, (i * 7919) % 100_003);
    for (let i = 0; i < n; i += 10) h.push(`b${i}`, 200_000 + i);
    let removed = 0;
    for (let i = 5; i < n; i += 10) if (h.remove(`b${i}`)) removed += 1;
    expect(removed).toBe(n / 10);
    expect(h.size).toBe(n - n / 10);
    let prev = -Infinity;
    let count = 0;
    let outOfOrder = 0;
    for (let e = h.pop(); e !== undefined; e = h.pop()) {
      if (e.dueAt < prev) outOfOrder += 1;
      prev = e.dueAt;
      count += 1;
    }
    expect(outOfOrder).toBe(0);
    expect(count).toBe(n - n / 10);
  });

  it('clear() empties everything', () => {
    const h = new DueHeap();
    h.push('a', 1);
    h.push('b', 2);
    h.clear();
    expect(h.size).toBe(0);
    expect(h.has('a')).toBe(false);
    h.push('a', 3);
    expect(h.pop()).toEqual({ key: 'a', dueAt: 3 });
  });
});
