import { spawnSync } from 'node:child_process';
import { appendFile, copyFile, readdir, readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

import { afterEach, beforeEach, describe, expect, it } from 'vitest';

import { createManualClock } from '../../../src/core/clock.js';
import { DaemonError } from '../../../src/errors.js';
import type { FileLedger } from '../../../src/ledger/file-ledger.js';
import { openFileLedger } from '../../../src/ledger/file-ledger.js';
import { encodeJournalLine, encodeSnapshotBody, encodeSnapshotHeader } from '../../../src/ledger/journal-format.js';
import { nodeLedgerFs } from '../../../src/ledger/ledger-fs.js';
import { readLedgerReadOnly } from '../../../src/ledger/read-ledger.js';
import { batchRec, captureLogger, eventRec, makeBatch, plain, tempDir } from './helpers.js';

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

async function open(options: Partial<Parameters<typeof openFileLedger>[0]> = {}): Promise<FileLedger> {
  const ledger = await openFileLedger({ dir, groupCommitMs: 0, ...options });
  opened.push(ledger);
  return ledger;
}

const journal0 = (): string => join(dir, 'journal.0.jsonl');

describe('files and format', () => {
  it('creates the directory 0700 and its files 0600, with self-validating journal lines', async () => {
    const ledger = await open();
    await ledger.append([batchRec(makeBatch(1)), eventRec('e1')]);
    expect((await stat(dir)).mode & 0o777).toBe(0o700);
    expect((await stat(journal0())).mode & 0o777).toBe(0o600);
    expect((await stat(join(dir, 'LOCK'))).mode & 0o777).toBe(0o600);
    const text = await readFile(journal0(), 'utf8');
    const lines = text.split('\n');
    expect(lines.pop()).toBe('');
    expect(lines.map((l) => JSON.parse(l))).toMatchObject([
      { s: 1, r: { t: 'batch' }, c: expect.stringMatching(/^[0-9a-f]{8}$/) },
      { s: 2, r: { t: 'event' }, c: expect.stringMatching(/^[0-9a-f]{8}$/) },
    ]);
    await ledger.compact(await ledger.load());
    expect((await stat(join(dir, 'snapshot.json'))).mode & 0o777).toBe(0o600);
    expect(JSON.parse(await readFile(join(dir, 'snapshot.json'), 'utf8'))).toMatchObject({ v: 1, gen: 1, seq: 2 });
  });

  it('releases the lock on close', async () => {
    const ledger = await open();
    expect(lockPid(await readFile(join(dir, 'LOCK'), 'utf8'))).toBe(process.pid);
    await ledger.close();
    expect(await readdir(dir)).not.toContain('LOCK');
  });

  it('fails fast with the path and errno for a state.dir under /proc (mkdir -p would spin there)', { timeout: 2000 }, async () => {
    const err = await openFileLedger({ dir: '/proc/ibw-state/ledger' }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(DaemonError);
    expect(err).toMatchObject({ kind: 'store', code: 'ENOENT' });
    expect((err as Error).message).toContain('state.dir /proc/ibw-state/ledger: mkdir /proc/ibw-state failed');
  });

  it('rejects a bad groupCommitMs instead of clamping it', async () => {
    await expect(open({ groupCommitMs: -1 })).rejects.toThrow(/Expected `groupCommitMs` to be a finite number >= 0, got `-1`/);
  });
});

describe('group commit', () => {
  it('appends within groupCommitMs share one write and one fsync, and resolve only after it', async () => {
    const clock = createManualClock();
    let syncs = 0;
    const ledger = await open({
      groupCommitMs: 5,
      clock,
      fs: {
        sync: async (h) => {
          syncs += 1;
          await nodeLedgerFs.sync(h);
        },
      },
    });
    const baseline = syncs;
    let resolved = 0;
    const all = [1, 2, 3].map((i) => ledger.append([batchRec(makeBatch(i))]).then(() => (resolved += 1)));
    await clock.advance(4);
    expect(resolved).toBe(0);
    expect(ledger.stats().groupWrites).toBe(0);
    await clock.advance(1);
    await Promise.all(all);
    expect(resolved).toBe(3);
    expect(ledger.stats()).toMatchObject({ groupWrites: 1, appendedRecords: 3, seq: 3 });
    expect(syncs - baseline).toBe(1); // one fsync for the whole group
  });

  it('compact and close do not wait for the group-commit timer', async () => {
    const clock = createManualClock();
    const ledger = await open({ groupCommitMs: 1000, clock });
    const p = ledger.append([batchRec(makeBatch(1))]);
    await ledger.close(); // flushes without the clock moving
    await p;
    expect((await readLedgerReadOnly(dir)).batches.size).toBe(1);
  });

  it('per-append journal cost does not depend on the number of batches', async () => {
    const ledger = await open();
    await ledger.append(Array.from({ length: 10 }, (_, i) => batchRec(makeBatch(i))));
    const before10 = ledger.journalBytes();
    await ledger.append([batchRec(makeBatch(5, { polls: 42 }))]);
    const cost10 = ledger.journalBytes() - before10;
    await ledger.append(Array.from({ length: 1000 }, (_, i) => batchRec(makeBatch(100 + i))));
    const before1000 = ledger.journalBytes();
    await ledger.append([batchRec(makeBatch(5, { polls: 43 }))]);
    // Only the seq's extra digits differ (11 vs 1011).
    expect(ledger.journalBytes() - before1000).toBeLessThanOrEqual(cost10 + 3);
    expect(ledger.journalBytes() - before1000).toBeGreaterThanOrEqual(cost10);
  });
});

describe('stats and compaction', () => {
  it('journalBytes grows with appends and drops after compaction; old journals are deleted', async () => {
    const ledger = await open();
    expect(ledger.journalBytes()).toBe(0);
    await ledger.append([batchRec(makeBatch(1)), batchRec(makeBatch(2))]);
    const size = (await stat(journal0())).size;
    expect(ledger.journalBytes()).toBe(size);
    expect(ledger.stats()).toMatchObject({ journalRecords: 2, snapshotSeq: 0, generation: 0 });
    await ledger.compact(await ledger.load());
    expect(ledger.journalBytes()).toBe(0);
    expect(ledger.stats()).toMatchObject({ journalRecords: 0, snapshotSeq: 2, snapshotGeneration: 1, compactions: 1 });
    expect(ledger.stats().snapshotBytes).toBe((await stat(join(dir, 'snapshot.json'))).size);
    expect((await readdir(dir)).filter((n) => n.startsWith('journal'))).toEqual([]);
    await ledger.append([batchRec(makeBatch(3))]);
    expect((await readdir(dir)).filter((n) => n.startsWith('journal'))).toEqual(['journal.1.jsonl']);
    expect(ledger.stats()).toMatchObject({ seq: 3, journalRecords: 1, generation: 1 });
  });

  it('reopening keeps counting seqs and generations', async () => {
    let ledger = await open();
    await ledger.append([batchRec(makeBatch(1))]);
    await ledger.compact(await ledger.load());
    await ledger.append([batchRec(makeBatch(2))]);
    await ledger.close();
    ledger = await open();
    expect(ledger.stats()).toMatchObject({ seq: 2, generation: 1, snapshotSeq: 1, journalRecords: 1 });
    await ledger.append([batchRec(makeBatch(3))]);
    await ledger.close();
    const text = await readFile(join(dir, 'journal.1.jsonl'), 'utf8');
    expect(text.trim().split('\n').map((l) => (JSON.parse(l) as { s: number }).s)).toEqual([2, 3]);
  });
});

describe('crash leftovers', () => {
  async function seed(): Promise<void> {
    const ledger = await open();
    await ledger.append([batchRec(makeBatch(1)), batchRec(makeBatch(2))]);
    await ledger.close();
  }

  it('ignores a torn last line, warns, and truncates it so later appends are clean', async () => {
    await seed();
    const goodSize = (await stat(journal0())).size;
    await appendFile(journal0(), '{"s":3,"r":{"t":"batch","rec":{"key":"a1Te');
    const { logger, warnings } = captureLogger();
    const ledger = await open({ logger });
    expect([...(await ledger.load()).batches.keys()]).toEqual([makeBatch(1).key, makeBatch(2).key]);
    expect((await stat(journal0())).size).toBe(goodSize);
    expect(warnings().map((w) => w.msg).join('\n')).toMatch(/incomplete record/);
    expect(warnings().some((w) => w.file === journal0() && w.line === 3)).toBe(true);
    await ledger.append([batchRec(makeBatch(3))]);
    await ledger.close();
    const again = await open();
    expect((await again.load()).batches.size).toBe(3);
  });

  it('treats a complete line with a bad checksum at the end as torn, and an unterminated valid line too', async () => {
    await seed();
    const good = encodeJournalLine(3, JSON.stringify(batchRec(makeBatch(3))));
    await appendFile(journal0(), good.replace('"polls":3', '"polls":4')); // checksum no longer matches
    let ledger = await open();
    expect((await ledger.load()).batches.size).toBe(2);
    await ledger.close();
    await appendFile(journal0(), good.slice(0, -1)); // valid text, missing its newline
    ledger = await open();
    expect((await ledger.load()).batches.size).toBe(2);
  });

  it('fails with LedgerCorrupt naming the file and line when a middle line is damaged', async () => {
    const ledger = await open();
    await ledger.append([batchRec(makeBatch(1)), batchRec(makeBatch(2)), batchRec(makeBatch(3))]);
    await ledger.close();
    const lines = (await readFile(journal0(), 'utf8')).split('\n');
    lines[1] = lines[1]!.replace('"polls":3', '"polls":5');
    await writeFile(journal0(), lines.join('\n'));
    const err = await open().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(DaemonError);
    expect(err).toMatchObject({ kind: 'store', code: 'LedgerCorrupt' });
    expect((err as Error).message).toContain(journal0());
    expect((err as Error).message).toMatch(/line 2\b/);
    // The failed open released the lock.
    expect(await readdir(dir)).not.toContain('LOCK');
  });

  it('ignores and removes truncated snapshot temp files', async () => {
    let ledger = await open();
    await ledger.append([batchRec(makeBatch(1))]);
    await ledger.compact(await ledger.load());
    await ledger.append([batchRec(makeBatch(2))]);
    await ledger.close();
    const snapshot = await readFile(join(dir, 'snapshot.json'), 'utf8');
    await writeFile(join(dir, 'snapshot.json.tmp-999-1'), snapshot.slice(0, 20));
    await writeFile(join(dir, 'snapshot.json.tmp-999-2'), '');
    ledger = await open();
    expect([...(await ledger.load()).batches.keys()]).toEqual([makeBatch(1).key, makeBatch(2).key]);
    expect((await readdir(dir)).filter((n) => n.includes('tmp'))).toEqual([]);
  });

  it('ignores journals older than the snapshot (crash after the rename, before the deletion)', async () => {
    let ledger = await open();
    await ledger.append([batchRec(makeBatch(1, { polls: 1 }))]);
    await copyFile(journal0(), join(dir, 'old.jsonl'));
    await ledger.compact(await ledger.load());
    await ledger.append([batchRec(makeBatch(1, { polls: 2 }))]);
    await ledger.close();
    await copyFile(join(dir, 'old.jsonl'), journal0()); // as if the deletion never happened
    ledger = await open();
    expect((await ledger.load()).batches.get(makeBatch(1).key)?.polls).toBe(2);
    expect(await readdir(dir)).not.toContain('journal.0.jsonl');
  });

  it('skips journal records at or below the snapshot seq, and rejects a gap', async () => {
    const { mkdir } = await import('node:fs/promises');
    await mkdir(dir, { recursive: true });
    const state = { batches: new Map([[makeBatch(1).key, makeBatch(1, { polls: 10 })]]), outbox: new Map() };
    await writeFile(join(dir, 'snapshot.json'), encodeSnapshotHeader(0, 2) + encodeSnapshotBody(state));
    const line = (seq: number, polls: number): string =>
      encodeJournalLine(seq, JSON.stringify(batchRec(makeBatch(1, { polls }))));
    await writeFile(journal0(), line(1, 1) + line(2, 2) + line(3, 30));
    const ledger = await open();
    expect((await ledger.load()).batches.get(makeBatch(1).key)?.polls).toBe(30);
    await ledger.close();
    await appendFile(journal0(), line(5, 50));
    const err = await open().catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'LedgerCorrupt' });
    expect((err as Error).message).toMatch(/records 4\.\.4 are missing/);
    // Still corrupt, not LedgerLocked: the failed open released the lock.
    await expect(openFileLedger({ dir })).rejects.toMatchObject({ code: 'LedgerCorrupt' });
  });

  it('drops records of a failed write that a later journal superseded', async () => {
    const { mkdir } = await import('node:fs/promises');
    await mkdir(dir, { recursive: true });
    const line = (seq: number, polls: number): string =>
      encodeJournalLine(seq, JSON.stringify(batchRec(makeBatch(1, { polls }))));
    await writeFile(journal0(), line(1, 1) + line(2, 2));
    await writeFile(join(dir, 'journal.1.jsonl'), line(2, 20) + line(3, 30));
    const { logger, warnings } = captureLogger();
    const ledger = await open({ logger });
    expect((await ledger.load()).batches.get(makeBatch(1).key)?.polls).toBe(30);
    expect(ledger.stats().seq).toBe(3);
    expect(warnings().some((w) => /superseded/.test(w.msg))).toBe(true);
  });

  it('writes one record per line, and still reads an older single-line snapshot', async () => {
    const { mkdir } = await import('node:fs/promises');
    const ledger = await open();
    await ledger.append([batchRec(makeBatch('1')), batchRec(makeBatch('2'))]);
    await ledger.compact(await ledger.load());
    await ledger.close();
    const text = await readFile(join(dir, 'snapshot.json'), 'utf8');
    expect(text.split('\n').filter((l) => l.startsWith('{"key"'))).toHaveLength(2);
    // The single-line form (what the first version wrote) loads too.
    const single = JSON.stringify(JSON.parse(text));
    await mkdir(dir, { recursive: true });
    await writeFile(join(dir, 'snapshot.json'), `${single}\n`);
    const state = await readLedgerReadOnly(dir);
    expect([...state.batches.keys()].sort()).toEqual([makeBatch('1').key, makeBatch('2').key].sort());
  });

  it('fails clearly on a corrupt snapshot', async () => {
    const { mkdir } = await import('node:fs/promises');
    await mkdir(dir, { recursive: true });
    await writeFile(join(dir, 'snapshot.json'), '{"v":1,"gen":0,"seq":0,"batches":[');
    await expect(open()).rejects.toThrow(new RegExp(`snapshot ${join(dir, 'snapshot.json')} is corrupt`));
  });
});

