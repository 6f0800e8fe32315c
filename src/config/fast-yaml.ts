/**
 * A fast reader for the plain subset of YAML that configuration files are made of (issue #14: a 100,000-batch file
 * in seconds, not in the 10 s and 900 MB the `yaml` package's document model costs).
 *
 * It builds plain JavaScript values directly — no document, no nodes, no positions — and gives up (returns null)
 * on anything outside the subset, so that the caller falls back to the full `yaml` parser, which then also names
 * file:line:col for every problem. Giving up is always safe; accepting is only allowed where the result is the one
 * `yaml` (YAML 1.2 core schema, `intAsBigInt`, then safe integers as numbers) would give. A differential test
 * (test/unit/config/fast-yaml.test.ts) holds it to that.
 *
 * The subset: block mappings and block sequences (also a sequence at its key's indentation), one-line flow
 * mappings and sequences, plain scalars on one line, single- and double-quoted scalars on one line (double-quoted
 * without escapes), comments, a leading `---`. Outside it (give up): tabs, CR, a BOM, anchors, aliases, tags,
 * block scalars, multi-line scalars, `?` keys, directives, several documents, duplicate keys, keys that are not
 * strings, `__proto__`, and anything odd.
 */

/** A 1-based line and column, as the `yaml` package's LineCounter reports them. */
export interface FastPosition {
  line: number;
  col: number;
}

/** The value of a document, and where each item of its top-level `batches` block sequence starts. */
export interface FastDocument {
  value: Record<string, unknown>;
  batchPositions: FastPosition[];
}

class GiveUp extends Error {}

const giveUp = (): never => {
  throw new GiveUp();
};

interface Line {
  /** 1-based line number. */
  no: number;
  /** Column of the content (0-based). */
  indent: number;
  /** The content from `indent`, trailing spaces removed; comment-only lines are dropped. */
  text: string;
}

const NULL_RE = /^(?:~|[Nn]ull|NULL)?$/;
const BOOL_RE = /^(?:[Tt]rue|TRUE|[Ff]alse|FALSE)$/;
const INT_OCT_RE = /^0o[0-7]+$/;
const INT_RE = /^[-+]?[0-9]+$/;
const INT_HEX_RE = /^0x[0-9a-fA-F]+$/;
const FLOAT_NAN_RE = /^(?:[-+]?\.(?:inf|Inf|INF)|\.nan|\.NaN|\.NAN)$/;
const FLOAT_EXP_RE = /^[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)[eE][-+]?[0-9]+$/;
const FLOAT_RE = /^[-+]?(?:\.[0-9]+|[0-9]+\.[0-9]*)$/;
/** Characters a plain scalar may not start with (YAML indicators), quotes and flow brackets aside. */
const BAD_PLAIN_START = new Set(['-', '?', ':', ',', ']', '}', '#', '&', '*', '!', '|', '>', '%', '@', '`']);

function toInteger(text: string): number | bigint {
  let big: bigint;
  try {
    big = BigInt(text);
  } catch {
    return giveUp();
  }
  return big >= BigInt(Number.MIN_SAFE_INTEGER) && big <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(big) : big;
}

/** Resolves a plain scalar by the YAML 1.2 core schema, in the order the `yaml` package tests its tags. */
function resolvePlain(text: string): unknown {
  const c = text.charCodeAt(0);
  // Only texts starting with a digit, a sign, a dot, n/N, t/T, f/F or ~ can be anything but a string.
  const maybe = (c >= 48 && c <= 57) || c === 43 || c === 45 || c === 46 || c === 126 || 'nNtTfF'.includes(text[0] ?? '');
  if (!maybe) return text;
  if (NULL_RE.test(text)) return null;
  if (BOOL_RE.test(text)) return text[0] === 't' || text[0] === 'T';
  if (INT_OCT_RE.test(text) || INT_RE.test(text) || INT_HEX_RE.test(text)) return toInteger(text);
  if (FLOAT_NAN_RE.test(text)) {
    if (text.slice(-3).toLowerCase() === 'nan') return NaN;
    return text[0] === '-' ? Number.NEGATIVE_INFINITY : Number.POSITIVE_INFINITY;
  }
  if (FLOAT_EXP_RE.test(text) || FLOAT_RE.test(text)) return parseFloat(text);
  return text;
}

