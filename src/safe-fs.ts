/**
 * Safe file writes below a configured directory: result files, provisioning reports and CSVs (with device
 * secrets), the events file, the dead-letter file, and directory creation for the state directory.
 *
 * The rule (the lead documents it in README / docs/operations.md):
 * - The configured directory itself (`output.resultsDir`, `state.dir`, the parent of `output.eventsFile`) is the
 *   operator's choice and may be, or lie below, a symbolic link: {@link ensureDirectory} creates what is
 *   missing and resolves it once, with `realpath`.
 * - Below it, every path component must be a real directory and the file written must not be a symbolic link:
 *   anything else is refused with `DaemonError{kind:'store', code:'UnsafePath'}` naming the path. Nothing is
 *   written, created or chmod'ed through a link.
 * - Modes change only on what lies below the configured directory (directories we walk into, files we create);
 *   a configured directory is chmod'ed only when we created it.
 * - Directory creation is bounded: one `mkdir` per missing component, a few attempts each, and a failure names
 *   the directory, the component and the errno. (Node's `mkdir -p` loops for ever where `mkdir` reports ENOENT
 *   for a parent that exists, as under `/proc`.)
 *
 * On Linux every step below the configured directory goes through `/proc/self/fd/<fd>/<name>` of the directory
 * opened one step before (the `openat(2)` pattern, which Node lacks), so a component swapped for a symlink
 * between the check and the write is still never followed. Without `/proc` the same checks run on plain paths,
 * which leaves a window between check and use to a writer racing inside the configured directory.
 */
import { randomBytes } from 'node:crypto';
import { constants, existsSync } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import { lstat, mkdir, open, realpath, rename, stat, unlink } from 'node:fs/promises';
import path from 'node:path';

import { DaemonError } from './errors.js';
import type { ErrorScope } from './errors.js';

const { O_RDONLY, O_WRONLY, O_RDWR, O_CREAT, O_EXCL, O_APPEND, O_DIRECTORY, O_NOFOLLOW, O_NONBLOCK } = constants;

/** Error code of a refused path (a symlink, or not a directory / regular file where one is needed). */
export const UNSAFE_PATH = 'UnsafePath';

/** More path components than any sane configuration has; bounds the walk. */
const MAX_DEPTH = 128;
/** mkdir attempts per component (another process may create or remove it meanwhile). */
const MKDIR_ATTEMPTS = 3;
/** Errno codes after which trying again later may succeed. */
const TRANSIENT_CODES = new Set(['ENOSPC', 'EDQUOT', 'EAGAIN', 'EBUSY', 'EINTR', 'EMFILE', 'ENFILE']);

let procFdUsable: boolean | undefined;
function useProcFd(): boolean {
  procFdUsable ??= process.platform === 'linux' && existsSync('/proc/self/fd');
  return procFdUsable;
}

function errnoOf(err: unknown): string {
  if (typeof err === 'object' && err !== null && 'code' in err && typeof err.code === 'string') return err.code;
  return 'EIO';
}

function fsError(message: string, err: unknown): DaemonError {
  const code = errnoOf(err);
  const scope: ErrorScope = TRANSIENT_CODES.has(code) ? 'attempt' : 'process';
  const detail = err instanceof Error ? err.message.replace(/^[A-Z]+: /, '') : String(err);
  return new DaemonError(`${message} (${code}: ${detail})`, { kind: 'store', scope, code, cause: err });
}

function unsafe(message: string): DaemonError {
  // NOTE: scope `attempt`: the operator can remove the link, and the next attempt then succeeds.
  return new DaemonError(message, { kind: 'store', scope: 'attempt', code: UNSAFE_PATH });
}

/**
 * Throws `DaemonError{code:'UnsafePathSegment'}` unless `segment` is one safe path component: non-empty, at
 * most 255 bytes, not `.`/`..`, free of `/`, `\` and NUL.
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

/** Options of {@link ensureDirectory}. */
export interface EnsureDirectoryOptions {
  /** Mode of the directories created (then set exactly, whatever the umask). @default 0o700 */
  mode?: number;
  /** What the directory is, for messages (`state.dir`, `output.resultsDir`...). @default 'directory' */
  label?: string;
}

