/**
 * On-disk formats of the file ledger (DESIGN.md §5).
 *
 * Journal line (one record, self-validating, always ends with `\n`):
 *
 *   {"s":<seq>,"r":<JournalRecord>,"c":"<crc32 hex of everything before `,"c":`>"}\n
 *
 * The checksum covers the exact UTF-8 bytes of the prefix `{"s":…,"r":…}` (without the closing brace), so a
 * line is valid only when it is complete, terminated, its checksum matches and it parses as JSON. `seq` is
 * global to the ledger and contiguous: the first record after a snapshot at seq N has seq N + 1.
 *
 * Snapshot (`snapshot.json`, replaced atomically):
 *
 *   {"v":1,"gen":<G>,"seq":<N>,"batches":[BatchRecord…],"outbox":[OutboxEntry…]}\n
 *
 * It holds the whole state after record N; journals with a generation ≥ G hold the records after it.
 */
import { crc32 } from 'node:zlib';

import { DaemonError } from '../errors.js';
import type { JournalRecord, LedgerSnapshot } from '../core/ports.js';
import type { BatchRecord, OutboxEntry } from '../core/record.js';
import type { ByteChunk, ChunkSink } from './byte-chunk.js';

/** Current snapshot format version. */
export const SNAPSHOT_VERSION = 1;

const CRC_SUFFIX_LENGTH = ',"c":"00000000"}'.length;
const NEWLINE = 0x0a;

/** Journal file name for a generation. */
export function journalFileName(gen: number): string {
  return `journal.${gen}.jsonl`;
}

/** Generation of a journal file name, or null when the name is not a journal file. */
export function parseJournalFileName(name: string): number | null {
  const m = /^journal\.(\d{1,15})\.jsonl$/.exec(name);
  return m?.[1] === undefined ? null : Number(m[1]);
}

/** The snapshot file in the ledger directory. */
export const SNAPSHOT_FILE = 'snapshot.json';
/** Prefix of a snapshot being written; leftovers (crash mid-compaction) are ignored and removed on open. */
export const SNAPSHOT_TEMP_PREFIX = 'snapshot.json.tmp-';
/** The single-writer lock file (holds the writer's pid). */
export const LOCK_FILE = 'LOCK';

function crcHex(text: string): string {
  return crc32(text).toString(16).padStart(8, '0');
}

/** Encodes one journal line (with its trailing newline) from a record already serialised as JSON. */
export function encodeJournalLine(seq: number, recordJson: string): string {
  const prefix = `{"s":${seq},"r":${recordJson}`;
  return `${prefix},"c":"${crcHex(prefix)}"}\n`;
}

/**
 * Encodes one journal line (the bytes of {@link encodeJournalLine}) straight into `chunk`, the checksum computed over
 * the bytes in place, so no line string is built. Returns false, with nothing written, when the line does not fit.
 */
export function putJournalLine(chunk: ByteChunk, seq: number, recordJson: string): boolean {
  const head = `{"s":${seq},"r":`;
  if (!chunk.fits(recordJson, head.length + CRC_SUFFIX_LENGTH + 1)) return false;
  const start = chunk.used;
  chunk.put(head);
  chunk.put(recordJson);
  const crc = crc32(chunk.view(start)).toString(16).padStart(8, '0');
  chunk.put(`,"c":"${crc}"}\n`);
  return true;
}

