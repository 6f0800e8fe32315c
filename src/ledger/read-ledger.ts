/**
 * Reading a ledger directory: the last snapshot, then every journal of the same or a later generation, in
 * generation order, applying the records whose seq is above the snapshot's. Used by the writer on open (which
 * also repairs a torn tail) and by {@link readLedgerReadOnly} for `status` while the daemon runs.
 */
import { createReadStream } from 'node:fs';
import { readdir, readFile, stat } from 'node:fs/promises';
import { createInterface } from 'node:readline';
import { join } from 'node:path';

import type { Logger } from 'pino';

import { applyJournalRecord, emptySnapshot } from '../core/ledger-state.js';
import type { LedgerSnapshot } from '../core/ports.js';
import { DaemonError } from '../errors.js';
import {
  journalFileName,
  parseJournal,
  parseJournalFileName,
  parseSnapshot,
  parseSnapshotLines,
  type ParsedSnapshot,
  SNAPSHOT_FILE,
  SNAPSHOT_TEMP_PREFIX,
} from './journal-format.js';
import type { ParsedJournal } from './journal-format.js';
import { errnoCode, storeError } from './ledger-fs.js';

/** One live journal file as read. */
export interface JournalFileInfo {
  gen: number;
  path: string;
  /** Bytes of valid lines. */
  validBytes: number;
  totalBytes: number;
  records: number;
  /** First line of an ignored torn tail, or null. */
  tornTailLine: number | null;
}

/** Everything known after reading a ledger directory. */
export interface LedgerDirContents {
  state: LedgerSnapshot;
  snapshotGen: number;
  snapshotSeq: number;
  snapshotBytes: number;
  /** Seq of the last record applied (the snapshot's when no journal record follows it). */
  lastSeq: number;
  /** Journals with generation ≥ the snapshot's, in order. */
  journals: JournalFileInfo[];
  /** Journals older than the snapshot (left by a crash during compaction): ignored, safe to delete. */
  staleJournals: string[];
  /** Leftover snapshot temp files (crash during compaction): ignored, safe to delete. */
  tempFiles: string[];
}

/** Raised inside a read when a concurrent compaction changed the files under it; the caller retries. */
class ConcurrentChangeError extends Error {
  override name = 'ConcurrentChangeError';
}

/**
 * Reads a ledger directory once. Throws `LedgerCorrupt` for corruption of acknowledged data, a store error for
 * I/O failures, and (when `concurrent`) ConcurrentChangeError when a journal vanished or seqs do not line up.
 */
export async function readLedgerDir(
  dir: string,
  options: { logger?: Logger; concurrent?: boolean } = {},
): Promise<LedgerDirContents> {
  const { logger, concurrent = false } = options;
  const snapshotPath = join(dir, SNAPSHOT_FILE);
  const snap = (await readSnapshotFile(snapshotPath, concurrent)) ?? { gen: 0, seq: 0, state: emptySnapshot() };
  const snapshotBytes = await stat(snapshotPath).then(
    (st) => st.size,
    () => 0,
  );

  let names: string[];
  try {
    names = await readdir(dir);
  } catch (err) {
    throw storeError('list', dir, err);
  }
  const gens: number[] = [];
  const staleJournals: string[] = [];
  const tempFiles: string[] = [];
  for (const name of names) {
    if (name.startsWith(SNAPSHOT_TEMP_PREFIX)) tempFiles.push(join(dir, name));
    const gen = parseJournalFileName(name);
    if (gen === null) continue;
    if (gen < snap.gen) staleJournals.push(join(dir, name));
    else gens.push(gen);
  }
  gens.sort((a, b) => a - b);

  const parsedJournals: { gen: number; path: string; parsed: ParsedJournal }[] = [];
  for (const gen of gens) {
    const path = join(dir, journalFileName(gen));
    let buf: Buffer;
    try {
      buf = await readFile(path);
    } catch (err) {
      if (concurrent && errnoCode(err) === 'ENOENT') throw new ConcurrentChangeError(`${path} vanished`);
      throw storeError('read', path, err);
    }
    // NOTE: a read beside the daemon (status) parses only the last record of each batch per file.
    const parsed = parseJournal(buf, path, { latestBatchOnly: concurrent });
    if (parsed.tornTailLine !== null && logger) {
      // NOTE: a reader beside a running daemon often sees a write in progress: not worth a warning.
      logger[concurrent ? 'debug' : 'warn'](
        { file: path, line: parsed.tornTailLine, ignoredBytes: parsed.totalBytes - parsed.validBytes },
        'ledger journal ends with an incomplete record (interrupted write); ignoring it',
      );
    }
    parsedJournals.push({ gen, path, parsed });
  }

  // NOTE: leftovers of a failed write at the end of an older journal are ignored below; a record there must not
  // have hidden an earlier one of its batch (latestBatchOnly), so such a journal is parsed again in full.
  for (const [index, j] of parsedJournals.entries()) {
    const nextStart = parsedJournals.slice(index + 1).find((k) => k.parsed.entries.length > 0)?.parsed.entries[0]?.seq;
    const lastEntry = j.parsed.entries.at(-1);
    if (concurrent && nextStart !== undefined && lastEntry !== undefined && lastEntry.seq >= nextStart) {
      const again = await readFile(j.path).catch((err: unknown) => {
        throw errnoCode(err) === 'ENOENT' ? new ConcurrentChangeError(`${j.path} vanished`) : storeError('read', j.path, err);
      });
      j.parsed = parseJournal(again, j.path);
    }
  }

  const state = snap.state;
  let lastSeq = snap.seq;
  const journals: JournalFileInfo[] = [];
  parsedJournals.forEach(({ gen, path, parsed }, index) => {
    // NOTE: the writer reuses a seq only when its earlier write failed and could not be cut off before a
    // rotation; such leftovers sit at the end of the older journal, at or above where the next journal starts.
    const nextStart = parsedJournals.slice(index + 1).find((j) => j.parsed.entries.length > 0)?.parsed.entries[0]?.seq;
    let records = 0;
    for (const entry of parsed.entries) {
      if (nextStart !== undefined && entry.seq >= nextStart) {
        logger?.warn(
          { file: path, line: entry.line, seq: entry.seq },
          'ignoring ledger records of a failed write superseded by a later journal',
        );
        break;
      }
      if (entry.seq <= lastSeq) {
        if (entry.seq <= snap.seq) continue; // already in the snapshot
        throw corrupt(`${path}:${entry.line}: seq ${entry.seq} does not follow ${lastSeq}`);
      }
      if (entry.seq !== lastSeq + 1) {
        const why = `${path}:${entry.line}: seq ${entry.seq} follows ${lastSeq}; records ${lastSeq + 1}..${entry.seq - 1} are missing`;
        if (concurrent) throw new ConcurrentChangeError(why);
        throw corrupt(why);
      }
      if (entry.record !== null) applyJournalRecord(state, entry.record);
      lastSeq = entry.seq;
      records += 1;
    }
    journals.push({
      gen,
      path,
      validBytes: parsed.validBytes,
      totalBytes: parsed.totalBytes,
      records,
      tornTailLine: parsed.tornTailLine,
    });
  });
  return {
    state,
    snapshotGen: snap.gen,
    snapshotSeq: snap.seq,
    snapshotBytes,
    lastSeq,
    journals,
    staleJournals,
    tempFiles,
  };
}