/**
 * Makes sure the configured directory `dir` exists, creating missing components one `mkdir` at a time (mode
 * `options.mode`, set exactly on what it created and on nothing else), and returns its real path. Existing
 * components may be symlinks (the configured path is the operator's choice). Fails fast with
 * `DaemonError{kind:'store', code:<errno>}` naming `dir`, the failing component and the errno.
 */
export async function ensureDirectory(dir: string, options: EnsureDirectoryOptions = {}): Promise<string> {
  const mode = options.mode ?? 0o700;
  const label = options.label ?? 'directory';
  const abs = path.resolve(dir);
  const parts = abs.split(path.sep).filter((p) => p !== '');
  if (parts.length > MAX_DEPTH) {
    throw new DaemonError(`cannot create ${label} ${abs}: more than ${MAX_DEPTH} path components`, {
      kind: 'store',
      scope: 'process',
      code: 'ENAMETOOLONG',
    });
  }
  let current = path.parse(abs).root;
  for (const part of parts) {
    current = path.join(current, part);
    await ensureComponent(abs, current, mode, label);
  }
  try {
    return await realpath(abs);
  } catch (err) {
    throw fsError(`cannot resolve ${label} ${abs}`, err);
  }
}

async function ensureComponent(abs: string, component: string, mode: number, label: string): Promise<void> {
  let lastError: unknown = null;
  for (let attempt = 0; attempt < MKDIR_ATTEMPTS; attempt += 1) {
    try {
      const st = await stat(component);
      if (st.isDirectory()) return;
      throw new DaemonError(`cannot use ${label} ${abs}: ${component} is not a directory`, {
        kind: 'store',
        scope: 'process',
        code: 'ENOTDIR',
      });
    } catch (err) {
      if (err instanceof DaemonError) throw err;
      if (errnoOf(err) !== 'ENOENT') throw fsError(`cannot use ${label} ${abs}: stat ${component} failed`, err);
    }
    try {
      await mkdir(component, { mode });
    } catch (err) {
      lastError = err;
      if (errnoOf(err) === 'EEXIST') continue; // created meanwhile (or a dangling link): look again
      throw fsError(`cannot create ${label} ${abs}: mkdir ${component} failed`, err);
    }
    await chmodCreatedDir(component, mode, `${label} ${abs}`);
    return;
  }
  throw fsError(`cannot create ${label} ${abs}: ${component} keeps appearing and disappearing (a dangling symlink?)`, lastError);
}

/** Sets the exact mode of a directory we just created, through a handle that cannot follow a symlink. */
async function chmodCreatedDir(dirPath: string, mode: number, what: string): Promise<void> {
  let handle: FileHandle | undefined;
  try {
    handle = await open(dirPath, O_RDONLY | O_DIRECTORY | O_NOFOLLOW);
    await handle.chmod(mode);
  } catch (err) {
    throw fsError(`cannot set the mode of ${dirPath} (${what})`, err);
  } finally {
    await handle?.close().catch(() => undefined);
  }
}

/**
 * An open directory below a configured root. Names passed to its methods are single path components, looked
 * up in this very directory (not through a path that could have changed since it was checked).
 */
export interface SafeDir {
  /** The directory's path, for messages and return values. */
  readonly path: string;
  /** A path for a syscall on `name` inside this directory. */
  entry(name: string): string;
  /** fsync(2) of the directory, so creations and renames in it are durable (ignored where unsupported). */
  sync(): Promise<void>;
  close(): Promise<void>;
}

/** Options of {@link openSafeDir}. */
export interface OpenSafeDirOptions {
  /** Create missing components below the root. @default true */
  create?: boolean;
  /** Mode of created components. @default 0o700 */
  mode?: number;
  /** Also set `mode` on existing components below the root (they are real directories inside it). @default false */
  tighten?: boolean;
}

class SafeDirImpl implements SafeDir {
  constructor(
    readonly path: string,
    private readonly handle: FileHandle,
  ) {}

  entry(name: string): string {
    return useProcFd() ? `/proc/self/fd/${this.handle.fd}/${name}` : path.join(this.path, name);
  }

