/** The chunk plan's identity rule (DESIGN.md §13): append submits only new names, removal changes nothing. */

import { describe, expect, it } from 'vitest';

import { type ChunkName, type PlannedChunk, chunkDeviceCount, planCountChunks, planNameChunks } from '../../../src/provision/chunk-plan.js';

const names = (from: number, to: number): ChunkName[] =>
  Array.from({ length: to - from }, (_, i) => ({ deviceName: `dev-${String(from + i).padStart(5, '0')}`, nickname: null }));

const membership = (chunks: readonly PlannedChunk[]) =>
  chunks.map((c) => (c.kind === 'names' ? [c.index, c.names[0]?.deviceName, c.names.length] : [c.index, c.count]));

describe('planNameChunks', () => {
  it('splits names in file order, chunkSize at a time', () => {
    const plan = planNameChunks([], names(0, 2500), 1000);
    expect(membership(plan.chunks)).toEqual([
      [0, 'dev-00000', 1000],
      [1, 'dev-01000', 1000],
      [2, 'dev-02000', 500],
    ]);
    expect(plan.added).toEqual(plan.chunks);
  });

  it('plans only appended names, never topping up a short chunk', () => {
    const first = planNameChunks([], names(0, 2500), 1000);
    const second = planNameChunks(first.chunks, names(0, 2600), 1000);
    expect(second.chunks.slice(0, 3)).toEqual(first.chunks);
    expect(membership(second.added)).toEqual([[3, 'dev-02500', 100]]);
  });

  it('changes nothing when names are removed, and does not plan a removed name again when it comes back', () => {
    const first = planNameChunks([], names(0, 10), 4);
    const removed = planNameChunks(first.chunks, names(5, 10), 4);
    expect(removed.added).toEqual([]);
    expect(removed.chunks).toEqual(first.chunks);
    const back = planNameChunks(removed.chunks, [...names(0, 12)].reverse(), 4);
    expect(membership(back.added)).toEqual([[3, 'dev-00011', 2]]);
  });

  it('plans a name once even if the input repeats it, and keeps nicknames', () => {
    const plan = planNameChunks([], [{ deviceName: 'aaaa', nickname: 'A' }, { deviceName: 'aaaa', nickname: 'B' }, { deviceName: 'bbbb', nickname: null }], 10);
    expect(plan.chunks).toEqual([{ index: 0, kind: 'names', names: [{ deviceName: 'aaaa', nickname: 'A' }, { deviceName: 'bbbb', nickname: null }] }]);
  });

  it('refuses a bad chunk size and a mix with count chunks', () => {
    expect(() => planNameChunks([], names(0, 1), 0)).toThrow(RangeError);
    expect(() => planNameChunks([{ index: 0, kind: 'count', count: 3 }], names(0, 1), 5)).toThrow(/count chunk/);
  });
});

describe('planCountChunks', () => {
  it('splits a count, extends it when raised and keeps it when lowered', () => {
    const plan = planCountChunks([], 25_000, 10_000);
    expect(membership(plan.chunks)).toEqual([
      [0, 10_000],
      [1, 10_000],
      [2, 5000],
    ]);
    expect(plan.chunks.reduce((n, c) => n + chunkDeviceCount(c), 0)).toBe(25_000);
    expect(membership(planCountChunks(plan.chunks, 26_000, 10_000).added)).toEqual([[3, 1000]]);
    const lowered = planCountChunks(plan.chunks, 100, 10_000);
    expect(lowered.added).toEqual([]);
    expect(lowered.chunks).toEqual(plan.chunks);
  });

  it('refuses names chunks', () => {
    expect(() => planCountChunks([{ index: 0, kind: 'names', names: [] }], 1, 1)).toThrow(/names chunk/);
  });
});