/** Throws when `value` is not a well-formed journal record; returns it typed otherwise. */
export function checkJournalRecord(value: unknown): JournalRecord {
  const problem = journalRecordProblem(value);
  if (problem !== null) {
    throw new DaemonError(`invalid ledger record: ${problem}`, {
      kind: 'internal',
      scope: 'process',
      code: 'LedgerInvalidRecord',
    });
  }
  return value as JournalRecord;
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function journalRecordProblem(value: unknown): string | null {
  if (!isObject(value)) return 'expected an object';
  switch (value.t) {
    case 'batch':
      return isObject(value.rec) && typeof value.rec.key === 'string' ? null : 'batch record without rec.key';
    case 'forget':
      return typeof value.key === 'string' ? null : 'forget record without key';
    case 'event':
      return outboxEntryProblem(value.entry);
    case 'ack':
      return typeof value.id === 'string' && typeof value.sink === 'string' ? null : 'ack record without id/sink';
    case 'done':
      return typeof value.id === 'string' ? null : 'done record without id';
    default:
      return `unknown record type ${JSON.stringify(value.t) ?? 'undefined'}`;
  }
}

function outboxEntryProblem(entry: unknown): string | null {
  if (!isObject(entry) || !isObject(entry.event) || typeof entry.event.id !== 'string') {
    return 'outbox entry without event.id';
  }
  if (!Array.isArray(entry.acked) || !entry.acked.every((s) => typeof s === 'string')) {
    return 'outbox entry without an acked string array';
  }
  return null;
}

/** One valid journal line. */
export interface JournalEntry {
  seq: number;
  /** null: a batch record superseded later in the same file, checked (checksum, seq) but not parsed (latestBatchOnly). */
  record: JournalRecord | null;
  /** 1-based line number in its file. */
  line: number;
}

/** The result of parsing one journal file. */
export interface ParsedJournal {
  entries: JournalEntry[];
  /** Bytes up to and including the last valid line's newline. */
  validBytes: number;
  /** Total bytes of the file. */
  totalBytes: number;
  /** Set when the file ends with an incomplete or invalid tail (nothing valid after it): its first line number. */
  tornTailLine: number | null;
}

/** Parses a journal line; null when it is not a complete, valid line. */
function parseLine(text: string): { seq: number; record: JournalRecord } | null {
  if (text.length <= CRC_SUFFIX_LENGTH || !text.endsWith('"}')) return null;
  const cut = text.length - CRC_SUFFIX_LENGTH;
  const suffix = text.slice(cut);
  if (!suffix.startsWith(',"c":"')) return null;
  const prefix = text.slice(0, cut);
  if (crcHex(prefix) !== suffix.slice(6, 14)) return null;
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    return null;
  }
  if (!isObject(parsed)) return null;
  const seq = parsed.s;
  if (typeof seq !== 'number' || !Number.isSafeInteger(seq) || seq < 1) return null;
  if (journalRecordProblem(parsed.r) !== null) return null;
  return { seq, record: parsed.r as JournalRecord };
}

