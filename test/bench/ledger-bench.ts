/**
 * Micro-benchmark of the file ledger, for `npm run bench` (not a vitest test).
 *
 * Appends one batch record per call for `batches` batches (with `concurrency` appends in flight, as the
 * watcher's many batches produce them, so group commit applies), compacts, then measures a cold open + load.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';

import { applyJournalRecord, emptySnapshot } from '../../src/core/ledger-state.js';
import type { JournalRecord } from '../../src/core/ports.js';
import { openFileLedger, snapshotFileBytes } from '../../src/ledger/file-ledger.js';
import { makeBatch } from '../unit/ledger/helpers.js';

/** Options of {@link benchLedger}. */
export interface LedgerBenchOptions {
  /** Number of distinct batches (one append each). @default 100000 */
  batches?: number;
  /** Appends in flight at once. @default 64 */
  concurrency?: number;
  /** fsync as in production. @default true */
  fsync?: boolean;
  /** Where to create the temporary ledger directory. @default os.tmpdir() */
  baseDir?: string;
}

/** Result of {@link benchLedger}. */
export interface LedgerBenchResult {
  batches: number;
  /** Wall time per appended record, in microseconds. */
  appendUsPerRecord: number;
  /** Group writes (= fsyncs) for all the appends. */
  groupWrites: number;
  /** Journal bytes before compaction. */
  journalBytes: number;
  compactMs: number;
  /** Cold open + load of the compacted ledger. */
  loadMs: number;
  snapshotBytes: number;
}

export async function benchLedger(options: LedgerBenchOptions = {}): Promise<LedgerBenchResult> {
  const batches = options.batches ?? 100_000;
  const concurrency = options.concurrency ?? 64;
  const fsync = options.fsync ?? true;
  const base = await mkdtemp(join(options.baseDir ?? tmpdir(), 'ibw-ledger-bench-'));
  const dir = join(base, 'state');
  try {
    const ledger = await openFileLedger({ dir, fsync });
    const state = emptySnapshot();
    let next = 0;
    const started = performance.now();
    const worker = async (): Promise<void> => {
      while (next < batches) {
        const n = next;
        next += 1;
        const record: JournalRecord = { t: 'batch', rec: makeBatch(n) };
        applyJournalRecord(state, record);
        await ledger.append([record]);
      }
    };
    await Promise.all(Array.from({ length: concurrency }, worker));
    const appendMs = performance.now() - started;
    const { groupWrites, journalBytes } = ledger.stats();

    const compactStarted = performance.now();
    await ledger.compact(state);
    const compactMs = performance.now() - compactStarted;
    await ledger.close();

    const loadStarted = performance.now();
    const reopened = await openFileLedger({ dir, fsync });
    const loaded = await reopened.load();
    const loadMs = performance.now() - loadStarted;
    await reopened.close();
    if (loaded.batches.size !== batches) throw new Error(`loaded ${loaded.batches.size} batches, expected ${batches}`);

    return {
      batches,
      appendUsPerRecord: (appendMs * 1000) / batches,
      groupWrites,
      journalBytes,
      compactMs,
      loadMs,
      snapshotBytes: await snapshotFileBytes(dir),
    };
  } finally {
    await rm(base, { recursive: true, force: true });
  }
}
