/**
 * Whether output may be coloured: never with `NO_COLOR` (https://no-color.org: set and not empty), always with
 * `FORCE_COLOR` (not `0`), else only on a terminal that is not `TERM=dumb`.
 */

/** True when text written to `stream` may carry ANSI colours. */
export function colorEnabled(env: Readonly<Record<string, string | undefined>>, stream: unknown): boolean {
  if (env.NO_COLOR !== undefined && env.NO_COLOR !== '') return false;
  if (env.FORCE_COLOR !== undefined && env.FORCE_COLOR !== '' && env.FORCE_COLOR !== '0') return true;
  if (env.TERM === 'dumb') return false;
  return (stream as { isTTY?: boolean } | null)?.isTTY === true;
}

/** ANSI styles, or plain text when colour is off. */
export interface Styles {
  bold: (text: string) => string;
  dim: (text: string) => string;
  red: (text: string) => string;
  yellow: (text: string) => string;
  green: (text: string) => string;
}

const wrap = (open: number, close: number) => (text: string) => `\u001b[${open}m${text}\u001b[${close}m`;

/** The styles for `enabled` colour. */
export function styles(enabled: boolean): Styles {
  if (!enabled) {
    const id = (t: string): string => t;
    return { bold: id, dim: id, red: id, yellow: id, green: id };
  }
  return { bold: wrap(1, 22), dim: wrap(2, 22), red: wrap(31, 39), yellow: wrap(33, 39), green: wrap(32, 39) };
}