describe('lock', () => {
  it('a second open of the same directory fails with LedgerLocked naming dir and pid', async () => {
    await open();
    const err = await openFileLedger({ dir }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(DaemonError);
    expect(err).toMatchObject({ kind: 'store', scope: 'process', code: 'LedgerLocked' });
    expect((err as Error).message).toContain(dir);
    expect((err as Error).message).toContain(`process ${process.pid}`);
  });

  it('fails when another live process holds the lock', async () => {
    const { mkdir } = await import('node:fs/promises');
    await mkdir(dir, { recursive: true });
    // The parent of this test process is alive for sure.
    await writeFile(join(dir, 'LOCK'), `${process.ppid}\n`);
    await expect(open()).rejects.toThrow(new RegExp(`locked by process ${process.ppid}`));
    expect(await readFile(join(dir, 'LOCK'), 'utf8')).toBe(`${process.ppid}\n`);
  });

  it.each([
    ['a dead pid', () => String(deadPid())],
    ['our own pid from a previous incarnation (pid 1 in a container)', () => String(process.pid)],
    ['garbage', () => 'not a pid'],
  ])('takes over a stale lock holding %s, with a warning', async (_label, content) => {
    const { mkdir } = await import('node:fs/promises');
    await mkdir(dir, { recursive: true });
    await writeFile(join(dir, 'LOCK'), `${content()}\n`);
    const { logger, warnings } = captureLogger();
    await open({ logger });
    expect(lockPid(await readFile(join(dir, 'LOCK'), 'utf8'))).toBe(process.pid);
    expect(warnings().some((w) => /stale ledger lock/.test(w.msg))).toBe(true);
  });
});

/** The pid on the first line of a LOCK file (what every version writes and reads). */
function lockPid(text: string): number {
  return Number(text.split('\n')[0]);
}

function deadPid(): number {
  const child = spawnSync(process.execPath, ['-e', 'process.exit(0)']);
  expect(child.pid).toBeGreaterThan(0);
  return child.pid;
}

describe('readLedgerReadOnly', () => {
  it('reads while the writer holds the lock, without touching a torn tail', async () => {
    const ledger = await open();
    await ledger.append([batchRec(makeBatch(1)), eventRec('e1')]);
    await ledger.compact(await ledger.load());
    await ledger.append([batchRec(makeBatch(2))]);
    const path = join(dir, 'journal.1.jsonl');
    await appendFile(path, '{"s":4,"r":{"t":"ba');
    const size = (await stat(path)).size;
    const state = await readLedgerReadOnly(dir);
    expect([...state.batches.keys()]).toEqual([makeBatch(1).key, makeBatch(2).key]);
    expect([...state.outbox.keys()]).toEqual(['e1']);
    expect((await stat(path)).size).toBe(size);
    expect(lockPid(await readFile(join(dir, 'LOCK'), 'utf8'))).toBe(process.pid);
  });

  it('reads a missing directory as an empty ledger', async () => {
    const state = await readLedgerReadOnly(join(dir, 'nope'));
    expect(plain(state)).toEqual({ batches: [], outbox: [] });
  });

  it('always sees a consistent state while the writer appends and compacts', async () => {
    const ledger = await open();
    const state = await ledger.load();
    let acked = 0;
    let stop = false;
    const writer = (async () => {
      for (let i = 0; i < 200; i += 1) {
        const rec = makeBatch(i);
        await ledger.append([batchRec(rec)]);
        state.batches.set(rec.key, rec);
        acked = i + 1;
        if (i % 15 === 0) await ledger.compact(state);
      }
      stop = true;
    })();
    let reads = 0;
    while (!stop) {
      const before = acked;
      const seen = await readLedgerReadOnly(dir);
      for (let i = 0; i < before; i += 1) expect(seen.batches.has(makeBatch(i).key)).toBe(true);
      reads += 1;
    }
    await writer;
    expect(reads).toBeGreaterThan(0);
    expect((await readLedgerReadOnly(dir)).batches.size).toBe(200);
  });
});