// NOTE: how JSON.stringify writes a batch record's line; lines written otherwise just take the full parse.
const BATCH_LINE_HEAD = /^\{"s":(\d{1,16}),"r":\{"t":"batch","rec":\{"key":"([^"\\]*)"/;
const BATCH_HEAD_BYTES = 256;

/**
 * Checks a line without parsing its JSON: shape, checksum (over the bytes, no decoding) and seq. Returns the seq,
 * or null when the line is not valid (the caller then takes the full parse, which decides).
 */
function checkLineLight(buf: Buffer, pos: number, end: number, headSeq: number): number | null {
  const len = end - pos;
  if (len <= CRC_SUFFIX_LENGTH || buf[end - 1] !== 0x7d || buf[end - 2] !== 0x22) return null;
  const cut = end - CRC_SUFFIX_LENGTH;
  if (buf.toString('latin1', cut, cut + 6) !== ',"c":"') return null;
  const crc = crc32(buf.subarray(pos, cut)).toString(16).padStart(8, '0');
  if (crc !== buf.toString('latin1', cut + 6, cut + 14)) return null;
  return Number.isSafeInteger(headSeq) && headSeq >= 1 ? headSeq : null;
}

/** Options of {@link parseJournal}. */
export interface ParseJournalOptions {
  /**
   * Parse only the last batch record of each key in this file (the others are superseded): the rest are checked by
   * checksum and seq only, and come back with `record: null`. For read-only views (`status`), where a journal of
   * many polls per batch would otherwise be parsed line by line. @default false
   */
  latestBatchOnly?: boolean;
}

/**
 * Parses a whole journal file. Only the tail may be invalid (a crash mid-write); an invalid line followed by a
 * valid one is corruption of acknowledged data and throws `LedgerCorrupt` naming the file and line.
 */
export function parseJournal(buf: Buffer, file: string, options: ParseJournalOptions = {}): ParsedJournal {
  const entries: JournalEntry[] = [];
  // latestBatchOnly: line number → seq of the batch lines that a later line of the same key supersedes.
  const superseded = options.latestBatchOnly ? supersededBatchLines(buf) : null;
  let pos = 0;
  let line = 0;
  let validBytes = 0;
  let firstBad: number | null = null;
  while (pos < buf.length) {
    line += 1;
    const nl = buf.indexOf(NEWLINE, pos);
    const end = nl === -1 ? buf.length : nl;
    // NOTE: superseded lines were checked (terminated, checksum, seq) when they were found.
    const skipSeq = superseded?.get(line);
    // NOTE: an unterminated last segment is torn by definition, even when its text happens to be valid.
    const parsed =
      skipSeq !== undefined ? { seq: skipSeq, record: null } : nl === -1 ? null : parseLine(buf.toString('utf8', pos, end));
    if (parsed === null) {
      firstBad ??= line;
    } else {
      if (firstBad !== null) {
        throw new DaemonError(
          `ledger journal ${file} is corrupt at line ${firstBad}: the line is not a valid record, but valid records follow it (line ${line})`,
          { kind: 'store', scope: 'process', code: 'LedgerCorrupt' },
        );
      }
      entries.push({ ...parsed, line });
      validBytes = end + 1;
    }
    pos = end + 1;
  }
  return { entries, validBytes, totalBytes: buf.length, tornTailLine: firstBad };
}

/**
 * Line numbers (with their seq) of batch records followed later in the buffer by a valid (terminated, checksum
 * right) batch record of the same key. NOTE: a torn or damaged line supersedes nothing, so a torn tail never hides
 * the record before it.
 */
function supersededBatchLines(buf: Buffer): Map<number, number> {
  const last = new Map<string, { line: number; seq: number }>();
  const out = new Map<number, number>();
  let pos = 0;
  let line = 0;
  while (pos < buf.length) {
    line += 1;
    const nl = buf.indexOf(NEWLINE, pos);
    const end = nl === -1 ? buf.length : nl;
    // NOTE: latin1 decodes the head byte for byte (cheap); a key is only compared with itself, so bytes suffice.
    const m = nl === -1 ? null : BATCH_LINE_HEAD.exec(buf.toString('latin1', pos, Math.min(end, pos + BATCH_HEAD_BYTES)));
    if (m && checkLineLight(buf, pos, end, Number(m[1])) !== null) {
      const previous = last.get(m[2]!);
      if (previous) out.set(previous.line, previous.seq);
      last.set(m[2]!, { line, seq: Number(m[1]) });
    }
    pos = end + 1;
  }
  return out;
}

/**
 * The entries of a state, captured synchronously: later `set`/`delete` on the maps and `ack` pushes onto an
 * outbox entry do not reach it. Batch records are kept by reference (the watcher replaces them, never edits).
 */
export interface SnapshotCapture {
  batches: BatchRecord[];
  outbox: OutboxEntry[];
}

/** Captures the entries of `state` (see {@link SnapshotCapture}). */
export function captureSnapshot(state: LedgerSnapshot): SnapshotCapture {
  return {
    batches: [...state.batches.values()],
    outbox: [...state.outbox.values()].map((e) => ({ event: e.event, acked: [...e.acked] })),
  };
}

/**
 * The state part of a snapshot (everything after the header) in order, one piece per record with its separator, so
 * a writer can encode it record by record (see {@link writeSnapshotTo}). Joined, the pieces are the whole part.
 */
export function* snapshotBodyPieces(capture: SnapshotCapture): Generator<string> {
  // NOTE: one record per line (still one JSON document), so a reader can parse it line by line without holding
  // the whole file as one string (see parseSnapshotLines).
  yield '"batches":[\n';
  let sep = '';
  for (const rec of capture.batches) {
    yield sep + JSON.stringify(rec);
    sep = ',\n';
  }
  yield '\n],"outbox":[\n';
  sep = '';
  for (const entry of capture.outbox) {
    yield sep + JSON.stringify(entry);
    sep = ',\n';
  }
  yield '\n]}\n';
}

/**
 * Writes a whole snapshot (header and state part) through `chunk` to `sink`, one record at a time, handing the
 * chunk to `sink` each time it fills: the file's bytes are those of header + {@link encodeSnapshotBody}, but no
 * string longer than one record is built. Each `sink` call is an I/O turn, so the event loop runs between chunks.
 * Returns the bytes written.
 */
export async function writeSnapshotTo(
  chunk: ByteChunk,
  gen: number,
  seq: number,
  capture: SnapshotCapture,
  sink: ChunkSink,
): Promise<number> {
  chunk.reset();
  let bytes = await chunk.append(encodeSnapshotHeader(gen, seq), sink);
  for (const piece of snapshotBodyPieces(capture)) {
    if (chunk.fits(piece)) chunk.put(piece);
    else bytes += await chunk.append(piece, sink);
  }
  bytes += await chunk.drainTo(sink);
  return bytes;
}

/** The whole state part of a snapshot as one string. */
export function encodeSnapshotBody(state: LedgerSnapshot): string {
  return [...snapshotBodyPieces(captureSnapshot(state))].join('');
}

/** The snapshot header that goes before {@link encodeSnapshotBody}. */
export function encodeSnapshotHeader(gen: number, seq: number): string {
  return `{"v":${SNAPSHOT_VERSION},"gen":${gen},"seq":${seq},`;
}

/** A parsed snapshot file. */
export interface ParsedSnapshot {
  gen: number;
  seq: number;
  state: LedgerSnapshot;
}

/**
 * Parses a snapshot given as its lines (the format {@link writeSnapshotTo} writes: a header line ending in
 * `"batches":[`, one record per line, `],"outbox":[`, one entry per line, `]}`), one line at a time, so memory
 * holds the records but never the whole file. Returns null when the lines are not in that shape (an older
 * single-line snapshot): the caller then parses the whole text with {@link parseSnapshot}.
 */
export async function parseSnapshotLines(lines: AsyncIterable<string> | Iterable<string>, file: string): Promise<ParsedSnapshot | null> {
  const fail = (why: string): never => {
    throw new DaemonError(`ledger snapshot ${file} is corrupt: ${why}`, { kind: 'store', scope: 'process', code: 'LedgerCorrupt' });
  };
  let section: 'header' | 'batches' | 'outbox' | 'end' = 'header';
  let gen = 0;
  let seq = 0;
  const state: LedgerSnapshot = { batches: new Map(), outbox: new Map() };
  let n = 0;
  for await (const raw of lines) {
    n += 1;
    const line = raw.endsWith(',') ? raw.slice(0, -1) : raw;
    if (section === 'header') {
      const m = /^\{"v":(\d+),"gen":(\d+),"seq":(\d+),"batches":\[$/.exec(line);
      if (!m) return null;
      if (Number(m[1]) !== SNAPSHOT_VERSION) return fail(`unsupported version ${m[1] ?? ''}`);
      gen = Number(m[2]);
      seq = Number(m[3]);
      section = 'batches';
    } else if (line === '' && section !== 'end') {
      continue; // an empty list leaves a blank line
    } else if (section === 'batches') {
      if (line === '],"outbox":[') {
        section = 'outbox';
        continue;
      }
      let rec: unknown;
      try {
        rec = JSON.parse(line);
      } catch (err) {
        return fail(`line ${n}: ${err instanceof Error ? err.message : 'not JSON'}`);
      }
      if (!isObject(rec) || typeof rec.key !== 'string') return fail(`line ${n}: batch record has no key`);
      state.batches.set(rec.key, rec as unknown as BatchRecord);
    } else if (section === 'outbox') {
      if (line === ']}') {
        section = 'end';
        continue;
      }
      let entry: unknown;
      try {
        entry = JSON.parse(line);
      } catch (err) {
        return fail(`line ${n}: ${err instanceof Error ? err.message : 'not JSON'}`);
      }
      const problem = outboxEntryProblem(entry);
      if (problem !== null) return fail(`line ${n}: ${problem}`);
      const e = entry as OutboxEntry;
      state.outbox.set(e.event.id, e);
    } else if (line !== '') {
      return fail(`line ${n}: data after the end`);
    }
  }
  if (section === 'header' && n === 0) return fail('empty file');
  if (section !== 'end') return fail('truncated (no closing `]}`)');
  return { gen, seq, state };
}

/** Parses `snapshot.json`; throws `LedgerCorrupt` naming the file when it is not a valid snapshot. */
export function parseSnapshot(text: string, file: string): ParsedSnapshot {
  const fail = (why: string): never => {
    throw new DaemonError(`ledger snapshot ${file} is corrupt: ${why}`, {
      kind: 'store',
      scope: 'process',
      code: 'LedgerCorrupt',
    });
  };
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (err) {
    return fail(err instanceof Error ? err.message : 'not JSON');
  }
  if (!isObject(parsed)) return fail('expected an object');
  if (parsed.v !== SNAPSHOT_VERSION) return fail(`unsupported version ${JSON.stringify(parsed.v) ?? 'undefined'}`);
  const { gen, seq, batches, outbox } = parsed;
  if (typeof gen !== 'number' || !Number.isSafeInteger(gen) || gen < 0) return fail('bad gen');
  if (typeof seq !== 'number' || !Number.isSafeInteger(seq) || seq < 0) return fail('bad seq');
  if (!Array.isArray(batches) || !Array.isArray(outbox)) return fail('batches/outbox must be arrays');
  const state: LedgerSnapshot = { batches: new Map(), outbox: new Map() };
  batches.forEach((rec: unknown, i) => {
    if (!isObject(rec) || typeof rec.key !== 'string') fail(`batches[${i}] has no key`);
    const batch = rec as BatchRecord;
    state.batches.set(batch.key, batch);
  });
  outbox.forEach((entry: unknown, i) => {
    const problem = outboxEntryProblem(entry);
    if (problem !== null) fail(`outbox[${i}]: ${problem}`);
    const e = entry as OutboxEntry;
    state.outbox.set(e.event.id, e);
  });
  return { gen, seq, state };
}
