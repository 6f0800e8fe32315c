/**
 * Reads a provisioning job's device file with bounds: regular files only (a FIFO or a device is refused before
 * a byte is read), at most `maxBytes`, strict UTF-8. Parsing and validation are pure (device-list.ts).
 */

import { constants } from 'node:fs';
import { open } from 'node:fs/promises';

import { type DeviceList, DeviceFileError, deviceFileFormat, parseDeviceList } from './device-list.js';

/** The default largest device file: 64 MiB (about 1.5 million names of 40 bytes). */
export const DEFAULT_MAX_DEVICE_FILE_BYTES = 64 * 1024 * 1024;

/** Options of {@link readDeviceFile}. */
export interface ReadDeviceFileOptions {
  /** @default DEFAULT_MAX_DEVICE_FILE_BYTES */
  maxBytes?: number;
}

function kindOf(stat: { isDirectory(): boolean; isFIFO(): boolean; isCharacterDevice(): boolean; isSocket(): boolean }): string {
  if (stat.isDirectory()) return 'a directory';
  if (stat.isFIFO()) return 'a FIFO (named pipe)';
  if (stat.isCharacterDevice()) return 'a character device';
  if (stat.isSocket()) return 'a socket';
  return 'not a regular file';
}

/**
 * Reads, parses and validates the device file `file` (an absolute path).
 *
 * @throws DeviceFileError naming the file: missing, not a regular file, too large, not UTF-8, an unknown
 *   extension, a CSV without its header, or no devices at all.
 */
export async function readDeviceFile(file: string, options: ReadDeviceFileOptions = {}): Promise<DeviceList> {
  const maxBytes = options.maxBytes ?? DEFAULT_MAX_DEVICE_FILE_BYTES;
  const fail = (why: string) => new DeviceFileError(`device file ${file}: ${why}`);
  const format = deviceFileFormat(file);
  if (format === null) throw fail('expected a .csv, .jsonl or .txt file');
  let handle;
  try {
    // NOTE: O_NONBLOCK so that opening a FIFO without a writer returns at once instead of hanging.
    handle = await open(file, constants.O_RDONLY | constants.O_NONBLOCK);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw fail(code === 'ENOENT' ? 'no such file' : code === 'EACCES' ? 'permission denied' : `cannot open it (${String(code ?? err)})`);
  }
  let bytes: Buffer;
  try {
    const stat = await handle.stat();
    if (!stat.isFile()) throw fail(`expected a regular file, got ${kindOf(stat)}`);
    if (stat.size > maxBytes) throw fail(`the file has ${stat.size} bytes, more than the limit of ${maxBytes}`);
    // Room beyond the size (at most one byte beyond the limit) tells a file that grew while it was read: a full
    // buffer is refused, so memory stays bounded whatever the writer does.
    const buffer = Buffer.allocUnsafe(Math.min(maxBytes + 1, stat.size + 65_536));
    let length = 0;
    for (;;) {
      if (length === buffer.length) break;
      const { bytesRead } = await handle.read(buffer, length, buffer.length - length, length);
      if (bytesRead === 0) break;
      length += bytesRead;
    }
    if (length === buffer.length) {
      throw fail(`the file grew while it was read (limit ${maxBytes} bytes); read it again once it is complete`);
    }
    bytes = buffer.subarray(0, length);
  } finally {
    await handle.close();
  }
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  } catch {
    throw fail('expected UTF-8 text');
  }
  try {
    return parseDeviceList(text, format);
  } catch (err) {
    if (err instanceof DeviceFileError) throw fail(err.message);
    throw err;
  }
}
