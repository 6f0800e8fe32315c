/**
 * The ledger lock's lease, in one process, with a manual clock: LOCK files of "other processes" are written by
 * the test (their mtime is their last renewal). Cross-process runs are in test/integration/ledger/lease.test.ts.
 */
import { spawnSync } from 'node:child_process';
import { mkdir, readdir, readFile, readlink, rm, stat, utimes, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

import { afterEach, beforeEach, describe, expect, it } from 'vitest';

import type { ManualClock } from '../../../src/core/clock.js';
import { createManualClock } from '../../../src/core/clock.js';
import { DaemonError } from '../../../src/errors.js';
import type { FileLedger, FileLedgerOptions } from '../../../src/ledger/file-ledger.js';
import { openFileLedger } from '../../../src/ledger/file-ledger.js';
import { leaseMsFromEnv } from '../../../src/ledger/lock.js';
import { batchRec, captureLogger, makeBatch, tempDir } from './helpers.js';

const T0 = 1_800_000_000_000;
const LEASE_MS = 1000;

let dir: string;
let cleanup: () => Promise<void>;
let opened: FileLedger[];
let clock: ManualClock;

beforeEach(async () => {
  ({ dir, cleanup } = await tempDir());
  await mkdir(dir, { recursive: true });
  opened = [];
  clock = createManualClock(T0);
});
afterEach(async () => {
  for (const ledger of opened) await ledger.close().catch(() => undefined);
  await cleanup();
});

const lockPath = (): string => join(dir, 'LOCK');

interface Owner {
  token: string;
  host: string;
  pid: number;
  pidNs: string | null;
  bootId: string | null;
  procStart: string | null;
}

/** Writes a lease LOCK as another holder would, last renewed at `renewedAt`. */
async function writeLease(owner: Partial<Owner>, renewedAt = T0): Promise<string> {
  const full = { token: 'other-token', host: 'other-host', pid: 1, pidNs: 'pid:[other]', bootId: 'other-boot', procStart: null, ...owner };
  const text = `${full.pid}\n${JSON.stringify({ v: 2, ...full, startedAt: renewedAt, leaseMs: LEASE_MS })}\n`;
  await writeFile(lockPath(), text, { mode: 0o600 });
  await utimes(lockPath(), renewedAt / 1000, renewedAt / 1000);
  return text;
}

async function ownNamespace(): Promise<{ pidNs: string; bootId: string }> {
  return {
    pidNs: await readlink('/proc/self/ns/pid'),
    bootId: (await readFile('/proc/sys/kernel/random/boot_id', 'utf8')).trim(),
  };
}

function procStart(pid: number): Promise<string> {
  return readFile(`/proc/${pid}/stat`, 'utf8').then((t) => t.slice(t.lastIndexOf(')') + 2).split(' ')[19]!);
}

function open(options: Partial<FileLedgerOptions> = {}): Promise<FileLedger> {
  return openFileLedger({ dir, groupCommitMs: 0, lease: { ms: LEASE_MS, clock }, ...options }).then((l) => {
    opened.push(l);
    return l;
  });
}

/** Settles `p` while moving the manual clock on in `stepMs` steps, each once the opener sleeps again. */
async function driveUntilSettled<T>(p: Promise<T>, stepMs: number, onStep?: (elapsedMs: number) => Promise<void>): Promise<{ value?: T; error?: unknown; elapsedMs: number }> {
  let done = false;
  const settled = p.then(
    (value) => ({ value }),
    (error: unknown) => ({ error }),
  );
  void settled.then(() => (done = true));
  const start = clock.now();
  while (!done) {
    // Wait for the real file I/O between sleeps: the opener is asleep again, or finished.
    while (!done && clock.pendingSleeps() === 0) await new Promise((r) => setImmediate(r));
    if (done) break;
    await clock.advance(stepMs);
    if (onStep) await onStep(clock.now() - start);
  }
  return { ...(await settled), elapsedMs: clock.now() - start };
}

describe('a lease held in another pid namespace', () => {
  it('is taken over only once it lapsed, with a warning, and the new holder writes a journal of its own', async () => {
    const first = await open({ lease: { ms: LEASE_MS, clock: createManualClock(T0) } });
    await first.append([batchRec(makeBatch(1))]);
    await first.close();
    await writeLease({}, T0);
    const { logger, lines } = captureLogger();
    const result = await driveUntilSettled(open({ logger }), 100);
    expect(result.error).toBeUndefined();
    expect(result.elapsedMs).toBeGreaterThan(LEASE_MS);
    expect(lines.some((l) => /waiting for a renewal or for the lease to lapse/.test(l.msg))).toBe(true);
    expect(lines.some((l) => l.level === 40 && /lapsed ledger lease/.test(l.msg))).toBe(true);
    const ledger = result.value!;
    expect(JSON.parse((await readFile(lockPath(), 'utf8')).split('\n')[1]!)).toMatchObject({ v: 2, pid: process.pid });
    await ledger.append([batchRec(makeBatch(2))]);
    expect((await readdir(dir)).filter((n) => n.startsWith('journal.')).sort()).toEqual(['journal.0.jsonl', 'journal.1.jsonl']);
    expect([...(await ledger.load()).batches.keys()]).toEqual([makeBatch(1).key, makeBatch(2).key]);
  });

  it('refuses as soon as it sees a renewal, and leaves the lock alone', async () => {
    const text = await writeLease({}, T0);
    const result = await driveUntilSettled(open(), 100, async (elapsed) => {
      if (elapsed === 300) await utimes(lockPath(), (T0 + 300) / 1000, (T0 + 300) / 1000);
    });
    expect(result.error).toBeInstanceOf(DaemonError);
    expect(result.error).toMatchObject({ code: 'LedgerLocked', kind: 'store' });
    expect((result.error as Error).message).toContain('process 1 on other-host');
    expect((result.error as Error).message).toContain('which renews its lease');
    expect(result.elapsedMs).toBeLessThan(LEASE_MS);
    expect(await readFile(lockPath(), 'utf8')).toBe(text);
  });

  it('is not taken over because pid 1 looks dead or alive here: only the lapse counts', async () => {
    // pid 1 of this namespace is alive; the holder's pid 1 is another process. Nothing is decided from it.
    await writeLease({ pid: 1 }, T0 - LEASE_MS / 2);
    const result = await driveUntilSettled(open(), 100);
    expect(result.value).toBeDefined();
    expect(result.elapsedMs).toBeGreaterThan(LEASE_MS / 2 - 100);
  });
});

describe.runIf(process.platform === 'linux')('a lease held in this pid namespace', () => {
  it('whose pid is dead is taken over at once (kill -9 and restart stay quick)', async () => {
    const child = spawnSync(process.execPath, ['-e', 'process.exit(0)']);
    await writeLease({ pid: child.pid, ...(await ownNamespace()) }, T0);
    const { logger, warnings } = captureLogger();
    await open({ logger });
    expect(warnings().some((w) => /stale ledger lock \(its process is gone\)/.test(w.msg))).toBe(true);
  });

  it('whose pid is alive refuses at once, without waiting for the lease', async () => {
    const text = await writeLease({ pid: process.ppid, procStart: await procStart(process.ppid), ...(await ownNamespace()) }, T0);
    const err = await open().catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'LedgerLocked' });
    expect((err as Error).message).toContain(`process ${process.ppid} on other-host`);
    expect(clock.now()).toBe(T0);
    expect(await readFile(lockPath(), 'utf8')).toBe(text);
  });

  it('whose pid now belongs to another process (start time differs) is stale', async () => {
    await writeLease({ pid: process.ppid, procStart: '1', ...(await ownNamespace()) }, T0);
    await open();
    expect(JSON.parse((await readFile(lockPath(), 'utf8')).split('\n')[1]!)).toMatchObject({ pid: process.pid });
  });
});

