/**
 * Write failures (ENOSPC, EIO, EROFS) through an injected fs layer: tests run as root, so permissions cannot
 * make writes fail. The ledger must reject, stay consistent, and work again once the condition clears.
 */
import type { FileHandle } from 'node:fs/promises';
import { readdir, readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';

import { afterEach, beforeEach, describe, expect, it } from 'vitest';

import { DaemonError } from '../../../src/errors.js';
import type { FileLedger } from '../../../src/ledger/file-ledger.js';
import { openFileLedger } from '../../../src/ledger/file-ledger.js';
import type { LedgerFs } from '../../../src/ledger/ledger-fs.js';
import { nodeLedgerFs } from '../../../src/ledger/ledger-fs.js';
import { batchRec, captureLogger, errnoError, makeBatch, tempDir } from './helpers.js';

let dir: string;
let cleanup: () => Promise<void>;
let opened: FileLedger[];

beforeEach(async () => {
  ({ dir, cleanup } = await tempDir());
  opened = [];
});
afterEach(async () => {
  for (const ledger of opened) await ledger.close();
  await cleanup();
});

/** A switchable fault injector over the real fs. */
function faultyFs(): { fs: Partial<LedgerFs>; fail: Partial<Record<keyof LedgerFs, string | null>> } {
  const fail: Partial<Record<keyof LedgerFs, string | null>> = {};
  const fs: Partial<LedgerFs> = {
    async write(handle: FileHandle, data: Uint8Array) {
      const code = fail.write;
      if (code) {
        // A partial write, then the error: the worst case for the next line.
        await nodeLedgerFs.write(handle, data.subarray(0, Math.floor(data.length / 2)));
        throw errnoError(code, 'no space left on device');
      }
      await nodeLedgerFs.write(handle, data);
    },
    async sync(handle) {
      if (fail.sync) throw errnoError(fail.sync);
      await nodeLedgerFs.sync(handle);
    },
    async truncate(handle, size) {
      if (fail.truncate) throw errnoError(fail.truncate);
      await nodeLedgerFs.truncate(handle, size);
    },
    async open(path, flags, mode) {
      if (fail.open) throw errnoError(fail.open, 'read-only file system');
      return nodeLedgerFs.open(path, flags, mode);
    },
    async rename(from, to) {
      if (fail.rename) throw errnoError(fail.rename);
      await nodeLedgerFs.rename(from, to);
    },
  };
  return { fs, fail };
}

async function open(fs: Partial<LedgerFs>, logger?: ReturnType<typeof captureLogger>['logger']): Promise<FileLedger> {
  const ledger = await openFileLedger({ dir, groupCommitMs: 0, fs, ...(logger ? { logger } : {}) });
  opened.push(ledger);
  return ledger;
}

const journalAt = (gen: number): string => join(dir, `journal.${gen}.jsonl`);

async function reopenAndLoad(): Promise<string[]> {
  for (const ledger of opened.splice(0)) await ledger.close();
  const ledger = await openFileLedger({ dir });
  opened.push(ledger);
  return [...(await ledger.load()).batches.values()].map((b) => `${b.applyId}:${b.polls}`);
}

describe('write failures', () => {
  it('ENOSPC mid-write: the append rejects, the partial line is cut off, later appends succeed', async () => {
    const { fs, fail } = faultyFs();
    const { logger, warnings } = captureLogger();
    const ledger = await open(fs, logger);
    await ledger.append([batchRec(makeBatch(1))]);
    const goodSize = (await stat(journalAt(0))).size;

    fail.write = 'ENOSPC';
    const err = await ledger.append([batchRec(makeBatch(2)), batchRec(makeBatch(3))]).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(DaemonError);
    expect(err).toMatchObject({ kind: 'store', scope: 'attempt', code: 'ENOSPC' });
    expect((err as Error).message).toContain(journalAt(0));
    expect((await stat(journalAt(0))).size).toBe(goodSize);
    await expect(ledger.append([batchRec(makeBatch(4))])).rejects.toMatchObject({ code: 'ENOSPC' });
    expect(ledger.stats()).toMatchObject({ failedWrites: 2, seq: 1 });
    expect(warnings().some((w) => w.msg === 'ledger append failed')).toBe(true);

    fail.write = null; // space is back
    await ledger.append([batchRec(makeBatch(5))]);
    expect(ledger.stats().seq).toBe(2);
    expect(await reopenAndLoad()).toEqual(['1000001:3', '1000005:3']);
    const seqs = (await readFile(journalAt(0), 'utf8')).trim().split('\n').map((l) => (JSON.parse(l) as { s: number }).s);
    expect(seqs).toEqual([1, 2]);
  });

  it('a failed fsync rejects and the unsynced lines are cut off', async () => {
    const { fs, fail } = faultyFs();
    const ledger = await open(fs);
    await ledger.append([batchRec(makeBatch(1))]);
    const goodSize = (await stat(journalAt(0))).size;
    fail.sync = 'EIO';
    await expect(ledger.append([batchRec(makeBatch(2))])).rejects.toMatchObject({
      kind: 'store',
      scope: 'process',
      code: 'EIO',
    });
    expect((await stat(journalAt(0))).size).toBe(goodSize);
    fail.sync = null;
    await ledger.append([batchRec(makeBatch(3))]);
    expect(await reopenAndLoad()).toEqual(['1000001:3', '1000003:3']);
  });

  it('when the cut-off fails too, nothing is written until it succeeds (no glued lines)', async () => {
    const { fs, fail } = faultyFs();
    const ledger = await open(fs);
    await ledger.append([batchRec(makeBatch(1))]);
    const goodSize = (await stat(journalAt(0))).size;
    fail.write = 'ENOSPC';
    fail.truncate = 'EIO';
    await expect(ledger.append([batchRec(makeBatch(2))])).rejects.toMatchObject({ code: 'ENOSPC' });
    const tornSize = (await stat(journalAt(0))).size;
    expect(tornSize).toBeGreaterThan(goodSize);
    fail.write = null;
    // The write path refuses to append after the garbage while it cannot cut it off.
    await expect(ledger.append([batchRec(makeBatch(3))])).rejects.toMatchObject({ code: 'EIO' });
    expect((await stat(journalAt(0))).size).toBe(tornSize);
    fail.truncate = null;
    await ledger.append([batchRec(makeBatch(4))]);
    expect(await reopenAndLoad()).toEqual(['1000001:3', '1000004:3']);
  });

  it('EROFS when opening the journal surfaces as a process-scoped store error', async () => {
    const { fs, fail } = faultyFs();
    const ledger = await open(fs);
    fail.open = 'EROFS';
    await expect(ledger.append([batchRec(makeBatch(1))])).rejects.toMatchObject({
      name: 'DaemonError',
      kind: 'store',
      scope: 'process',
      code: 'EROFS',
    });
    fail.open = null;
    await ledger.append([batchRec(makeBatch(2))]);
    expect(await reopenAndLoad()).toEqual(['1000002:3']);
  });

  it('a failed compaction rejects, loses nothing, and a later compaction cleans up', async () => {
    const { fs, fail } = faultyFs();
    const ledger = await open(fs);
    await ledger.append([batchRec(makeBatch(1)), batchRec(makeBatch(2))]);
    const state = await ledger.load();
    fail.write = 'ENOSPC';
    await expect(ledger.compact(state)).rejects.toMatchObject({ kind: 'store', code: 'ENOSPC' });
    fail.write = null;
    await ledger.append([batchRec(makeBatch(3))]); // goes to the next generation
    fail.rename = 'EIO';
    await expect(ledger.compact(await ledger.load())).rejects.toMatchObject({ code: 'EIO' });
    fail.rename = null;
    expect((await readdir(dir)).filter((n) => n.includes('tmp'))).toEqual([]);
    expect((await readdir(dir)).filter((n) => n.startsWith('snapshot'))).toEqual([]);
    await ledger.append([batchRec(makeBatch(4))]);
    expect(await reopenAndLoad()).toEqual(['1000001:3', '1000002:3', '1000003:3', '1000004:3']);

    const again = opened[0]!;
    await again.compact(await again.load());
    expect((await readdir(dir)).filter((n) => n.startsWith('journal'))).toEqual([]);
    expect(await reopenAndLoad()).toEqual(['1000001:3', '1000002:3', '1000003:3', '1000004:3']);
  });

  it('a failed write left behind by a rotation is superseded, not replayed', async () => {
    const { fs, fail } = faultyFs();
    const ledger = await open(fs);
    await ledger.append([batchRec(makeBatch(1, { polls: 1 }))]);
    fail.sync = 'EIO';
    fail.truncate = 'EIO';
    // Written completely but not durable, and it cannot be cut off: its lines stay in journal 0.
    await expect(ledger.append([batchRec(makeBatch(1, { polls: 2 }))])).rejects.toMatchObject({ code: 'EIO' });
    fail.sync = null;
    fail.rename = 'EIO';
    const state = await ledger.load(); // reads the journal: sees the rejected record
    state.batches.set(makeBatch(1).key, makeBatch(1, { polls: 1 }));
    await expect(ledger.compact(state)).rejects.toMatchObject({ code: 'EIO' });
    fail.rename = null;
    fail.truncate = null;
    await ledger.append([batchRec(makeBatch(1, { polls: 30 }))]); // seq 2 again, in journal 1
    const seqPolls = async (gen: number): Promise<string[]> =>
      (await readFile(journalAt(gen), 'utf8'))
        .trim()
        .split('\n')
        .map((l) => JSON.parse(l) as { s: number; r: { rec: { polls: number } } })
        .map((l) => `${l.s}:${l.r.rec.polls}`);
    expect(await seqPolls(0)).toEqual(['1:1', '2:2']);
    expect(await seqPolls(1)).toEqual(['2:30']);
    expect(await reopenAndLoad()).toEqual(['1000001:30']);
  });
});
