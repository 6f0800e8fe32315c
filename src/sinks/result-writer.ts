/**
 * Result files (DESIGN.md §4, contract): `<resultsDir>/<productKey>/<applyId>.json`.
 *
 * Invariants:
 * - A reader never sees a torn file: the JSON goes to a temp file in the same directory (created with mode
 *   0600, `wx`), is fsync'd, renamed over the target, and the directory is fsync'd.
 * - Mode 0600 when the writer may include device secrets (`includeSecrets: true`), 0644 otherwise. The mode
 *   is set with `fchmod`, so the umask cannot loosen or change it.
 * - Directories we create are 0700; the per-product directory is always (re)set to 0700.
 * - The bytes depend only on the result: fixed key order, labels sorted, 2-space indentation, trailing
 *   newline. Rewriting the same result gives the same file (idempotent, so a crash between "written" and
 *   "recorded" is repaired by writing again).
 */
import { randomBytes } from 'node:crypto';
import { chmod, mkdir, open, rename, unlink } from 'node:fs/promises';
import path from 'node:path';

import type { BatchResult, ResultWriter } from '../core/ports.js';
import { DaemonError } from '../errors.js';

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
}

const FILE_MODE_SECRET = 0o600;
const FILE_MODE_PUBLIC = 0o644;
const DIR_MODE = 0o700;

/**
 * Serialises a result with the contract's key order (DESIGN.md §4), pretty-printed with 2 spaces and
 * newline-terminated. Pure: the same result always gives the same string. Secrets are kept if present; the
 * writer strips them before calling this when `includeSecrets` is off.
 */
export function toResultJson(result: BatchResult): string {
  const labels: Record<string, string> = {};
  for (const key of Object.keys(result.labels).sort()) labels[key] = result.labels[key] ?? '';
  const ordered = {
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

/**
 * Throws unless `segment` is safe as one path component: non-empty, at most 255 bytes, not `.`/`..`, and
 * free of `/`, `\` and NUL.
 */
export function assertSafePathSegment(segment: string, what: string): void {
  const bad =
    segment.length === 0 ||
    Buffer.byteLength(segment) > 255 ||
    segment === '.' ||
    segment === '..' ||
    /[/\\\0]/.test(segment);
  if (bad) {
    throw new DaemonError(`${what} ${JSON.stringify(segment)} cannot be used as a file name`, {
      kind: 'invalid-request',
      scope: 'batch',
      code: 'UnsafePathSegment',
    });
  }
}

/** Creates the {@link ResultWriter} that writes result files atomically. */
export function createResultWriter(options: ResultWriterOptions): ResultWriter {
  const resultsDir = path.resolve(options.resultsDir);
  const fsyncDir = options.fsyncDir ?? true;
  const mode = options.includeSecrets ? FILE_MODE_SECRET : FILE_MODE_PUBLIC;
  let counter = 0;
  // One write per target at a time, so two writes of the same result cannot interleave their renames.
  const chains = new Map<string, Promise<unknown>>();

  const writeOnce = async (result: BatchResult): Promise<string> => {
    assertSafePathSegment(result.productKey, 'productKey');
    assertSafePathSegment(result.applyId, 'applyId');
    const content = toResultJson(options.includeSecrets ? result : stripSecrets(result));
    const dir = path.join(resultsDir, result.productKey);
    const target = path.join(dir, `${result.applyId}.json`);

    const createdRoot = await mkdir(resultsDir, { recursive: true, mode: DIR_MODE });
    if (createdRoot !== undefined) await chmod(resultsDir, DIR_MODE);
    await mkdir(dir, { recursive: true, mode: DIR_MODE });
    await chmod(dir, DIR_MODE);

    counter += 1;
    const temp = path.join(
      dir,
      `.${result.applyId}.json.${process.pid}.${counter}.${randomBytes(4).toString('hex')}.tmp`,
    );
    const handle = await open(temp, 'wx', FILE_MODE_SECRET);
    let renamed = false;
    try {
      try {
        await handle.chmod(mode);
        await handle.writeFile(content, 'utf8');
        await handle.sync();
      } finally {
        await handle.close();
      }
      await rename(temp, target);
      renamed = true;
    } finally {
      if (!renamed) await unlink(temp).catch(() => undefined);
    }
    if (fsyncDir) await syncDirectory(dir);
    return target;
  };

  return {
    write(result) {
      const key = `${result.productKey}\0${result.applyId}`;
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
      // NOTE: a withdrawn result (its batch is watched again) simply disappears; a missing file is fine.
      await unlink(path.join(resultsDir, productKey, `${applyId}.json`)).catch((err: NodeJS.ErrnoException) => {
        if (err.code !== 'ENOENT') throw err;
      });
    },
  };
}

function stripSecrets(result: BatchResult): BatchResult {
  return {
    ...result,
    devices: result.devices.map((d) => ({ deviceName: d.deviceName, iotId: d.iotId })),
  };
}

/** fsync a directory so a rename in it is durable. Some platforms refuse; that is not an error. */
export async function syncDirectory(dir: string): Promise<void> {
  let handle;
  try {
    handle = await open(dir, 'r');
    await handle.sync();
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code !== 'EISDIR' && code !== 'EPERM' && code !== 'EINVAL' && code !== 'EBADF') throw err;
  } finally {
    await handle?.close();
  }
}