/** Reads a quoted scalar starting at `text[i]`; returns the value and the index after the closing quote. */
function readQuoted(text: string, i: number): { value: string; end: number } {
  const q = text[i];
  if (q === '"') {
    const close = text.indexOf('"', i + 1);
    if (close < 0) return giveUp();
    const value = text.slice(i + 1, close);
    if (value.includes('\\')) return giveUp();
    return { value, end: close + 1 };
  }
  let out = '';
  let j = i + 1;
  for (;;) {
    const close = text.indexOf("'", j);
    if (close < 0) return giveUp();
    out += text.slice(j, close);
    if (text[close + 1] === "'") {
      out += "'";
      j = close + 2;
    } else {
      return { value: out, end: close + 1 };
    }
  }
}

/** Nothing but spaces and an optional comment after `i`. */
function restIsEmpty(text: string, i: number): boolean {
  let j = i;
  while (text[j] === ' ') j += 1;
  if (j >= text.length) return true;
  return text[j] === '#' && j > i;
}

function setKey(map: Record<string, unknown>, key: unknown, value: unknown): void {
  if (typeof key !== 'string' || key === '__proto__' || Object.prototype.hasOwnProperty.call(map, key)) giveUp();
  map[key as string] = value;
}

// ---------------------------------------------------------------------------------------------------------
// Flow collections (one line)

class FlowReader {
  i: number;
  constructor(
    readonly text: string,
    start: number,
  ) {
    this.i = start;
  }

  skipSpaces(): void {
    while (this.text[this.i] === ' ') this.i += 1;
  }

  value(): unknown {
    this.skipSpaces();
    const ch = this.text[this.i];
    if (ch === '{') return this.map();
    if (ch === '[') return this.seq();
    if (ch === '"' || ch === "'") {
      const q = readQuoted(this.text, this.i);
      this.i = q.end;
      return q.value;
    }
    return resolvePlain(this.plain());
  }

  /** A plain scalar in flow context: up to `,`, `]`, `}`; never empty, never with `: ` or ` #` inside. */
  plain(): string {
    const start = this.i;
    const ch = this.text[start];
    if (ch === undefined || BAD_PLAIN_START.has(ch) || ch === '[' || ch === '{') return giveUp();
    let j = start;
    for (; j < this.text.length; j += 1) {
      const c = this.text[j];
      if (c === ',' || c === ']' || c === '}' || c === '[' || c === '{') break;
      if (c === ':' && (this.text[j + 1] === ' ' || this.text[j + 1] === ',' || this.text[j + 1] === '}' || this.text[j + 1] === ']' || j + 1 === this.text.length)) break;
      if (c === '#' && this.text[j - 1] === ' ') return giveUp();
    }
    const value = this.text.slice(start, j).trimEnd();
    if (value === '') return giveUp();
    this.i = j;
    return value;
  }

  map(): Record<string, unknown> {
    this.i += 1; // {
    const out: Record<string, unknown> = {};
    this.skipSpaces();
    if (this.text[this.i] === '}') {
      this.i += 1;
      return out;
    }
    for (;;) {
      this.skipSpaces();
      let key: unknown;
      const ch = this.text[this.i];
      if (ch === '"' || ch === "'") {
        const q = readQuoted(this.text, this.i);
        this.i = q.end;
        key = q.value;
      } else {
        key = resolvePlain(this.plain());
      }
      if (this.text[this.i] !== ':' || this.text[this.i + 1] !== ' ') return giveUp();
      this.i += 2;
      this.skipSpaces();
      const value = this.value();
      setKey(out, key, value);
      this.skipSpaces();
      const sep = this.text[this.i];
      this.i += 1;
      if (sep === '}') return out;
      if (sep !== ',') return giveUp();
      this.skipSpaces();
      if (this.text[this.i] === '}') return giveUp(); // a trailing comma
    }
  }

