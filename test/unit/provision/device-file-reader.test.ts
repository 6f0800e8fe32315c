/** The device file is read with bounds: regular files only, a size limit, UTF-8, a known extension. */

import { execFileSync } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';

import { afterEach, beforeEach, describe, expect, it } from 'vitest';

import { readDeviceFile } from '../../../src/provision/device-file-reader.js';
import { DeviceFileError } from '../../../src/provision/device-list.js';

describe('readDeviceFile', () => {
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'ibw-devices-'));
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('reads and validates a CSV file', async () => {
    const file = path.join(dir, 'fleet.csv');
    await writeFile(file, 'DeviceName\nlamp-0001\nx\n');
    const list = await readDeviceFile(file);
    expect(list.devices.map((d) => d.deviceName)).toEqual(['lamp-0001']);
    expect(list.rejected.map((r) => [r.deviceName, r.code])).toEqual([['x', 'invalid_name']]);
  });

  it('refuses a file beyond the size limit before parsing it', async () => {
    const file = path.join(dir, 'big.txt');
    await writeFile(file, 'lamp-0001\n'.repeat(20));
    await expect(readDeviceFile(file, { maxBytes: 100 })).rejects.toThrow(`device file ${file}: the file has 200 bytes, more than the limit of 100`);
    await expect(readDeviceFile(file, { maxBytes: 200 })).resolves.toMatchObject({ devices: [expect.anything()] });
  });

  it('refuses a directory, a FIFO, a missing file, an unknown extension, bad UTF-8 and an empty file', async () => {
    await expect(readDeviceFile(path.join(dir, 'none.txt'))).rejects.toThrow(/no such file/);
    const sub = path.join(dir, 'sub.txt');
    execFileSync('mkdir', [sub]);
    await expect(readDeviceFile(sub)).rejects.toThrow(/expected a regular file, got a directory/);
    const fifo = path.join(dir, 'pipe.txt');
    execFileSync('mkfifo', [fifo]);
    await expect(readDeviceFile(fifo)).rejects.toThrow(/expected a regular file, got a FIFO/);
    await writeFile(path.join(dir, 'a.json'), '[]');
    await expect(readDeviceFile(path.join(dir, 'a.json'))).rejects.toThrow(/expected a \.csv, \.jsonl or \.txt file/);
    await writeFile(path.join(dir, 'bad.txt'), Buffer.from([0x6c, 0x61, 0xff, 0x70]));
    await expect(readDeviceFile(path.join(dir, 'bad.txt'))).rejects.toThrow(/expected UTF-8 text/);
    await writeFile(path.join(dir, 'empty.jsonl'), '');
    await expect(readDeviceFile(path.join(dir, 'empty.jsonl'))).rejects.toThrow(DeviceFileError);
  });
});
