/**
 * JSON parsing that keeps chosen integer fields exact. An ApplyId is a Java `Long`; a JSON number beyond
 * 2^53 would be rounded by `JSON.parse`, and Node 20 has no reviver source text. So before parsing we
 * quote the integer literals that are the value of a listed key (at any depth), turning them into strings.
 * A small lexer tracks strings and escapes, so text inside string values is never touched.
 */

/** Keys whose integer values are kept as strings. */
export const LOSSLESS_INTEGER_KEYS: ReadonlySet<string> = new Set(['ApplyId']);

/** The quoted default keys, built once. */
const DEFAULT_NEEDLES: readonly string[] = [...LOSSLESS_INTEGER_KEYS].map((k) => `"${k}"`);

/**
 * Returns `text` with each integer literal that is the value of a key in `keys` wrapped in quotes.
 * Invalid JSON stays invalid (the caller's `JSON.parse` reports it).
 */
export function quoteIntegerFields(text: string, keys: ReadonlySet<string> = LOSSLESS_INTEGER_KEYS): string {
  let out = '';
  let copied = 0;
  let lastString: string | null = null;
  let pendingKey: string | null = null;
  let i = 0;
  const n = text.length;
  while (i < n) {
    const c = text.charCodeAt(i);
    if (c === 0x22 /* " */) {
      let j = i + 1;
      while (j < n) {
        const d = text.charCodeAt(j);
        if (d === 0x5c /* \ */) j += 2;
        else if (d === 0x22) break;
        else j += 1;
      }
      lastString = text.slice(i + 1, Math.min(j, n));
      pendingKey = null;
      i = j + 1;
      continue;
    }
    if (c === 0x3a /* : */) {
      pendingKey = lastString;
      lastString = null;
      i += 1;
      continue;
    }
    if (c === 0x2d /* - */ || (c >= 0x30 && c <= 0x39)) {
      let j = i + 1;
      while (j < n && /[0-9.eE+-]/.test(text[j] ?? '')) j += 1;
      const token = text.slice(i, j);
      if (pendingKey !== null && keys.has(pendingKey) && /^-?\d+$/.test(token)) {
        out += `${text.slice(copied, i)}"${token}"`;
        copied = j;
      }
      pendingKey = null;
      lastString = null;
      i = j;
      continue;
    }
    if (c !== 0x20 && c !== 0x0a && c !== 0x0d && c !== 0x09) {
      pendingKey = null;
      if (c !== 0x2c /* , */ || lastString !== null) lastString = null;
    }
    i += 1;
  }
  return copied === 0 ? text : out + text.slice(copied);
}

/** `JSON.parse` with {@link quoteIntegerFields} applied first. Throws `SyntaxError` on invalid JSON. */
export function parseJsonLossless(text: string, keys: ReadonlySet<string> = LOSSLESS_INTEGER_KEYS): unknown {
  // NOTE: the hot path (a status poll's answer) has no such key: skip the lexer's pass over every string.
  let mentioned = false;
  if (keys === LOSSLESS_INTEGER_KEYS) {
    for (const needle of DEFAULT_NEEDLES) {
      if (text.includes(needle)) {
        mentioned = true;
        break;
      }
    }
  } else {
    for (const k of keys) {
      if (text.includes(`"${k}"`)) {
        mentioned = true;
        break;
      }
    }
  }
  return JSON.parse(mentioned ? quoteIntegerFields(text, keys) : text) as unknown;
}
