/**
 * Reloading a large configuration without stopping the event loop (issue #14): the daemon re-reads its file on
 * SIGHUP, on a change and every minute, and at 100,000 batches a whole parse and compile holds the loop for
 * seconds, during which `/healthz` does not answer.
 *
 * The file is cut into the sections (everything but the top-level `batches` block) and one text per batch entry.
 * Entries are compiled in chunks of {@link ENTRY_CHUNK} with `yieldToLoop` awaited between chunks, and each
 * compiled entry is kept by its exact text (its sha256): the next load reuses it while the sections did not change,
 * so a reload that adds one batch compiles one entry (plus a new position for entries that moved). Kept per entry:
 * the digest of its text and its frozen BatchConfig; no YAML nodes, no raw values, nothing of the file's text.
 *
 * Only valid files in the plain subset take this path. Anything else — a file the layout check or the fast reader
 * does not accept (flow `batches: [...]`, anchors, tabs...), a file with `accounts` (positions of its entries are
 * needed), any issue at all, a duplicate — goes to {@link parseConfigText} in one piece, which reports every
 * problem at file:line:col exactly as before. The result is the one {@link parseConfigText} gives for the same
 * text (test/unit/config/incremental-load.test.ts holds it to that).
 */
import { hash } from 'node:crypto';
import path from 'node:path';

import type { BatchConfig, CompiledConfig } from './types.js';
import { movedBatch, ownString } from './compact-batch.js';
import { type SourceMap, startEntryCompiler } from './compile.js';
import { formatPath } from './cross-checks.js';
import { type FastPosition, fastParseYaml } from './fast-yaml.js';
import { type LoadOptions, parseConfigText } from './load.js';

/** Entries compiled between two yields. */
export const ENTRY_CHUNK = 2000;

/** One batch entry as written: its text and where it starts. */
interface EntryText {
  text: string;
  /** 1-based line of the entry's `-`. */
  line: number;
}

/** The file cut at its top-level `batches` block. */
interface Layout {
  /** The text without the block's entries (`batches:` stays, as an empty list). */
  sections: string;
  /** Where in `sections` the entries were. */
  sectionsCut: number;
  entries: EntryText[];
}

