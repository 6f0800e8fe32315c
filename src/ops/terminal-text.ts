/**
 * Text that reaches a terminal (status table, watch view, pretty logs) must not drive it: a batch name such as
 * `"\u001b[2J"` would clear the screen, `"\u202e"` would reverse what follows. Such characters are shown escaped.
 */

// NOTE: C0 and C1 controls, DEL, and the Unicode format characters that reorder or hide text (bidi embeddings,
// overrides and isolates, zero-width joiners and marks, line/paragraph separators, BOM).
// eslint-disable-next-line no-control-regex
const CONTROL = /[\u0000-\u001f\u007f-\u009f\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff]/g;
// eslint-disable-next-line no-control-regex
const HAS_CONTROL = /[\u0000-\u001f\u007f-\u009f\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff]/;

const NAMED: Readonly<Record<string, string>> = { '\n': '\\n', '\r': '\\r', '\t': '\\t' };

function escapeOne(ch: string): string {
  const named = NAMED[ch];
  if (named !== undefined) return named;
  const code = ch.charCodeAt(0);
  return code <= 0xff ? `\\x${code.toString(16).padStart(2, '0')}` : `\\u${code.toString(16).padStart(4, '0')}`;
}

/** `text` with every control or reordering character replaced by a visible escape (`\x1b`, `\u202e`, `\n`). */
export function escapeControl(text: string): string {
  // NOTE: the test first keeps the common case (clean text) free of allocations; status formats 20k rows.
  return HAS_CONTROL.test(text) ? text.replace(CONTROL, escapeOne) : text;
}

// NOTE: in a JSON text an escaped backslash (`\\`) must be consumed as one token, so that `\\u001b` (a backslash
// followed by the letters u001b) is not taken for the escape `\u001b`.
const JSON_CONTROL =
  /\\\\|\\u(00[01][0-9a-fA-F]|007[fF]|00[89][0-9a-fA-F])|\\([bfr])|[\u007f-\u009f\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff]/g;
const JSON_SHORT: Readonly<Record<string, string>> = { b: '\\\\x08', f: '\\\\x0c', r: '\\\\r' };

/**
 * One JSON text (a pino line) with every control or reordering character inside its strings turned into a
 * visible escape, so that whatever prints the decoded strings shows `\x1b` instead of sending ESC. Newlines and
 * tabs stay (pretty logs print stack traces on several lines); everything else of {@link escapeControl} goes.
 */
export function escapeControlInJson(json: string): string {
  return json.replace(JSON_CONTROL, (m: string, hex: string | undefined, short: string | undefined) => {
    if (m === '\\\\') return m;
    if (hex !== undefined) {
      const code = Number.parseInt(hex, 16);
      if (code === 0x0a || code === 0x09) return m;
      return `\\\\x${code.toString(16).padStart(2, '0')}`;
    }
    if (short !== undefined) return JSON_SHORT[short] ?? m;
    const code = m.charCodeAt(0);
    return code <= 0xff ? `\\\\x${code.toString(16).padStart(2, '0')}` : `\\\\u${code.toString(16).padStart(4, '0')}`;
  });
}
