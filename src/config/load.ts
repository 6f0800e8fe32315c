/**
 * Reads the YAML configuration; every issue names file:line:col (DESIGN.md §2).
 *
 * Two paths, one result (issue #14):
 * - **Fast** (`fast-yaml.ts`): plain values straight from the text, no document model and no positions but where
 *   each batch starts; then validation and compilation batch by batch. Taken by every file inside the plain YAML
 *   subset that is valid.
 * - **Full**, with positions: whenever the fast reader gives up or validation finds any issue, the text is parsed
 *   again with the `yaml` package's document model so every issue names its line and column. Steps: parse (YAML
 *   syntax errors are issues; when there are any, nothing else is checked, since the structure is unreliable) →
 *   duplicate mapping keys → zod schema + cross-key rules (`compile.ts`) → compile.
 * Integers are read as bigints first so an ApplyId beyond 2^53 is seen exactly (and refused with advice to quote
 * it) instead of being silently rounded; every safe integer becomes a number again before validation. Nothing of
 * either parse (documents, nodes, line tables) outlives the call: the CompiledConfig holds plain values only.
 */

import { createRequire } from 'node:module';
import path from 'node:path';

import type * as YamlLib from 'yaml';
import type { Alias, Document, LineCounter, Scalar, YAMLMap, YAMLSeq } from 'yaml';

import { ConfigError } from '../errors.js';
import type { ConfigIssue } from '../errors.js';
import { type SourceMap, sortIssues, validateAndCompile } from './compile.js';
import { type ConfigPath, type IssueAnchor, formatPath } from './cross-checks.js';
import { maxConfigBytes, readConfigFile } from './read-file.js';
import type { CompiledConfig } from './types.js';
import { type FastPosition, fastParseYaml } from './fast-yaml.js';

// Re-exported so the loader is one import for callers that also need the env overrides.
export { DEFAULT_CONFIG_PATH, resolveConfigPath, resolveLogSettings } from './env.js';

/** Options of {@link loadConfigFile} and {@link parseConfigText}. */
export interface LoadOptions {
  /**
   * The environment. Accepted for checks that depend on it; none reads it today: the file never refers to
   * variables by value (secrets are resolved by their owners, see docs/configuration.md).
   * @default undefined
   */
  env?: Record<string, string | undefined>;
  /**
   * Base directory of relative paths in the file (`state.dir`, `output.resultsDir`, `output.eventsFile`) and of
   * a relative `file` argument.
   * @default process.cwd()
   */
  cwd?: string;
}

type YamlDoc = Document.Parsed;

// NOTE: the `yaml` package is loaded on first use: valid files take the fast path (fast-yaml.ts) and never need it,
// and loading it costs `status`, `validate` and every start about 100 ms.
const require = createRequire(import.meta.url);
let yamlModule: typeof YamlLib | null = null;
const Y = (): typeof YamlLib => (yamlModule ??= require('yaml') as typeof YamlLib);
const isAlias = (n: unknown): n is Alias => Y().isAlias(n);
const isMap = (n: unknown): n is YAMLMap => Y().isMap(n);
const isScalar = (n: unknown): n is Scalar => Y().isScalar(n);
const isSeq = (n: unknown): n is YAMLSeq => Y().isSeq(n);

function keyText(key: unknown): string {
  if (isScalar(key)) return String(key.value);
  return String(key);
}

function startOf(node: unknown): number | null {
  if (node !== null && typeof node === 'object' && 'range' in node) {
    const range = (node as { range?: readonly number[] | null }).range;
    if (Array.isArray(range) && typeof range[0] === 'number') return range[0];
  }
  return null;
}

interface Walked {
  /** The node at the deepest resolved segment (the value). */
  node: unknown;
  /** The key node of the last resolved mapping segment, if any. */
  key: unknown;
  /** The collection holding `node`. */
  parent: unknown;
  /** How many segments were resolved. */
  depth: number;
}

function walk(doc: YamlDoc, segments: ConfigPath): Walked {
  let node: unknown = doc.contents;
  let key: unknown = null;
  let parent: unknown = null;
  let depth = 0;
  for (const segment of segments) {
    const collection: unknown = isAlias(node) ? node.resolve(doc) : node;
    if (isMap(collection)) {
      const pair = collection.items.find((p) => keyText(p.key) === String(segment));
      if (pair === undefined) break;
      parent = collection;
      key = pair.key;
      node = pair.value;
    } else if (isSeq(collection) && typeof segment === 'number' && segment < collection.items.length) {
      parent = collection;
      key = null;
      node = collection.items[segment];
    } else {
      break;
    }
    depth += 1;
  }
  return { node, key, parent, depth };
}

