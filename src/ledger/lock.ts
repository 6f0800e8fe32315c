/**
 * Single-writer lock of a ledger directory: a lease in the `LOCK` file that its holder renews.
 *
 * `LOCK` holds two lines: the owner's pid (what older versions read), then a JSON owner record
 * `{v:2, token, host, pid, startedAt, leaseMs, pidNs, bootId, procStart}`. The file is written complete under
 * a temporary name and hard-linked to `LOCK`, which fails with EEXIST when it exists (an exclusive create
 * that never exposes an empty lock file). The holder refreshes the file's mtime every `leaseMs / 3` and reads
 * the token back; a token that is no longer its own means another process took the lease over, and from then
 * on every check fails with `LedgerLeaseLost` (the ledger stops writing).
 *
 * Another process finding a lease lock:
 * - same kernel boot and same pid namespace as the holder (recorded `bootId` and `pidNs`): the pid means the
 *   same process for both, so a dead pid (or one reused by another process, seen from its start time) is
 *   stale and taken over at once, and a live one refuses the open;
 * - otherwise (another container, another host on a shared volume, a platform without /proc): the pid says
 *   nothing. The lease is taken over only once it has lapsed, i.e. the mtime is older than the holder's
 *   `leaseMs`. While it has not, the opener waits (at most one lease) and refuses as soon as it sees a renewal.
 * - a lock of the old format (a pid only): as before, refused while that pid is alive here, else stale.
 *
 * Taking a stale lock over renames it to a private name first and checks that it renamed what it judged
 * stale (content and mtime), so two processes taking over at once cannot both win.
 *
 * Times come from the lock's clock (`LeaseOptions.clock`), also to set the mtime, so the holder's renewals and
 * the opener's lapse test use one time base: on one host the kernel's, across hosts the hosts' clocks must
 * agree to well within a lease.
 */
import { randomBytes } from 'node:crypto';
import type { FileHandle } from 'node:fs/promises';
import { link, open, readFile, readlink, rename, unlink, utimes, writeFile } from 'node:fs/promises';
import { hostname } from 'node:os';
import { join, resolve } from 'node:path';

import type { Logger } from 'pino';

import type { Clock } from '../core/clock.js';
import { systemClock } from '../core/clock.js';
import { DaemonError } from '../errors.js';
import { LOCK_FILE } from './journal-format.js';
import { errnoCode, storeError } from './ledger-fs.js';

/** Default lease: a holder that stops renewing loses the directory this long after its last renewal. */
export const DEFAULT_LEASE_MS = 15_000;
/** Smallest accepted lease (tests use short ones); renewals run every lease / 3. */
export const MIN_LEASE_MS = 50;

/** Who holds a lock. Fields other than `token` and `pid` may be null where the platform cannot tell. */
export interface LockOwner {
  /** Random id of this holding; renewals compare it. */
  token: string;
  host: string;
  pid: number;
  /** Epoch ms when the lock was taken. */
  startedAt: number;
  /** `/proc/self/ns/pid` link text: processes with equal values see the same pids. */
  pidNs: string | null;
  /** `/proc/sys/kernel/random/boot_id`. */
  bootId: string | null;
  /** Start time of the process in clock ticks since boot (`/proc/<pid>/stat` field 22): detects pid reuse. */
  procStart: string | null;
}

/** Lease settings of {@link acquireLedgerLock}. */
export interface LeaseOptions {
  /** @default 15000, or the `IBW_LEDGER_LEASE_MS` environment variable when set */
  ms?: number;
  /** @default systemClock */
  clock?: Clock;
  /**
   * Overrides parts of the recorded identity. For tests that stand in for another container: a different
   * `pidNs` (and `pid: 1`) makes other openers rely on the lease alone.
   */
  identity?: Partial<Omit<LockOwner, 'token' | 'startedAt'>>;
  /** Called once when a renewal or check finds the lease taken over. */
  onLost?: (error: DaemonError) => void;
}

