/**
 * How a found value is shown in configuration messages, p-queue style: `` `"soon"` (string)``, `` `-1` (number)``.
 * Long strings are cut so a message stays one readable line.
 */

const MAX_SHOWN = 60;

/**
 * Describes a value for the "got …" half of a message.
 *
 * @example describeValue('soon') === '`"soon"` (string)'
 * @example describeValue(null) === 'an empty value (null)'
 */
export function describeValue(value: unknown): string {
  if (value === undefined) return 'nothing';
  if (value === null) return 'an empty value (null)';
  if (Array.isArray(value)) return 'a list';
  switch (typeof value) {
    case 'string':
      return `\`${quote(value)}\` (string)`;
    case 'number':
      return `\`${String(value)}\` (number)`;
    case 'bigint':
      return `\`${value.toString()}\` (integer)`;
    case 'boolean':
      return `\`${String(value)}\` (boolean)`;
    case 'object':
      return value instanceof Date ? `\`${value.toISOString()}\` (date)` : 'a mapping';
    default:
      return `a ${typeof value}`;
  }
}

/** JSON-quotes a string, cutting it to a readable length. */
export function quote(value: string): string {
  const shown = value.length > MAX_SHOWN ? `${value.slice(0, MAX_SHOWN)}…` : value;
  return JSON.stringify(shown);
}

/** Builds ``expected X, got Y`` (or ``expected X, but the key is missing`` for `undefined`). */
export function expectedGot(expected: string, value: unknown): string {
  if (value === undefined) return `expected ${expected}, but the key is missing`;
  return `expected ${expected}, got ${describeValue(value)}`;
}
