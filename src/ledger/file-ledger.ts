/**
 * The durable ledger (DESIGN.md §5): an append-only journal of JSON lines plus a periodically compacted
 * snapshot, in one directory, with no native dependency.
 *
 * Files in `dir` (created 0700; files 0600):
 * - `LOCK`                 the writer's pid and lease (single writer, renewed; see lock.ts)
 * - `snapshot.json`        the whole state at seq N, generation G; replaced atomically (temp, fsync, rename, fsync dir)
 * - `journal.<gen>.jsonl`  records after the snapshot; one self-validating line each (journal-format.ts)
 *
 * Invariants:
 * - Seqs are contiguous across journals. Journal G starts right after the seq of the compaction that opened
 *   generation G. Live state = snapshot + journals with gen ≥ snapshot gen, records with seq > snapshot seq.
 * - Only the tail of a journal can be torn: every write starts at the end of the last good line, because a
 *   failed write is truncated back to that size before anything else is written (and if the truncation fails,
 *   nothing more is written to that file until it succeeds).
 * - `append` resolves only after its line(s) are written and fsync'd. Appends arriving within `groupCommitMs`
 *   (and all appends arriving while a write is in flight) share one write and one fsync.
 *
 * Compaction, crash-safe at every step:
 *   1. `compact(state)` captures the entries of `state` and queues a barrier behind the appends already queued;
 *   2. at the barrier, seq N = last written seq and the generation moves to G+1 (later appends go to the new
 *      journal while the snapshot is written);
 *   3. the snapshot {gen: G+1, seq: N} is serialised in chunks into a temp file, fsync'd, renamed over
 *      `snapshot.json`, and the directory fsync'd;
 *   4. journals with gen < G+1 are deleted.
 *   A crash before 3 completes leaves the old snapshot, and the old journals still hold every record; a crash
 *   after it leaves old journals that are ignored (and deleted on the next open). Replay never applies a record
 *   twice because it skips seq ≤ snapshot seq.
 *
 * Lifecycle: open ──close()──► closing (drains queued appends and compactions) ──► closed. Calls after close()
 * began reject with `LedgerClosed`. close() rejects with `LedgerCloseFailed` when the state could not be
 * flushed or the lock not removed (read-only directory at shutdown...), so the caller can report an unclean stop.
 *
 * Lease: every journal write, snapshot rename and journal deletion first checks the lock's lease (lock.ts). Once
 * another process took it over, they all fail with `LedgerLeaseLost` and nothing more is written.
 */
