/**
 * A tiny JSON writer that can emit a number literal verbatim. Alibaba returns ApplyId as a Java Long, i.e. a
 * bare number that may exceed 2^53; `JSON.stringify` cannot write such a number from a string without
 * precision loss, so the simulator writes that field by hand.
 */

/** A value written into JSON text as-is (must already be valid JSON, e.g. the digits of a Long). */
export class RawJson {
  constructor(readonly text: string) {}
}

/** Wraps a decimal integer string so it is written as a number literal. */
export function longLiteral(digits: string): RawJson {
  if (!/^-?[0-9]+$/.test(digits)) throw new TypeError(`not an integer literal: ${digits}`);
  return new RawJson(digits);
}

/** Serialises plain objects, arrays, strings, numbers, booleans, null and RawJson. `undefined` fields are skipped. */
export function toJsonText(value: unknown): string {
  if (value instanceof RawJson) return value.text;
  if (Array.isArray(value)) return `[${value.map((v) => (v === undefined ? 'null' : toJsonText(v))).join(',')}]`;
  if (value !== null && typeof value === 'object') {
    const parts: string[] = [];
    for (const [k, v] of Object.entries(value)) {
      if (v === undefined) continue;
      parts.push(`${JSON.stringify(k)}:${toJsonText(v)}`);
    }
    return `{${parts.join(',')}}`;
  }
  return JSON.stringify(value) ?? 'null';
}
