/**
 * The few file-system writes the file ledger makes, behind an interface so tests can inject failures
 * (ENOSPC, EIO...) without needing a full disk — tests run as root, so permissions cannot simulate them.
 */
import type { FileHandle } from 'node:fs/promises';
import { open, rename, unlink } from 'node:fs/promises';

import { DaemonError } from '../errors.js';
import type { ErrorScope } from '../errors.js';

/** Write-side file operations used by the file ledger. Every method may throw a Node errno error. */
export interface LedgerFs {
  open(path: string, flags: string, mode?: number): Promise<FileHandle>;
  /** Writes all of `data` at the file's current end (handles are opened in append mode) or position. */
  write(handle: FileHandle, data: Uint8Array): Promise<void>;
  /** fsync(2). */
  sync(handle: FileHandle): Promise<void>;
  /** ftruncate(2). */
  truncate(handle: FileHandle, size: number): Promise<void>;
  rename(from: string, to: string): Promise<void>;
  unlink(path: string): Promise<void>;
  /** fsync of a directory, so renames, creations and deletions in it are durable. */
  syncDir(dir: string): Promise<void>;
}

/** The real file system. */
export const nodeLedgerFs: LedgerFs = {
  open: (path, flags, mode) => open(path, flags, mode),
  async write(handle, data) {
    let offset = 0;
    while (offset < data.length) {
      const { bytesWritten } = await handle.write(data, offset, data.length - offset);
      if (bytesWritten <= 0) throw Object.assign(new Error('write made no progress'), { code: 'EIO' });
      offset += bytesWritten;
    }
  },
  sync: (handle) => handle.sync(),
  truncate: (handle, size) => handle.truncate(size),
  rename: (from, to) => rename(from, to),
  unlink: (path) => unlink(path),
  async syncDir(dir) {
    let handle: FileHandle | undefined;
    try {
      handle = await open(dir, 'r');
      await handle.sync();
    } catch (err) {
      // NOTE: some platforms/file systems cannot fsync a directory; that is not a reason to fail a write.
      if (!['EISDIR', 'EINVAL', 'ENOTSUP', 'EPERM', 'EBADF'].includes(errnoCode(err) ?? '')) throw err;
    } finally {
      await handle?.close().catch(() => undefined);
    }
  },
};

/** The errno code of a Node system error (`ENOSPC`...), or undefined. */
export function errnoCode(err: unknown): string | undefined {
  if (typeof err === 'object' && err !== null && 'code' in err) {
    const code = err.code;
    return typeof code === 'string' ? code : undefined;
  }
  return undefined;
}

/** Errno codes after which trying again later may succeed (space freed, descriptors released). */
const TRANSIENT_CODES = new Set(['ENOSPC', 'EDQUOT', 'EAGAIN', 'EBUSY', 'EINTR', 'EMFILE', 'ENFILE']);

/**
 * Wraps a file-system failure as `DaemonError{kind:'store'}` with the errno code as `code` (e.g. `ENOSPC`,
 * `EROFS`, `EACCES`). Scope is `attempt` for conditions that may clear (ENOSPC, EDQUOT, EMFILE...),
 * `process` otherwise (EROFS, EACCES, EIO...).
 */
export function storeError(action: string, path: string, err: unknown): DaemonError {
  if (err instanceof DaemonError) return err;
  const code = errnoCode(err) ?? 'EIO';
  const detail = err instanceof Error ? err.message : String(err);
  const scope: ErrorScope = TRANSIENT_CODES.has(code) ? 'attempt' : 'process';
  return new DaemonError(`ledger: cannot ${action} ${path}: ${detail}`, { kind: 'store', scope, code, cause: err });
}
