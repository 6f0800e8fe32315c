/**
 * Durations in the configuration file (DESIGN.md §2): a string of one or more `<digits><unit>` parts, largest
 * unit first (`500ms`, `2s`, `5m`, `24h`, `30d`, `1h30m`, `1m30s500ms`), or a non-negative integer of
 * milliseconds. Units: `d` (days), `h`, `m` (minutes), `s`, `ms`. Fractions, spaces, signs and bare digit
 * strings (`"500"`) are rejected: write `500ms` or the integer `500`.
 *
 * Pure functions, no I/O.
 */

import { describeValue } from './describe.js';

/** What a duration looks like, for messages: `expected ${DURATION_EXPECTED}, got …`. */
export const DURATION_EXPECTED = 'a duration like "30s", "5m" or milliseconds';

/**
 * The string form, also used as the JSON Schema `pattern`. Each unit at most once, largest first.
 * NOTE: `m(?!s)` keeps `5ms` from being read as five minutes followed by a stray `s`.
 */
export const DURATION_PATTERN = /^(?=\d)(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m(?!s))?(?:(\d+)s)?(?:(\d+)ms)?$/;

const UNIT_MS = [86_400_000, 3_600_000, 60_000, 1_000, 1] as const;
const UNIT_NAMES = ['d', 'h', 'm', 's', 'ms'] as const;

/** Result of {@link tryParseDuration}: the milliseconds, or why the value is not a duration. */
export type DurationResult = { ok: true; ms: number } | { ok: false; message: string };

/**
 * Parses a duration without throwing.
 *
 * @param value - anything; only strings matching {@link DURATION_PATTERN} and non-negative safe integers pass.
 * @returns `{ ok: true, ms }`, or `{ ok: false, message }` with a message of the shape
 *   ``expected a duration like "30s", "5m" or milliseconds, got `"soon"` (string)``.
 */
export function tryParseDuration(value: unknown): DurationResult {
  if (typeof value === 'number') {
    if (Number.isSafeInteger(value) && value >= 0) return { ok: true, ms: value };
    return { ok: false, message: `expected ${DURATION_EXPECTED}, got ${describeValue(value)}` };
  }
  if (typeof value === 'string') {
    const match = DURATION_PATTERN.exec(value);
    if (match !== null) {
      let total = 0;
      for (let i = 0; i < UNIT_MS.length; i += 1) {
        const part = match[i + 1];
        if (part !== undefined) total += Number(part) * UNIT_MS[i]!;
      }
      if (Number.isSafeInteger(total)) return { ok: true, ms: total };
      return {
        ok: false,
        message: `expected a duration of at most ${Number.MAX_SAFE_INTEGER} ms, got ${describeValue(value)}`,
      };
    }
  }
  return { ok: false, message: `expected ${DURATION_EXPECTED}, got ${describeValue(value)}` };
}

/**
 * Parses a duration, throwing on bad input.
 *
 * @param value - a string such as `"2s"` or `"1h30m"`, or a non-negative integer of milliseconds.
 * @returns the duration in milliseconds.
 * @throws RangeError with a message naming what was expected and what was found.
 */
export function parseDuration(value: string | number): number {
  const result = tryParseDuration(value);
  if (!result.ok) throw new RangeError(result.message);
  return result.ms;
}

/** True when {@link tryParseDuration} accepts the value. */
export function isDuration(value: unknown): value is string | number {
  return tryParseDuration(value).ok;
}

/**
 * Formats milliseconds in the same syntax the parser accepts, largest unit first: `90000` → `"1m30s"`,
 * `0` → `"0ms"`. `parseDuration(formatDuration(ms)) === ms` for every non-negative safe integer.
 */
export function formatDuration(ms: number): string {
  if (!Number.isSafeInteger(ms) || ms < 0) throw new RangeError(`expected a non-negative safe integer, got ${describeValue(ms)}`);
  if (ms === 0) return '0ms';
  let rest = ms;
  let out = '';
  for (let i = 0; i < UNIT_MS.length; i += 1) {
    const unit = UNIT_MS[i]!;
    const count = Math.floor(rest / unit);
    if (count > 0) {
      out += `${count}${UNIT_NAMES[i]!}`;
      rest -= count * unit;
    }
  }
  return out;
}
