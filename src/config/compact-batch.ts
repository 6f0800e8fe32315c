/**
 * Smaller BatchConfigs for large files (issue #14: at 100,000 batches every byte per batch is 100 kB of live heap).
 *
 * - **`source` on demand.** A batch from a YAML file keeps its position as one small integer in a private field;
 *   `source` is an own, enumerable getter (so spreads, `JSON.stringify` and deep equality see the same
 *   `{ file, line, col }` as before) that builds the frozen object when it is read, which is only for messages.
 *   One `{ file, line, col }` object per batch was 48 bytes, 4.8 MB at 100,000 batches.
 * - **Strings of their own.** Strings the YAML reader takes out of the file text (product keys, names, ids) are
 *   V8 "sliced strings" that keep the whole text alive (7 MB at 100,000 batches), and a batch reused by the next
 *   load kept the old text alive beside the new one. {@link StringPool} gives each such string its own copy, and one
 *   copy for values many batches share (a product key, a region, an account, a label value); a `key` built by
 *   concatenation is copied flat too (a concatenation is a pair of pointers plus, once hashed, a flat copy).
 */
import type { BatchConfig } from './types.js';

/** A BatchConfig without its position: what {@link compactBatch} adds `source` to. */
export type BatchFields = Omit<BatchConfig, 'source'>;

/** Position of a batch in its file. */
export interface BatchSource {
  file: string;
  line: number;
  col: number;
}

// NOTE: line × 2048 + col stays a small integer (31 bits) up to a million lines and column 2047; a V8 field that
// only ever holds small integers needs no box per object. Anything larger keeps the object itself.
const COL_LIMIT = 2048;
const LINE_LIMIT = 1 << 20;

/** The getters of `source`, one per file name, so all batches of one file share one hidden class. */
const gettersByFile = new Map<string, () => BatchSource>();

class PositionedBatch implements BatchFields {
  /** `line * COL_LIMIT + col`, or the position object when it does not fit. */
  #at: number | Readonly<BatchSource>;

  /** Used by the getters only: the position of `batch`, or null when it is not a PositionedBatch. */
  static position(batch: object, file: string): Readonly<BatchSource> | null {
    if (!(#at in batch)) return null;
    const at = batch.#at;
    if (typeof at !== 'number') return at;
    return Object.freeze({ file, line: Math.floor(at / COL_LIMIT), col: at % COL_LIMIT });
  }

  declare readonly account: BatchFields['account'];
  declare readonly applyId: BatchFields['applyId'];
  declare readonly productKey: BatchFields['productKey'];
  declare readonly key: BatchFields['key'];
  declare readonly name: BatchFields['name'];
  declare readonly until: BatchFields['until'];
  declare readonly register: BatchFields['register'];
  declare readonly iotInstanceId: BatchFields['iotInstanceId'];
  declare readonly regionId: BatchFields['regionId'];
  declare readonly endpoint: BatchFields['endpoint'];
  declare readonly labels: BatchFields['labels'];
  declare readonly polling: BatchFields['polling'];
  declare readonly entryHash: BatchFields['entryHash'];

  constructor(f: BatchFields, source: BatchSource) {
    // NOTE: the same fields in the same order as an object literal of BatchConfig (types.ts), then `source`; written
    // as `this.x = ...` so that V8 sizes the object for all of them (an alias of `this` gave each batch a separate
    // property array: 64 bytes more, heap snapshot).
    this.account = f.account;
    this.applyId = f.applyId;
    this.productKey = f.productKey;
    this.key = f.key;
    this.name = f.name;
    this.until = f.until;
    this.register = f.register;
    this.iotInstanceId = f.iotInstanceId;
    this.regionId = f.regionId;
    this.endpoint = f.endpoint;
    this.labels = f.labels;
    this.polling = f.polling;
    this.entryHash = f.entryHash;
    const fits = Number.isInteger(source.line) && Number.isInteger(source.col) && source.line >= 0 && source.line < LINE_LIMIT && source.col >= 0 && source.col < COL_LIMIT;
    this.#at = fits ? source.line * COL_LIMIT + source.col : Object.freeze({ file: source.file, line: source.line, col: source.col });
    Object.defineProperty(this, 'source', { get: getterFor(source.file), enumerable: true, configurable: false });
  }
}

function getterFor(file: string): () => BatchSource {
  let getter = gettersByFile.get(file);
  if (getter === undefined) {
    getter = function source(this: object): BatchSource {
      // NOTE: never null for the objects this getter is installed on; a copy made by spreading has a plain value.
      return PositionedBatch.position(this, file)!;
    };
    gettersByFile.set(file, getter);
  }
  return getter;
}

/**
 * The frozen BatchConfig of `fields` at `source`: `source` read on demand (see the module comment), or a plain
 * `null` for programmatic configs. Not deep: `labels` and `polling` are frozen by the caller.
 */
export function compactBatch(fields: BatchFields, source: BatchSource | null): BatchConfig {
  if (source === null) return Object.freeze({ ...fields, source: null });
  return Object.freeze(new PositionedBatch(fields, source)) as unknown as BatchConfig;
}

/** `batch` at another line of the same file (the same entry moved): a new frozen BatchConfig. */
export function movedBatch(batch: BatchConfig, line: number): BatchConfig {
  const src = batch.source;
  if (src === null) return batch;
  // NOTE: the constructor copies the named fields only, so the batch itself serves as the fields.
  return compactBatch(batch, { file: src.file, line, col: src.col });
}

/** A copy of `s` that owns its characters (not a slice of a larger text, not a concatenation). */
export function ownString(s: string): string {
  // NOTE: JSON.parse builds a new flat string; JSON.stringify escapes every character it must, lone surrogates
  // included, so the round trip gives back exactly `s`. V8 slices and concatenations are only made for 13
  // characters or more, so shorter strings are already copies of their own.
  return s.length < 13 ? s : (JSON.parse(JSON.stringify(s)) as string);
}

/** One own copy per distinct value, for strings many batches of one load share. */
export class StringPool {
  readonly #seen = new Map<string, string>();

  /** The pool's copy of `s`. */
  shared(s: string): string {
    let out = this.#seen.get(s);
    if (out === undefined) {
      out = ownString(s);
      this.#seen.set(out, out);
    }
    return out;
  }

  /** As {@link StringPool.shared}, null and undefined passed through. */
  sharedOrNull<T extends null | undefined>(s: string | T): string | T {
    return typeof s === 'string' ? this.shared(s) : s;
  }
}