/** A SourceMap over a parsed YAML document. */
function yamlSource(doc: YamlDoc, lines: LineCounter, displayFile: string, absoluteFile: string | null): SourceMap {
  const at = (offset: number | null): { line: number; col: number } => {
    if (offset === null) return { line: 1, col: 1 };
    const { line, col } = lines.linePos(offset);
    return { line, col };
  };
  const position = (p: ConfigPath, anchor: IssueAnchor): { line: number; col: number } => {
    if (anchor === 'parent') {
      const w = walk(doc, p.slice(0, -1));
      return at(startOf(w.node) ?? startOf(w.key) ?? startOf(w.parent) ?? startOf(doc.contents));
    }
    const w = walk(doc, p);
    if (w.depth < p.length) {
      // The path does not exist in the file (a default, or a key zod reports below a missing one).
      return at(startOf(w.node) ?? startOf(w.key) ?? startOf(doc.contents));
    }
    const emptyValue = isScalar(w.node) && w.node.value === null && w.node.range?.[0] === w.node.range?.[1];
    // An empty value (`key:`) has a zero-length range after the colon: the key is the better place then.
    const order = anchor === 'key' || emptyValue ? [w.key, w.node] : [w.node, w.key];
    return at(startOf(order[0]) ?? startOf(order[1]) ?? startOf(w.parent) ?? startOf(doc.contents));
  };
  return {
    displayFile,
    absoluteFile,
    hasPositions: true,
    position,
    describe: (p) => `${formatPath(p)} (line ${position(p, 'value').line})`,
  };
}

/** Reports keys that appear twice in one mapping, at the second occurrence. */
function duplicateKeys(doc: YamlDoc, lines: LineCounter, file: string): ConfigIssue[] {
  const issues: ConfigIssue[] = [];
  const check = (node: unknown, p: (string | number)[]): void => {
    if (isMap(node)) {
      const first = new Map<string, unknown>();
      for (const pair of node.items) {
        const name = keyText(pair.key);
        const earlier = first.get(name);
        if (earlier === undefined) {
          first.set(name, pair.key);
          check(pair.value, [...p, name]);
        } else {
          const firstLine = lines.linePos(startOf(earlier) ?? 0).line;
          const { line, col } = lines.linePos(startOf(pair.key) ?? 0);
          issues.push({ file, line, col, path: formatPath([...p, name]), message: `duplicate key, first defined at line ${firstLine}` });
        }
      }
    } else if (isSeq(node)) {
      node.items.forEach((item, index) => check(item, [...p, index]));
    }
  };
  check(doc.contents, []);
  return issues;
}

/** Turns safe bigints back into numbers, in place; unsafe ones stay bigints for the ApplyId message. */
function normalizeIntegers(value: unknown, seen = new WeakSet<object>()): unknown {
  if (typeof value === 'bigint') {
    return value >= BigInt(Number.MIN_SAFE_INTEGER) && value <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(value) : value;
  }
  if (typeof value !== 'object' || value === null || seen.has(value)) return value;
  seen.add(value);
  if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i += 1) value[i] = normalizeIntegers(value[i], seen);
  } else {
    const record = value as Record<string, unknown>;
    for (const k of Object.keys(record)) record[k] = normalizeIntegers(record[k], seen);
  }
  return value;
}

/** Offset of the first alias whose anchor is not defined before it, if any. */
function unresolvedAlias(doc: YamlDoc): number | null {
  let found: number | null = null;
  const { visit } = Y();
  visit(doc, {
    Alias(_key, node) {
      if (node.resolve(doc) === undefined) {
        found = startOf(node);
        return visit.BREAK;
      }
      return undefined;
    },
  });
  return found;
}

function issueAt(file: string, lines: LineCounter, offset: number, message: string): ConfigIssue {
  const { line, col } = lines.linePos(offset);
  return { file, line, col, path: '', message };
}

/**
 * Parses, validates and compiles configuration text.
 *
 * @param text - the YAML text.
 * @param file - the file name shown in issues (and resolved against `cwd` for CompiledConfig.file).
 * @throws ConfigError with every issue, each with file:line:col.
 */