  seq(): unknown[] {
    this.i += 1; // [
    const out: unknown[] = [];
    this.skipSpaces();
    if (this.text[this.i] === ']') {
      this.i += 1;
      return out;
    }
    for (;;) {
      const value = this.value();
      this.skipSpaces();
      // `[a: b]` is a one-pair mapping in YAML: not in the subset.
      if (this.text[this.i] === ':') return giveUp();
      out.push(value);
      const sep = this.text[this.i];
      this.i += 1;
      if (sep === ']') return out;
      if (sep !== ',') return giveUp();
      this.skipSpaces();
      if (this.text[this.i] === ']') return giveUp();
    }
  }
}

/** A value written on the rest of a line in block context: a flow collection, a quoted or a plain scalar. */
function inlineValue(text: string): unknown {
  const ch = text[0];
  if (ch === '{' || ch === '[') {
    const reader = new FlowReader(text, 0);
    const value = reader.value();
    if (!restIsEmpty(text, reader.i)) giveUp();
    return value;
  }
  if (ch === '"' || ch === "'") {
    const q = readQuoted(text, 0);
    if (!restIsEmpty(text, q.end)) giveUp();
    return q.value;
  }
  if (ch === undefined || BAD_PLAIN_START.has(ch)) return giveUp();
  const hash = text.indexOf(' #');
  const plain = (hash < 0 ? text : text.slice(0, hash)).trimEnd();
  if (plain.includes(': ') || plain.endsWith(':')) return giveUp();
  return resolvePlain(plain);
}

// ---------------------------------------------------------------------------------------------------------
// Block structure

class BlockReader {
  pos = 0;
  batchPositions: FastPosition[] = [];
  constructor(readonly lines: Line[]) {}

  peek(): Line | undefined {
    return this.lines[this.pos];
  }

  /** The node whose first line is the current one, at exactly `indent`. */
  node(indent: number, record: boolean): unknown {
    const line = this.peek();
    if (line === undefined || line.indent !== indent) return giveUp();
    return isSeqItem(line.text) ? this.seq(indent, record) : this.map(indent);
  }

  map(indent: number): Record<string, unknown> {
    const out: Record<string, unknown> = {};
    for (;;) {
      const line = this.peek();
      if (line === undefined || line.indent < indent) return out;
      if (line.indent > indent || isSeqItem(line.text)) return giveUp();
      const { key, rest } = splitKey(line.text);
      this.pos += 1;
      // Only the top-level mapping has indentation 0; its `batches` items get their positions recorded.
      const record = key === 'batches' && indent === 0;
      let value: unknown;
      if (rest === '') {
        const next = this.peek();
        if (next !== undefined && next.indent > indent) value = this.node(next.indent, record);
        else if (next !== undefined && next.indent === indent && isSeqItem(next.text)) value = this.seq(indent, record);
        else value = null;
      } else {
        value = inlineValue(rest);
        if (record && Array.isArray(value) && value.length > 0) giveUp(); // a flow list of batches: positions needed
        const next = this.peek();
        if (next !== undefined && next.indent > indent) giveUp(); // a multi-line scalar or a stray line
      }
      setKey(out, key, value);
    }
  }

  seq(indent: number, record: boolean): unknown[] {
    const out: unknown[] = [];
    for (;;) {
      const line = this.peek();
      if (line === undefined || line.indent < indent) return out;
      if (line.indent > indent || !isSeqItem(line.text)) {
        // A mapping key at the sequence's own indentation ends a compact sequence.
        if (line.indent === indent) return out;
        return giveUp();
      }
      let offset = 1;
      while (line.text[offset] === ' ') offset += 1;
      const rest = line.text.slice(offset);
      if (rest === '' || rest.startsWith('#')) {
        this.pos += 1;
        const next = this.peek();
        if (next !== undefined && next.indent > indent) {
          if (record) this.batchPositions.push({ line: next.no, col: next.indent + 1 });
          out.push(this.node(next.indent, false));
        } else {
          if (record) giveUp(); // an empty entry: let the full parser name it
          out.push(null);
        }
        continue;
      }
      if (isSeqItem(rest)) return giveUp(); // `- - x`
      const itemIndent = indent + offset;
      if (record) this.batchPositions.push({ line: line.no, col: itemIndent + 1 });
      if (rest[0] !== '{' && rest[0] !== '[' && rest[0] !== '"' && rest[0] !== "'" && hasKey(rest)) {
        // `- key: value`: a mapping whose indentation is that of its first key.
        this.lines[this.pos] = { no: line.no, indent: itemIndent, text: rest };
        out.push(this.map(itemIndent));
      } else if ((rest[0] === '"' || rest[0] === "'") && hasKey(rest)) {
        return giveUp(); // `- "key": value`
      } else {
        this.pos += 1;
        out.push(inlineValue(rest));
        const next = this.peek();
        if (next !== undefined && next.indent > indent) giveUp();
      }
    }
  }
}