function corrupt(why: string): DaemonError {
  return new DaemonError(`ledger is corrupt: ${why}`, { kind: 'store', scope: 'process', code: 'LedgerCorrupt' });
}

async function snapshotIdentity(dir: string): Promise<string> {
  try {
    const st = await stat(join(dir, SNAPSHOT_FILE));
    return `${st.ino}:${st.size}:${st.mtimeMs}`;
  } catch (err) {
    if (errnoCode(err) === 'ENOENT') return 'none';
    throw storeError('stat', join(dir, SNAPSHOT_FILE), err);
  }
}

/** Options of {@link readLedgerReadOnly}. */
export interface ReadLedgerOptions {
  /** Warnings (torn tail, retries) go here. @default no logging */
  logger?: Logger;
  /** Reads to attempt when a concurrent compaction changes the files mid-read. @default 3 */
  attempts?: number;
}

/**
 * Reads the ledger without the lock and without changing any file, for `status` while the daemon runs.
 * Tolerates a torn tail (a write in progress) and a concurrent compaction (retries when the snapshot changed or
 * a journal vanished mid-read). A missing directory reads as an empty ledger.
 */
export async function readLedgerReadOnly(dir: string, options: ReadLedgerOptions = {}): Promise<LedgerSnapshot> {
  const attempts = Math.max(1, options.attempts ?? 3);
  try {
    await stat(dir);
  } catch (err) {
    if (errnoCode(err) === 'ENOENT') return emptySnapshot();
    throw storeError('read', dir, err);
  }
  let lastError: unknown;
  for (let attempt = 1; attempt <= attempts; attempt += 1) {
    const before = await snapshotIdentity(dir);
    try {
      const contents = await readLedgerDir(dir, {
        concurrent: true,
        ...(options.logger ? { logger: options.logger } : {}),
      });
      if ((await snapshotIdentity(dir)) === before) return contents.state;
      lastError = new ConcurrentChangeError('snapshot replaced during the read');
    } catch (err) {
      if (!(err instanceof ConcurrentChangeError)) throw err;
      lastError = err;
    }
    options.logger?.debug({ dir, attempt, err: lastError }, 'ledger changed while reading it; reading again');
  }
  throw new DaemonError(
    `ledger ${dir} kept changing while reading it (${lastError instanceof Error ? lastError.message : 'unknown'})`,
    { kind: 'store', scope: 'attempt', code: 'LedgerBusy', cause: lastError },
  );
}

/**
 * Reads `snapshot.json` line by line (records are parsed as they stream in; the file is never one string), or
 * as a whole for an older single-line snapshot. Null when there is no snapshot.
 *
 * `whole`: one read of the file into a buffer, cut at its newlines, instead of the stream (for `status`, a short
 * process: at 20,000 batches the stream and readline cost more than the parse; the buffer lives for the read).
 */
async function readSnapshotFile(path: string, whole = false): Promise<ParsedSnapshot | null> {
  try {
    if (whole) {
      const buf = await readFile(path);
      return (await parseSnapshotLines(bufferLines(buf), path)) ?? parseSnapshot(buf.toString('utf8'), path);
    }
    const stream = createReadStream(path, { encoding: 'utf8', highWaterMark: 1 << 20 });
    const lines = createInterface({ input: stream, crlfDelay: Infinity });
    try {
      const parsed = await parseSnapshotLines(lines, path);
      if (parsed) return parsed;
    } finally {
      lines.close();
      stream.destroy();
    }
    return parseSnapshot(await readFile(path, 'utf8'), path);
  } catch (err) {
    if (err instanceof DaemonError) throw err;
    if (errnoCode(err) === 'ENOENT') return null;
    throw storeError('read', path, err);
  }
}

/** The lines of a buffer as readline gives them (without `\n`; a final line without one included). */
function* bufferLines(buf: Buffer): Generator<string> {
  let pos = 0;
  while (pos < buf.length) {
    const nl = buf.indexOf(0x0a, pos);
    const end = nl < 0 ? buf.length : nl;
    yield buf.toString('utf8', pos, end);
    pos = end + 1;
  }
}