const BATCHES_LINE = /^batches:[ ]*(?:#.*)?$/;

/**
 * Cuts `text` into the sections and the entries of its top-level block sequence `batches:`; null when the file is
 * not laid out that way (then the whole-file path decides).
 */
export function splitBatchEntries(text: string): Layout | null {
  const scan = scanBatchEntries(text);
  for (;;) {
    const step = scan.next();
    if (step.done === true) return step.value;
  }
}

/** {@link splitBatchEntries} with `yieldToLoop` awaited every {@link SCAN_LINES} lines of the block. */
async function splitBatchEntriesInTurns(text: string, yieldToLoop: () => Promise<void>): Promise<Layout | null> {
  const scan = scanBatchEntries(text);
  for (;;) {
    const step = scan.next();
    if (step.done === true) return step.value;
    await yieldToLoop();
  }
}

/** Lines of the batches block scanned between two yields (a 100,000-entry block has 300,000). */
const SCAN_LINES = 50_000;

/** The scan of {@link splitBatchEntries}; it yields (nothing) every {@link SCAN_LINES} lines of the block. */
function* scanBatchEntries(text: string): Generator<void, Layout | null> {
  if (text.includes('\r') || text.includes('\t') || text.charCodeAt(0) === 0xfeff) return null;
  let start = -1;
  let pos = 0;
  let lineNo = 0;
  // Find `batches:` at column 0.
  while (pos <= text.length) {
    const nl = text.indexOf('\n', pos);
    const end = nl < 0 ? text.length : nl;
    lineNo += 1;
    if (text.charCodeAt(pos) === 98 /* b */ && BATCHES_LINE.test(text.slice(pos, end))) {
      start = nl < 0 ? text.length : nl + 1;
      break;
    }
    if (nl < 0) return null;
    pos = nl + 1;
  }
  if (start < 0) return null;
  const entries: EntryText[] = [];
  let indent = -1;
  let entryStart = -1;
  let entryLine = 0;
  let blockEnd = text.length;
  pos = start;
  let scanned = 0;
  while (pos < text.length) {
    scanned += 1;
    if (scanned % SCAN_LINES === 0) yield;
    const nl = text.indexOf('\n', pos);
    const end = nl < 0 ? text.length : nl;
    lineNo += 1;
    let i = pos;
    while (text.charCodeAt(i) === 32) i += 1;
    const blank = i === end || text.charCodeAt(i) === 35; /* # */
    if (!blank) {
      const col = i - pos;
      const isItem = text.charCodeAt(i) === 45 /* - */ && (i + 1 === end || text.charCodeAt(i + 1) === 32);
      if (indent < 0) {
        if (!isItem) return null;
        indent = col;
      }
      if (col < indent || (col === indent && !isItem)) {
        blockEnd = pos;
        break;
      }
      if (col === indent) {
        if (entryStart >= 0) entries.push({ text: text.slice(entryStart, pos), line: entryLine });
        entryStart = pos;
        entryLine = lineNo;
      }
    } else if (entryStart < 0 && i !== end && i === pos) {
      // A comment at column 0 before the first entry: leave such files to the whole-file path.
      return null;
    }
    if (nl < 0) break;
    pos = nl + 1;
  }
  if (entryStart < 0) return null;
  entries.push({ text: text.slice(entryStart, blockEnd), line: entryLine });
  const sections = `${text.slice(0, start)}${text.slice(blockEnd)}`;
  return { sections, sectionsCut: start, entries };
}

/** Options of {@link createIncrementalLoader}. */
export interface IncrementalLoaderOptions extends LoadOptions {
  /** Awaited between chunks of entries, to let I/O in. @default a macrotask turn (`setImmediate`) */
  yieldToLoop?: () => Promise<void>;
}

/** Compiles configuration texts of one file, reusing the entries of the previous one (see the module comment). */
export interface IncrementalLoader {
  /** As {@link parseConfigText}, in chunks. @throws ConfigError with every issue */
  compile(text: string, file: string): Promise<CompiledConfig>;
  /** How the last call went: `incremental` with the entries it compiled (the rest were reused), or `whole`. */
  readonly last: { path: 'incremental'; compiled: number; reused: number } | { path: 'whole' } | null;
}

/**
 * The compiled entries of one load, by the digest of their text ({@link entryDigest}): `byText` gives the index
 * into `batches` and `lines` (the line the text started on when it was compiled). Indexes instead of one
 * `{ batch, line }` object per entry: 4 MB less at 100,000 batches (heap snapshot, issue #14).
 */
interface Kept {
  byText: Map<string, number>;
  batches: BatchConfig[];
  lines: Int32Array;
}

/**
 * The key of an entry's text in {@link Kept}: its sha256 as a 32-character string (one byte per character). Keys that were the texts
 * themselves were slices of the file's text, which kept the whole text (7 MB at 100,000 batches) and a slice per
 * entry alive between loads; a digest is a small string of its own (48 bytes). Equal digests are taken as equal
 * texts (sha256).
 */
function entryDigest(text: string): string {
  return hash('sha256', text, 'binary');
}

const setImmediateTurn = (): Promise<void> => new Promise<void>((resolve) => setImmediate(resolve));

/** Creates an {@link IncrementalLoader}. */
export function createIncrementalLoader(options: IncrementalLoaderOptions = {}): IncrementalLoader {
  const cwd = options.cwd ?? process.cwd();
  const yieldToLoop = options.yieldToLoop ?? setImmediateTurn;
  /** Compiled entries by their text, valid while `sections` and `file` stay the same. */
  let cache: { sections: string; file: string; kept: Kept } | null = null;
  let last: IncrementalLoader['last'] = null;

  const whole = (text: string, file: string): CompiledConfig => {
    cache = null;
    last = { path: 'whole' };
    return parseConfigText(text, file, options);
  };

  /** The whole-file pass, keeping its batches by entry text for the next load (entry i is batch i). */
  const wholeAndKeep = (text: string, file: string, layout: Layout): CompiledConfig => {
    const config = whole(text, file);
    if (config.batches.length !== layout.entries.length) return config;
    const byText = new Map<string, number>();
    const lines = new Int32Array(layout.entries.length);
    for (let i = 0; i < layout.entries.length; i += 1) {
      const entry = layout.entries[i]!;
      lines[i] = entry.line;
      const digest = entryDigest(entry.text);
      if (!byText.has(digest)) byText.set(digest, i);
    }
    // NOTE: `sections` is made of slices of the text too: kept as a copy of its own.
    cache = { sections: ownString(layout.sections), file, kept: { byText, batches: config.batches, lines } };
    return config;
  };

  return {
    get last() {
      return last;
    },
    async compile(text, file) {
      // NOTE: the first load has nothing to wait for; later ones cut the file in turns too.
      const layout = last === null ? splitBatchEntries(text) : await splitBatchEntriesInTurns(text, yieldToLoop);
      const head = layout === null ? null : fastParseYaml(layout.sections);
      if (layout === null || head === null || Object.hasOwn(head.value, 'accounts') || head.value.batches !== null) return whole(text, file);
      const absoluteFile = path.resolve(cwd, file);
      const positions: FastPosition[] = new Array<FastPosition>(layout.entries.length);
      const source: SourceMap = {
        displayFile: file,
        absoluteFile,
        hasPositions: true,
        // NOTE: asked for batch entries only on this path; issues are always reported by the whole-file path.
        position: (p) => (p.length === 2 && p[0] === 'batches' && typeof p[1] === 'number' ? positions[p[1]] : undefined) ?? { line: 0, col: 0 },
        describe: (p) => formatPath(p),
      };
      const previous = cache !== null && cache.sections === layout.sections && cache.file === file ? cache.kept : null;
      if (previous === null) {
        // Nothing to reuse (the first load, or the sections changed): one whole-file pass is about twice as fast as
        // entry by entry, so it is taken when the event loop has nothing else to do yet (before the first load).
        // Later, entry by entry in chunks: slower, but never holding the loop for long.
        if (cache === null && last === null) return wholeAndKeep(text, file, layout);
      }
      const compiler = startEntryCompiler(head.value, source, cwd);
      if (compiler === null) return whole(text, file);
      const byText = new Map<string, number>();
      const batches: BatchConfig[] = new Array<BatchConfig>(layout.entries.length);
      const lines = new Int32Array(layout.entries.length);
      const keys = new Set<string>();
      let compiled = 0;
      for (let i = 0; i < layout.entries.length; i += 1) {
        if (i > 0 && i % ENTRY_CHUNK === 0) await yieldToLoop();
        const entry = layout.entries[i]!;
        const digest = entryDigest(entry.text);
        const before = previous?.byText.get(digest);
        const same = before === undefined ? byText.get(digest) : undefined;
        let batch: BatchConfig;
        if (before === undefined && same === undefined) {
          const one = fastParseYaml(`batches:\n${entry.text}`);
          const raw = one?.value.batches;
          const at = one?.batchPositions[0];
          if (one === null || !Array.isArray(raw) || raw.length !== 1 || at === undefined || Object.keys(one.value).length !== 1) return whole(text, file);
          // Line 1 of the one-entry document is `batches:`; its line 2 is the entry's first line.
          positions[i] = { line: at.line - 2 + entry.line, col: at.col };
          const fresh = compiler.entry(raw[0], i);
          if (fresh === null) return whole(text, file);
          batch = fresh;
          compiled += 1;
        } else {
          const keptLine = before === undefined ? lines[same!]! : previous!.lines[before]!;
          batch = before === undefined ? batches[same!]! : previous!.batches[before]!;
          // The same entry written elsewhere in the file: the same batch at its new position.
          if (keptLine !== entry.line) {
            const src = batch.source;
            if (src !== null) batch = movedBatch(batch, src.line - keptLine + entry.line);
          }
        }
        if (keys.has(batch.key)) return whole(text, file);
        keys.add(batch.key);
        if (!byText.has(digest)) byText.set(digest, i);
        lines[i] = entry.line;
        batches[i] = batch;
      }
      const config = compiler.finish(batches);
      cache = { sections: ownString(layout.sections), file, kept: { byText, batches, lines } };
      last = { path: 'incremental', compiled, reused: batches.length - compiled };
      return config;
    },
  };
}

/**
 * The configuration without its batches, for commands that read only the sections (`status` opens the ledger of
 * `state`, and never looks at the entries): at 20,000 batches that is most of its time. The batch entries are
 * blanked out line for line, so every issue in the sections keeps its file:line:col; the entries are not validated.
 * A file this cannot cut is compiled whole.
 *
 * @throws ConfigError with every issue of the sections.
 */
export function parseConfigSections(text: string, file: string, options: LoadOptions = {}): CompiledConfig {
  const layout = splitBatchEntries(text);
  if (layout === null) return parseConfigText(text, file, options);
  // NOTE: `sections` is the text with the block cut out after the `batches:` line: put as many blank lines there.
  const at = layout.sectionsCut;
  const blockEnd = text.length - (layout.sections.length - at);
  let blank = '';
  for (let i = text.indexOf('\n', at); i >= 0 && i < blockEnd; i = text.indexOf('\n', i + 1)) blank += '\n';
  // `batches:` (at the end of the first part) becomes `batches: []`.
  const before = layout.sections.slice(0, at).replace(/batches:[ ]*(?:#.*)?\n?$/, 'batches: []\n');
  return parseConfigText(`${before}${blank}${layout.sections.slice(at)}`, file, options);
}