import type { FileHandle } from 'node:fs/promises';
import { readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';

import type { Logger } from 'pino';

import type { Clock } from '../core/clock.js';
import { systemClock } from '../core/clock.js';
import type { JournalRecord, LedgerSnapshot, LedgerStore } from '../core/ports.js';
import { DaemonError } from '../errors.js';
import { ensureDirectory } from '../safe-fs.js';
import { ByteChunk } from './byte-chunk.js';
import type { SnapshotCapture } from './journal-format.js';
import {
  captureSnapshot,
  checkJournalRecord,
  encodeJournalLine,
  journalFileName,
  parseJournalFileName,
  putJournalLine,
  SNAPSHOT_FILE,
  SNAPSHOT_TEMP_PREFIX,
  writeSnapshotTo,
} from './journal-format.js';
import type { LedgerFs } from './ledger-fs.js';
import { errnoCode, nodeLedgerFs, storeError } from './ledger-fs.js';
import type { LeaseOptions, LedgerLock } from './lock.js';
import { acquireLedgerLock } from './lock.js';
import { readLedgerDir } from './read-ledger.js';

/** Options of {@link openFileLedger}. */
export interface FileLedgerOptions {
  /** The ledger directory (`state.dir`); created with mode 0700 when missing. */
  dir: string;
  /** Warnings (torn tail, stale lock, write failures) and debug lines go here. @default no logging */
  logger?: Logger;
  /** How long the first append of a group waits for others to share its write and fsync. @default 5 */
  groupCommitMs?: number;
  /** fsync journal writes, snapshots and the directory. Turn off only for tests and benchmarks. @default true */
  fsync?: boolean;
  /** Clock used for the group-commit wait. @default systemClock */
  clock?: Clock;
  /** File-system write operations, to inject failures in tests. @default nodeLedgerFs */
  fs?: Partial<LedgerFs>;
  /**
   * The lock's lease: duration (default 15 s, or `IBW_LEDGER_LEASE_MS`), its clock (default the system clock,
   * not `clock`: the lease is compared with other processes), and identity overrides for tests.
   */
  lease?: LeaseOptions;
  /** Called once when the lease is found taken over by another process (appends fail from then on). */
  onLeaseLost?: (error: DaemonError) => void;
}

/** Counters of a {@link FileLedger}. */
export interface FileLedgerStats {
  dir: string;
  /** Generation of the journal being written. */
  generation: number;
  /** Seq of the last durable record. */
  seq: number;
  snapshotGeneration: number;
  snapshotSeq: number;
  snapshotBytes: number;
  /** Bytes of journal written after the last snapshot (what a compaction would reclaim). */
  journalBytes: number;
  /** Records written after the last snapshot. */
  journalRecords: number;
  /** Since open: records appended, group writes (each one fsync), failed writes, completed compactions. */
  appendedRecords: number;
  groupWrites: number;
  failedWrites: number;
  compactions: number;
}

/**
 * A {@link LedgerStore} over a directory, with the numbers the daemon uses to decide when to compact.
 *
 * - `load()`: the first call returns the state read at open; later calls wait for queued writes and re-read the
 *   files (meant for start-up and tests, not for a hot path).
 * - `append(records)`: validates and serialises the records at call time, resolves once they are fsync'd;
 *   rejects with `DaemonError{kind:'store', code:<errno>}` when the write fails (nothing of it stays behind).
 * - `compact(state)`: captures the entries of `state` at call time (batch records by reference: replace them,
 *   do not edit them in place), then writes the snapshot in chunks; rejects with a store error on failure,
 *   in which case the journal still holds everything.
 * - `close()`: writes what is queued, waits for compactions, releases the lock. Idempotent.
 */
export interface FileLedger extends LedgerStore {
  readonly dir: string;
  /** Bytes of journal after the last snapshot. */
  journalBytes(): number;
  stats(): FileLedgerStats;
}

type State = 'open' | 'closing' | 'closed';

interface AppendItem {
  kind: 'append';
  json: string[];
  resolve: () => void;
  reject: (err: Error) => void;
}

interface BarrierItem {
  kind: 'barrier';
  resolve: (at: { gen: number; seq: number }) => void;
}

type QueueItem = AppendItem | BarrierItem;

const DEFAULT_GROUP_COMMIT_MS = 5;
/**
 * Reused encoding buffers (see byte-chunk.ts): a journal group larger than its buffer is written in several writes
 * before its one fsync; a snapshot is written one buffer at a time, and the event loop runs between two buffers.
 * NOTE: 256 KiB, not 1 MiB, for the snapshot too: encoding 1 MiB of records (about 1,800 at 100,000 batches) held
 * the loop long enough for /healthz to take 100-135 ms during the compaction that follows start-up (issue #14).
 */
const JOURNAL_CHUNK_BYTES = 256 * 1024;
const SNAPSHOT_CHUNK_BYTES = 256 * 1024;

/**
 * Opens (creating when needed) the ledger in `options.dir`: takes the lock, reads the snapshot and journals,
 * truncates a torn journal tail (with a warning), and deletes leftovers of an interrupted compaction.
 * Throws `DaemonError` `LedgerLocked` when another live process holds the directory, `LedgerCorrupt` when
 * acknowledged data is damaged (naming the file and line), or a store error with the errno code.
 */
export async function openFileLedger(options: FileLedgerOptions): Promise<FileLedger> {
  const groupCommitMs = options.groupCommitMs ?? DEFAULT_GROUP_COMMIT_MS;
  if (!Number.isFinite(groupCommitMs) || groupCommitMs < 0) {
    throw new DaemonError(
      `Expected \`groupCommitMs\` to be a finite number >= 0, got \`${String(groupCommitMs)}\` (${typeof groupCommitMs})`,
      { kind: 'internal', scope: 'process', code: 'InvalidOption' },
    );
  }
  const fs: LedgerFs = { ...nodeLedgerFs, ...options.fs };
  const { dir, logger } = options;
  // NOTE: not `mkdir -p`, which spins for ever where mkdir reports ENOENT for an existing parent (/proc).
  await ensureDirectory(dir, { mode: 0o700, label: 'state.dir' });
  const lock = await acquireLedgerLock(dir, logger, {
    ...options.lease,
    ...(options.onLeaseLost ? { onLost: options.onLeaseLost } : {}),
  });
  try {
    const contents = await readLedgerDir(dir, logger ? { logger } : {});
    // Repair: cut torn tails so new lines never follow garbage.
    for (const journal of contents.journals) {
      if (journal.validBytes < journal.totalBytes) {
        await truncateFile(fs, journal.path, journal.validBytes, options.fsync ?? true);
        logger?.warn(
          { file: journal.path, line: journal.tornTailLine, fromBytes: journal.totalBytes, toBytes: journal.validBytes },
          'truncated the torn tail of the ledger journal',
        );
      }
    }
    for (const path of [...contents.staleJournals, ...contents.tempFiles]) {
      try {
        await fs.unlink(path);
        logger?.info({ file: path }, 'removed a leftover of an interrupted ledger compaction');
      } catch (err) {
        if (errnoCode(err) !== 'ENOENT') logger?.warn({ err, file: path }, 'could not remove a stale ledger file');
      }
    }
    return new FileLedgerImpl({
      dir,
      fs,
      lock,
      logger,
      clock: options.clock ?? systemClock,
      groupCommitMs,
      fsync: options.fsync ?? true,
      contents,
    });
  } catch (err) {
    await lock.release().catch(() => undefined);
    throw err;
  }
}

async function truncateFile(fs: LedgerFs, path: string, size: number, fsync: boolean): Promise<void> {
  let handle: FileHandle | undefined;
  try {
    handle = await fs.open(path, 'r+');
    await fs.truncate(handle, size);
    if (fsync) await fs.sync(handle);
  } catch (err) {
    throw storeError('truncate the torn tail of', path, err);
  } finally {
    await handle?.close().catch(() => undefined);
  }
}

function closedError(): DaemonError {
  return new DaemonError('the ledger is closed', { kind: 'internal', scope: 'process', code: 'LedgerClosed' });
}

class FileLedgerImpl implements FileLedger {
  readonly dir: string;
  private readonly fs: LedgerFs;
  private readonly lock: LedgerLock;
  private readonly logger: Logger | undefined;
  private readonly clock: Clock;
  private readonly groupCommitMs: number;
  private readonly fsync: boolean;

  private state: State = 'open';
  /** Failures while closing (writes of what was queued): close() rejects with them. */
  private closeErrors: DaemonError[] = [];
  private closing: Promise<void> | null = null;
  /** The state read at open, handed out by the first load() when nothing was written since. */
  private initial: LedgerSnapshot | null;

  private readonly queue: QueueItem[] = [];
  private flushing: Promise<void> | null = null;
  private timer: AbortController | null = null;
  private compactChain: Promise<void> = Promise.resolve();

  private gen: number;
  private lastSeq: number;
  private handle: FileHandle | null = null;
  /** Size of the current journal up to its last good line. */
  private goodSize = 0;
  /** A failed write could not be truncated back: truncate before writing again. */
  private dirty = false;
  private snapshotGen: number;
  private snapshotSeq: number;
  private snapshotBytes: number;
  /** Bytes and records written per generation that is still live. */
  private readonly genBytes = new Map<number, number>();
  private readonly genRecords = new Map<number, number>();
  private tempCounter = 0;
  /** Encoding buffers, allocated on first use: one for the flush loop, one for compactions (each runs one at a time). */
  private journalChunk: ByteChunk | null = null;
  private snapshotChunk: ByteChunk | null = null;
  private counters = { appendedRecords: 0, groupWrites: 0, failedWrites: 0, compactions: 0 };

  constructor(init: {
    dir: string;
    fs: LedgerFs;
    lock: LedgerLock;
    logger: Logger | undefined;
    clock: Clock;
    groupCommitMs: number;
    fsync: boolean;
    contents: Awaited<ReturnType<typeof readLedgerDir>>;
  }) {
    this.dir = init.dir;
    this.fs = init.fs;
    this.lock = init.lock;
    this.logger = init.logger;
    this.clock = init.clock;
    this.groupCommitMs = init.groupCommitMs;
    this.fsync = init.fsync;
    const c = init.contents;
    this.initial = c.state;
    this.snapshotGen = c.snapshotGen;
    this.snapshotSeq = c.snapshotSeq;
    this.snapshotBytes = c.snapshotBytes;
    this.lastSeq = c.lastSeq;
    this.gen = Math.max(c.snapshotGen, ...c.journals.map((j) => j.gen));
    // NOTE: after a lapsed lease, the old holder may be frozen, not dead, and append once more before it sees
    // the loss. A journal of our own keeps such a line out of ours; our first record supersedes it on replay.
    if (init.lock.tookOverLapsed) this.gen += 1;
    for (const j of c.journals) {
      this.genBytes.set(j.gen, j.validBytes);
      this.genRecords.set(j.gen, j.records);
    }
    this.logger?.debug(
      { dir: this.dir, generation: this.gen, seq: this.lastSeq, snapshotSeq: this.snapshotSeq, batches: c.state.batches.size },
      'ledger opened',
    );
  }

  journalBytes(): number {
    let total = 0;
    for (const [gen, bytes] of this.genBytes) if (gen >= this.snapshotGen) total += bytes;
    return total;
  }

  stats(): FileLedgerStats {
    let journalRecords = 0;
    for (const [gen, n] of this.genRecords) if (gen >= this.snapshotGen) journalRecords += n;
    return {
      dir: this.dir,
      generation: this.gen,
      seq: this.lastSeq,
      snapshotGeneration: this.snapshotGen,
      snapshotSeq: this.snapshotSeq,
      snapshotBytes: this.snapshotBytes,
      journalBytes: this.journalBytes(),
      journalRecords,
      ...this.counters,
    };
  }

  async load(): Promise<LedgerSnapshot> {
    if (this.state !== 'open') throw closedError();
    if (this.initial !== null) {
      const state = this.initial;
      this.initial = null;
      return state;
    }
    await this.drain();
    await this.compactChain;
    const contents = await readLedgerDir(this.dir, this.logger ? { logger: this.logger } : {});
    return contents.state;
  }

  append(records: JournalRecord[]): Promise<void> {
    if (this.state !== 'open') return Promise.reject(closedError());
    if (records.length === 0) return Promise.resolve();
    let json: string[];
    try {
      json = records.map((r) => JSON.stringify(checkJournalRecord(r)));
    } catch (err) {
      return Promise.reject(err instanceof Error ? err : new Error(String(err)));
    }
    this.initial = null;
    return new Promise<void>((resolve, reject) => {
      this.queue.push({ kind: 'append', json, resolve, reject });
      this.schedule(false);
    });
  }

  compact(state: LedgerSnapshot): Promise<void> {
    if (this.state !== 'open') return Promise.reject(closedError());
    // NOTE: captured now (cheap: references), serialised later in chunks between writes, so a big ledger does
    // not block the event loop for the whole encoding.
    const capture = captureSnapshot(state);
    this.initial = null;
    // NOTE: the barrier is queued now, so appends called before compact() land at or below its seq and appends
    // called after it land above, matching what `state` contains.
    const barrier = new Promise<{ gen: number; seq: number }>((resolve) => {
      this.queue.push({ kind: 'barrier', resolve });
      this.schedule(true);
    });
    const run = this.compactChain.then(async () => {
      const at = await barrier;
      await this.writeSnapshot(at.gen, at.seq, capture);
    });
    this.compactChain = run.catch(() => undefined);
    return run;
  }

  close(): Promise<void> {
    if (this.closing) return this.closing;
    this.state = 'closing';
    this.closing = (async () => {
      try {
        await this.drain();
        await this.compactChain;
      } finally {
        await this.handle?.close().catch(() => undefined);
        this.handle = null;
        if (this.dirty) this.closeErrors.push(storeError('truncate the failed write at the end of', this.journalPath(this.gen), new Error('the truncation kept failing')));
        const lost = this.lock.lost();
        if (lost) this.closeErrors.push(lost);
        try {
          await this.lock.release();
        } catch (err) {
          this.closeErrors.push(storeError('remove the lock of', this.dir, err));
        }
        this.state = 'closed';
        this.logger?.debug({ dir: this.dir, seq: this.lastSeq }, 'ledger closed');
      }
      const errors = [...new Set(this.closeErrors)];
      if (errors.length > 0) {
        throw new DaemonError(
          `ledger ${this.dir} did not close cleanly: ${errors.map((e) => e.message).join('; ')}`,
          { kind: 'store', scope: 'process', code: 'LedgerCloseFailed', cause: errors.length === 1 ? errors[0] : new AggregateError(errors) },
        );
      }
    })();
    return this.closing;
  }

  // ---- group commit ----

  private schedule(immediate: boolean): void {
    if (this.flushing) return; // the running flush loop picks the item up
    if (immediate || this.groupCommitMs === 0 || this.state !== 'open') {
      this.timer?.abort();
      this.startFlush();
      return;
    }
    if (this.timer) return;
    const timer = new AbortController();
    this.timer = timer;
    this.clock
      .sleep(this.groupCommitMs, timer.signal)
      .catch(() => undefined)
      .finally(() => {
        if (this.timer === timer) this.timer = null;
        if (!this.flushing && this.queue.length > 0) this.startFlush();
      })
      .catch(() => undefined);
  }

  private startFlush(): void {
    if (this.flushing) return;
    this.flushing = this.flushLoop()
      .catch((err: unknown) => {
        // Not expected: writeGroup and rotate handle their own failures. Fail what is queued rather than hang.
        const error = storeError('write', this.dir, err);
        this.logger?.error({ err: error }, 'ledger writer failed unexpectedly');
        for (const item of this.queue.splice(0)) {
          if (item.kind === 'append') item.reject(error);
          else item.resolve({ gen: this.gen, seq: this.lastSeq });
        }
      })
      .finally(() => {
        this.flushing = null;
        if (this.queue.length > 0) this.schedule(this.state !== 'open');
      });
  }

  /** Writes queued appends, group by group, until the queue is empty. Never rejects. */
  private async flushLoop(): Promise<void> {
    // Let appends made in the same tick join the first group.
    await Promise.resolve();
    while (this.queue.length > 0) {
      const first = this.queue[0];
      if (first?.kind === 'barrier') {
        this.queue.shift();
        first.resolve(await this.rotate());
        continue;
      }
      const barrierAt = this.queue.findIndex((item) => item.kind === 'barrier');
      const group = this.queue.splice(0, barrierAt === -1 ? this.queue.length : barrierAt) as AppendItem[];
      await this.writeGroup(group);
    }
  }

  private journalPath(gen: number): string {
    return join(this.dir, journalFileName(gen));
  }

  private async writeGroup(group: AppendItem[]): Promise<void> {
    let records = 0;
    for (const item of group) records += item.json.length;
    const path = this.journalPath(this.gen);
    // NOTE: the lines are encoded into one reused buffer, written out each time it fills, instead of as one string
    // of the whole group (issue #14: at start-up a group is megabytes, which went to the old generation).
    const chunk = (this.journalChunk ??= new ByteChunk(JOURNAL_CHUNK_BYTES));
    chunk.reset();
    let bytes = 0;
    let opened = false;
    try {
      await this.checkLease();
      const handle = await this.ensureJournal(path);
      opened = true;
      const sink = (data: Buffer): Promise<void> => this.fs.write(handle, data);
      let seq = this.lastSeq;
      for (const item of group) {
        for (const json of item.json) {
          seq += 1;
          if (putJournalLine(chunk, seq, json)) continue;
          bytes += await chunk.drainTo(sink);
          if (putJournalLine(chunk, seq, json)) continue;
          // A line larger than the whole buffer: on its own.
          const data = Buffer.from(encodeJournalLine(seq, json), 'utf8');
          await sink(data);
          bytes += data.length;
        }
      }
      bytes += await chunk.drainTo(sink);
      if (this.fsync) await this.fs.sync(handle);
    } catch (err) {
      chunk.reset();
      const error = storeError('append to', path, err);
      this.counters.failedWrites += 1;
      this.logger?.warn({ err: error, file: path, records }, 'ledger append failed');
      if (opened) await this.rollback(path);
      if (this.state !== 'open') this.closeErrors.push(error);
      for (const item of group) item.reject(error);
      return;
    }
    this.goodSize += bytes;
    this.lastSeq += records;
    this.genBytes.set(this.gen, (this.genBytes.get(this.gen) ?? 0) + bytes);
    this.genRecords.set(this.gen, (this.genRecords.get(this.gen) ?? 0) + records);
    this.counters.appendedRecords += records;
    this.counters.groupWrites += 1;
    for (const item of group) item.resolve();
  }

  /** The open handle of the current journal, clean up to `goodSize`. */
  private async ensureJournal(path: string): Promise<FileHandle> {
    if (this.handle === null) {
      const handle = await this.fs.open(path, 'a', 0o600);
      try {
        this.goodSize = (await handle.stat()).size;
        // The file may be new: make its directory entry durable before acknowledging lines in it.
        if (this.fsync) await this.fs.syncDir(this.dir);
      } catch (err) {
        await handle.close().catch(() => undefined);
        throw err;
      }
      this.handle = handle;
      this.dirty = false;
    }
    if (this.dirty) {
      await this.fs.truncate(this.handle, this.goodSize);
      this.dirty = false;
    }
    return this.handle;
  }

  /** After a failed write: cut the journal back to its last good line so the next line never glues onto garbage. */
  private async rollback(path: string): Promise<void> {
    if (this.handle === null) return;
    try {
      await this.fs.truncate(this.handle, this.goodSize);
      this.dirty = false;
    } catch (err) {
      this.dirty = true;
      this.logger?.warn(
        { err: storeError('truncate', path, err), file: path, size: this.goodSize },
        'could not truncate the ledger journal after a failed write; will retry before the next write',
      );
    }
  }

  /** Barrier: later records go to a new journal generation. Returns the generation and the seq it starts after. */
  private async rotate(): Promise<{ gen: number; seq: number }> {
    const handle = this.handle;
    this.handle = null;
    if (handle !== null) {
      if (this.dirty) await this.fs.truncate(handle, this.goodSize).catch(() => undefined);
      await handle.close().catch(() => undefined);
    }
    this.dirty = false;
    this.goodSize = 0;
    this.gen += 1;
    return { gen: this.gen, seq: this.lastSeq };
  }

  // ---- compaction ----

  private async writeSnapshot(gen: number, seq: number, capture: SnapshotCapture): Promise<void> {
    if (gen <= this.snapshotGen) return; // a newer snapshot already exists
    this.tempCounter += 1;
    const temp = join(this.dir, `${SNAPSHOT_TEMP_PREFIX}${process.pid}-${this.tempCounter}`);
    const target = join(this.dir, SNAPSHOT_FILE);
    let bytes: number;
    let handle: FileHandle | null = null;
    try {
      const opened = await this.fs.open(temp, 'w', 0o600);
      handle = opened;
      // NOTE: record by record through one reused buffer, not as strings of the whole state (issue #14).
      const chunk = (this.snapshotChunk ??= new ByteChunk(SNAPSHOT_CHUNK_BYTES));
      bytes = await writeSnapshotTo(chunk, gen, seq, capture, (data) => this.fs.write(opened, data));
      if (this.fsync) await this.fs.sync(handle);
      await handle.close();
      handle = null;
      await this.checkLease();
      await this.fs.rename(temp, target);
      if (this.fsync) await this.fs.syncDir(this.dir);
    } catch (err) {
      await handle?.close().catch(() => undefined);
      await this.fs.unlink(temp).catch(() => undefined);
      const error = storeError('write snapshot', target, err);
      this.logger?.warn({ err: error, generation: gen, seq }, 'ledger compaction failed; the journal still holds everything');
      throw error;
    }
    const reclaimed = this.journalBytes();
    this.snapshotGen = gen;
    this.snapshotSeq = seq;
    this.snapshotBytes = bytes;
    this.counters.compactions += 1;
    for (const g of [...this.genBytes.keys()]) {
      if (g < gen) {
        this.genBytes.delete(g);
        this.genRecords.delete(g);
      }
    }
    await this.deleteJournalsBefore(gen);
    this.logger?.debug(
      { generation: gen, seq, snapshotBytes: bytes, journalBytesBefore: reclaimed, journalBytes: this.journalBytes() },
      'ledger compacted',
    );
  }

  private async deleteJournalsBefore(gen: number): Promise<void> {
    if (this.lock.lost()) return; // the directory is someone else's now
    let names: string[];
    try {
      names = await readdir(this.dir);
    } catch (err) {
      this.logger?.warn({ err, dir: this.dir }, 'could not list the ledger directory to delete old journals');
      return;
    }
    for (const name of names) {
      const g = parseJournalFileName(name);
      if (g === null || g >= gen) continue;
      try {
        await this.fs.unlink(join(this.dir, name));
      } catch (err) {
        // Harmless: journals older than the snapshot are ignored and removed on the next open.
        if (errnoCode(err) !== 'ENOENT') this.logger?.warn({ err, file: name }, 'could not delete an old ledger journal');
      }
    }
  }

  /** Rejects when the lease is lost or could not be confirmed. */
  private async checkLease(): Promise<void> {
    await this.lock.check();
  }

  /** Waits until every queued append and barrier has been processed. */
  private async drain(): Promise<void> {
    for (;;) {
      this.timer?.abort();
      if (!this.flushing && this.queue.length > 0) this.startFlush();
      if (this.flushing) {
        await this.flushing;
        continue;
      }
      return;
    }
  }
}

/** Size in bytes of `<dir>/snapshot.json`, or 0 when there is none (for tools and benchmarks). */
export async function snapshotFileBytes(dir: string): Promise<number> {
  try {
    return (await stat(join(dir, SNAPSHOT_FILE))).size;
  } catch (err) {
    if (errnoCode(err) === 'ENOENT') return 0;
    throw storeError('stat', join(dir, SNAPSHOT_FILE), err);
  }
}