function isSeqItem(text: string): boolean {
  return text[0] === '-' && (text.length === 1 || text[1] === ' ');
}

/** Whether a plain-started text is `key: …` (a `: ` or a final `:` outside a comment). */
function hasKey(text: string): boolean {
  const hash = text.indexOf(' #');
  const body = hash < 0 ? text : text.slice(0, hash);
  return body.includes(': ') || body.endsWith(':');
}

/** Splits `key: rest` (block context). */
function splitKey(text: string): { key: string; rest: string } {
  let key: unknown;
  let after: number;
  const ch = text[0];
  if (ch === '"' || ch === "'") {
    const q = readQuoted(text, 0);
    key = q.value;
    after = q.end;
  } else {
    if (ch === undefined || BAD_PLAIN_START.has(ch) || ch === '[' || ch === '{') return giveUp();
    let colon = -1;
    for (let j = 0; j < text.length; j += 1) {
      if (text[j] === ':' && (j + 1 === text.length || text[j + 1] === ' ')) {
        colon = j;
        break;
      }
      if (text[j] === '#' && text[j - 1] === ' ') return giveUp();
    }
    if (colon < 0) return giveUp();
    const raw = text.slice(0, colon).trimEnd();
    key = resolvePlain(raw);
    after = colon;
  }
  if (typeof key !== 'string') return giveUp();
  if (text[after] !== ':' || (after + 1 < text.length && text[after + 1] !== ' ')) return giveUp();
  let j = after + 1;
  while (text[j] === ' ') j += 1;
  const rest = text[j] === '#' ? '' : text.slice(j);
  return { key, rest };
}

function splitLines(text: string): Line[] | null {
  if (text.includes('\t') || text.includes('\r') || text.charCodeAt(0) === 0xfeff) return null;
  const out: Line[] = [];
  let no = 0;
  let start = 0;
  let sawContent = false;
  while (start <= text.length) {
    let end = text.indexOf('\n', start);
    if (end < 0) end = text.length;
    no += 1;
    const raw = text.slice(start, end);
    start = end + 1;
    let indent = 0;
    while (raw.charCodeAt(indent) === 32) indent += 1;
    const body = raw.slice(indent).trimEnd();
    if (body === '' || body[0] === '#') {
      if (end === text.length) break;
      continue;
    }
    if (indent === 0 && (body.startsWith('---') || body.startsWith('...') || body[0] === '%')) {
      // One leading `---` (nothing after it) is allowed; anything else about documents is not.
      if (body === '---' && !sawContent) {
        sawContent = true;
        if (end === text.length) break;
        continue;
      }
      return null;
    }
    sawContent = true;
    out.push({ no, indent, text: body });
    if (end === text.length) break;
  }
  return out;
}

/**
 * Reads `text` if it is inside the subset and is a mapping at the top; returns null otherwise (then use the full
 * parser). Never throws.
 */
export function fastParseYaml(text: string): FastDocument | null {
  try {
    const lines = splitLines(text);
    if (lines === null || lines.length === 0) return null;
    const first = lines[0]!;
    if (first.indent !== 0 || isSeqItem(first.text)) return null;
    const reader = new BlockReader(lines);
    const value = reader.map(0);
    if (reader.pos !== lines.length) return null;
    return { value, batchPositions: reader.batchPositions };
  } catch (err) {
    if (err instanceof GiveUp) return null;
    // A bug here must not break loading: the full parser is always right.
    return null;
  }
}
