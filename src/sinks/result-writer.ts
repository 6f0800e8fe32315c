/**
 * Result files (DESIGN.md §4, contract): `<resultsDir>/<productKey>/<applyId>.json`, or with an `accounts`
 * section (DESIGN.md §11, layout `account`) `<resultsDir>/<account>/<productKey>/<applyId>.json`, whose JSON then
 * starts with `account`. Without `accounts` files keep their path and bytes exactly.
 *
 * Invariants:
 * - A reader never sees a torn file: the JSON goes to a temp file in the same directory (created with mode
 *   0600, `wx`), is fsync'd, renamed over the target, and the directory is fsync'd.
 * - Mode 0600 when the writer may include device secrets (`includeSecrets: true`), 0644 otherwise. The mode
 *   is set with `fchmod`, so the umask cannot loosen or change it.
 * - Directories we create are 0700; the per-account and per-product directories are always (re)set to 0700
 *   (real directories inside `resultsDir`: a symlink there is refused, never followed or chmod'ed).
 * - `resultsDir` is created without `mkdir -p` (bounded, failing with the path and errno; see safe-fs.ts).
 * - The bytes depend only on the result: fixed key order, labels sorted, 2-space indentation, trailing
 *   newline. Rewriting the same result gives the same file (idempotent, so a crash between "written" and
 *   "recorded" is repaired by writing again).
 */
import path from 'node:path';

import type { BatchResult, ResultWriter } from '../core/ports.js';
import { DaemonError } from '../errors.js';
import type { SafeDir } from '../safe-fs.js';
import { assertSafePathSegment, ensureDirectory, openSafeDir, removeEntry, writeFileAtomic } from '../safe-fs.js';

export { assertSafePathSegment } from '../safe-fs.js';

/** Options of {@link createResultWriter}. */
export interface ResultWriterOptions {
  /** Root of the result tree; created (0700) when missing. */
  resultsDir: string;
  /** Write `deviceSecret` into the files (then they are 0600). When false, secrets are stripped. */
  includeSecrets: boolean;
  /**
   * fsync the directory after the rename so the new name survives a power cut.
   * @default true
   */
  fsyncDir?: boolean;
  /**
   * `account`: files under `<resultsDir>/<account>/` and JSON with `account` (the configuration has `accounts`);
   * `product`: the layout of before accounts.
   * @default 'product'
   */
  layout?: 'product' | 'account';
}

/** The account of a result, `default` when it names none. */
function accountOfResult(result: BatchResult): string {
  return result.account ?? 'default';
}

const FILE_MODE_SECRET = 0o600;
const FILE_MODE_PUBLIC = 0o644;
const DIR_MODE = 0o700;

/**
 * Serialises a result with the contract's key order (DESIGN.md §4), pretty-printed with 2 spaces and
 * newline-terminated. Pure: the same result always gives the same string. Secrets are kept if present; the
 * writer strips them before calling this when `includeSecrets` is off.
 */
export function toResultJson(result: BatchResult, withAccount = false): string {
  const labels: Record<string, string> = {};
  for (const key of Object.keys(result.labels).sort()) labels[key] = result.labels[key] ?? '';
  const ordered = {
    ...(withAccount ? { account: accountOfResult(result) } : {}),
    applyId: result.applyId,
    productKey: result.productKey,
    name: result.name ?? null,
    labels,
    outcome: result.outcome,
    status: result.status ?? null,
    firstSeenAt: result.firstSeenAt,
    settledAt: result.settledAt,
    polls: result.polls,
    validNames: [...result.validNames],
    invalidNames: [...result.invalidNames],
    invalidDetails: result.invalidDetails.map((d) => ({
      deviceName: d.deviceName,
      errors: [...d.errors],
      nickName: d.nickName ?? null,
    })),
    devices: result.devices.map((d) =>
      d.deviceSecret === undefined
        ? { deviceName: d.deviceName, iotId: d.iotId }
        : { deviceName: d.deviceName, iotId: d.iotId, deviceSecret: d.deviceSecret },
    ),
    deviceCount: result.deviceCount,
    history: result.history.map((h) => ({ status: h.status, at: h.at })),
    reason: result.reason ?? null,
  };
  return `${JSON.stringify(ordered, null, 2)}\n`;
}