export function parseConfigText(text: string, file: string, options: LoadOptions = {}): CompiledConfig {
  const cwd = options.cwd ?? process.cwd();
  const absoluteFile = path.resolve(cwd, file);
  // Fast path: plain values without a document model. Any problem (or anything outside its subset) goes to the
  // full parser below, which re-reads the text with positions so every issue names file:line:col.
  const fast = fastParseYaml(text);
  // NOTE: the fast path records positions of batches only; a file with `accounts` or `provision` (a handful of
  // entries, whose positions name them in start-up errors) takes the full parser.
  if (fast !== null && !Object.hasOwn(fast.value, 'accounts') && !Object.hasOwn(fast.value, 'provision')) {
    try {
      return validateAndCompile(fast.value, fastSource(fast.batchPositions, file, absoluteFile), cwd);
    } catch (err) {
      if (!(err instanceof ConfigError)) throw err;
    }
  }
  return parseWithPositions(text, file, absoluteFile, cwd);
}

/**
 * {@link parseConfigText} without the fast path: always the full `yaml` parser with positions. The reference the
 * fast path is tested against; the same result for every valid file, and the same issues for every invalid one.
 */
export function parseConfigTextFully(text: string, file: string, options: LoadOptions = {}): CompiledConfig {
  const cwd = options.cwd ?? process.cwd();
  return parseWithPositions(text, file, path.resolve(cwd, file), cwd);
}

/** The SourceMap of the fast path: it knows where each batch starts, which is all a valid file needs. */
function fastSource(batchPositions: readonly FastPosition[], displayFile: string, absoluteFile: string): SourceMap {
  const position = (p: ConfigPath): { line: number; col: number } => {
    const at = p.length === 2 && p[0] === 'batches' && typeof p[1] === 'number' ? batchPositions[p[1]] : undefined;
    // NOTE: other positions are asked for only to report issues, and issues are always reported by the full parser.
    return at ?? { line: 0, col: 0 };
  };
  return { displayFile, absoluteFile, hasPositions: true, position, describe: (p) => formatPath(p) };
}

function parseWithPositions(text: string, file: string, absoluteFile: string, cwd: string): CompiledConfig {
  const { LineCounter: Lines, parseDocument } = Y();
  const lines = new Lines();
  const doc = parseDocument(text, {
    lineCounter: lines,
    prettyErrors: false,
    uniqueKeys: false,
    intAsBigInt: true,
    // NOTE: keeps the yaml package from printing process warnings (e.g. for a list used as a key); such keys
    // still fail validation as unknown keys.
    logLevel: 'error',
  });

  const yamlIssues = [...doc.errors, ...doc.warnings].map((e) =>
    issueAt(file, lines, e.pos[0], `${doc.errors.includes(e) ? 'YAML syntax error' : 'YAML problem'}: ${e.message}`),
  );
  if (doc.errors.length > 0) throw new ConfigError(sortIssues(yamlIssues));

  if (doc.contents === null) {
    throw new ConfigError([
      ...yamlIssues,
      {
        file,
        line: 1,
        col: 1,
        path: '',
        message: 'expected a mapping of configuration sections (alibaba, polling, batches, …), got an empty file',
      },
    ]);
  }

  let raw: unknown;
  try {
    raw = normalizeIntegers(doc.toJS({ maxAliasCount: 100 }));
  } catch (err) {
    const message = err instanceof Error ? err.message : String(err);
    const offset = unresolvedAlias(doc) ?? startOf(doc.contents) ?? 0;
    throw new ConfigError(sortIssues([...yamlIssues, issueAt(file, lines, offset, `YAML problem: ${message}`)]));
  }

  const source = yamlSource(doc, lines, file, absoluteFile);
  return validateAndCompile(raw, source, cwd, [...yamlIssues, ...duplicateKeys(doc, lines, file)]);
}

/**
 * Reads, validates and compiles a configuration file.
 *
 * @param file - path of the YAML file, relative to `options.cwd` or absolute. Shown as given in issues.
 * @throws ConfigError with every issue (an unreadable, irregular or too large file is one issue at line 0;
 *   the size limit is `IBW_CONFIG_MAX_BYTES` in `options.env`, default 64 MiB).
 */
export async function loadConfigFile(file: string, options: LoadOptions = {}): Promise<CompiledConfig> {
  const cwd = options.cwd ?? process.cwd();
  const content = await readConfigFile(file, { cwd, maxBytes: maxConfigBytes(options.env ?? {}) });
  return parseConfigText(content.text, file, { ...options, cwd });
}
