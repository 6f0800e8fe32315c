/**
 * Reads the configuration file with bounds (issue #13.5): regular files only, and at most a maximum size.
 *
 * The file is opened non-blocking, so a FIFO does not hang the open; `fstat` on the open descriptor then
 * refuses anything that is not a regular file (FIFO, character device such as `/dev/urandom`, socket,
 * directory) and any file larger than the limit, before a byte is read. A file that grows while it is read is
 * cut at the limit + 1 byte and refused too, so memory stays bounded whatever the writer does.
 * Symbolic links are followed (a Kubernetes ConfigMap mounts the file through `..data` links).
 */

import { createHash } from 'node:crypto';
import { constants } from 'node:fs';
import { open } from 'node:fs/promises';
import path from 'node:path';

import { ConfigError } from '../errors.js';

/** The default largest configuration file: 64 MiB (about 650,000 batches of one line each). */
export const DEFAULT_MAX_CONFIG_BYTES = 64 * 1024 * 1024;

/** Environment variable that overrides {@link DEFAULT_MAX_CONFIG_BYTES} (a number of bytes). */
export const MAX_CONFIG_BYTES_ENV = 'IBW_CONFIG_MAX_BYTES';

/** What one read of the configuration file saw. */
export interface ConfigFileContent {
  /** The path as resolved against the cwd. */
  absoluteFile: string;
  text: string;
  /** sha256 (hex) of the bytes read: equal hashes mean an unchanged file. */
  hash: string;
  /** Modification time of the file when it was opened, in ms since the epoch. */
  mtimeMs: number;
  size: number;
  /** Inode number: a different one means the file was replaced (rename, ConfigMap swap). */
  ino: number;
}

/** Options of {@link readConfigFile}. */
export interface ReadConfigFileOptions {
  /** @default process.cwd() */
  cwd?: string;
  /** @default DEFAULT_MAX_CONFIG_BYTES */
  maxBytes?: number;
}

function fail(file: string, message: string): ConfigError {
  return new ConfigError([{ file, line: 0, col: 0, path: '', message }]);
}

function mb(bytes: number): string {
  return `${(bytes / (1024 * 1024)).toFixed(1)} MiB`;
}

/**
 * The size limit from `IBW_CONFIG_MAX_BYTES`, or the default.
 *
 * @throws ConfigError (file `env`) when the variable is set to something other than a positive integer.
 */
export function maxConfigBytes(env: Readonly<Record<string, string | undefined>>): number {
  const raw = env[MAX_CONFIG_BYTES_ENV]?.trim();
  if (raw === undefined || raw === '') return DEFAULT_MAX_CONFIG_BYTES;
  if (!/^[1-9][0-9]{0,15}$/.test(raw)) {
    throw new ConfigError([
      { file: 'env', line: 0, col: 0, path: MAX_CONFIG_BYTES_ENV, message: `expected a positive number of bytes, got \`${JSON.stringify(raw)}\`` },
    ]);
  }
  return Number(raw);
}

function kindOf(stat: { isDirectory(): boolean; isFIFO(): boolean; isCharacterDevice(): boolean; isBlockDevice(): boolean; isSocket(): boolean }): string {
  if (stat.isDirectory()) return 'a directory';
  if (stat.isFIFO()) return 'a FIFO (named pipe)';
  if (stat.isCharacterDevice()) return 'a character device';
  if (stat.isBlockDevice()) return 'a block device';
  if (stat.isSocket()) return 'a socket';
  return 'not a regular file';
}

/**
 * Reads the configuration file, bounded.
 *
 * @param file - the path as the user gave it (shown in errors), relative to `options.cwd` or absolute.
 * @throws ConfigError (line 0, col 0) when the file is missing, unreadable, not a regular file or too large.
 */
export async function readConfigFile(file: string, options: ReadConfigFileOptions = {}): Promise<ConfigFileContent> {
  const absoluteFile = path.resolve(options.cwd ?? process.cwd(), file);
  const maxBytes = options.maxBytes ?? DEFAULT_MAX_CONFIG_BYTES;
  let handle;
  try {
    // NOTE: O_NONBLOCK so that opening a FIFO without a writer returns at once instead of hanging.
    handle = await open(absoluteFile, constants.O_RDONLY | constants.O_NONBLOCK);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const why =
      code === 'ENOENT' ? 'no such file' : code === 'EISDIR' ? 'it is a directory' : code === 'EACCES' ? 'permission denied' : String(code ?? err);
    throw fail(file, `expected a readable YAML file, got an error: ${why}`);
  }
  try {
    const stat = await handle.stat();
    if (!stat.isFile()) throw fail(file, `expected a regular file, got ${kindOf(stat)}`);
    if (stat.size > maxBytes) {
      throw fail(file, `the file is ${mb(stat.size)}, more than the limit of ${mb(maxBytes)} (${maxBytes} bytes; ${MAX_CONFIG_BYTES_ENV} raises it)`);
    }
    // One byte more than the limit tells a file that grew while we read it from one that fits exactly.
    const buffer = Buffer.allocUnsafe(Math.min(maxBytes + 1, Math.max(stat.size + 1, 4096)));
    let length = 0;
    for (;;) {
      if (length === buffer.length) break;
      const { bytesRead } = await handle.read(buffer, length, buffer.length - length, length);
      if (bytesRead === 0) break;
      length += bytesRead;
    }
    if (length > maxBytes) {
      throw fail(file, `the file grew beyond the limit of ${mb(maxBytes)} (${maxBytes} bytes; ${MAX_CONFIG_BYTES_ENV} raises it) while it was read`);
    }
    let bytes = buffer.subarray(0, length);
    if (length === buffer.length) {
      // The file grew while we read it but is still within the limit: read the rest, bounded.
      const rest: Buffer[] = [bytes];
      let total = length;
      for (;;) {
        const chunk = Buffer.allocUnsafe(Math.min(1 << 20, maxBytes + 1 - total));
        if (chunk.length === 0) break;
        const { bytesRead } = await handle.read(chunk, 0, chunk.length, total);
        if (bytesRead === 0) break;
        rest.push(chunk.subarray(0, bytesRead));
        total += bytesRead;
      }
      if (total > maxBytes) {
        throw fail(file, `the file grew beyond the limit of ${mb(maxBytes)} (${maxBytes} bytes; ${MAX_CONFIG_BYTES_ENV} raises it) while it was read`);
      }
      bytes = Buffer.concat(rest, total);
    }
    return {
      absoluteFile,
      text: bytes.toString('utf8'),
      hash: createHash('sha256').update(bytes).digest('hex'),
      mtimeMs: stat.mtimeMs,
      size: bytes.length,
      ino: stat.ino,
    };
  } finally {
    await handle.close();
  }
}
