import { describe, expect, it } from 'vitest';

import { hashBatchEntry } from '../../../src/config/compile.js';

// Ledgers keep these hashes to tell a changed entry from an unchanged one (a change re-arms a parked batch), so a
// faster implementation must give the very same values. Both were computed by the first stage's implementation.
describe('hashBatchEntry is stable across implementations', () => {
  it('gives the first-stage hash of a typical entry, whatever the key order', () => {
    const expected = '89079e5852b56be28d5e2bebded2022be5cafa71e60bf143c65744c8d75ea95f';
    expect(
      hashBatchEntry({ applyId: '1295006', productKey: 'a1BwAGVxxxx', name: 'line-3', labels: { site: 'sh', b: 'x' }, polling: { maxDelay: '5m', multiplier: 1.5 }, register: true }),
    ).toBe(expected);
    expect(
      hashBatchEntry({ register: true, polling: { multiplier: 1.5, maxDelay: '5m' }, labels: { b: 'x', site: 'sh' }, name: 'line-3', productKey: 'a1BwAGVxxxx', applyId: '1295006' }),
    ).toBe(expected);
  });

  it('gives the first-stage hash with bigints, nulls, undefined and quotes', () => {
    expect(hashBatchEntry({ applyId: 12345678901234567890n, productKey: 'p', x: [1, null, undefined, 'a"b'] })).toBe(
      '15d6f84e2c1891f561890387bd4590e5f8fefaed10fc9065a7e450960f5aec1a',
    );
  });
});