  async sync(): Promise<void> {
    try {
      await this.handle.sync();
    } catch (err) {
      // NOTE: some platforms/file systems cannot fsync a directory; that is not a reason to fail a write.
      if (!['EISDIR', 'EINVAL', 'ENOTSUP', 'EPERM', 'EBADF'].includes(errnoOf(err))) {
        throw fsError(`cannot fsync ${this.path}`, err);
      }
    }
  }

  async close(): Promise<void> {
    await this.handle.close().catch(() => undefined);
  }
}

/**
 * Opens `root/segments...` where `root` is a real directory (as returned by {@link ensureDirectory}) and each
 * segment must be a real directory below it (created when missing). Refuses a symlink or a non-directory with
 * `DaemonError{code:'UnsafePath'}` naming it; an unsafe segment name with `UnsafePathSegment`.
 */
export async function openSafeDir(root: string, segments: readonly string[], options: OpenSafeDirOptions = {}): Promise<SafeDir> {
  const create = options.create ?? true;
  const mode = options.mode ?? 0o700;
  for (const segment of segments) assertSafePathSegment(segment, 'path component');
  let logical = root;
  let handle: FileHandle;
  try {
    handle = await open(root, O_RDONLY | O_DIRECTORY);
  } catch (err) {
    throw fsError(`cannot open the directory ${root}`, err);
  }
  let dir = new SafeDirImpl(logical, handle);
  try {
    for (const segment of segments) {
      const next = path.join(logical, segment);
      const child = await openChildDir(dir, segment, next, create, mode, options.tighten ?? false);
      await dir.close();
      logical = next;
      dir = new SafeDirImpl(logical, child);
    }
    return dir;
  } catch (err) {
    await dir.close();
    throw err;
  }
}

async function openChildDir(
  parent: SafeDirImpl,
  segment: string,
  logical: string,
  create: boolean,
  mode: number,
  tighten: boolean,
): Promise<FileHandle> {
  const at = parent.entry(segment);
  let created = false;
  for (let attempt = 0; attempt < MKDIR_ATTEMPTS; attempt += 1) {
    let child: FileHandle;
    try {
      child = await open(at, O_RDONLY | O_DIRECTORY | O_NOFOLLOW);
    } catch (err) {
      const code = errnoOf(err);
      if (code === 'ENOENT' && create) {
        try {
          await mkdir(at, { mode });
          created = true;
        } catch (mkdirErr) {
          if (errnoOf(mkdirErr) !== 'EEXIST') throw fsError(`cannot create the directory ${logical}`, mkdirErr);
        }
        continue;
      }
      if (code === 'ELOOP' || code === 'ENOTDIR') throw await refusal(at, logical, 'a directory');
      throw fsError(`cannot open the directory ${logical}`, err);
    }
    try {
      if (created || tighten) {
        const st = await child.stat();
        if ((st.mode & 0o7777) !== mode) await child.chmod(mode);
      }
    } catch (err) {
      await child.close().catch(() => undefined);
      throw fsError(`cannot set the mode of ${logical}`, err);
    }
    return child;
  }
  throw new DaemonError(`cannot create the directory ${logical}: it keeps changing`, {
    kind: 'store',
    scope: 'attempt',
    code: 'EAGAIN',
  });
}

/** The error for `at` (shown as `logical`) being a symlink or not of the `wanted` type. */
async function refusal(at: string, logical: string, wanted: string): Promise<DaemonError> {
  let what = 'not ' + wanted;
  try {
    const st = await lstat(at);
    if (st.isSymbolicLink()) what = 'a symbolic link';
  } catch {
    // gone meanwhile: the generic message stands
  }
  return unsafe(`refusing ${logical}: it is ${what}; files are never written through links or outside the configured directory`);
}

/** Options of {@link writeFileAtomic}. */
export interface WriteFileAtomicOptions {
  /** Mode of the file, set with fchmod (umask-proof). Secrets: 0o600. */
  mode: number;
  /** fsync the file. @default true */
  fsync?: boolean;
  /** fsync the directory after the rename, so the new name survives a power cut. @default `fsync` */
  fsyncDir?: boolean;
}

let tempCounter = 0;