describe('the holder', () => {
  it('renews by refreshing the mtime every lease / 3', async () => {
    await open();
    await clock.advance(LEASE_MS / 3 + 1);
    await waitFor(async () => Math.abs((await stat(lockPath())).mtimeMs - Math.floor(T0 + LEASE_MS / 3)) < 1);
    await waitFor(async () => clock.pendingSleeps() > 0); // the next renewal is scheduled
    await clock.advance(LEASE_MS / 3 + 1);
    await waitFor(async () => (await stat(lockPath())).mtimeMs > T0 + LEASE_MS / 2);
  });

  it('whose lease was taken stops writing: appends fail, onLeaseLost fires once, close rejects and keeps the new lock', async () => {
    const lost: DaemonError[] = [];
    const ledger = await open({ onLeaseLost: (e) => lost.push(e) });
    await ledger.append([batchRec(makeBatch(1))]);
    const theirs = await writeLease({ token: 'new-owner', host: 'container-b' }, T0);
    await clock.advance(LEASE_MS / 3 + 1);
    await waitFor(async () => lost.length > 0);
    expect(lost).toHaveLength(1);
    expect(lost[0]).toMatchObject({ code: 'LedgerLeaseLost', kind: 'store', scope: 'process' });
    expect(lost[0]!.message).toContain('taken over by process 1 on container-b');
    const err = await ledger.append([batchRec(makeBatch(2))]).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'LedgerLeaseLost' });
    const journal = await readFile(join(dir, 'journal.0.jsonl'), 'utf8');
    expect(journal.trim().split('\n')).toHaveLength(1);
    await expect(ledger.close()).rejects.toMatchObject({ code: 'LedgerCloseFailed' });
    expect(await readFile(lockPath(), 'utf8')).toBe(theirs);
    expect(lost).toHaveLength(1);
  });

  it('checks before writing when a renewal is overdue (a stalled process), and refuses a lease it cannot confirm', async () => {
    const ledger = await open();
    const mine = await readFile(lockPath(), 'utf8');
    // The lock cannot be read back (here: replaced by a directory), so renewals fail.
    await rm(lockPath());
    await mkdir(lockPath());
    await clock.advance(LEASE_MS); // renewals due meanwhile failed
    await expect(ledger.append([batchRec(makeBatch(1))])).rejects.toMatchObject({ code: 'LedgerLeaseUnconfirmed' });
    await rm(lockPath(), { recursive: true });
    await writeFile(lockPath(), mine);
    await ledger.append([batchRec(makeBatch(1))]);
    expect((await ledger.load()).batches.size).toBe(1);
  });
});