/** The result writer the daemon creates: a {@link ResultWriter} that can check its directory up front. */
export interface FileResultWriter extends ResultWriter {
  /**
   * Creates (bounded) and resolves `resultsDir` now, so a bad directory is reported at start-up rather than
   * at the first settled batch. Rejects with `DaemonError{kind:'store'}` naming the path and the errno.
   * Optional: `write` prepares on first use.
   */
  prepare(): Promise<void>;
}

/**
 * Creates the {@link ResultWriter} that writes result files atomically, never through a symlink: `resultsDir`
 * may itself be (or lie below) a symlink chosen by the operator and is resolved once; the product directory
 * below it must be a real directory, or the write is refused with `DaemonError{code:'UnsafePath'}`
 * (see src/safe-fs.ts).
 */
export function createResultWriter(options: ResultWriterOptions): FileResultWriter {
  const resultsDir = path.resolve(options.resultsDir);
  const fsyncDir = options.fsyncDir ?? true;
  const mode = options.includeSecrets ? FILE_MODE_SECRET : FILE_MODE_PUBLIC;
  const perAccount = options.layout === 'account';
  const segmentsOf = (result: BatchResult): string[] =>
    perAccount ? [accountOfResult(result), result.productKey] : [result.productKey];
  // One write per target at a time, so two writes of the same result cannot interleave their renames.
  const chains = new Map<string, Promise<unknown>>();
  let root: Promise<string> | null = null;

  const prepare = (): Promise<string> => {
    if (root === null) {
      const attempt = ensureDirectory(resultsDir, { mode: DIR_MODE, label: 'output.resultsDir' });
      root = attempt;
      // A failure is not cached: the next write tries again (the operator may have fixed the directory).
      attempt.catch(() => {
        if (root === attempt) root = null;
      });
    }
    return root;
  };

  const writeOnce = async (result: BatchResult): Promise<string> => {
    if (perAccount) assertSafePathSegment(accountOfResult(result), 'account');
    assertSafePathSegment(result.productKey, 'productKey');
    assertSafePathSegment(result.applyId, 'applyId');
    const content = toResultJson(options.includeSecrets ? result : stripSecrets(result), perAccount);
    const segments = segmentsOf(result);
    let dir: SafeDir;
    try {
      dir = await openSafeDir(await prepare(), segments, { mode: DIR_MODE, tighten: true });
    } catch (err) {
      if (!(err instanceof DaemonError && err.code === 'ENOENT')) throw err;
      // resultsDir was removed since it was resolved: create and resolve it again, once.
      root = null;
      dir = await openSafeDir(await prepare(), segments, { mode: DIR_MODE, tighten: true });
    }
    try {
      await writeFileAtomic(dir, `${result.applyId}.json`, content, { mode, fsyncDir });
    } finally {
      await dir.close();
    }
    return path.join(resultsDir, ...segments, `${result.applyId}.json`);
  };

  return {
    async prepare() {
      await prepare();
    },
    write(result) {
      const key = `${accountOfResult(result)}\0${result.productKey}\0${result.applyId}`;
      const previous = chains.get(key) ?? Promise.resolve();
      const next = previous.then(
        () => writeOnce(result),
        () => writeOnce(result),
      );
      const tail = next.catch(() => undefined);
      chains.set(key, tail);
      void tail.then(() => {
        if (chains.get(key) === tail) chains.delete(key);
      });
      return next;
    },

    async remove(productKey, applyId) {
      assertSafePathSegment(productKey, 'productKey');
      assertSafePathSegment(applyId, 'applyId');
      // NOTE: a withdrawn result (its batch is watched again) simply disappears; a missing file or product
      // directory is fine. Like writes, it never follows a symlink below resultsDir.
      let dir: SafeDir;
      try {
        dir = await openSafeDir(await prepare(), [productKey], { create: false });
      } catch (err) {
        if (err instanceof DaemonError && err.code === 'ENOENT') return;
        throw err;
      }
      try {
        await removeEntry(dir, `${applyId}.json`, { fsync: fsyncDir });
      } finally {
        await dir.close();
      }
    },
  };
}

function stripSecrets(result: BatchResult): BatchResult {
  return {
    ...result,
    devices: result.devices.map((d) => ({ deviceName: d.deviceName, iotId: d.iotId })),
  };
}
