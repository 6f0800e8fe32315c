import fc from 'fast-check';
import { describe, expect, it } from 'vitest';

import { formatDuration, isDuration, parseDuration, tryParseDuration } from '../../../src/config/duration.js';

describe('parseDuration', () => {
  it.each([
    ['500ms', 500],
    ['2s', 2_000],
    ['5m', 300_000],
    ['24h', 86_400_000],
    ['30d', 2_592_000_000],
    ['1h30m', 5_400_000],
    ['1m30s500ms', 90_500],
    ['1d2h3m4s5ms', 93_784_005],
    ['0s', 0],
    ['0ms', 0],
    [0, 0],
    [1500, 1500],
  ] as const)('%s is %d ms', (input, ms) => {
    expect(parseDuration(input)).toBe(ms);
  });

  it.each([
    ['soon', '`"soon"` (string)'],
    ['1.5s', '`"1.5s"` (string)'],
    ['500', '`"500"` (string)'],
    [' 5s', '`" 5s"` (string)'],
    ['5 s', '`"5 s"` (string)'],
    ['5S', '`"5S"` (string)'],
    ['-5s', '`"-5s"` (string)'],
    ['30m1h', '`"30m1h"` (string)'],
    ['5s5s', '`"5s5s"` (string)'],
    ['', '`""` (string)'],
    [-1, '`-1` (number)'],
    [1.5, '`1.5` (number)'],
    [Number.POSITIVE_INFINITY, '`Infinity` (number)'],
    [Number.NaN, '`NaN` (number)'],
    [2 ** 53, '`9007199254740992` (number)'],
  ] as const)('rejects %j with a message naming what it got', (input, got) => {
    expect(() => parseDuration(input)).toThrow(new RangeError(`expected a duration like "30s", "5m" or milliseconds, got ${got}`));
  });

  it('refuses durations beyond the safe integer range', () => {
    expect(tryParseDuration('999999999999d')).toEqual({
      ok: false,
      message: 'expected a duration of at most 9007199254740991 ms, got `"999999999999d"` (string)',
    });
  });

  it('describes non-string, non-number values', () => {
    expect(tryParseDuration(null)).toEqual({
      ok: false,
      message: 'expected a duration like "30s", "5m" or milliseconds, got an empty value (null)',
    });
    expect(isDuration(true)).toBe(false);
    expect(isDuration({})).toBe(false);
    expect(isDuration('5m')).toBe(true);
  });

  it('does not read 5ms as five minutes', () => {
    expect(parseDuration('5ms')).toBe(5);
    expect(parseDuration('5m')).toBe(300_000);
  });

  it('formatDuration round-trips through parseDuration', () => {
    expect(formatDuration(0)).toBe('0ms');
    expect(formatDuration(90_500)).toBe('1m30s500ms');
    expect(formatDuration(86_400_000)).toBe('1d');
    fc.assert(
      fc.property(fc.integer({ min: 0, max: Number.MAX_SAFE_INTEGER }), (ms) => parseDuration(formatDuration(ms)) === ms),
      { numRuns: 300 },
    );
    expect(() => formatDuration(-1)).toThrow(RangeError);
  });
});