describe('compatibility and settings', () => {
  it('still reads an old pid-only LOCK: a dead pid is stale, and the new lock keeps the pid on line 1', async () => {
    const child = spawnSync(process.execPath, ['-e', 'process.exit(0)']);
    await writeFile(lockPath(), `${child.pid}\n`);
    await open();
    const lines = (await readFile(lockPath(), 'utf8')).split('\n');
    expect(lines[0]).toBe(String(process.pid));
    expect(JSON.parse(lines[1]!)).toMatchObject({ v: 2, pid: process.pid, leaseMs: LEASE_MS });
  });

  it('IBW_LEDGER_LEASE_MS sets the default lease and is validated', () => {
    expect(leaseMsFromEnv({})).toBeUndefined();
    expect(leaseMsFromEnv({ IBW_LEDGER_LEASE_MS: '500' })).toBe(500);
    expect(() => leaseMsFromEnv({ IBW_LEDGER_LEASE_MS: '5' })).toThrow(/IBW_LEDGER_LEASE_MS must be an integer number of milliseconds >= 50, got "5"/);
    expect(() => leaseMsFromEnv({ IBW_LEDGER_LEASE_MS: '1.5s' })).toThrow(/IBW_LEDGER_LEASE_MS/);
  });
});

/** Waits for the real file I/O that a clock step started (bounded only to fail rather than hang). */
async function waitFor(cond: () => Promise<boolean>): Promise<void> {
  for (let i = 0; i < 2000; i += 1) {
    if (await cond()) return;
    await new Promise((r) => setTimeout(r, 5));
  }
  throw new Error('condition never became true');
}
