/**
 * Single-writer lock of a ledger directory: a `LOCK` file holding the owner's pid.
 *
 * The file is written complete under a temporary name and then hard-linked to `LOCK`, which fails with EEXIST
 * when it exists (an exclusive create that never exposes an empty lock file). An existing lock whose pid is
 * alive refuses the open; one whose pid is dead (kill -9, crash) is taken over with a warning. A lock holding
 * our own pid that this process does not hold is stale too: in a container the daemon is often pid 1 on every
 * start.
 */
import { link, readFile, unlink, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';

import type { Logger } from 'pino';

import { DaemonError } from '../errors.js';
import { LOCK_FILE } from './journal-format.js';
import { errnoCode, storeError } from './ledger-fs.js';

/** Directories whose lock this process holds. */
const held = new Set<string>();
let tempCounter = 0;

/** A held lock; `release` removes the lock file if it is still ours. */
export interface LedgerLock {
  readonly path: string;
  release(): Promise<void>;
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    // EPERM: it exists but belongs to someone else.
    return errnoCode(err) === 'EPERM';
  }
}

function lockedError(dir: string, lockPath: string, pid: number): DaemonError {
  return new DaemonError(
    `ledger directory ${dir} is locked by process ${pid} (${lockPath}): another iot-batch-watcher is using it. ` +
      `If no such process runs, delete ${lockPath}.`,
    { kind: 'store', scope: 'process', code: 'LedgerLocked' },
  );
}

async function readLockPid(lockPath: string): Promise<number | null | 'missing'> {
  try {
    const text = await readFile(lockPath, 'utf8');
    const pid = Number.parseInt(text.trim().split('\n')[0] ?? '', 10);
    return Number.isSafeInteger(pid) && pid > 0 ? pid : null;
  } catch (err) {
    if (errnoCode(err) === 'ENOENT') return 'missing';
    throw storeError('read', lockPath, err);
  }
}

/** Takes the lock of `dir` (which must exist), or throws `DaemonError{code:'LedgerLocked'}`. */
export async function acquireLedgerLock(dir: string, logger?: Logger): Promise<LedgerLock> {
  const key = resolve(dir);
  const lockPath = join(dir, LOCK_FILE);
  if (held.has(key)) throw lockedError(dir, lockPath, process.pid);
  held.add(key);
  try {
    await takeLock(dir, lockPath, logger);
  } catch (err) {
    held.delete(key);
    throw err;
  }
  let released = false;
  return {
    path: lockPath,
    async release() {
      if (released) return;
      released = true;
      try {
        if ((await readLockPid(lockPath)) === process.pid) await unlink(lockPath);
      } catch (err) {
        if (errnoCode(err) !== 'ENOENT') logger?.warn({ err, file: lockPath }, 'could not remove the ledger lock');
      } finally {
        held.delete(key);
      }
    },
  };
}

async function takeLock(dir: string, lockPath: string, logger?: Logger): Promise<void> {
  tempCounter += 1;
  const tempPath = join(dir, `${LOCK_FILE}.${process.pid}.${tempCounter}.tmp`);
  try {
    await writeFile(tempPath, `${process.pid}\n`, { mode: 0o600 });
  } catch (err) {
    throw storeError('create lock file in', dir, err);
  }
  try {
    for (let attempt = 0; attempt < 5; attempt += 1) {
      try {
        await link(tempPath, lockPath);
        return;
      } catch (err) {
        const code = errnoCode(err);
        if (code !== 'EEXIST') {
          if (code === 'EPERM' || code === 'ENOTSUP' || code === 'EOPNOTSUPP' || code === 'ENOSYS') {
            // NOTE: file systems without hard links: fall back to a plain exclusive create.
            if (await exclusiveCreate(lockPath)) return;
          } else {
            throw storeError('create', lockPath, err);
          }
        }
      }
      const owner = await readLockPid(lockPath);
      if (owner === 'missing') continue; // released meanwhile: try again
      if (owner !== null && owner !== process.pid && isAlive(owner)) throw lockedError(dir, lockPath, owner);
      logger?.warn({ file: lockPath, stalePid: owner }, 'taking over a stale ledger lock (its process is gone)');
      try {
        await unlink(lockPath);
      } catch (err) {
        if (errnoCode(err) !== 'ENOENT') throw storeError('remove stale lock', lockPath, err);
      }
    }
    throw new DaemonError(`could not take the ledger lock ${lockPath}: it keeps changing`, {
      kind: 'store',
      scope: 'process',
      code: 'LedgerLocked',
    });
  } finally {
    await unlink(tempPath).catch(() => undefined);
  }
}

async function exclusiveCreate(lockPath: string): Promise<boolean> {
  try {
    await writeFile(lockPath, `${process.pid}\n`, { flag: 'wx', mode: 0o600 });
    return true;
  } catch (err) {
    if (errnoCode(err) === 'EEXIST') return false;
    throw storeError('create', lockPath, err);
  }
}