/** A held lock. */
export interface LedgerLock {
  readonly path: string;
  readonly leaseMs: number;
  /**
   * Resolves when this process may write: the lease is ours and was renewed recently (renewing now when a
   * renewal is overdue). Rejects with `LedgerLeaseLost` once another process has taken the lease over, or
   * `LedgerLeaseUnconfirmed` when it could not be renewed for most of a lease.
   */
  check(): Promise<void>;
  /** The error once the lease is lost, else null. */
  lost(): DaemonError | null;
  /**
   * True when the lock was taken over from a lapsed lease: its old holder might be frozen rather than dead and
   * write once more before it notices, so the new holder writes to a journal of its own (file-ledger.ts).
   */
  readonly tookOverLapsed: boolean;
  /** Stops renewing and removes the lock file if it is still ours. Rejects when the removal fails. */
  release(): Promise<void>;
}

/** Directories whose lock this process holds. */
const held = new Set<string>();
let tempCounter = 0;

type LockContent =
  | { kind: 'missing' }
  | { kind: 'legacy'; pid: number | null; raw: string; mtimeMs: number }
  | { kind: 'lease'; owner: LockOwner; leaseMs: number; raw: string; mtimeMs: number };

/** The lease from the `IBW_LEDGER_LEASE_MS` environment variable, or undefined when unset. */
export function leaseMsFromEnv(env: NodeJS.ProcessEnv = process.env): number | undefined {
  const text = env.IBW_LEDGER_LEASE_MS;
  if (text === undefined || text === '') return undefined;
  const value = Number(text);
  if (!Number.isInteger(value) || value < MIN_LEASE_MS) {
    throw new DaemonError(`IBW_LEDGER_LEASE_MS must be an integer number of milliseconds >= ${MIN_LEASE_MS}, got ${JSON.stringify(text)}`, {
      kind: 'config',
      scope: 'process',
      code: 'InvalidLease',
    });
  }
  return value;
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

async function readProcStart(pid: number | 'self'): Promise<string | null> {
  try {
    const text = await readFile(`/proc/${pid}/stat`, 'utf8');
    // NOTE: the command name (field 2) may hold spaces and parentheses; fields after the last ')' are fixed.
    const fields = text.slice(text.lastIndexOf(')') + 2).split(' ');
    return fields[19] ?? null; // field 22 overall
  } catch {
    return null;
  }
}

async function ownIdentity(clock: Clock, override: LeaseOptions['identity']): Promise<LockOwner> {
  const pidNs = await readlink('/proc/self/ns/pid').catch(() => null);
  const bootId = await readFile('/proc/sys/kernel/random/boot_id', 'utf8').then(
    (t) => t.trim(),
    () => null,
  );
  return {
    token: randomBytes(12).toString('hex'),
    host: hostname(),
    pid: process.pid,
    startedAt: clock.now(),
    pidNs,
    bootId,
    procStart: await readProcStart('self'),
    ...override,
  };
}

function encodeLock(owner: LockOwner, leaseMs: number): string {
  return `${owner.pid}\n${JSON.stringify({ v: 2, ...owner, leaseMs })}\n`;
}

function parseOwner(line: string): { owner: LockOwner; leaseMs: number } | null {
  try {
    const o = JSON.parse(line) as Record<string, unknown>;
    if (o.v !== 2 || typeof o.token !== 'string' || typeof o.pid !== 'number' || typeof o.leaseMs !== 'number') return null;
    const str = (v: unknown): string | null => (typeof v === 'string' ? v : null);
    return {
      owner: {
        token: o.token,
        host: str(o.host) ?? '?',
        pid: o.pid,
        startedAt: typeof o.startedAt === 'number' ? o.startedAt : 0,
        pidNs: str(o.pidNs),
        bootId: str(o.bootId),
        procStart: str(o.procStart),
      },
      leaseMs: o.leaseMs,
    };
  } catch {
    return null;
  }
}

async function readLock(lockPath: string): Promise<LockContent> {
  let raw: string;
  let mtimeMs: number;
  let handle: FileHandle | undefined;
  try {
    // NOTE: one handle for both, so the mtime belongs to the content read.
    handle = await open(lockPath, 'r');
    mtimeMs = (await handle.stat()).mtimeMs;
    raw = await handle.readFile('utf8');
  } catch (err) {
    if (errnoCode(err) === 'ENOENT') return { kind: 'missing' };
    throw storeError('read', lockPath, err);
  } finally {
    await handle?.close().catch(() => undefined);
  }
  const lines = raw.split('\n');
  const parsed = lines[1] ? parseOwner(lines[1]) : null;
  if (parsed) return { kind: 'lease', ...parsed, raw, mtimeMs };
  const pid = Number.parseInt(lines[0]?.trim() ?? '', 10);
  return { kind: 'legacy', pid: Number.isSafeInteger(pid) && pid > 0 ? pid : null, raw, mtimeMs };
}

function describeOwner(owner: LockOwner): string {
  return `process ${owner.pid} on ${owner.host}`;
}

function lockedError(dir: string, lockPath: string, who: string, detail = ''): DaemonError {
  return new DaemonError(
    `ledger directory ${dir} is locked by ${who} (${lockPath})${detail}: another iot-batch-watcher is using it. ` +
      `If no such process runs, delete ${lockPath}.`,
    { kind: 'store', scope: 'process', code: 'LedgerLocked' },
  );
}

/** What the holder of a lease lock looks like from here. */
async function holderState(content: Extract<LockContent, { kind: 'lease' }>, me: LockOwner): Promise<'alive' | 'dead' | 'unknown'> {
  const { owner } = content;
  // NOTE: a pid is meaningful only inside one pid namespace of one boot; two containers are both pid 1.
  if (owner.pidNs === null || owner.bootId === null || owner.pidNs !== me.pidNs || owner.bootId !== me.bootId) return 'unknown';
  if (!isAlive(owner.pid)) return 'dead';
  if (owner.procStart !== null) {
    const start = await readProcStart(owner.pid);
    if (start !== null && start !== owner.procStart) return 'dead'; // the pid was reused
  }
  if (owner.pid === process.pid) return 'dead'; // ours, but not held (see `held`): left behind by this process
  return 'alive';
}

/**
 * Takes the lock of `dir` (which must exist), or throws `DaemonError{code:'LedgerLocked'}`. May wait up to one
 * lease for a holder in another pid namespace to show it is alive (renewal: refuse) or not (lapse: take over).
 */
export async function acquireLedgerLock(dir: string, logger?: Logger, lease: LeaseOptions = {}): Promise<LedgerLock> {
  const leaseMs = lease.ms ?? leaseMsFromEnv() ?? DEFAULT_LEASE_MS;
  if (!Number.isFinite(leaseMs) || leaseMs < MIN_LEASE_MS) {
    throw new DaemonError(`Expected the ledger lease to be a number >= ${MIN_LEASE_MS} ms, got \`${String(leaseMs)}\``, {
      kind: 'internal',
      scope: 'process',
      code: 'InvalidOption',
    });
  }
  const clock = lease.clock ?? systemClock;
  const key = resolve(dir);
  const lockPath = join(dir, LOCK_FILE);
  if (held.has(key)) throw lockedError(dir, lockPath, `process ${process.pid} (this one)`);
  held.add(key);
  try {
    const me = await ownIdentity(clock, lease.identity);
    const lapsed = await takeLock(dir, lockPath, me, leaseMs, clock, logger);
    return new HeldLock(key, lockPath, me, leaseMs, clock, logger, lease.onLost, lapsed);
  } catch (err) {
    held.delete(key);
    throw err;
  }
}

/** Takes the lock; resolves true when it took over a lapsed lease. */
async function takeLock(dir: string, lockPath: string, me: LockOwner, leaseMs: number, clock: Clock, logger?: Logger): Promise<boolean> {
  tempCounter += 1;
  const tempPath = join(dir, `${LOCK_FILE}.${process.pid}.${tempCounter}.${me.token.slice(0, 8)}.tmp`);
  try {
    await writeFile(tempPath, encodeLock(me, leaseMs), { mode: 0o600, flag: 'wx' });
    await setMtime(tempPath, clock.now());
  } catch (err) {
    throw storeError('create lock file in', dir, err);
  }
  try {
    let lapsed = false;
    for (let attempt = 0; attempt < 5; attempt += 1) {
      if (await linkLock(tempPath, lockPath, me, leaseMs)) return lapsed;
      const content = await readLock(lockPath);
      if (content.kind === 'missing') continue; // released meanwhile: try again
      const stale = await judge(dir, lockPath, content, me, clock, logger);
      if (stale === 'changed') continue;
      await removeStale(lockPath, stale.content, me, logger);
      lapsed ||= stale.lapsed;
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

async function linkLock(tempPath: string, lockPath: string, me: LockOwner, leaseMs: number): Promise<boolean> {
  try {
    await link(tempPath, lockPath);
    return true;
  } catch (err) {
    const code = errnoCode(err);
    if (code === 'EEXIST') return false;
    if (code === 'EPERM' || code === 'ENOTSUP' || code === 'EOPNOTSUPP' || code === 'ENOSYS') {
      // NOTE: file systems without hard links: fall back to a plain exclusive create.
      try {
        await writeFile(lockPath, encodeLock(me, leaseMs), { flag: 'wx', mode: 0o600 });
        return true;
      } catch (createErr) {
        if (errnoCode(createErr) === 'EEXIST') return false;
        throw storeError('create', lockPath, createErr);
      }
    }
    throw storeError('create', lockPath, err);
  }
}

/**
 * Decides about an existing lock: returns it when it is stale (to be removed), 'changed' when it changed while
 * we looked, or throws LedgerLocked when its holder is alive.
 */
async function judge(
  dir: string,
  lockPath: string,
  content: Exclude<LockContent, { kind: 'missing' }>,
  me: LockOwner,
  clock: Clock,
  logger?: Logger,
): Promise<{ content: Exclude<LockContent, { kind: 'missing' }>; lapsed: boolean } | 'changed'> {
  if (content.kind === 'legacy') {
    const pid = content.pid;
    if (pid !== null && pid !== process.pid && isAlive(pid)) throw lockedError(dir, lockPath, `process ${pid}`);
    logger?.warn({ file: lockPath, stalePid: pid }, 'taking over a stale ledger lock (its process is gone)');
    return { content, lapsed: false };
  }
  const state = await holderState(content, me);
  if (state === 'alive') throw lockedError(dir, lockPath, describeOwner(content.owner));
  if (state === 'dead') {
    logger?.warn({ file: lockPath, stalePid: content.owner.pid, host: content.owner.host }, 'taking over a stale ledger lock (its process is gone)');
    return { content, lapsed: false };
  }
  // Another pid namespace or host: only the lease can tell.
  const pollMs = Math.max(10, Math.min(1000, Math.floor(content.leaseMs / 10)));
  let announced = false;
  for (;;) {
    const ageMs = clock.now() - content.mtimeMs;
    if (ageMs > content.leaseMs) {
      logger?.warn(
        { file: lockPath, stalePid: content.owner.pid, host: content.owner.host, leaseMs: content.leaseMs, lastRenewedMsAgo: Math.round(ageMs) },
        'taking over a lapsed ledger lease (its holder stopped renewing it)',
      );
      return { content, lapsed: true };
    }
    if (!announced) {
      announced = true;
      logger?.info(
        { file: lockPath, holderPid: content.owner.pid, host: content.owner.host, waitMs: Math.ceil(content.leaseMs - ageMs) },
        'the ledger is leased by a process this one cannot see; waiting for a renewal or for the lease to lapse',
      );
    }
    await clock.sleep(Math.min(pollMs, Math.max(1, content.leaseMs - ageMs + 1)));
    const now = await readLock(lockPath);
    if (now.kind === 'missing') return 'changed';
    if (now.raw !== content.raw) return 'changed';
    if (now.mtimeMs !== content.mtimeMs) {
      throw lockedError(dir, lockPath, describeOwner(content.owner), ', which renews its lease');
    }
  }
}

/** Removes the stale lock `stale` unless it changed since it was judged (then it is put back). */
async function removeStale(lockPath: string, stale: Exclude<LockContent, { kind: 'missing' }>, me: LockOwner, logger?: Logger): Promise<void> {
  const aside = `${lockPath}.stale.${me.token}`;
  try {
    await rename(lockPath, aside);
  } catch (err) {
    if (errnoCode(err) === 'ENOENT') return;
    throw storeError('move aside the stale lock', lockPath, err);
  }
  const moved = await readLock(aside);
  const same = moved.kind !== 'missing' && moved.raw === stale.raw && moved.mtimeMs === stale.mtimeMs;
  if (!same && moved.kind !== 'missing') {
    // NOTE: we moved a lock that changed after we judged it (renewed, or taken by someone else): put it back.
    logger?.warn({ file: lockPath }, 'the ledger lock changed while it was being taken over; putting it back');
    try {
      await link(aside, lockPath);
    } catch (err) {
      if (errnoCode(err) !== 'EEXIST') throw storeError('restore', lockPath, err);
    }
  }
  await unlink(aside).catch(() => undefined);
}

async function setMtime(path: string, ms: number): Promise<void> {
  const seconds = ms / 1000;
  await utimes(path, seconds, seconds);
}

class HeldLock implements LedgerLock {
  private lastRenewedAt: number;
  private lostError: DaemonError | null = null;
  private released = false;
  private readonly stop = new AbortController();
  private renewing: Promise<void> | null = null;
  private readonly loop: Promise<void>;

  constructor(
    private readonly key: string,
    readonly path: string,
    private readonly me: LockOwner,
    readonly leaseMs: number,
    private readonly clock: Clock,
    private readonly logger: Logger | undefined,
    private readonly onLost: ((error: DaemonError) => void) | undefined,
    readonly tookOverLapsed: boolean,
  ) {
    this.lastRenewedAt = clock.now();
    this.loop = this.renewLoop();
  }

  lost(): DaemonError | null {
    return this.lostError;
  }

  async check(): Promise<void> {
    if (this.lostError) throw this.lostError;
    const sinceMs = this.clock.now() - this.lastRenewedAt;
    // NOTE: a renewal is due every lease / 3; one that is late (event loop stalled, process stopped) is made
    // now, before writing, so a writer never acts on a lease that may have lapsed meanwhile.
    if (sinceMs < (this.leaseMs * 2) / 3) return;
    await this.renew();
    const lost = this.lost(); // (re-read: renew() may have set it)
    if (lost) throw lost;
    if (this.clock.now() - this.lastRenewedAt >= (this.leaseMs * 2) / 3) {
      throw new DaemonError(`ledger lock ${this.path}: the lease could not be renewed; not writing until it is`, {
        kind: 'store',
        scope: 'attempt',
        code: 'LedgerLeaseUnconfirmed',
      });
    }
  }

  private async renewLoop(): Promise<void> {
    const periodMs = Math.max(1, Math.floor(this.leaseMs / 3));
    while (!this.released && !this.lostError) {
      try {
        await this.clock.sleep(periodMs, this.stop.signal);
      } catch {
        return; // released
      }
      await this.renew();
    }
  }

  /** One renewal at a time: refresh the mtime, then read the token back. */
  private renew(): Promise<void> {
    this.renewing ??= this.renewOnce().finally(() => {
      this.renewing = null;
    });
    return this.renewing;
  }

  private async renewOnce(): Promise<void> {
    if (this.released || this.lostError) return;
    const at = this.clock.now();
    try {
      // NOTE: touching first and reading after means a lock someone else took is at worst kept fresh for
      // them; what decides is the token read back.
      await setMtime(this.path, at);
      const content = await readLock(this.path);
      if (content.kind === 'lease' && content.owner.token === this.me.token) {
        this.lastRenewedAt = at;
        return;
      }
      this.markLost(content);
    } catch (err) {
      if (errnoCode(err) === 'ENOENT') {
        this.markLost({ kind: 'missing' });
        return;
      }
      this.logger?.warn({ err, file: this.path }, 'could not renew the ledger lease; will retry');
    }
  }

  private markLost(content: LockContent): void {
    const by =
      content.kind === 'lease' ? describeOwner(content.owner) : content.kind === 'legacy' ? `process ${String(content.pid)}` : 'nobody (the lock file was removed)';
    this.lostError = new DaemonError(
      `ledger lock ${this.path} was taken over by ${by}: another iot-batch-watcher owns this state directory now; this one stops writing to it`,
      { kind: 'store', scope: 'process', code: 'LedgerLeaseLost' },
    );
    this.logger?.error({ err: this.lostError, file: this.path }, 'lost the ledger lease; no more writes to the state directory');
    this.onLost?.(this.lostError);
  }

  async release(): Promise<void> {
    if (this.released) return;
    this.released = true;
    this.stop.abort();
    try {
      await this.loop;
      await this.renewing;
      if (this.lostError) return;
      const content = await readLock(this.path);
      if (content.kind === 'lease' && content.owner.token === this.me.token) await unlink(this.path);
    } catch (err) {
      if (errnoCode(err) !== 'ENOENT') throw storeError('remove the lock file', this.path, err);
    } finally {
      held.delete(this.key);
    }
  }
}