/**
 * Writes `data` to `dir/name` atomically: a temp file created exclusively (O_EXCL|O_NOFOLLOW, 0600) in the same
 * directory, fchmod to `mode`, written, fsync'd, renamed over `name` (which replaces a symlink there instead
 * of following it), then the directory fsync'd. A reader never sees a torn file; a failure leaves no temp file.
 * Returns the logical path of the file.
 */
export async function writeFileAtomic(
  dir: SafeDir,
  name: string,
  data: string | Uint8Array,
  options: WriteFileAtomicOptions,
): Promise<string> {
  assertSafePathSegment(name, 'file name');
  const fsync = options.fsync ?? true;
  const target = path.join(dir.path, name);
  tempCounter += 1;
  // NOTE: the name is shortened so the temp name stays within NAME_MAX.
  const temp = `.${name.slice(0, 160)}.${process.pid}.${tempCounter}.${randomBytes(4).toString('hex')}.tmp`;
  let handle: FileHandle;
  try {
    handle = await open(dir.entry(temp), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW, 0o600);
  } catch (err) {
    throw fsError(`cannot create a temporary file in ${dir.path}`, err);
  }
  let renamed = false;
  try {
    try {
      await handle.chmod(options.mode);
      await handle.writeFile(data);
      if (fsync) await handle.sync();
    } finally {
      await handle.close();
    }
    await rename(dir.entry(temp), dir.entry(name));
    renamed = true;
  } catch (err) {
    throw fsError(`cannot write ${target}`, err);
  } finally {
    if (!renamed) await unlink(dir.entry(temp)).catch(() => undefined);
  }
  if (options.fsyncDir ?? fsync) await dir.sync();
  return target;
}

/**
 * Removes `dir/name` (a file, or a symlink itself: never its target). Resolves false when it did not exist.
 */
export async function removeEntry(dir: SafeDir, name: string, options: { fsync?: boolean } = {}): Promise<boolean> {
  assertSafePathSegment(name, 'file name');
  try {
    await unlink(dir.entry(name));
  } catch (err) {
    if (errnoOf(err) === 'ENOENT') return false;
    throw fsError(`cannot remove ${path.join(dir.path, name)}`, err);
  }
  if (options.fsync ?? true) await dir.sync();
  return true;
}

/** Options of {@link openAppendFile}. */
export interface OpenAppendFileOptions {
  /** Mode when the file is created (subject to the umask, like any create). */
  mode: number;
  /** Open read-write (to read the last byte, say) instead of write-only. @default false */
  read?: boolean;
  /** What the file is, for messages. @default 'file' */
  label?: string;
}

/**
 * Opens `file` for appending, creating it (and, bounded, its missing parent directories) when needed. The
 * parent directory is the configured location and may be reached through a symlink; the file itself must
 * not be one and must be a regular file (a FIFO or device is refused rather than blocked on). Refusals are
 * `DaemonError{code:'UnsafePath'}` naming the file.
 */
export async function openAppendFile(file: string, options: OpenAppendFileOptions): Promise<FileHandle> {
  const label = options.label ?? 'file';
  const abs = path.resolve(file);
  const parent = await ensureDirectory(path.dirname(abs), { label: `directory of ${label}` });
  const dir = await openSafeDir(parent, [], { create: false });
  const name = path.basename(abs);
  const flags = (options.read ? O_RDWR : O_WRONLY) | O_APPEND | O_CREAT | O_NOFOLLOW | O_NONBLOCK;
  let handle: FileHandle;
  try {
    try {
      handle = await open(dir.entry(name), flags, options.mode);
    } catch (err) {
      const code = errnoOf(err);
      if (code === 'ELOOP' || code === 'ENXIO') throw await refusal(dir.entry(name), abs, `a regular file (${label})`);
      throw fsError(`cannot open ${label} ${abs}`, err);
    }
  } finally {
    await dir.close();
  }
  try {
    const st = await handle.stat();
    if (!st.isFile()) throw unsafe(`refusing ${label} ${abs}: it is not a regular file`);
  } catch (err) {
    await handle.close().catch(() => undefined);
    throw err instanceof DaemonError ? err : fsError(`cannot stat ${label} ${abs}`, err);
  }
  return handle;
}
